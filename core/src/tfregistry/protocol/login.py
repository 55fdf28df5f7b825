"""Browser sign-in through the site's auth plugins, browser sessions with CSRF protection, and the
OAuth 2.0 authorization server behind ``terraform login`` (``login.v1``), built with Authlib.

``terraform login`` opens ``/oauth/authorize`` in the browser with an authorization-code request
(client ``terraform-cli``, PKCE S256, redirect ``http://localhost:<10000-10010>/login``).  A person
who is not signed in is sent through ``/auth/login`` to their identity provider and back; they
approve, Terraform's local listener receives the code and exchanges it (with its PKCE verifier) at
``/oauth/token`` for a personal registry token.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Blueprint, Flask, abort, redirect, render_template_string, request, session, url_for
from markupsafe import Markup
from sqlalchemy import delete, select

from tfregistry.auth import Unauthenticated, bearer_token, current_identity
from tfregistry.default_plugins.auth import session_version, signed_in_session
from tfregistry.interfaces import LoginError
from tfregistry.models import OAuthCode, User, utcnow
from tfregistry.services import identity as identity_svc
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import Actor, record
from tfregistry.web import current_registry

bp = Blueprint("tfr_login", __name__)

CLIENT_ID = "terraform-cli"
PORTS = (10000, 10010)
#: An authorization code is good for this long (Terraform exchanges it within seconds).
CODE_TTL = timedelta(minutes=5)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
REDIRECT_URI = re.compile(r"http://(?:localhost|127\.0\.0\.1):([0-9]{4,5})/login")

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }} · tfregistry</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
a.button,button{display:inline-block;padding:.5rem 1rem;margin:.25rem 0;border:1px solid #555;border-radius:4px;
background:#f4f4f4;color:#222;text-decoration:none;font-size:1rem;cursor:pointer}
button.primary{background:#2d5fd4;border-color:#2d5fd4;color:#fff}.error{color:#a00}</style></head>
<body><h1>{{ title }}</h1>{{ body }}</body></html>"""


def page(title: str, body: str, status: int = 200, **values: Any) -> Any:
    """A minimal server-rendered page (the web UI will restyle these)."""
    html = render_template_string(body, **values)
    return render_template_string(PAGE, title=title, body=Markup(html)), status


# --- sessions and CSRF -------------------------------------------------------------------------


def configure_sessions(app: Flask) -> None:
    """Signed, HTTP-only, SameSite=Lax session cookies; CSRF checks on every state-changing request
    that relies on the cookie (requests with a bearer token carry no ambient authority)."""
    registry = current_registry_of(app)
    settings = registry.settings
    app.secret_key = hmac.new(registry.secret_key, b"tfregistry-session", "sha256").hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="tfr_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings["auth.cookie_secure"],
        SESSION_COOKIE_SAMESITE="Lax",  # Lax: the identity provider's redirect back must carry the cookie
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings["auth.session_lifetime"]),
    )
    app.before_request(check_csrf)


def current_registry_of(app: Flask) -> Any:
    from tfregistry.web import EXTENSION_KEY

    return app.extensions[EXTENSION_KEY]


def csrf_token() -> str:
    """The session's CSRF token, for hidden ``csrf_token`` form fields (or the ``X-CSRF-Token`` header)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_valid() -> bool:
    """Whether the request carries the session's CSRF token (form field ``csrf_token`` or header
    ``X-CSRF-Token``).  Checked before every state-changing request of a signed-in session; forms that
    work without one (signing in) call it themselves, against the token of the anonymous session."""
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    return bool(sent) and hmac.compare_digest(sent, session.get("csrf", ""))


def check_csrf() -> Any:
    if request.method in SAFE_METHODS or not signed_in_session() or bearer_token() is not None:
        return None
    if request.endpoint == "tfr_login.oauth_token":
        return None  # Terraform's back-channel code exchange: no cookie authority, PKCE protects it
    from tfregistry.api.modules import cap_request_body

    cap_request_body()  # reading the form field must not read an upload past its cap
    if not csrf_valid():
        return page("Request refused", "<p class=error>The form was stale or did not come from this registry "
                    "(CSRF check failed). Go back, reload the page and try again.</p>", 403)
    return None


def safe_next(target: str | None) -> str | None:
    """Only same-site relative paths: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def _external(endpoint: str, **values: Any) -> str:
    public = current_registry().settings["public_url"]
    path = url_for(endpoint, **values)
    return public.rstrip("/") + path if public else url_for(endpoint, _external=True, **values)


