"""Users, organizations, roles, tokens, tenancy, audit, sessions and rate limits, through the HTTP API.

Each test is also an attack someone would try: another organization's token, too few scopes,
escalation through role templates or token scopes, forged cookies, missing CSRF tokens.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import bearer, new_token, post_module
from tfregistry import StartupError, hookimpl
from tfregistry.auth import Identity
from tfregistry.interfaces import AuthProvider, ExternalIdentity
from tfregistry.models import ApiToken, AuditEntry, Namespace, utcnow
from tfregistry.services import identity as svc
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR
from tfregistry.services.identity import expand


class Site:
    """An app plus helpers to make users, organizations and tokens directly in its database."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.registry = app.extensions["tfregistry"]
        self.admin = new_token(app, "admin", name="admin")

    def org(self, name: str) -> None:
        with self.registry.db.session() as s:
            svc.create_organization(s, CLI_ACTOR, name)
            s.commit()

    def user(self, email: str, memberships: dict[str, str] | None = None, site_admin: bool = False) -> int:
        with self.registry.db.session() as s:
            user = svc.create_user(s, CLI_ACTOR, email, email.split("@")[0], site_admin=site_admin)
            for org, role in (memberships or {}).items():
                svc.set_membership(s, CLI_ACTOR, user, svc.get_organization(s, org), svc.get_role(s, role))
            s.commit()
            return user.id

    def personal(self, user_id: int, scopes: str = "admin") -> str:
        with self.registry.db.session() as s:
            _, secret = token_svc.create_token(s, CLI_ACTOR, name="p", scopes=scopes.split(), kind="personal",
                                               user=svc.get_user(s, user_id))
            s.commit()
            return secret

    def service(self, org: str, scopes: str) -> str:
        with self.registry.db.session() as s:
            _, secret = token_svc.create_token(s, CLI_ACTOR, name=f"ci-{org}", scopes=scopes.split(), kind="service",
                                               organization=svc.get_organization(s, org))
            s.commit()
            return secret

    def namespace(self, name: str, org: str, visibility: str = "private") -> None:
        r = self.client.post(f"/api/v1/organizations/{org}/namespaces", json={"name": name, "visibility": visibility},
                             headers=bearer(self.admin))
        assert r.status_code == 201, r.get_json()

    def get(self, path: str, token: str | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers=bearer(token) if token else {}, **kw)

    def post(self, path: str, token: str | None = None, **kw: Any) -> Any:
        return self.client.post(path, headers=bearer(token) if token else {}, **kw)

    def audit(self, action: str) -> list[AuditEntry]:
        with self.registry.db.session() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


@pytest.fixture
def site(app_factory: Any) -> Site:
    return Site(app_factory())


@pytest.fixture
def multi(app_factory: Any) -> Site:
    """A multi-tenant site with organizations blue and red, each owning a private namespace with a module."""
    site = Site(app_factory({"tenancy": "multi"}))
    for org in ("blue", "red"):
        site.org(org)
        site.namespace(f"{org}-ns", org)
        assert post_module(site.client, site.admin, namespace=f"{org}-ns").status_code == 201
    return site


def test_builtin_role_templates_form_a_hierarchy(site: Site):
    roles = {r["name"]: r for r in site.get("/api/v1/roles", site.admin).get_json()}
    assert set(roles) == {"admin", "mirror-manager", "publisher", "viewer"}
    assert all(roles[n]["builtin"] for n in roles)
    order = ["viewer", "publisher", "mirror-manager", "admin"]
    for lower, higher in zip(order, order[1:], strict=False):
        assert svc.covers(roles[higher]["scopes"], roles[lower]["scopes"]), (higher, lower)
        assert not svc.covers(roles[lower]["scopes"], roles[higher]["scopes"]), (lower, higher)


def test_write_implies_read_and_admin_everything():
    assert expand(["modules:write"]) == {"modules:write", "modules:read"}
    assert expand(["mirrors:manage"]) == {"mirrors:manage", "mirrors:read"}
    assert expand(["admin"]) == set(svc.SCOPES)
    with pytest.raises(svc.ServiceError, match="unknown scope 'modules:root'"):
        svc.normalise_scopes(["modules:root"])


def test_me_describes_a_personal_token_user(site: Site):
    uid = site.user("alice@example.com", {"default": "publisher"})
    me = site.get("/api/v1/me", site.personal(uid, "modules:write")).get_json()
    assert me["kind"] == "personal" and me["user"]["email"] == "alice@example.com"
    assert me["user"]["memberships"] == [{"organization": "default", "role": "publisher", "source": "manual"}]
    assert me["organizations"] == [{"name": "default", "scopes": ["modules:read", "modules:write"]}]
    assert site.get("/api/v1/me").status_code == 401


