"""Browser sign-in through the core's routes and the OIDC plugin, against a real OpenID provider process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import tfregistry_auth_oidc.plugin as oidc_plugin
from sqlalchemy import select
from tfregistry_auth_oidc.testing import OIDCMock

from tfregistry.models import AuditEntry, User
from tfregistry.services import identity as svc
from tfregistry.services.audit import CLI_ACTOR

BASE = "https://registry.test"


@pytest.fixture(scope="module")
def oidc() -> Iterator[OIDCMock]:
    with OIDCMock() as mock:
        mock.add_user("alice", {"email": "alice@example.com", "name": "Alice", "groups": ["grp-devs", "other"]})
        mock.add_user("mallory", {"email": "mallory@evil.example", "name": "Mallory", "groups": []})
        yield mock


@pytest.fixture
def app(app_factory: Any, oidc: OIDCMock) -> Any:
    return app_factory({
        "auth.providers": ["oidc"], "public_url": BASE,
        "auth.oidc.issuer": oidc.issuer, "auth.oidc.client_id": "registry",
        "auth.oidc.client_secret": "registry-client-secret",
        "auth.oidc.group_mapping": ["grp-devs=platform:publisher"],
        "auth.oidc.allowed_domains": ["example.com"],
    }, plugins=(oidc_plugin,))


def sign_in(client: Any, oidc: OIDCMock, sub: str, nxt: str = "/api/v1/me") -> tuple[Any, str]:
    """Walk the browser through the sign-in; returns the callback response and the callback path."""
    start = client.get(f"/auth/login?next={nxt}", base_url=BASE)
    start = client.get(start.headers["Location"], base_url=BASE)
    authorize = start.headers["Location"]
    assert authorize.startswith(oidc.issuer)
    callback = urlsplit(oidc.sign_in(authorize, sub))
    assert f"{callback.scheme}://{callback.netloc}" == BASE and callback.path == "/auth/callback/oidc"
    path = f"{callback.path}?{callback.query}"
    return client.get(path, base_url=BASE), path


def test_sign_in_provisions_the_user_maps_groups_and_opens_a_session(app: Any, oidc: OIDCMock):
    client = app.test_client()
    done, _ = sign_in(client, oidc, "alice")
    assert done.status_code == 302 and done.headers["Location"] == "/api/v1/me"
    cookie = next(h for h in done.headers.getlist("Set-Cookie") if h.startswith("tfr_session="))
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    me = client.get("/api/v1/me", base_url=BASE).get_json()
    assert me["kind"] == "session" and me["user"]["email"] == "alice@example.com"
    assert me["user"]["memberships"] == [{"organization": "platform", "role": "publisher", "source": "idp:oidc"}]
    registry = app.extensions["tfregistry"]
    with registry.db.session() as s:
        assert [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "user.login"))] == [
            "user.login"]
    # a second sign-in finds the same user (by issuer subject), not a new one
    sign_in(app.test_client(), oidc, "alice")
    with registry.db.session() as s:
        assert s.scalar(select(User.id).where(User.email == "alice@example.com")) is not None
        assert len(s.scalars(select(User)).all()) == 1


def test_memberships_follow_the_claims_but_manual_ones_stay(app: Any, oidc: OIDCMock):
    sign_in(app.test_client(), oidc, "alice")
    registry = app.extensions["tfregistry"]
    with registry.db.session() as s:
        user = s.scalar(select(User).where(User.email == "alice@example.com"))
        svc.set_membership(s, CLI_ACTOR, user, svc.default_organization(s), svc.get_role(s, "viewer"))
        s.commit()
    oidc.add_user("alice", {"email": "alice@example.com", "name": "Alice", "groups": []})
    try:
        client = app.test_client()
        sign_in(client, oidc, "alice")
        me = client.get("/api/v1/me", base_url=BASE).get_json()
        assert me["user"]["memberships"] == [{"organization": "default", "role": "viewer", "source": "manual"}]
    finally:
        oidc.add_user("alice", {"email": "alice@example.com", "name": "Alice", "groups": ["grp-devs", "other"]})


def test_replayed_callback_is_refused_and_audited(app: Any, oidc: OIDCMock):
    client = app.test_client()
    _, callback = sign_in(client, oidc, "alice")
    replay = app.test_client().get(callback, base_url=BASE)
    assert replay.status_code == 400 and b"Sign-in failed" in replay.data
    again = client.get(callback, base_url=BASE)  # even in the browser that started it: state is single-use
    assert again.status_code == 400
    with app.extensions["tfregistry"].db.session() as s:
        failures = s.scalars(select(AuditEntry).where(AuditEntry.action == "auth.login_failed")).all()
        assert len(failures) == 2 and all(f.details["reason"] for f in failures)


def test_policy_refusal_opens_no_session(app: Any, oidc: OIDCMock):
    client = app.test_client()
    refused, _ = sign_in(client, oidc, "mallory")
    assert refused.status_code == 400 and b"evil.example" in refused.data
    assert client.get("/api/v1/me", base_url=BASE).status_code == 401


def test_disabling_a_user_ends_their_session(app: Any, oidc: OIDCMock):
    client = app.test_client()
    sign_in(client, oidc, "alice")
    assert client.get("/api/v1/me", base_url=BASE).status_code == 200
    with app.extensions["tfregistry"].db.session() as s:
        user = s.scalar(select(User).where(User.email == "alice@example.com"))
        svc.disable_user(s, CLI_ACTOR, user)
        s.commit()
    assert client.get("/api/v1/me", base_url=BASE).status_code == 401
    blocked, _ = sign_in(client, oidc, "alice")
    assert blocked.status_code == 400 and b"disabled" in blocked.data


def test_sign_out_needs_the_csrf_token(app: Any, oidc: OIDCMock):
    client = app.test_client()
    sign_in(client, oidc, "alice")
    assert client.post("/auth/logout", base_url=BASE).status_code == 403
    with client.session_transaction(base_url=BASE) as sess:
        csrf = sess["csrf"]
    assert client.post("/auth/logout", data={"csrf_token": csrf}, base_url=BASE).status_code == 200
    assert client.get("/api/v1/me", base_url=BASE).status_code == 401


TENANT = "11111111-1111-4111-8111-111111111111"


@pytest.fixture
def entra_app(app_factory: Any, oidc: OIDCMock) -> Any:
    import tfregistry_auth_azuread.plugin as azuread_plugin

    oidc.add_user("entra-carol", {"email": "carol@contoso.example", "name": "Carol", "tid": TENANT,
                                  "oid": "00000000-0000-0000-0000-0000000000c1", "roles": ["Registry.Publisher"],
                                  "groups": ["5d3e0c1a-0000-4000-8000-000000000001"]})
    return app_factory({
        "auth.providers": ["azuread"], "public_url": BASE,
        "auth.azuread.tenant": TENANT, "auth.azuread.client_id": "registry-app",
        "auth.azuread.client_secret": "registry-client-secret", "auth.azuread.authority": oidc.issuer,
        "auth.azuread.metadata_url": oidc.discovery_url, "auth.azuread.issuer": oidc.issuer,
        "auth.azuread.role_mapping": ["Registry.Publisher=platform:publisher"],
        "auth.azuread.group_mapping": ["5d3e0c1a-0000-4000-8000-000000000001=audit:viewer"],
    }, plugins=(azuread_plugin,))


def test_entra_id_sign_in_keys_users_by_tenant_and_object_id(entra_app: Any, oidc: OIDCMock):
    client = entra_app.test_client()
    start = client.get("/auth/login/azuread?next=/api/v1/me", base_url=BASE)
    callback = urlsplit(oidc.sign_in(start.headers["Location"], "entra-carol"))
    done = client.get(f"{callback.path}?{callback.query}", base_url=BASE)
    assert done.status_code == 302 and done.headers["Location"] == "/api/v1/me"
    me = client.get("/api/v1/me", base_url=BASE).get_json()
    assert me["kind"] == "session" and me["user"]["email"] == "carol@contoso.example"
    assert sorted((m["organization"], m["role"]) for m in me["user"]["memberships"]) == [
        ("audit", "viewer"), ("platform", "publisher")]
    from tfregistry.models import UserIdentity

    with entra_app.extensions["tfregistry"].db.session() as s:
        [link] = s.scalars(select(UserIdentity)).all()
        assert (link.provider, link.subject) == ("azuread", f"{TENANT}/00000000-0000-0000-0000-0000000000c1")