def _providers() -> dict[str, Any]:
    return current_registry().auth_providers


def _actor(user: User | None = None, *, token_name: str | None = None, token_id: int | None = None,
           organization_id: int | None = None) -> Actor:
    from flask import g

    name = f"user:{user.email or user.id}" if user else f"token:{token_name}" if token_name else "anonymous"
    return Actor(name=name, token_id=token_id, organization_id=organization_id, ip=request.remote_addr,
                 request_id=g.get("request_id"))


#: The web UI's sign-in page (tfregistry-webui), used when it is installed.
UI_SIGN_IN = "tfr_webui.sign_in"


def _ui_endpoint(endpoint: str) -> bool:
    from flask import current_app

    return endpoint in current_app.view_functions


@bp.get("/auth/login")
def login_choice() -> Any:
    """Choose a sign-in method: straight through when the site has exactly one, else the web UI's
    sign-in page when it is installed (which also offers signing in with a token), else a plain list."""
    nxt = safe_next(request.args.get("next"))
    providers = _providers()
    if len(providers) != 1 and _ui_endpoint(UI_SIGN_IN):
        return redirect(url_for(UI_SIGN_IN, next=nxt))
    if not providers:
        return page("Sign-in unavailable", "<p>This registry has no sign-in method: install and configure an "
                    "auth plugin (tfregistry-auth-oidc or tfregistry-auth-azuread). API tokens still work.</p>", 404)
    if len(providers) == 1:
        return redirect(url_for("tfr_login.login_start", name=next(iter(providers)), next=nxt))
    return page("Sign in", "{% for name, p in providers.items() %}<p><a class=button href=\"{{ url_for("
                "'tfr_login.login_start', name=name, next=nxt) }}\">{{ p.label or name }}</a></p>{% endfor %}",
                providers=providers, nxt=nxt)


@bp.get("/auth/login/<name>")
def login_start(name: str) -> Any:
    provider = _providers().get(name)
    if provider is None:
        abort(404)
    session["login_next"] = safe_next(request.args.get("next"))
    try:
        return provider.begin_login(_external("tfr_login.login_callback", name=name))
    except LoginError as exc:
        return _login_failed(name, exc)


@bp.get("/auth/callback/<name>")
def login_callback(name: str) -> Any:
    provider = _providers().get(name)
    if provider is None:
        abort(404)
    registry = current_registry()
    try:
        external = provider.finish_login(_external("tfr_login.login_callback", name=name))
        if external.provider != name:
            raise LoginError("the sign-in answered for another provider")
        with registry.db.session() as db:
            user = identity_svc.sign_in(db, _actor(), external)
            db.commit()
            user_id, version, label = user.id, session_version(user), user.email or user.name
    except LoginError as exc:
        return _login_failed(name, exc)
    nxt = session.get("login_next")
    start_session(uid=user_id, ver=version)
    return redirect(nxt) if nxt else page("Signed in", "<p>Signed in as {{ who }}.</p>" + LOGOUT_FORM, who=label,
                                          csrf=session["csrf"])


def start_session(**values: Any) -> None:
    """Open a browser session holding ``values`` (``uid``/``ver`` for a user, ``tid``/``tfp`` for a token):
    a fresh one, so nothing from before the sign-in survives (fixation), with a new CSRF token."""
    session.clear()
    session.permanent = True
    session.update(values, csrf=secrets.token_urlsafe(32))


