"""Who is calling, and what they may do.  One place for every permission check."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, request
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from tfregistry.models import Namespace
from tfregistry.services.audit import Actor
from tfregistry.services.tokens import verify_token
from tfregistry.web import current_registry

#: Actions, and the token scopes that grant them.
ACTIONS = {
    "modules:read": ("read", "publish", "admin"),
    "modules:write": ("publish", "admin"),
    "modules:delete": ("admin",),
    "providers:read": ("read", "publish", "admin"),
    "providers:write": ("publish", "admin"),
    "providers:delete": ("admin",),
    "keys:manage": ("publish", "admin"),
    "admin": ("admin",),
}
#: What anonymous callers may do where a namespace is readable without a token.
READ_ACTIONS = ("modules:read", "providers:read")


ACTION_WORDS = {
    "modules:read": "read modules",
    "modules:write": "publish or change modules",
    "modules:delete": "delete modules",
    "providers:read": "read providers",
    "providers:write": "publish or change providers",
    "providers:delete": "delete providers",
    "keys:manage": "manage signing keys",
    "admin": "administer the registry",
}


class Unauthenticated(Exception):
    """No credentials, or credentials that are not valid: HTTP 401."""


class PermissionDenied(Exception):
    """Valid credentials without the needed permission: HTTP 403."""


@dataclass(frozen=True)
class Identity:
    """The caller: a token, or anonymous (``token_id`` is ``None``)."""

    name: str
    token_id: int | None = None
    scope: str | None = None
    namespace: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.token_id is None


ANONYMOUS = Identity(name="anonymous")


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def current_identity(session: Session) -> Identity:
    """Authenticate the request (once); an invalid token is refused, never downgraded to anonymous."""
    if "tfr_identity" in g:
        return g.tfr_identity
    secret = bearer_token()
    identity = ANONYMOUS
    if secret is not None:
        token = verify_token(session, secret)
        if token is None:
            raise Unauthenticated("the token is not valid (unknown, revoked or expired)")
        identity = Identity(name=f"token:{token.name}", token_id=token.id, scope=token.scope,
                            namespace=token.namespace)
    g.tfr_identity = identity
    return identity


def namespace_for(session: Session, name: str) -> Namespace:
    """The namespace row, or an unsaved stand-in (default visibility), so permission checks can run
    before a lookup that would answer 404."""
    return session.scalar(select(Namespace).where(Namespace.name == name)) or Namespace(name=name,
                                                                                      visibility="inherit")


def anonymous_may_read(namespace: Namespace | None) -> bool:
    if namespace is not None and namespace.visibility != "inherit":
        return namespace.visibility == "public"
    return bool(current_registry().settings["auth.anonymous_read"])


def allowed(identity: Identity, action: str, namespace: Namespace | None) -> bool:
    """Whether ``identity`` may do ``action`` in ``namespace`` (``None``: registry-wide)."""
    if action in READ_ACTIONS and anonymous_may_read(namespace):
        return True  # a token never has less access than no token
    if identity.anonymous or identity.scope not in ACTIONS.get(action, ()):
        return False
    if identity.namespace is None:
        return True
    return namespace is not None and namespace.name == identity.namespace


def require(session: Session, action: str, namespace: Namespace | None) -> Identity:
    """Return the caller if allowed, else raise :class:`Unauthenticated` / :class:`PermissionDenied`."""
    identity = current_identity(session)
    if allowed(identity, action, namespace):
        return identity
    if identity.anonymous:
        raise Unauthenticated("authentication required: send a registry token as 'Authorization: Bearer <token>'")
    where = f" in namespace {namespace.name!r}" if namespace is not None else ""
    raise PermissionDenied(f"this token (scope {identity.scope}) may not {ACTION_WORDS.get(action, action)}{where}")


def readable_namespace_ids(session: Session) -> Select:
    """A sub-select of the namespace ids the caller may read (for list endpoints)."""
    identity = current_identity(session)
    stmt = select(Namespace.id)
    if not identity.anonymous and identity.namespace is None:
        return stmt
    visible = [Namespace.visibility == "public"]
    if current_registry().settings["auth.anonymous_read"]:
        visible.append(Namespace.visibility == "inherit")
    if identity.namespace is not None:
        visible.append(Namespace.name == identity.namespace)
    return stmt.where(or_(*visible))


def request_actor(identity: Identity) -> Actor:
    """The audit :class:`Actor` for the current request."""
    return Actor(name=identity.name, token_id=identity.token_id, ip=request.remote_addr,
                 request_id=g.get("request_id"))