def test_custom_role_templates_only_by_admins_and_only_known_scopes(site: Site):
    uid = site.user("pub@example.com", {"default": "publisher"})
    body = {"name": "auditor", "scopes": ["audit:read", "modules:read"]}
    assert site.post("/api/v1/roles", site.personal(uid, "modules:write"), json=body).status_code == 403
    bad = site.post("/api/v1/roles", site.admin, json={"name": "x", "scopes": ["everything"]})
    assert bad.status_code == 422 and "scopes" in bad.get_json()["errors"]["json"]  # an enum in the document
    r = site.post("/api/v1/roles", site.admin, json=body)
    assert r.status_code == 201 and r.get_json()["scopes"] == ["modules:read", "audit:read"]
    builtin = site.client.put("/api/v1/roles/viewer", json={"name": "viewer", "scopes": ["admin"]},
                              headers=bearer(site.admin))
    assert builtin.status_code == 400 and "built-in" in builtin.get_json()["message"]
    assert len(site.audit("role.save")) == 1


def test_no_privilege_escalation_through_memberships(site: Site):
    site.post("/api/v1/roles", site.admin, json={
        "name": "people", "scopes": ["users:manage", "modules:read", "providers:read", "mirrors:read"]})
    carol = site.user("carol@example.com", {"default": "people"})
    site.user("dave@example.com")
    token = site.personal(carol, "admin")  # as wide as asked: still never wider than carol's role
    put = site.client.put
    r = put("/api/v1/organizations/default/members/dave@example.com", json={"role": "admin"}, headers=bearer(token))
    assert r.status_code == 403 and "cannot grant scopes you do not hold" in r.get_json()["message"]
    r = put("/api/v1/organizations/default/members/carol@example.com", json={"role": "admin"}, headers=bearer(token))
    assert r.status_code == 403
    r = put("/api/v1/organizations/default/members/dave@example.com", json={"role": "viewer"}, headers=bearer(token))
    assert r.status_code == 200 and r.get_json()["role"] == "viewer"
    changes = site.audit("membership.set")
    assert [e.details["role"] for e in changes][-1] == "viewer" and changes[-1].organization_id is not None


def test_personal_tokens_are_never_wider_than_their_user(site: Site):
    uid = site.user("vic@example.com", {"default": "viewer"})
    own = site.personal(uid, "modules:read")
    wide = site.post("/api/v1/tokens", own, json={"name": "x", "kind": "personal", "scopes": ["modules:write"]})
    assert wide.status_code == 403
    ok = site.post("/api/v1/tokens", own, json={"name": "laptop", "kind": "personal", "scopes": ["modules:read"],
                                                "expires_in": "30d"})
    assert ok.status_code == 201 and ok.get_json()["secret"].startswith("tfr_")
    listed = site.get("/api/v1/tokens", own).get_json()
    assert {t["name"] for t in listed} == {"p", "laptop"} and all("secret" not in t for t in listed)
    # a token created wider (by the operator) still acts with the user's role only
    wider = site.personal(uid, "modules:write")
    assert post_module(site.client, wider).status_code == 403


def test_demotion_takes_effect_on_existing_personal_tokens(site: Site):
    uid = site.user("pat@example.com", {"default": "publisher"})
    token = site.personal(uid, "modules:write")
    assert post_module(site.client, token, version="1.0.0").status_code == 201
    r = site.client.put("/api/v1/organizations/default/members/pat@example.com", json={"role": "viewer"},
                        headers=bearer(site.admin))
    assert r.status_code == 200
    assert post_module(site.client, token, version="1.0.1").status_code == 403
    r = site.client.patch(f"/api/v1/users/{uid}", json={"disabled": True}, headers=bearer(site.admin))
    assert r.status_code == 200
    assert site.get("/v1/modules/acme/network/aws/versions", token).status_code == 401


