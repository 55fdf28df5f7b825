"""Who is calling, and what they may do.  One place for every permission check.

Scopes come from two places: a user's role in each organization (memberships), and the
scopes written on a token.  A personal token acts as its user with at most the token's
scopes; a service token holds its scopes in its own organization only; a site token
(``tfr token create``) holds its scopes registry-wide.  In ``tenancy = "multi"`` a caller
who may not read a namespace of another organization is told it does not exist (404).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import g, request
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from tfregistry.models import Namespace, Organization
from tfregistry.services.audit import Actor
from tfregistry.services.identity import SCOPES, default_organization
from tfregistry.web import current_registry

#: Actions that are not scopes themselves, and the scope each needs.
REQUIRED_SCOPE = {"modules:delete": "admin", "providers:delete": "admin"}
#: What anyone may do where a namespace is readable without membership.
READ_ACTIONS = ("modules:read", "providers:read")
#: Registry-wide actions a role in any organization grants (mirror configurations are shared).
ANY_ORGANIZATION_ACTIONS = ("mirrors:read", "mirrors:manage")

ACTION_WORDS = {
    "modules:read": "read modules",
    "modules:write": "publish or change modules",
    "modules:delete": "delete modules",
    "providers:read": "read providers",
    "providers:write": "publish or change providers",
    "providers:delete": "delete providers",
    "mirrors:read": "view mirror configurations",
    "mirrors:manage": "manage mirror configurations",
    "keys:manage": "manage signing keys",
    "tokens:manage": "manage tokens",
    "users:manage": "manage users and memberships",
    "orgs:manage": "manage organizations",
    "audit:read": "read the audit log",
    "admin": "administer the registry",
}


class Unauthenticated(Exception):
    """No credentials, or credentials that are not valid: HTTP 401."""


class PermissionDenied(Exception):
    """Valid credentials without the needed permission: HTTP 403."""


class Hidden(PermissionDenied):
    """The caller may not even learn that the resource exists: HTTP 404."""


@dataclass(frozen=True)
class Identity:
    """The caller.  ``kind``: ``anonymous``, ``site``/``personal``/``service`` (tokens) or ``session``."""

    name: str
    kind: str = "anonymous"
    token_id: int | None = None
    user_id: int | None = None
    #: A service token's organization.
    organization_id: int | None = None
    #: The token's scopes, expanded (``None``: not limited by a token, as for browser sessions).
    token_scopes: frozenset[str] | None = None
    #: A token limited to one namespace.
    namespace: str | None = None
    #: A token limited to some packages of its namespace (``module:NAME/SYSTEM``, ``provider:TYPE`` patterns;
    #: trusted publishing); ``None``: not limited.
    packages: frozenset[str] | None = None
    site_admin: bool = False
    #: Organization id -> expanded scopes of the user's role there.
    roles: Mapping[int, frozenset[str]] = field(default_factory=dict)
    #: Epoch seconds at which the credential stops working (a token's expiry or rotation grace).
    valid_until: float | None = None
    #: Authenticated by a browser session cookie (a user's sign-in, or a token exchanged for a session),
    #: so state-changing requests need the session's CSRF token.
    browser_session: bool = False

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    def scopes_in(self, organization_id: int | None) -> frozenset[str]:
        """The scopes this caller holds in an organization (``None``: registry-wide)."""
        if self.kind == "anonymous":
            return frozenset()
        if self.kind == "site":
            return self.token_scopes or frozenset()
        if self.kind == "service":
            return (self.token_scopes or frozenset()) if organization_id == self.organization_id else frozenset()
        held = frozenset(SCOPES) if self.site_admin else self.roles.get(organization_id, frozenset()) \
            if organization_id is not None else frozenset()
        return held if self.token_scopes is None else held & self.token_scopes

    def scopes_anywhere(self) -> frozenset[str]:
        """The union of this caller's scopes over every organization and the registry level."""
        result = set(self.scopes_in(None))
        for org_id in {*self.roles, self.organization_id} - {None}:
            result |= self.scopes_in(org_id)
        return frozenset(result)


ANONYMOUS = Identity(name="anonymous")


@dataclass(frozen=True)
class Resource:
    """What a permission is checked on: ``organization_id`` ``None`` means registry-wide."""

    organization_id: int | None = None
    namespace: str | None = None


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def current_identity(session: Session) -> Identity:
    """Authenticate the request (once), through the ``tfr_authenticate`` hook; credentials that are
    not valid are refused, never downgraded to anonymous."""
    if "tfr_identity" in g:
        return g.tfr_identity
    registry = current_registry()
    identity = registry.pm.hook.tfr_authenticate(registry=registry, request=request, session=session) or ANONYMOUS
    g.tfr_identity = identity
    return identity


def multi_tenant() -> bool:
    return current_registry().settings["tenancy"] == "multi"


