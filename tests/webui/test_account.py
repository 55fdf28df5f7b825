"""Sign-in (with site, service and personal tokens), sessions opened with a token and checked on every
request, sign-out, CSRF, and "My tokens" (create, rotate, revoke), through the Flask test client."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import bearer, new_token
from tests.webui.conftest import assert_page
from tfregistry.models import ApiToken, AuditEntry, utcnow
from tfregistry.services import identity as identity_svc
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR

SECRET = re.compile(r"tfr_[A-Za-z0-9_-]{43}")


# --- helpers (also used by test_publish_forms) --------------------------------------------------------


def form_csrf(html: str) -> str:
    """The ``csrf_token`` hidden field of a page's form."""
    return unescape(re.search(r'name="csrf_token" value="([^"]+)"', html).group(1))


def sign_in(client: Any, secret: str, nxt: str | None = None) -> Any:
    """Sign in through the sign-in page's token form, as a browser does (GET the form, POST it)."""
    page = client.get("/sign-in" + (f"?next={nxt}" if nxt else ""))
    data = {"csrf_token": form_csrf(page.get_data(as_text=True)), "token": secret}
    if nxt:
        data["next"] = nxt
    return client.post("/sign-in", data=data)


def csrf_of(client: Any, path: str = "/account/tokens") -> str:
    return form_csrf(client.get(path).get_data(as_text=True))


def make_user(app: Any, email: str, role: str | None = "publisher", site_admin: bool = False) -> int:
    """A user, with ``role`` in the default organization."""
    with app.extensions["tfregistry"].db.session() as s:
        user = identity_svc.create_user(s, CLI_ACTOR, email, email.split("@")[0], site_admin=site_admin)
        if role:
            identity_svc.set_membership(s, CLI_ACTOR, user, identity_svc.default_organization(s),
                                        identity_svc.get_role(s, role))
        s.commit()
        return user.id


def personal_token(app: Any, user_id: int, scopes: str = "admin", name: str = "laptop") -> str:
    with app.extensions["tfregistry"].db.session() as s:
        _, secret = token_svc.create_token(s, CLI_ACTOR, name=name, scopes=scopes.split(), kind="personal",
                                           user=identity_svc.get_user(s, user_id))
        s.commit()
        return secret


def signed_in_as(client: Any, email: str, role: str | None = "publisher") -> int:
    """Make a user and sign ``client`` in as them (through a personal token); returns the user id."""
    app = client.application
    user_id = make_user(app, email, role)
    assert sign_in(client, personal_token(app, user_id)).status_code == 303
    return user_id


def audit(app: Any, action: str) -> list[AuditEntry]:
    with app.extensions["tfregistry"].db.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def me(client: Any) -> Any:
    return client.get("/api/v1/me")


# --- sign-in -----------------------------------------------------------------------------------------


def test_sign_in_page_offers_the_token_form(client):
    html = assert_page(client.get("/sign-in?next=/modules"))
    assert '<label for="f-token">API token</label>' in html
    assert 'aria-describedby="f-token-hint"' in html and 'type="password"' in html
    assert 'name="next" value="/modules"' in html and form_csrf(html)
    assert 'href="/sign-in?next=' in assert_page(client.get("/modules"))  # the header's link


def test_token_sign_in_can_be_switched_off(ui_factory):
    client = ui_factory({"webui.token_sign_in": False}).test_client()
    html = assert_page(client.get("/sign-in"))
    assert 'name="token"' not in html and "no way to sign in" in html
    assert client.post("/sign-in", data={"token": "x"}).status_code == 404