def token_sign_in(secret: str) -> str:
    """Exchange a registry token for a browser session (the web UI's "sign in with an API token").

    The token is checked exactly as a bearer token is (:func:`~tfregistry.services.tokens.verify_token`).
    A personal token opens a session of its user, as a sign-in provider would; site and service tokens
    have no user, so the session is the token's own, checked again on every request.  Audited as
    ``auth.login`` / ``auth.login_failed``.  Returns who signed in; raises :class:`LoginError`.
    """
    registry = current_registry()
    with registry.db.session() as db:
        token = token_svc.verify_token(db, secret.strip(), ip=request.remote_addr)
        user = db.get(User, token.user_id) if token is not None and token.kind == "personal" else None
        if token is None or (token.kind == "personal" and (user is None or user.disabled)):
            reason = "the token is not valid (unknown, revoked or expired)" if token is None else \
                "the token's user is disabled or no longer exists"
            record(db, _actor(), "auth.login_failed", "token", reason=reason)
            db.commit()
            raise LoginError(reason)
        if user is not None:
            label, values = user.email or user.name, {"uid": user.id, "ver": session_version(user)}
            actor = _actor(user)
        else:
            label = f"token {token.name}"
            values = {"tid": token.id, "tfp": token_svc.session_fingerprint(secret.strip())}
            actor = _actor(token_name=token.name, token_id=token.id, organization_id=token.organization_id)
        record(db, actor, "auth.login", f"token:{token.id}", method="token", kind=token.kind)
        db.commit()
    start_session(**values)
    return label


def _login_failed(name: str, exc: LoginError) -> Any:
    with current_registry().db.session() as db:
        record(db, _actor(), "auth.login_failed", name, reason=str(exc))
        db.commit()
    return page("Sign-in failed", "<p class=error>{{ message }}</p><p><a href=\"{{ url_for("
                "'tfr_login.login_choice') }}\">Try again</a></p>", 400, message=str(exc))


LOGOUT_FORM = ("<form method=post action=\"{{ url_for('tfr_login.logout') }}\"><input type=hidden "
               "name=csrf_token value=\"{{ csrf }}\"><button>Sign out</button></form>")


@bp.post("/auth/logout")
def logout() -> Any:
    """End the browser session (CSRF-checked); with the web UI installed, back to a safe ``next`` or ``/``."""
    session.clear()
    if _ui_endpoint(UI_SIGN_IN):
        return redirect(safe_next(request.form.get("next") or request.args.get("next")) or "/", 303)
    return page("Signed out", "<p>You are signed out.</p>")


# --- terraform login: the OAuth 2.0 authorization server -------------------------------------------