def default_organization_id(session: Session) -> int:
    """The implicit organization's id, cached per application once it has been read from the database
    (never when this very transaction created it: a rollback would leave the cache pointing nowhere)."""
    registry = current_registry()
    cached = registry.memo.get("default_org_id")
    if cached is not None:
        return cached
    from tfregistry.models import Organization
    from tfregistry.services.identity import DEFAULT_ORGANIZATION

    found = session.scalar(select(Organization.id).where(Organization.name == DEFAULT_ORGANIZATION))
    if found is None:
        return default_organization(session).id
    registry.memo["default_org_id"] = found
    return found


def organization_of(session: Session, namespace: Namespace | None) -> int | None:
    """The organization a namespace belongs to: the implicit one in single tenancy."""
    if namespace is None:
        return None
    if not multi_tenant():
        return default_organization_id(session)
    return namespace.organization_id


def home_organization(session: Session, identity: Identity, action: str = "modules:write") -> int | None:
    """Where a new namespace of this caller goes: the service token's organization, the only
    organization in which a user may ``action``, or (single tenancy) the implicit one."""
    if not multi_tenant():
        return default_organization_id(session)
    if identity.kind == "service":
        return identity.organization_id
    candidates = [org_id for org_id in identity.roles if action in identity.scopes_in(org_id)]
    return candidates[0] if len(candidates) == 1 else None


def namespace_for(session: Session, name: str) -> Namespace:
    """The namespace row, or an unsaved stand-in (default visibility, the caller's home organization),
    so permission checks can run before a lookup that would answer 404."""
    existing = session.scalar(select(Namespace).where(Namespace.name == name))
    if existing is not None:
        return existing
    return Namespace(name=name, visibility="inherit",
                     organization_id=home_organization(session, current_identity(session)))


def ensure_namespace(session: Session, namespace: Namespace) -> Namespace:
    """Persist a stand-in from :func:`namespace_for` (a publish into a new namespace), in its organization."""
    from tfregistry.services.modules import NAME_RE, get_or_create_namespace

    if namespace.id is not None or not NAME_RE.match(namespace.name):
        return namespace  # an invalid name: the publishing service refuses it with the precise reason
    if multi_tenant() and namespace.organization_id is None:
        from tfregistry.services import ServiceError

        raise ServiceError(f"namespace {namespace.name!r} does not exist and it is not clear which organization it "
                           "belongs to; create it first: POST /api/v1/organizations/<org>/namespaces")
    return get_or_create_namespace(session, namespace.name, namespace.organization_id)


def require_in_namespace(session: Session, action: str, name: str | Namespace,
                         create: bool = True) -> tuple[Identity, Actor]:
    """Check ``action`` in namespace ``name`` (with ``create``, a new one is made in the caller's
    organization once allowed); returns the caller and the audit actor naming the namespace's organization."""
    namespace = namespace_for(session, name) if isinstance(name, str) else name
    identity = require(session, action, namespace)
    if create:
        namespace = ensure_namespace(session, namespace)
    return identity, request_actor(identity, organization_of(session, namespace))


def anyone_may_read(identity: Identity, namespace: Namespace | None) -> bool:
    """Readable without a role: public namespaces, ``authenticated`` ones by any valid caller,
    ``inherit`` ones when ``auth.anonymous_read`` is on, and registry-wide content (mirrored
    providers) by any valid caller."""
    visibility = "inherit" if namespace is None else namespace.visibility
    if visibility == "public":
        return True
    if visibility == "authenticated" or namespace is None:
        return not identity.anonymous or (namespace is None and current_registry().settings["auth.anonymous_read"])
    if visibility == "inherit":
        return bool(current_registry().settings["auth.anonymous_read"])
    return False


def _granted(session: Session, identity: Identity, action: str, namespace: Namespace | None) -> bool:
    if action in READ_ACTIONS and anyone_may_read(identity, namespace):
        return True
    if identity.namespace is not None and (namespace is None or namespace.name != identity.namespace):
        return False
    needed = REQUIRED_SCOPE.get(action, action)
    if namespace is None and action in ANY_ORGANIZATION_ACTIONS:
        return needed in identity.scopes_anywhere()
    return needed in identity.scopes_in(organization_of(session, namespace))


def allowed(identity: Identity, action: str, namespace: Namespace | None, session: Session | None = None) -> bool:
    """Whether ``identity`` may do ``action`` in ``namespace`` (``None``: registry-wide).

    Roles and scopes decide; then any ``tfr_permission_allowed`` implementation may veto.
    """
    registry = current_registry()
    own_session = session is None
    session = session or registry.db.sessionmaker()
    try:
        if not _granted(session, identity, action, namespace):
            return False
        resource = Resource(organization_of(session, namespace), namespace.name if namespace else None)
    finally:
        if own_session:
            session.close()
    from tfregistry.web import request_context

    votes = registry.pm.hook.tfr_permission_allowed(identity=identity, action=action, resource=resource,
                                                    context=request_context())
    return False not in votes


