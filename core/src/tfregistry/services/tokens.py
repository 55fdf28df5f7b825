"""API tokens: high-entropy, prefixed secrets stored only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry.models import ApiToken, Organization, User, utcnow
from tfregistry.services import ServiceError
from tfregistry.services.audit import Actor, record
from tfregistry.services.identity import normalise_scopes

#: Recognisable by secret scanners: ``tfr_`` followed by 43 URL-safe characters.
TOKEN_PREFIX = "tfr_"
TOKEN_PATTERN = re.compile(r"^tfr_[A-Za-z0-9_-]{43}$")
#: ``last_used_at`` is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
KINDS = ("site", "personal", "service")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    session: Session,
    actor: Actor,
    *,
    name: str,
    scopes: Iterable[str],
    kind: str = "site",
    user: User | None = None,
    organization: Organization | None = None,
    namespace: str | None = None,
    expires_in: timedelta | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret, which is never stored or shown again.

    Callers check that the creator may hand out ``scopes`` (see :func:`identity.check_grantable`);
    this function checks the token's own consistency.
    """
    scopes = normalise_scopes(scopes)
    if kind not in KINDS:
        raise ServiceError(f"token kind must be one of {', '.join(KINDS)}")
    if (kind == "personal") != (user is not None) or (kind == "service") != (organization is not None):
        raise ServiceError("a personal token needs a user, a service token an organization, a site token neither")
    if "admin" in scopes and namespace:
        raise ServiceError("an admin token cannot be limited to a namespace")
    if not name.strip():
        raise ServiceError("a token needs a name")
    secret = _new_secret()
    token = ApiToken(
        name=name.strip(),
        display_prefix=secret[:8],
        digest=digest(secret),
        kind=kind,
        scopes=scopes,
        namespace=namespace,
        user_id=user.id if user else None,
        organization_id=organization.id if organization else None,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(token)
    session.flush()
    record(session, actor, "token.create", f"token:{token.id}", name=token.name, kind=kind, scopes=scopes,
           namespace=namespace, user=token.user_id, organization=organization.name if organization else None)
    return token, secret


def rotate_token(session: Session, actor: Actor, token: ApiToken, grace: timedelta | None = None) -> str:
    """Give ``token`` a new secret.  With ``grace``, the old secret keeps working that long (so CI
    systems can be updated without an outage); without it, the old secret stops at once."""
    if token.revoked_at is not None:
        raise ServiceError("a revoked token cannot be rotated")
    secret = _new_secret()
    now = utcnow()
    token.previous_digest = token.digest if grace else None
    token.previous_expires_at = now + grace if grace else None
    token.digest, token.display_prefix, token.rotated_at = digest(secret), secret[:8], now
    record(session, actor, "token.rotate", f"token:{token.id}", name=token.name,
           grace_seconds=int(grace.total_seconds()) if grace else 0)
    return secret


def verify_token(session: Session, secret: str, now: datetime | None = None, ip: str | None = None) -> ApiToken | None:
    """The live token whose secret this is, or ``None`` (unknown, revoked, expired, or an old secret
    past its grace period)."""
    if not TOKEN_PATTERN.match(secret):
        return None
    wanted = digest(secret)
    now = now or utcnow()
    token = session.scalar(select(ApiToken).where(ApiToken.digest == wanted))
    if token is None:
        token = session.scalar(select(ApiToken).where(ApiToken.previous_digest == wanted))
        if (token is None or token.previous_expires_at is None or token.previous_expires_at <= now
                or not hmac.compare_digest(token.previous_digest or "", wanted)):
            return None
    elif not hmac.compare_digest(token.digest, wanted):
        return None
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION or token.last_used_ip != ip:
        token.last_used_at, token.last_used_ip = now, ip
        session.commit()
    return token


def revoke_token(session: Session, actor: Actor, token: ApiToken) -> None:
    """Revoke ``token`` now; it stops working on the next request."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(session, actor, "token.revoke", f"token:{token.id}", name=token.name)


def any_tokens(session: Session) -> bool:
    return session.scalar(select(ApiToken.id).limit(1)) is not None


def expiring_tokens(session: Session, window: timedelta) -> list[tuple[int, str, datetime]]:
    """Live tokens expiring within ``window`` that have not been noticed yet; each gets one
    ``token.expiring`` audit entry (the record that it was noticed, and what notifiers will send)."""
    from tfregistry.models import AuditEntry
    from tfregistry.services.audit import Actor

    now = utcnow()
    noticed = set(session.scalars(select(AuditEntry.target).where(AuditEntry.action == "token.expiring")))
    result = []
    for token in session.scalars(select(ApiToken).where(ApiToken.revoked_at.is_(None),
                                                        ApiToken.expires_at.is_not(None),
                                                        ApiToken.expires_at > now,
                                                        ApiToken.expires_at <= now + window)):
        target = f"token:{token.id}"
        if target in noticed:
            continue
        record(session, Actor(name="scheduler", organization_id=token.organization_id), "token.expiring", target,
               name=token.name, kind=token.kind, user=token.user_id, expires_at=token.expires_at.isoformat())
        result.append((token.id, token.name, token.expires_at))
    return result