def test_service_tokens_need_tokens_manage_in_their_organization(multi: Site):
    blue_admin = multi.personal(multi.user("ba@example.com", {"blue": "admin"}))
    blue_pub = multi.personal(multi.user("bp@example.com", {"blue": "publisher"}))
    body = {"name": "ci", "kind": "service", "organization": "blue", "scopes": ["modules:write"]}
    assert multi.post("/api/v1/tokens", blue_pub, json=body).status_code == 403
    # another organization's name is not even disclosed
    red = multi.post("/api/v1/tokens", blue_admin, json={**body, "organization": "red"})
    assert red.status_code == 404
    r = multi.post("/api/v1/tokens", blue_admin, json=body)
    assert r.status_code == 201 and r.get_json()["organization"] == "blue"
    ci = r.get_json()["secret"]
    assert post_module(multi.client, ci, namespace="blue-ns", version="2.0.0").status_code == 201
    # a brand-new namespace published by blue's token belongs to blue
    assert post_module(multi.client, ci, namespace="blue-new").status_code == 201
    with multi.registry.db.session() as s:
        ns = s.scalar(select(Namespace).where(Namespace.name == "blue-new"))
        assert svc.get_organization_by_id(s, ns.organization_id).name == "blue"


def test_other_organizations_namespaces_are_invisible(multi: Site):
    red = multi.service("red", "modules:write")
    blue = multi.service("blue", "modules:read")
    assert multi.get("/v1/modules/blue-ns/network/aws/versions", blue).status_code == 200
    hidden = multi.get("/v1/modules/blue-ns/network/aws/versions", red)
    missing = multi.get("/v1/modules/nobody-ns/network/aws/versions", red)
    assert hidden.status_code == missing.status_code == 404
    assert set(hidden.get_json()) == set(missing.get_json()) == {"errors"}
    assert post_module(multi.client, red, namespace="blue-ns", version="9.0.0").status_code == 404
    listing = multi.get("/v1/modules", red).get_json()["modules"]
    assert {m["namespace"] for m in listing} == {"red-ns"}
    assert multi.get("/api/v1/organizations/blue", red).status_code == 404
    assert [o["name"] for o in multi.get("/api/v1/organizations", red).get_json()] == ["red"]


def test_authenticated_visibility_is_readable_by_any_valid_token(multi: Site):
    multi.namespace("blue-ns", "blue", visibility="authenticated")
    red = multi.service("red", "modules:read")
    assert multi.get("/v1/modules/blue-ns/network/aws/versions", red).status_code == 200
    assert multi.get("/v1/modules/blue-ns/network/aws/versions").status_code == 401
    multi.namespace("blue-ns", "blue", visibility="public")
    assert multi.get("/v1/modules/blue-ns/network/aws/versions").status_code == 200


def test_rotation_with_grace_keeps_both_secrets_until_it_ends(site: Site):
    uid = site.user("rot@example.com", {"default": "viewer"})
    old = site.personal(uid, "modules:read")
    with site.registry.db.session() as s:
        token_id = s.scalar(select(ApiToken.id).where(ApiToken.user_id == uid))
    r = site.post(f"/api/v1/tokens/{token_id}/rotate", old, json={"grace": "1h"})
    assert r.status_code == 200
    new = r.get_json()["secret"]
    assert new != old and r.get_json()["previous_secret_expires_at"] is not None
    for secret in (old, new):
        assert site.get("/api/v1/me", secret).status_code == 200
    with site.registry.db.session() as s:  # the grace period runs out
        s.get(ApiToken, token_id).previous_expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
    assert site.get("/api/v1/me", old).status_code == 401
    newest = site.post(f"/api/v1/tokens/{token_id}/rotate", new, json={}).get_json()["secret"]
    assert site.get("/api/v1/me", new).status_code == 401
    assert site.get("/api/v1/me", newest).status_code == 200
    assert [e.details["grace_seconds"] for e in site.audit("token.rotate")] == [3600, 0]


