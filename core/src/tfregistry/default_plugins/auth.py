"""Built-in authentication: registry API tokens (``Authorization: Bearer``) and browser sessions.

A browser session is either a user's (``uid``, from a sign-in provider or a personal token) or, for
site and service tokens, which have no user, the token's own (``tid`` and a fingerprint of the secret
it was opened with): that token is checked again on every request, so revoking, expiring or rotating
it (after its grace period) signs the browser out.

Implemented with the same ``tfr_authenticate`` hook an auth plugin would use; plugins that
understand other credentials run first (this one is ``trylast``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flask import g
from flask import session as flask_session
from sqlalchemy.orm import Session

from tfregistry import hookimpl
from tfregistry.auth import Identity, Unauthenticated, bearer_token
from tfregistry.models import ApiToken, User
from tfregistry.services.audit import Actor, record
from tfregistry.services.identity import expand
from tfregistry.services.tokens import digest, session_token, verify_token

if TYPE_CHECKING:
    from tfregistry.registry import Registry

#: One ``auth.failure`` audit entry per client address per this many seconds (a burst, not every request).
FAILURE_AUDIT_WINDOW = 60.0
_failure_lock = threading.Lock()


def user_identity(db_session: Session, user: User, *, kind: str, name: str, token: ApiToken | None = None,
                  valid_until: float | None = None) -> Identity:
    """The :class:`Identity` of a user acting through a personal token or a browser session."""
    if user.disabled:
        raise Unauthenticated(f"the account of {user.email or user.name or user.id} is disabled")
    roles = {m.organization_id: expand(m.role.scopes) for m in user.memberships}
    return Identity(name=name, kind=kind, token_id=token.id if token else None, user_id=user.id,
                    token_scopes=expand(token.scopes) if token else None,
                    namespace=token.namespace if token else None, site_admin=user.site_admin, roles=roles,
                    valid_until=valid_until, browser_session=kind == "session")


def token_identity(db_session: Session, token: ApiToken, secret: str | None = None, *,
                   previous: bool = False) -> Identity:
    """The caller a live token stands for; ``secret`` (or ``previous``) tells whether it was the
    token's previous one, which stops at the end of the rotation's grace period."""
    ends = [token.expires_at]
    if previous or (secret is not None and digest(secret) != token.digest):
        ends.append(token.previous_expires_at)  # the old secret of a rotation, within its grace period
    valid_until = min((moment.timestamp() for moment in ends if moment is not None), default=None)
    if token.kind == "personal":
        user = db_session.get(User, token.user_id)
        if user is None:
            raise Unauthenticated("the token's user no longer exists")
        return user_identity(db_session, user, kind="personal", name=f"{_user_label(user)} (token {token.name})",
                             token=token, valid_until=valid_until)
    return Identity(name=f"token:{token.name}", kind=token.kind, token_id=token.id,
                    organization_id=token.organization_id, token_scopes=expand(token.scopes),
                    namespace=token.namespace, valid_until=valid_until,
                    packages=frozenset(token.packages) if token.packages is not None else None)


def _user_label(user: User) -> str:
    return f"user:{user.email or user.id}"


def _audit_failure(registry: Registry, ip: str | None, reason: str) -> None:
    now = time.monotonic()
    with _failure_lock:
        last: dict[str, float] = registry.memo.setdefault("auth_failure_audit", {})
        if now - last.get(ip or "", -FAILURE_AUDIT_WINDOW) < FAILURE_AUDIT_WINDOW:
            return
        last[ip or ""] = now
    with registry.db.session() as db_session:
        record(db_session, Actor(name="anonymous", ip=ip, request_id=g.get("request_id")), "auth.failure",
               reason=reason)
        db_session.commit()


@hookimpl(trylast=True)
def tfr_authenticate(registry: Registry, request: Any, session: Session) -> Identity | None:
    secret = bearer_token()
    if secret is not None:
        token = verify_token(session, secret, ip=request.remote_addr)
        if token is None:
            _audit_failure(registry, request.remote_addr, "invalid token")
            raise Unauthenticated("the token is not valid (unknown, revoked or expired)")
        return token_identity(session, token, secret)
    token_id = flask_session.get("tid")
    if token_id is not None:
        return _token_session_identity(session, token_id)
    user_id = flask_session.get("uid")
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or flask_session.get("ver") != session_version(user):
        flask_session.clear()
        raise Unauthenticated("your session has ended; sign in again")
    return user_identity(session, user, kind="session", name=_user_label(user))


def _token_session_identity(session: Session, token_id: Any) -> Identity:
    """The identity of a session opened with a site or service token, while that token still works."""
    found = session_token(session, token_id, str(flask_session.get("tfp", ""))) if isinstance(token_id, int) else None
    if found is None:
        flask_session.clear()
        raise Unauthenticated("your session has ended (the token it was opened with no longer works); sign in again")
    token, previous = found
    return replace(token_identity(session, token, previous=previous), browser_session=True)


def signed_in_session() -> bool:
    """Whether the request's session cookie carries a sign-in (a user's, or a token's)."""
    return "uid" in flask_session or "tid" in flask_session


def session_version(user: User) -> str:
    """Changes when a user is disabled or enabled again, so existing browser sessions end for good."""
    return f"{user.id}:{user.session_epoch or 0}:{int(user.disabled)}"
