"""Sign-in (the site's sign-in providers, and "sign in with an API token") and "My tokens".

Sessions, CSRF and the token exchange are the core's (:mod:`tfregistry.protocol.login`); who may
create, see, rotate and revoke which token is :mod:`tfregistry.services.tokens`, as for the API.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, flash, get_flashed_messages, redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.interfaces import LoginError
from tfregistry.models import ApiToken, Organization, utcnow
from tfregistry.protocol.login import csrf_valid, safe_next, token_sign_in
from tfregistry.services import ServiceError
from tfregistry.services import identity as identity_svc
from tfregistry.services import tokens as token_svc
from tfregistry.web import current_registry
from tfregistry_webui.ui import bp, render_page

#: Expiry choices of the create form (the API takes any duration).
EXPIRIES = {"7d": "7 days", "30d": "30 days", "90d": "90 days", "365d": "1 year", "never": "Never"}
DEFAULT_EXPIRY = "90d"


def token_form_errors(values: dict[str, Any], namespace_field: str) -> dict[str, str]:
    """What is wrong with a token form (name, scopes, namespace in ``namespace_field``, expiry), by field;
    the token rules themselves are the service's (:mod:`tfregistry.services.tokens`)."""
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = "Give the token a name (where it is used, e.g. 'CI for team-network')."
    elif len(values["name"]) > 200:
        errors["name"] = "At most 200 characters."
    if not values["scopes"]:
        errors["scopes"] = "Choose at least one scope."
    if len(values[namespace_field]) > 64:
        errors[namespace_field] = "At most 64 characters."
    if values["expires_in"] not in EXPIRIES:
        errors["expires_in"] = "Choose one of the listed expiries."
    return errors
#: Grace periods offered when rotating: how long the old secret keeps working.
GRACES = {"": "None: the old secret stops now", "1h": "1 hour", "1d": "1 day", "7d": "7 days"}
KIND_LABELS = {"personal": "Personal (acts as you)", "service": "Service (belongs to an organization)",
               "site": "Site (registry-wide)"}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# --- sign-in ---------------------------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """The sign-in page: the site's sign-in providers, and (``webui.token_sign_in``) a form that
    exchanges a registry token for a browser session."""
    nxt = safe_next(request.values.get("next"))
    token_form = bool(current_registry().settings["webui.token_sign_in"])
    if request.method == "GET":
        return _sign_in_page(nxt, token_form)
    if not token_form:
        abort(404)
    # No session yet, so the core's CSRF check does not run: the form carries the anonymous session's token.
    if not csrf_valid():
        return _sign_in_page(nxt, token_form, 403, error="This form was stale or did not come from this "
                             "registry. Paste the token again and sign in.")
    secret = request.form.get("token", "")
    try:
        token_sign_in(secret)
    except LoginError as exc:
        # 401, so failures count against limits.auth_failures like every other failed authentication
        response = _sign_in_page(nxt, token_form, 401, error=f"Sign-in failed: {exc}.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="tfregistry"'
        return response
    return redirect(nxt or url_for("tfr_webui.home"), 303)


def _sign_in_page(nxt: str | None, token_form: bool, status: int = 200, error: str | None = None) -> Any:
    providers = [{"label": getattr(provider, "label", None) or name,
                  "url": url_for("tfr_login.login_start", name=name, next=nxt)}
                 for name, provider in current_registry().auth_providers.items()]
    return render_page("account/sign_in.html", status, page_title="Sign in", providers=providers,
                       token_form=token_form, next=nxt, error=error)


@bp.errorhandler(429)
def _too_many(error: Any) -> Any:
    """Rate-limited (too many failed sign-ins, say): the page, in the layout, with ``Retry-After``."""
    limit = getattr(error, "limit", None)
    retry_after = limit.limit.get_expiry() if limit is not None else 60
    response = render_page("error.html", 429, careful=True, status=429, title="Too many requests",
                           message=f"Too many attempts from your address; try again in {retry_after} seconds.")
    response.headers["Retry-After"] = str(retry_after)
    return response


# --- my tokens -------------------------------------------------------------------------------------


def _signed_in(session: Session) -> auth.Identity:
    identity = auth.current_identity(session)
    if identity.anonymous:
        raise auth.Unauthenticated("Sign in to manage your tokens.")
    return identity


def creatable_kinds(session: Session, identity: auth.Identity) -> dict[str, dict[str, Any]]:
    """The kinds of token ``identity`` may create, each with the scopes it may write on one (and, for
    service tokens, the organizations): what the create form offers."""
    kinds: dict[str, dict[str, Any]] = {}
    for kind in ("personal", "service", "site"):
        if kind == "service":
            orgs = [o for o in session.scalars(select(Organization).order_by(Organization.name))
                    if "tokens:manage" in identity.scopes_in(o.id)]
            if orgs:
                held = frozenset().union(*(identity.scopes_in(o.id) for o in orgs))
                kinds[kind] = {"scopes": held, "organizations": [o.name for o in orgs]}
            continue
        try:
            held, _, _ = token_svc.grantable_scopes(session, identity, kind)
        except ServiceError:
            continue
        if held:
            kinds[kind] = {"scopes": held, "organizations": []}
    return kinds


def _form_scopes(kinds: dict[str, dict[str, Any]]) -> list[str]:
    offered = frozenset().union(*(k["scopes"] for k in kinds.values())) if kinds else frozenset()
    return [s for s in identity_svc.SCOPES if s in offered]


def _status(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= utcnow():
        return "expired"
    return "active"


def _tokens_page(session: Session, identity: auth.Identity, status: int = 200, *, errors: dict[str, str] | None = None,
                 values: dict[str, Any] | None = None) -> Any:
    tokens = token_svc.manageable_tokens(session, identity)
    org_names = {o.id: o.name for o in session.scalars(select(Organization).order_by(Organization.name))}
    kinds = creatable_kinds(session, identity)
    defaults = {"name": "", "kind": next(iter(kinds), "personal"), "organization": "", "namespace": "",
                "expires_in": DEFAULT_EXPIRY, "scopes": ["modules:read", "providers:read"]}
    return render_page("account/tokens.html", status, page_title="My tokens", tokens=tokens,
                       statuses={t.id: _status(t) for t in tokens}, org_names=org_names, kinds=kinds,
                       kind_labels=KIND_LABELS, scopes=_form_scopes(kinds), scope_help=auth.ACTION_WORDS,
                       expiries=EXPIRIES, graces=GRACES, errors=errors or {}, values={**defaults, **(values or {})},
                       current_token=identity.token_id, notices=get_flashed_messages())


@bp.get("/account/tokens")
def tokens() -> Any:
    """The caller's tokens (the same ones ``GET /api/v1/tokens`` lists) and the form to create one."""
    with current_registry().db.session() as session:
        return _tokens_page(session, _signed_in(session))


