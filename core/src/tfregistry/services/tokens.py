"""API tokens: high-entropy, prefixed secrets stored only as SHA-256 digests."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry.models import ApiToken, Organization, User, utcnow
from tfregistry.services import Forbidden, NotFound, ServiceError
from tfregistry.services.audit import Actor, record
from tfregistry.services.identity import check_grantable, normalise_scopes, visible_organization

if TYPE_CHECKING:
    from tfregistry.auth import Identity

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


def session_fingerprint(secret: str) -> str:
    """What a browser session opened with a token keeps to recognise the secret it was opened with:
    derived from the secret's digest, never the digest itself (the session cookie is signed, not secret)."""
    return hashlib.sha256(b"tfr-session\0" + digest(secret).encode()).hexdigest()[:32]


def _fingerprint_of_digest(value: str | None) -> str | None:
    return hashlib.sha256(b"tfr-session\0" + value.encode()).hexdigest()[:32] if value else None


def session_token(session: Session, token_id: int, fingerprint: str,
                  now: datetime | None = None) -> tuple[ApiToken, bool] | None:
    """The token a browser session was opened with, while the secret used still works, and whether
    that secret is the token's previous one (within the grace period of a rotation); ``None`` when
    the token is gone, revoked or expired, or the secret was rotated out.  Checked on every request."""
    now = now or utcnow()
    token = session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if hmac.compare_digest(_fingerprint_of_digest(token.digest) or "", fingerprint):
        return token, False
    previous = _fingerprint_of_digest(token.previous_digest)
    if (previous and token.previous_expires_at is not None and token.previous_expires_at > now
            and hmac.compare_digest(previous, fingerprint)):
        return token, True
    return None


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


# --- who may manage which token: one set of rules for the API and the web UI ------------------------


def may_manage(identity: Identity, token: ApiToken) -> bool:
    """Whether ``identity`` may see, rotate and revoke ``token``: their own personal tokens, service
    tokens of organizations where they hold ``tokens:manage``, every token with ``tokens:manage``
    registry-wide."""
    if "tokens:manage" in identity.scopes_in(None):
        return True
    if token.kind == "personal":
        return token.user_id is not None and token.user_id == identity.user_id
    if token.kind == "service":
        return "tokens:manage" in identity.scopes_in(token.organization_id)
    return False


def manageable_tokens(session: Session, identity: Identity) -> list[ApiToken]:
    """The tokens ``identity`` may manage (:func:`may_manage`), oldest first."""
    return [t for t in session.scalars(select(ApiToken).order_by(ApiToken.id)) if may_manage(identity, t)]


def manageable_token(session: Session, identity: Identity, token_id: int) -> ApiToken:
    """One token ``identity`` may manage; any other is "not found" (never "forbidden")."""
    token = session.get(ApiToken, token_id)
    if token is None or not may_manage(identity, token):
        raise NotFound(f"token {token_id} not found")
    return token


def grantable_scopes(session: Session, identity: Identity, kind: str,
                     organization: str | None = None) -> tuple[frozenset[str], User | None, Organization | None]:
    """The scopes ``identity`` may write on a new token of ``kind`` (a personal token is never wider
    than its user's roles; a service token's scopes are held by its creator in that organization; a site
    token needs ``admin``), with the token's user or organization.  Refuses callers who may create none."""
    if kind == "personal":
        if identity.user_id is None:
            raise ServiceError("personal tokens belong to users: sign in, or use a personal token")
        return identity.scopes_anywhere(), session.get(User, identity.user_id), None
    if kind == "service":
        if not organization:
            raise ServiceError("a service token needs an organization")
        org = visible_organization(session, identity, organization)
        if "tokens:manage" not in identity.scopes_in(org.id):
            raise Forbidden(f"you may not manage tokens in organization {org.name!r}")
        return identity.scopes_in(org.id), None, org
    if kind == "site":
        if "admin" not in identity.scopes_in(None):
            raise Forbidden("only registry administrators may create site tokens")
        return identity.scopes_in(None), None, None
    raise ServiceError(f"token kind must be one of {', '.join(KINDS)}")


def issue_token(session: Session, actor: Actor, identity: Identity, *, name: str, scopes: Iterable[str],
                kind: str = "personal", organization: str | None = None, namespace: str | None = None,
                expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
    """Create a token on behalf of ``identity`` after checking it may (:func:`grantable_scopes`);
    returns the row and the secret, shown once.  A service token's creation is audited in its organization."""
    held, user, org = grantable_scopes(session, identity, kind, organization)
    wanted = normalise_scopes(scopes)
    check_grantable(held, wanted)
    if org is not None:
        actor = dataclasses.replace(actor, organization_id=org.id)
    return create_token(session, actor, name=name, scopes=wanted, kind=kind, user=user, organization=org,
                        namespace=namespace, expires_in=expires_in)