def test_a_site_token_signs_in_as_itself(app, client, admin_token):
    done = sign_in(client, admin_token, nxt="/modules")
    assert done.status_code == 303 and done.headers["Location"] == "/modules"
    cookie = next(h for h in done.headers.getlist("Set-Cookie") if h.startswith("tfr_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert admin_token not in cookie  # the session keeps the token's id, never its secret
    body = me(client).get_json()
    assert body["kind"] == "site" and body["token"]["id"] is not None and body["user"] is None
    html = assert_page(client.get("/"))
    assert "Signed in as <strong>token:admin</strong>" in html and "Sign out" in html
    assert [e.details for e in audit(app, "auth.login")] == [{"method": "token", "kind": "site"}]


def test_a_service_token_signs_in_as_its_organization(app, client):
    with app.extensions["tfregistry"].db.session() as s:
        org = identity_svc.create_organization(s, CLI_ACTOR, "blue")
        _, secret = token_svc.create_token(s, CLI_ACTOR, name="ci-blue", scopes=["modules:write"], kind="service",
                                           organization=org)
        s.commit()
    assert sign_in(client, secret).headers["Location"] == "/"
    body = me(client).get_json()
    assert body["kind"] == "service" and [o["name"] for o in body["organizations"]] == ["blue"]
    entry = audit(app, "auth.login")[0]
    assert entry.actor == "token:ci-blue" and entry.organization_id is not None


def test_a_personal_token_signs_in_as_its_user(app, client):
    user_id = make_user(app, "ann@example.com")
    secret = personal_token(app, user_id)
    assert sign_in(client, secret).status_code == 303
    body = me(client).get_json()
    assert body["kind"] == "session" and body["user"]["email"] == "ann@example.com"
    with client.session_transaction() as sess:
        assert sess["uid"] == user_id and "tid" not in sess  # a session of the user, like a provider's sign-in
    # the session is the user's: revoking the token it was opened with does not end it
    with app.extensions["tfregistry"].db.session() as s:
        token_svc.revoke_token(s, CLI_ACTOR, token_svc.verify_token(s, secret))
        s.commit()
    assert me(client).status_code == 200
    assert audit(app, "auth.login")[0].actor == "user:ann@example.com"


def test_a_disabled_users_token_does_not_sign_in(app, client):
    user_id = make_user(app, "bob@example.com")
    secret = personal_token(app, user_id)
    with app.extensions["tfregistry"].db.session() as s:
        identity_svc.disable_user(s, CLI_ACTOR, identity_svc.get_user(s, user_id))
        s.commit()
    assert sign_in(client, secret).status_code == 401
    assert me(client).status_code == 401


@pytest.mark.parametrize("secret", ["tfr_" + "A" * 43, "not a token", ""])
def test_a_bad_token_is_refused_audited_and_opens_no_session(app, client, secret):
    refused = sign_in(client, secret)
    html = assert_page(refused, 401)
    assert 'aria-invalid="true"' in html and 'aria-describedby="f-token-hint f-token-error"' in html
    assert 'id="f-token-error"' in html and "not valid" in html
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert me(client).status_code == 401
    failures = audit(app, "auth.login_failed")
    assert len(failures) == 1 and failures[0].target == "token" and failures[0].details["reason"]


def test_failed_sign_ins_are_rate_limited_like_other_authentication_failures(ui_factory, admin_token):
    client = ui_factory({"limits.auth_failures": "3/minute"}).test_client()
    statuses = [sign_in(client, "tfr_" + "B" * 43).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    limited = client.post("/sign-in", data={"csrf_token": "x", "token": admin_token})
    html = assert_page(limited, 429)
    assert "Too many" in html and int(limited.headers["Retry-After"]) > 0


def test_the_sign_in_form_needs_its_csrf_token(app, client, admin_token):
    client.get("/sign-in")
    for data in ({"token": admin_token}, {"token": admin_token, "csrf_token": "forged"}):
        refused = client.post("/sign-in", data=data)
        assert "stale" in assert_page(refused, 403)
        assert me(client).status_code == 401
    assert audit(app, "auth.login") == []


def test_signing_in_starts_a_fresh_session(client, admin_token):
    client.get("/sign-in")
    with client.session_transaction() as sess:
        before = sess["csrf"]
        sess["planted"] = "by an attacker"
    sign_in(client, admin_token)
    with client.session_transaction() as sess:
        assert "planted" not in sess and sess["csrf"] != before and sess.permanent


# --- sessions opened with a token are checked on every request ------------------------------------------


def test_a_session_ended_by_disabling_its_user_stays_ended_after_enabling(app, client):
    user_id = make_user(app, "dan@example.com")
    assert sign_in(client, personal_token(app, user_id)).status_code == 303
    assert me(client).status_code == 200
    for disabled in (True, False):  # disabled, then enabled again before the browser comes back
        with app.extensions["tfregistry"].db.session() as s:
            identity_svc.disable_user(s, CLI_ACTOR, identity_svc.get_user(s, user_id), disabled)
            s.commit()
    assert me(client).status_code == 401
    assert sign_in(client, personal_token(app, user_id, name="again")).status_code == 303  # a new sign-in works
    assert me(client).status_code == 200


def _token_row(app: Any, secret: str) -> int:
    with app.extensions["tfregistry"].db.session() as s:
        return token_svc.verify_token(s, secret).id


def _ended(client: Any) -> None:
    """The session is gone: the page says so once, then the browser is anonymous."""
    page = assert_page(client.get("/account/tokens"), 401)
    assert "session has ended" in page
    with client.session_transaction() as sess:
        assert "tid" not in sess
    assert "Sign in</a>" in assert_page(client.get("/"))


def test_revoking_the_token_signs_the_browser_out(app, client):
    secret = new_token(app, "admin", name="boot")
    sign_in(client, secret)
    assert me(client).status_code == 200
    with app.extensions["tfregistry"].db.session() as s:
        token_svc.revoke_token(s, CLI_ACTOR, s.get(ApiToken, _token_row(app, secret)))
        s.commit()
    _ended(client)


def test_an_expired_token_signs_the_browser_out(app, client):
    secret = new_token(app, "admin", name="boot")
    sign_in(client, secret)
    token_id = _token_row(app, secret)
    with app.extensions["tfregistry"].db.session() as s:
        s.get(ApiToken, token_id).expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
    _ended(client)


def test_rotation_signs_out_once_the_old_secret_stops(app, client):
    secret = new_token(app, "admin", name="boot")
    sign_in(client, secret)
    token_id = _token_row(app, secret)
    with app.extensions["tfregistry"].db.session() as s:
        token_svc.rotate_token(s, CLI_ACTOR, s.get(ApiToken, token_id), grace=timedelta(hours=1))
        s.commit()
    assert me(client).status_code == 200  # within the grace period the old secret, and the session, work
    with app.extensions["tfregistry"].db.session() as s:
        s.get(ApiToken, token_id).previous_expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
    _ended(client)


def test_rotation_without_grace_signs_out_at_once(app, client):
    secret = new_token(app, "admin", name="boot")
    sign_in(client, secret)
    with app.extensions["tfregistry"].db.session() as s:
        token_svc.rotate_token(s, CLI_ACTOR, s.get(ApiToken, _token_row(app, secret)))
        s.commit()
    _ended(client)


def test_a_forged_token_session_is_refused(client, admin_token):
    sign_in(client, admin_token)
    with client.session_transaction() as sess:
        sess["tfp"] = "0" * 32  # a cookie edited by hand would fail its signature; this checks the fingerprint too
    _ended(client)


def test_token_sessions_need_csrf_on_state_changes(client, admin_token):
    sign_in(client, admin_token)
    refused = client.post("/account/tokens", data={"name": "x", "scopes": ["modules:read"], "kind": "site"})
    assert refused.status_code == 403 and b"CSRF" in refused.data


# --- sign-out and the core's sign-in routes ------------------------------------------------------------


def test_sign_out_goes_home_or_to_a_safe_next(client, admin_token):
    sign_in(client, admin_token)
    assert client.post("/auth/logout").status_code == 403  # CSRF
    out = client.post("/auth/logout", data={"csrf_token": csrf_of(client)})
    assert out.status_code == 303 and out.headers["Location"] == "/"
    assert me(client).status_code == 401
    for nxt, expected in (("/modules", "/modules"), ("//evil.example/", "/"), ("https://evil.example/", "/")):
        sign_in(client, admin_token)
        out = client.post("/auth/logout", data={"csrf_token": csrf_of(client), "next": nxt})
        assert out.headers["Location"] == expected


def test_the_header_sign_out_form_is_a_csrf_protected_post(client, admin_token):
    sign_in(client, admin_token)
    html = assert_page(client.get("/"))
    form = re.search(r'<form method="post" action="/auth/logout">(.*?)</form>', html, re.S).group(1)
    assert 'name="csrf_token"' in form and "Sign out" in form
    assert 'href="/account/tokens">My tokens</a>' in html and 'href="/publish/module">Publish</a>' in html


def test_core_sign_in_choice_sends_browsers_to_the_sign_in_page(client):
    moved = client.get("/auth/login?next=/modules")
    assert moved.status_code == 302 and moved.headers["Location"] == "/sign-in?next=/modules"


# --- my tokens ---------------------------------------------------------------------------------------------


def test_my_tokens_needs_a_sign_in(client):
    assert "Sign in to manage your tokens" in assert_page(client.get("/account/tokens"), 401)


def test_my_tokens_lists_what_the_api_lists(app, client, admin_token):
    user_id = signed_in_as(client, "ann@example.com")
    personal_token(app, user_id, "modules:read", name="ci")
    html = assert_page(client.get("/account/tokens"))
    listed = {t["name"] for t in client.get("/api/v1/tokens").get_json()}
    assert listed == {"laptop", "ci"}  # the admin's site token is not hers
    for name in listed:
        assert f"<th scope=\"row\">{name}<br>" in html
    assert "admin<br>" not in html and not SECRET.search(html)


def test_create_a_token_shows_the_secret_once(app, client):
    signed_in_as(client, "ann@example.com")
    form = assert_page(client.get("/account/tokens"))
    # the scopes offered are those she may grant: a publisher's, not an administrator's
    offered = re.findall(r'name="scopes" value="([^"]+)"', form)
    assert "modules:write" in offered and "admin" not in offered and "users:manage" not in offered
    created = client.post("/account/tokens", data={
        "csrf_token": form_csrf(form), "name": "CI network", "kind": "personal",
        "scopes": ["modules:read", "modules:write"], "namespace": "acme", "expires_in": "30d"})
    html = assert_page(created)
    assert created.headers["Cache-Control"] == "no-store"
    secrets = set(SECRET.findall(html))
    assert len(secrets) == 1
    secret = secrets.pop()
    assert 'data-copy="token-secret"' in html and "shown only on this page" in html
    with app.extensions["tfregistry"].db.session() as s:
        token = token_svc.verify_token(s, secret)
        assert token.kind == "personal" and token.namespace == "acme"
        assert token.scopes == ["modules:read", "modules:write"] and token.expires_at is not None
    assert me_with(client, secret)["kind"] == "personal"
    after = assert_page(client.get("/account/tokens"))
    assert "CI network" in after and secret not in after and not SECRET.search(after)
    assert audit(app, "token.create")[-1].details["name"] == "CI network"


def me_with(client: Any, secret: str) -> Any:
    return client.application.test_client().get("/api/v1/me", headers=bearer(secret)).get_json()


def test_create_refuses_scopes_the_user_does_not_hold_and_keeps_the_fields(client):
    signed_in_as(client, "viewer@example.com", role="viewer")
    refused = client.post("/account/tokens", data={
        "csrf_token": csrf_of(client), "name": "wide", "kind": "personal", "scopes": ["modules:write"],
        "namespace": "acme", "expires_in": "7d"})
    html = assert_page(refused, 403)
    assert "cannot grant scopes you do not hold" in html
    assert 'id="f-scopes-error"' in html and 'aria-describedby="f-scopes-hint f-scopes-error"' in html
    assert 'name="name" type="text" value="wide"' in html and 'value="acme"' in html
    assert '<option value="7d" selected>' in html and not SECRET.search(html)


def test_create_validates_the_form(client):
    signed_in_as(client, "ann@example.com")
    html = assert_page(client.post("/account/tokens", data={"csrf_token": csrf_of(client), "name": "",
                                                            "kind": "personal", "expires_in": "30d"}), 400)
    assert 'id="f-name-error"' in html and 'aria-invalid="true"' in html and 'id="f-scopes-error"' in html
    assert 'role="alert"' in html


def test_a_site_token_session_creates_site_tokens(app, client, admin_token):
    sign_in(client, admin_token)
    form = assert_page(client.get("/account/tokens"))
    assert 'value="site"' in form and 'value="personal"' not in form  # a site token has no user
    created = client.post("/account/tokens", data={"csrf_token": form_csrf(form), "name": "deploy", "kind": "site",
                                                   "scopes": ["modules:read"], "expires_in": "never"})
    secret = SECRET.search(assert_page(created)).group(0)
    assert me_with(client, secret)["kind"] == "site"


def test_rotate_shows_the_new_secret_once_and_honours_the_grace(app, client):
    user_id = signed_in_as(client, "ann@example.com")
    old = personal_token(app, user_id, "modules:read", name="ci")
    token_id = _token_row(app, old)
    rotated = client.post(f"/account/tokens/{token_id}/rotate", data={"csrf_token": csrf_of(client), "grace": "1h"})
    html = assert_page(rotated)
    assert rotated.headers["Cache-Control"] == "no-store"
    new = SECRET.search(html).group(0)
    assert new != old and "Old secret works until" in html
    assert me_with(client, new)["kind"] == "personal" and me_with(client, old)["kind"] == "personal"
    again = client.post(f"/account/tokens/{token_id}/rotate", data={"csrf_token": csrf_of(client), "grace": ""})
    newest = SECRET.search(again.get_data(as_text=True)).group(0)
    assert client.application.test_client().get("/api/v1/me", headers=bearer(new)).status_code == 401
    assert me_with(client, newest)["kind"] == "personal"
    bad = client.post(f"/account/tokens/{token_id}/rotate", data={"csrf_token": csrf_of(client), "grace": "10y"})
    assert bad.status_code == 400


def test_revoke_asks_first_then_revokes(app, client):
    user_id = signed_in_as(client, "ann@example.com")
    secret = personal_token(app, user_id, "modules:read", name="ci")
    token_id = _token_row(app, secret)
    confirm = assert_page(client.get(f"/account/tokens/{token_id}/revoke"))
    assert "Revoke token “ci”" in confirm and 'method="post"' in confirm
    assert me_with(client, secret)["kind"] == "personal"  # asking changes nothing
    done = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": form_csrf(confirm)})
    assert done.status_code == 303 and done.headers["Location"] == "/account/tokens"
    listing = assert_page(client.get("/account/tokens"))
    assert "Token “ci” is revoked." in listing and "revoked</span>" in listing
    assert client.application.test_client().get("/api/v1/me", headers=bearer(secret)).status_code == 401


def test_other_peoples_tokens_are_not_found(app, client, admin_token):
    other = personal_token(app, make_user(app, "bob@example.com"), "modules:read", name="bobs")
    signed_in_as(client, "ann@example.com")
    token_id = _token_row(app, other)
    assert client.get(f"/account/tokens/{token_id}/revoke").status_code == 404
    refused = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(client)})
    assert refused.status_code == 404
    assert me_with(client, other)["kind"] == "personal"