def require(session: Session, action: str, namespace: Namespace | None) -> Identity:
    """Return the caller if allowed, else raise :class:`Unauthenticated`, :class:`PermissionDenied`
    or (another organization's namespace, multi-tenant) :class:`Hidden`."""
    identity = current_identity(session)
    if (namespace is not None and namespace.id is None and action in READ_ACTIONS and multi_tenant()
            and not identity.anonymous):
        # a namespace that does not exist answers exactly as another organization's hidden one
        raise Hidden(f"namespace {namespace.name!r} not found")
    if allowed(identity, action, namespace, session):
        return identity
    if identity.anonymous:
        raise Unauthenticated("authentication required: send a registry token as 'Authorization: Bearer <token>'")
    if namespace is not None and multi_tenant() and not allowed(identity, READ_ACTIONS[0], namespace, session) \
            and not allowed(identity, READ_ACTIONS[1], namespace, session):
        raise Hidden(f"namespace {namespace.name!r} not found")
    where = f" in namespace {namespace.name!r}" if namespace is not None else ""
    raise PermissionDenied(f"{describe(identity)} may not {ACTION_WORDS.get(action, action)}{where}")


def require_package(identity: Identity, kind: str, namespace: str, name: str) -> None:
    """Refuse (:class:`PermissionDenied`) a write to ``kind`` (``module`` with ``name`` ``NAME/SYSTEM``, or
    ``provider`` with ``name`` ``TYPE``) by a token limited to other packages (trusted publishing)."""
    from tfregistry.services.trusted_publishing import package_allowed

    if not package_allowed(identity.packages, kind, name):
        raise PermissionDenied(f"{describe(identity)} may publish only {', '.join(sorted(identity.packages or ()))} "
                               f"in namespace {namespace!r}, not {kind} {name!r}")


def require_scope(identity: Identity, scope: str, organization: Any = None) -> None:
    """Refuse (:class:`PermissionDenied`) unless ``identity`` holds ``scope`` in ``organization`` (an
    :class:`~tfregistry.models.Organization`; ``None``: registry-wide).  For actions on organizations,
    users, roles and tokens, which are not in a namespace."""
    if scope not in identity.scopes_in(organization.id if organization is not None else None):
        where = f" in organization {organization.name!r}" if organization is not None else " registry-wide"
        raise PermissionDenied(f"{describe(identity)} may not {ACTION_WORDS.get(scope, scope)}{where}")


def describe(identity: Identity) -> str:
    if identity.kind == "session":
        return f"{identity.name} (signed in)"
    scopes = " ".join(s for s in SCOPES if s in (identity.token_scopes or ()))
    return f"this {identity.kind} token (scopes: {'admin' if scopes == ' '.join(SCOPES) else scopes})"


def readable_namespace_ids(session: Session, action: str = "modules:read") -> Select:
    """A sub-select of the namespace ids the caller may read (for list endpoints)."""
    identity = current_identity(session)
    stmt = select(Namespace.id)
    if identity.namespace is None and action in identity.scopes_in(None):
        return stmt
    visible = [Namespace.visibility == "public"]
    if current_registry().settings["auth.anonymous_read"]:
        visible.append(Namespace.visibility == "inherit")
    if not identity.anonymous:
        visible.append(Namespace.visibility == "authenticated")
    if identity.namespace is not None:
        visible.append(Namespace.name == identity.namespace)
        return stmt.where(or_(*visible))
    orgs = {org_id for org_id in {*identity.roles, identity.organization_id} - {None}
            if action in identity.scopes_in(org_id)}
    if orgs and not multi_tenant():
        return stmt if default_organization_id(session) in orgs else stmt.where(or_(*visible))
    if orgs:
        visible.append(Namespace.organization_id.in_(orgs))
    return stmt.where(or_(*visible))


def request_actor(identity: Identity, organization_id: int | None = None) -> Actor:
    """The audit :class:`Actor` for the current request."""
    return Actor(name=identity.name, token_id=identity.token_id,
                 organization_id=organization_id if organization_id is not None else identity.organization_id,
                 ip=request.remote_addr, request_id=g.get("request_id"))


def require_audit_read(session: Session, identity: Identity, organization: str | None) -> Organization | None:
    """The organization whose audit entries the caller asked for (``None``: all of them), if they may
    read them: ``audit:read`` registry-wide reads everything, ``audit:read`` in an organization reads that
    organization's entries.  Another organization is "not found" (never "forbidden")."""
    from tfregistry.services.identity import visible_organization

    if identity.anonymous:
        raise Unauthenticated("authentication required: send a registry token or sign in")
    if not organization:
        require_scope(identity, "audit:read", None)
        return None
    org = visible_organization(session, identity, organization)
    if "audit:read" not in identity.scopes_in(None):
        require_scope(identity, "audit:read", org)
    return org