def _lifetime(value: str) -> timedelta | None:
    from tfregistry.settings import parse_duration

    if value in ("", "never"):
        return None
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:
        raise ServiceError(str(exc)) from None


@bp.post("/account/tokens")
def create_token() -> Any:
    """Create a token; the secret is on the answer, shown this once and never stored by the page."""
    form = request.form
    values = {"name": form.get("name", "").strip(), "kind": form.get("kind", "personal"),
              "organization": form.get("organization", "").strip(), "namespace": form.get("namespace", "").strip(),
              "expires_in": form.get("expires_in", DEFAULT_EXPIRY), "scopes": form.getlist("scopes")}
    with current_registry().db.session() as session:
        identity = _signed_in(session)
        errors = token_form_errors(values, "namespace")
        status = 400
        if not errors:
            try:
                token, secret = token_svc.issue_token(
                    session, auth.request_actor(identity), identity, name=values["name"], scopes=values["scopes"],
                    kind=values["kind"], organization=values["organization"] or None,
                    namespace=values["namespace"] or None, expires_in=_lifetime(values["expires_in"]))
                session.commit()
            except ServiceError as exc:
                session.rollback()
                errors[_error_field(exc.message)] = exc.message
                status = exc.status
        if errors:
            return _tokens_page(session, identity, status, errors=errors, values=values)
        return _secret_page(session, token, secret, "Token created")


def _error_field(message: str) -> str:
    """Which field a service refusal is about, so the message sits next to it."""
    lowered = message.lower()
    for field, words in (("scopes", ("scope",)), ("namespace", ("namespace",)), ("organization", ("organization",)),
                         ("name", ("a token needs a name",)), ("kind", ("token kind",))):
        if any(word in lowered for word in words):
            return field
    return "form"


def _secret_page(session: Session, token: ApiToken, secret: str, title: str) -> Any:
    """The one page that ever shows a secret; never cached, never stored."""
    org = session.get(Organization, token.organization_id) if token.organization_id else None
    response = render_page("account/token_secret.html", 200, page_title=title, title=title, token=token,
                           secret=secret, organization=org.name if org else None)
    response.headers.update(NO_STORE)
    return response


@bp.post("/account/tokens/<int:token_id>/rotate")
def rotate_token(token_id: int) -> Any:
    """Give a token a new secret (shown once); the old one keeps working for the chosen grace period."""
    grace = request.form.get("grace", "")
    if grace not in GRACES:
        raise ServiceError("choose one of the offered grace periods")
    with current_registry().db.session() as session:
        identity = _signed_in(session)
        token = token_svc.manageable_token(session, identity, token_id)
        secret = token_svc.rotate_token(session, auth.request_actor(identity), token, _lifetime(grace))
        session.commit()
        return _secret_page(session, token, secret, "Token rotated")


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["GET", "POST"])
def revoke_token(token_id: int) -> Any:
    """Revoke a token, after a confirmation page; it stops working on the next request."""
    with current_registry().db.session() as session:
        identity = _signed_in(session)
        token = token_svc.manageable_token(session, identity, token_id)
        if request.method == "GET":
            return render_page("account/revoke.html", page_title=f"Revoke token {token.name}", token=token,
                               signs_out=token.id == identity.token_id and identity.browser_session)
        token_svc.revoke_token(session, auth.request_actor(identity), token)
        session.commit()
        flash(f"Token “{token.name}” is revoked.")
        return redirect(url_for("tfr_webui.tokens"), 303)