def test_last_used_time_and_address_are_recorded(site: Site):
    secret = new_token(site.app, "read", name="reader")
    site.get("/v1/modules", secret, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    tokens = {t["name"]: t for t in site.get("/api/v1/tokens", site.admin).get_json()}
    assert tokens["reader"]["last_used_ip"] == "192.0.2.7" and tokens["reader"]["last_used_at"]


def test_revoked_and_expired_tokens_are_refused_and_audited(site: Site):
    revoked = new_token(site.app, "read", name="old")
    expired = new_token(site.app, "read", name="short", expires_in=timedelta(seconds=-1))
    with site.registry.db.session() as s:
        token_id = s.scalar(select(ApiToken.id).where(ApiToken.name == "old"))
    assert site.client.delete(f"/api/v1/tokens/{token_id}", headers=bearer(site.admin)).status_code == 204
    for secret in (revoked, expired, "tfr_" + "x" * 43):
        assert site.get("/v1/modules", secret).status_code == 401
    failures = site.audit("auth.failure")
    assert len(failures) == 1 and failures[0].ip == "127.0.0.1"  # one entry per burst, not per request
    assert len(site.audit("token.revoke")) == 1


def test_audit_api_filters_and_needs_audit_read(multi: Site):
    blue_admin = multi.personal(multi.user("aud@example.com", {"blue": "admin"}))
    viewer = multi.personal(multi.user("v@example.com", {"blue": "viewer"}), "modules:read")
    assert multi.get("/api/v1/audit", viewer).status_code == 403
    assert multi.get("/api/v1/audit?organization=blue", viewer).status_code == 403
    assert multi.get("/api/v1/audit", blue_admin).status_code == 403  # registry-wide needs a site admin
    blue = multi.get("/api/v1/audit?organization=blue", blue_admin).get_json()["entries"]
    assert blue and {e["organization_id"] for e in blue} == {blue[0]["organization_id"]}
    assert multi.get("/api/v1/audit?organization=red", blue_admin).status_code == 404
    everything = multi.get("/api/v1/audit?action=token.&limit=2", multi.admin).get_json()
    assert len(everything["entries"]) == 2 and everything["meta"]["next_offset"] == 2
    assert all(e["action"].startswith("token.") for e in everything["entries"])
    later = multi.get("/api/v1/audit", multi.admin, query_string={
        "since": (utcnow() + timedelta(hours=1)).isoformat()}).get_json()
    assert later["entries"] == []


def test_forged_and_foreign_session_cookies_are_refused(site: Site, app_factory: Any, tmp_path: Any):
    uid = site.user("sess@example.com", {"default": "viewer"})
    site.client.set_cookie("tfr_session", "eyJ1aWQiOjF9.forged.signature")
    assert site.get("/api/v1/me").status_code == 401
    other_app = app_factory({"data_dir": str(tmp_path / "other"), "secret_key": "another-registry-secret-key"})
    other = other_app.test_client()
    with other.session_transaction() as sess:  # validly signed, but by another registry's key
        sess.update(uid=uid, ver=f"{uid}:0:0")
    cookie = other.get_cookie("tfr_session")
    site.client.set_cookie("tfr_session", cookie.value)
    assert site.get("/api/v1/me").status_code == 401


def _signed_in(site: Site, uid: int) -> str:
    with site.client.session_transaction() as sess:
        sess.update(uid=uid, ver=f"{uid}:0:0", csrf="known-csrf-token")
    return "known-csrf-token"


def test_cookie_authenticated_writes_need_the_csrf_token(site: Site):
    uid = site.user("web@example.com", {"default": "viewer"})
    csrf = _signed_in(site, uid)
    assert site.get("/api/v1/me").get_json()["kind"] == "session"
    body = {"name": "from-browser", "kind": "personal", "scopes": ["modules:read"]}
    refused = site.client.post("/api/v1/tokens", json=body)
    assert refused.status_code == 403 and b"CSRF" in refused.data
    wrong = site.client.post("/api/v1/tokens", json=body, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    ok = site.client.post("/api/v1/tokens", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201
    assert site.client.post("/auth/logout", data={"csrf_token": csrf}).status_code == 200
    assert site.get("/api/v1/me").status_code == 401


def _token_session(site: Site, secret: str) -> int:
    """A browser session opened with ``secret`` (what the web UI's token sign-in stores)."""
    with site.registry.db.session() as s:
        token_id = token_svc.verify_token(s, secret).id
    with site.client.session_transaction() as sess:
        sess.update(tid=token_id, tfp=token_svc.session_fingerprint(secret), csrf="known-csrf-token")
    return token_id


def test_a_session_opened_with_a_site_token_is_that_token_until_it_stops(site: Site):
    secret = new_token(site.app, "publish", name="boot")
    token_id = _token_session(site, secret)
    me = site.get("/api/v1/me").get_json()
    assert me["kind"] == "site" and me["token"]["id"] == token_id and "modules:write" in me["registry_scopes"]
    body = {"name": "x", "kind": "site", "scopes": ["modules:read"]}
    assert site.client.post("/api/v1/tokens", json=body).status_code == 403  # a cookie: CSRF applies
    with site.registry.db.session() as s:
        token_svc.revoke_token(s, CLI_ACTOR, s.get(ApiToken, token_id))
        s.commit()
    ended = site.get("/api/v1/me")
    assert ended.status_code == 401 and "session has ended" in ended.get_json()["message"]
    with site.client.session_transaction() as sess:
        assert "tid" not in sess  # signed out, not just refused once


def test_a_token_session_follows_rotation_and_its_grace_period(site: Site):
    secret = new_token(site.app, "read", name="boot")
    token_id = _token_session(site, secret)
    with site.registry.db.session() as s:
        token_svc.rotate_token(s, CLI_ACTOR, s.get(ApiToken, token_id), grace=timedelta(hours=1))
        s.commit()
    assert site.get("/api/v1/me").status_code == 200
    with site.registry.db.session() as s:
        token_svc.rotate_token(s, CLI_ACTOR, s.get(ApiToken, token_id))  # the first secret is now two behind
        s.commit()
    assert site.get("/api/v1/me").status_code == 401


def test_a_token_session_with_a_wrong_fingerprint_is_refused(site: Site):
    _token_session(site, site.admin)
    with site.client.session_transaction() as sess:
        sess["tfp"] = token_svc.session_fingerprint("tfr_" + "z" * 43)
    assert site.get("/api/v1/me").status_code == 401


def test_auth_failures_are_rate_limited_with_retry_after(app_factory: Any):
    site = Site(app_factory({"limits.auth_failures": "3/minute"}))
    for _ in range(3):
        assert site.get("/v1/modules", "tfr_" + "y" * 43).status_code == 401
    limited = site.get("/v1/modules", "tfr_" + "y" * 43)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert site.get("/v1/modules", site.admin).status_code == 429  # the address is locked out for the window
    other = site.client.get("/v1/modules", headers=bearer(site.admin), environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert other.status_code == 200


def test_uploads_are_rate_limited(app_factory: Any):
    site = Site(app_factory({"limits.uploads": "2/minute"}))
    codes = [post_module(site.client, site.admin, version=f"1.0.{i}").status_code for i in range(3)]
    assert codes == [201, 201, 429]


class FreezePlugin:
    """Vetoes writes to namespace ``frozen``: a change freeze."""

    @hookimpl
    def tfr_permission_allowed(self, identity: Identity, action: str, resource: Any) -> bool | None:
        return False if action.endswith(":write") and resource.namespace == "frozen" else None


def test_hook_tfr_permission_allowed(app_factory: Any):
    site = Site(app_factory(plugins=(FreezePlugin(),)))
    assert post_module(site.client, site.admin, namespace="frozen").status_code == 403
    assert post_module(site.client, site.admin, namespace="thawed").status_code == 201


class HeaderAuthPlugin:
    """Trusts a header a (hypothetical) authenticating proxy sets; refuses a malformed one."""

    @hookimpl
    def tfr_authenticate(self, registry: Any, request: Any) -> Identity | None:
        from tfregistry.auth import Unauthenticated

        value = request.headers.get("X-Proxy-User")
        if value is None:
            return None
        if value != "robot":
            raise Unauthenticated("unknown proxy user")
        return Identity(name="proxy:robot", kind="site", token_scopes=expand(["modules:read"]))


def test_hook_tfr_authenticate(app_factory: Any):
    site = Site(app_factory(plugins=(HeaderAuthPlugin(),)))
    assert post_module(site.client, site.admin).status_code == 201
    ok = site.client.get("/v1/modules/acme/network/aws/versions", headers={"X-Proxy-User": "robot"})
    assert ok.status_code == 200
    assert site.client.get("/v1/modules/acme/network/aws/versions",
                           headers={"X-Proxy-User": "mallory"}).status_code == 401
    writes = post_module(site.client, None, version="2.0.0", **{})
    assert writes.status_code == 401
    assert site.client.get("/api/v1/me", headers={"X-Proxy-User": "robot"}).get_json()["kind"] == "site"


class CorpProvider(AuthProvider):
    name = "corp"
    label = "Sign in with Corp"

    def begin_login(self, redirect_uri: str) -> Any:
        from flask import redirect

        return redirect("https://idp.corp.example/authorize?redirect_uri=" + redirect_uri)

    def finish_login(self, redirect_uri: str) -> ExternalIdentity:
        from flask import request

        from tfregistry.interfaces import LoginError

        raise LoginError(f"Corp SSO refused the sign-in: {request.args.get('error', 'no reason given')}")


class CorpPlugin:
    @hookimpl
    def tfr_register_auth_providers(self, register: Any) -> None:
        register.add("corp", lambda settings: CorpProvider(), description="test provider")


def test_hook_tfr_register_auth_providers(app_factory: Any):
    without = Site(app_factory(plugins=(CorpPlugin(),)))
    assert "login.v1" not in without.get("/.well-known/terraform.json").get_json()
    site = Site(app_factory({"auth.providers": ["corp"], "public_url": "https://reg.example.com"},
                            plugins=(CorpPlugin(),)))
    login = site.get("/.well-known/terraform.json").get_json()["login.v1"]
    assert login == {"client": "terraform-cli", "grant_types": ["authz_code"], "authz": "/oauth/authorize",
                     "token": "/oauth/token", "ports": [10000, 10010]}
    choice = site.get("/auth/login?next=/api/v1/me")
    assert choice.status_code == 302 and choice.headers["Location"].startswith("/auth/login/corp")
    start = site.get(choice.headers["Location"])
    assert start.headers["Location"] == ("https://idp.corp.example/authorize?redirect_uri="
                                         "https://reg.example.com/auth/callback/corp")
    refused = site.get("/auth/callback/corp?error=access_denied")
    assert refused.status_code == 400 and b"Corp SSO refused the sign-in: access_denied" in refused.data
    assert [e.details["reason"] for e in site.audit("auth.login_failed")] == [
        "Corp SSO refused the sign-in: access_denied"]
    assert site.get("/api/v1/me").status_code == 401  # no session was opened
    with pytest.raises(StartupError, match="auth.providers names 'nope'"):
        app_factory({"auth.providers": ["nope"]}, plugins=(CorpPlugin(),))


def test_open_redirects_are_not_followed(app_factory: Any):
    site = Site(app_factory({"auth.providers": ["corp"]}, plugins=(CorpPlugin(),)))
    site.get("/auth/login/corp?next=//evil.example/")
    with site.client.session_transaction() as sess:
        assert sess["login_next"] is None


def test_identity_api_is_in_the_openapi_document(site: Site):
    paths = site.get("/api/openapi.json").get_json()["paths"]
    for path in ("/api/v1/me", "/api/v1/users", "/api/v1/users/{user_id}", "/api/v1/organizations",
                 "/api/v1/organizations/{org_name}/members/{who}", "/api/v1/roles", "/api/v1/roles/{name}",
                 "/api/v1/tokens", "/api/v1/tokens/{token_id}/rotate", "/api/v1/audit",
                 "/api/v1/mirrors/policies", "/api/v1/mirrors/{mirror_id}/approve"):
        assert path in paths, path


def test_rate_limits_are_shared_through_redis_by_every_replica(app_factory: Any, redis_db: Any, tmp_path: Any):
    from tests.conftest import REDIS_URL

    config = {"redis_url": REDIS_URL, "limits.auth_failures": "2/minute", "secret_key": "shared-replica-secret"}
    first = Site(app_factory({**config, "data_dir": str(tmp_path / "a")}))
    second = Site(app_factory({**config, "data_dir": str(tmp_path / "b")}))
    bad = "tfr_" + "z" * 43
    assert first.get("/v1/modules", bad).status_code == 401
    assert second.get("/v1/modules", bad).status_code == 401
    assert first.get("/v1/modules", bad).status_code == 429  # the other replica's failure counted here
    assert any(b"tfr-limits" in key for key in redis_db.keys("*")), "the counters live in Redis"


def test_an_organization_admin_sees_its_namespaces_publishes_and_deletes_in_the_audit_log(multi: Site):
    blue_admin = multi.personal(multi.user("boss@example.com", {"blue": "admin"}))
    assert post_module(multi.client, blue_admin, namespace="blue-ns", version="3.0.0").status_code == 201
    gone = multi.client.delete("/api/v1/modules/blue-ns/network/aws/3.0.0", headers=bearer(blue_admin))
    assert gone.status_code == 204
    red_admin = multi.personal(multi.user("rboss@example.com", {"red": "admin"}))
    assert multi.client.delete("/api/v1/modules/blue-ns/network/aws/1.0.0",
                               headers=bearer(red_admin)).status_code == 404
    entries = multi.get("/api/v1/audit?organization=blue", blue_admin).get_json()["entries"]
    actions = {(e["action"], e["target"]) for e in entries}
    assert ("module.publish", "blue-ns/network/aws/3.0.0") in actions
    assert ("module.delete", "blue-ns/network/aws/3.0.0") in actions
    red = multi.get("/api/v1/audit?organization=red", red_admin).get_json()["entries"]
    assert not any(e["target"].startswith("blue-ns/") for e in red)