class TerraformCLI(ClientMixin):
    """The only client: Terraform itself, a public client (no secret) using PKCE."""

    client_id = CLIENT_ID

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exactly ``http://localhost:<port>/login`` (or ``127.0.0.1``) with a port in the advertised range:
        no user-info, query, fragment or other characters a browser might read differently."""
        match = REDIRECT_URI.fullmatch(redirect_uri)
        return match is not None and PORTS[0] <= int(match.group(1)) <= PORTS[1]

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


class StoredCode:
    """An :class:`OAuthCode` row as Authlib's ``AuthorizationCodeMixin``."""

    def __init__(self, row: OAuthCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> int:
        return int(self.row.created_at.timestamp())


class TerraformCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        with current_registry().db.session() as db:
            db.add(OAuthCode(code=code, client_id=request.client.get_client_id(),
                             redirect_uri=request.payload.redirect_uri, scope=request.payload.scope or "",
                             user_id=request.user.id, code_challenge=data.get("code_challenge"),
                             code_challenge_method=data.get("code_challenge_method")))
            db.commit()

    def query_authorization_code(self, code: str, client: Any) -> StoredCode | None:
        with current_registry().db.session() as db:
            row = db.scalar(select(OAuthCode).where(OAuthCode.code == code, OAuthCode.client_id == CLIENT_ID))
            if row is None or utcnow() - row.created_at > CODE_TTL:
                return None
            db.expunge(row)
            return StoredCode(row)

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        with current_registry().db.session() as db:
            db.execute(delete(OAuthCode).where(OAuthCode.id == authorization_code.row.id))
            db.commit()

    def authenticate_user(self, authorization_code: StoredCode) -> User | None:
        with current_registry().db.session() as db:
            user = db.get(User, authorization_code.row.user_id)
            if user is None or user.disabled:
                return None
            db.expunge(user)
            return user


def _issue_token(grant_type: str, client: Any, user: User | None = None, scope: str | None = None,
                 expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
    """Terraform's token: a personal registry token of the approving user, no wider than their roles."""
    registry = current_registry()
    ttl = registry.settings["auth.terraform_login_token_ttl"]
    with registry.db.session() as db:
        owner = db.get(User, user.id)  # type: ignore[union-attr]
        held = {s for m in owner.memberships for s in m.role.scopes} or {"modules:read", "providers:read"}
        scopes = ["admin"] if owner.site_admin else sorted(held)
        token, secret = token_svc.create_token(
            db, _actor(owner), name=f"terraform login {utcnow():%Y-%m-%d %H:%M}", scopes=scopes, kind="personal",
            user=owner, expires_in=timedelta(seconds=ttl) if ttl else None)
        db.commit()
    body: dict[str, Any] = {"access_token": secret, "token_type": "Bearer"}
    if ttl:
        body["expires_in"] = ttl
    return body


def build_authorization_server(app: Flask) -> AuthorizationServer:
    server = AuthorizationServer(app, query_client=lambda cid: TerraformCLI() if cid == CLIENT_ID else None,
                                 save_token=lambda token, request: None)
    server.register_token_generator("default", _issue_token)
    server.register_grant(TerraformCodeGrant, [CodeChallenge(required=True)])
    app.extensions["tfregistry_oauth"] = server
    return server


def _server() -> AuthorizationServer:
    from flask import current_app

    return current_app.extensions["tfregistry_oauth"]


def _signed_in_user() -> User | None:
    with current_registry().db.session() as db:
        try:
            identity = current_identity(db)
        except Unauthenticated:
            return None
        if identity.kind != "session":
            return None
        user = db.get(User, identity.user_id)
        db.expunge(user)
        return user


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def oauth_authorize() -> Any:
    from authlib.oauth2 import OAuth2Error

    if request.args.get("code_challenge_method") != "S256" or not request.args.get("code_challenge"):
        return page("Login refused", "<p class=error>This registry requires PKCE with S256 "
                    "(code_challenge_method=S256).</p>", 400)
    if not TerraformCLI().check_redirect_uri(request.args.get("redirect_uri", "")):
        # checked here too: Authlib's own error for it would echo the URI, and fails on some characters
        return page("Login refused", "<p class=error>redirect_uri must be Terraform's listener, "
                    "http://localhost:&lt;{{ low }}-{{ high }}&gt;/login.</p>", 400, low=PORTS[0], high=PORTS[1])
    user = _signed_in_user()
    if user is None:
        return redirect(url_for("tfr_login.login_choice", next=request.full_path))
    server = _server()
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as exc:
        return page("Login refused", "<p class=error>{{ error }}: {{ description }}</p>", 400,
                    error=exc.error, description=exc.description or "")
    if request.method == "GET":
        host = urlsplit(current_registry().settings["public_url"] or request.host_url).netloc
        return page("Authorize Terraform", "<p>Terraform CLI asks for a registry token to act as "
                    "<strong>{{ who }}</strong> on <strong>{{ host }}</strong>.</p>"
                    "<form method=post action=\"?{{ query }}\"><input type=hidden name=csrf_token value=\"{{ csrf }}\">"
                    "<button class=primary name=decision value=approve>Approve</button> "
                    "<button name=decision value=deny>Deny</button></form>",
                    who=user.email or user.name, host=host, query=urlencode(list(request.args.items(multi=True))),
                    csrf=csrf_token())
    approved = request.form.get("decision") == "approve"
    with current_registry().db.session() as db:
        record(db, _actor(user), "auth.terraform_login", f"user:{user.id}",
               decision="approve" if approved else "deny")
        db.commit()
    return server.create_authorization_response(grant_user=user if approved else None, grant=grant)


@bp.post("/oauth/token")
def oauth_token() -> Any:
    return _server().create_token_response()


def login_discovery() -> dict[str, Any]:
    """The ``login.v1`` discovery entry."""
    return {"client": CLIENT_ID, "grant_types": ["authz_code"], "authz": "/oauth/authorize",
            "token": "/oauth/token", "ports": list(PORTS)}
