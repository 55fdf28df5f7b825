"""API tokens: high-entropy, prefixed secrets stored only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry.models import ApiToken, utcnow
from tfregistry.services import ServiceError
from tfregistry.services.audit import Actor, record

#: Recognisable by secret scanners: ``tfr_`` followed by 43 URL-safe characters.
TOKEN_PREFIX = "tfr_"
TOKEN_PATTERN = re.compile(r"^tfr_[A-Za-z0-9_-]{43}$")
SCOPES = ("read", "publish", "admin")
#: ``last_used_at`` is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    session: Session,
    actor: Actor,
    *,
    name: str,
    scope: str,
    namespace: str | None = None,
    expires_in: timedelta | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret, which is never stored or shown again."""
    if scope not in SCOPES:
        raise ServiceError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if scope == "admin" and namespace:
        raise ServiceError("an admin token cannot be limited to a namespace")
    if not name.strip():
        raise ServiceError("a token needs a name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name.strip(),
        display_prefix=secret[:8],
        digest=digest(secret),
        scope=scope,
        namespace=namespace,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(token)
    session.flush()
    record(session, actor, "token.create", f"token:{token.id}", name=token.name, scope=scope, namespace=namespace)
    return token, secret


def verify_token(session: Session, secret: str, now: datetime | None = None) -> ApiToken | None:
    """The live token whose secret this is, or ``None`` (unknown, revoked or expired)."""
    if not TOKEN_PATTERN.match(secret):
        return None
    wanted = digest(secret)
    token = session.scalar(select(ApiToken).where(ApiToken.digest == wanted))
    if token is None or not hmac.compare_digest(token.digest, wanted):
        return None
    now = now or utcnow()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.commit()
    return token


def revoke_token(session: Session, actor: Actor, token: ApiToken) -> None:
    """Revoke ``token`` now; it stops working on the next request."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(session, actor, "token.revoke", f"token:{token.id}", name=token.name)


def any_tokens(session: Session) -> bool:
    return session.scalar(select(ApiToken.id).limit(1)) is not None
