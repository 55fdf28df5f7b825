"""People, organizations, role templates and memberships, and the scope vocabulary they share."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry.events import emit
from tfregistry.models import Membership, Namespace, Organization, RoleTemplate, User, UserIdentity, utcnow
from tfregistry.services import Conflict, Forbidden, NotFound, ServiceError
from tfregistry.services.audit import Actor, record

if TYPE_CHECKING:
    from tfregistry.auth import Identity
    from tfregistry.interfaces import ExternalIdentity

#: Every scope, in the order the docs list them.  ``admin`` implies all others.
SCOPES = (
    "modules:read", "modules:write", "providers:read", "providers:write", "mirrors:read", "mirrors:manage",
    "keys:manage", "tokens:manage", "users:manage", "orgs:manage", "audit:read", "admin",
)
#: Scopes a scope implies besides itself (write implies read).
IMPLIES = {"modules:write": ("modules:read",), "providers:write": ("providers:read",),
           "mirrors:manage": ("mirrors:read",)}
#: The token scopes of earlier releases (``tfr token create --scope publish``) and what they mean.
LEGACY_SCOPES = {
    "read": ("modules:read", "providers:read", "mirrors:read"),
    "publish": ("modules:write", "providers:write", "keys:manage", "mirrors:read"),
    "admin": ("admin",),
}
#: Built-in role templates: name -> (description, scopes).  Admin > Mirror manager > Publisher > Viewer.
BUILTIN_ROLES = {
    "admin": ("Everything in the organization: members, tokens, audit, deletions.", ("admin",)),
    "mirror-manager": ("A publisher who also manages and approves provider mirrors.",
                       ("modules:write", "providers:write", "keys:manage", "mirrors:manage")),
    "publisher": ("Publishes modules and providers and manages signing keys.",
                  ("modules:write", "providers:write", "keys:manage", "mirrors:read")),
    "viewer": ("Reads modules, providers and mirror configurations.",
               ("modules:read", "providers:read", "mirrors:read")),
}
#: The implicit organization of single-tenant sites (and of namespaces created before organizations existed).
DEFAULT_ORGANIZATION = "default"
ORG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ROLE_NAME = ORG_NAME
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
#: A namespace's visibility (see :class:`tfregistry.models.Namespace`).
VISIBILITIES = ("inherit", "public", "authenticated", "private")


def seed(conn: sa.Connection) -> None:
    """Insert the built-in role templates and the default organization where missing, and put
    namespaces without an organization into it (migration 0005 calls this)."""
    now = datetime.now(UTC)
    roles = sa.table("role_templates", sa.column("name"), sa.column("description"), sa.column("scopes", sa.JSON),
                     sa.column("builtin"), sa.column("created_at", sa.DateTime(timezone=True)))
    present = set(conn.execute(sa.select(roles.c.name)).scalars())
    for name, (description, scopes) in BUILTIN_ROLES.items():
        if name not in present:
            conn.execute(roles.insert().values(name=name, description=description, scopes=list(scopes),
                                               builtin=True, created_at=now))
    orgs = sa.table("organizations", sa.column("id"), sa.column("name"), sa.column("display_name"),
                    sa.column("created_at", sa.DateTime(timezone=True)))
    org_id = conn.execute(sa.select(orgs.c.id).where(orgs.c.name == DEFAULT_ORGANIZATION)).scalar()
    if org_id is None:
        conn.execute(orgs.insert().values(name=DEFAULT_ORGANIZATION, display_name="Default organization",
                                          created_at=now))
        org_id = conn.execute(sa.select(orgs.c.id).where(orgs.c.name == DEFAULT_ORGANIZATION)).scalar()
    namespaces = sa.table("namespaces", sa.column("organization_id"))
    conn.execute(namespaces.update().where(namespaces.c.organization_id.is_(None)).values(organization_id=org_id))


def expand(scopes: Iterable[str]) -> frozenset[str]:
    """``scopes`` plus everything they imply."""
    result: set[str] = set()
    for scope in scopes:
        if scope == "admin":
            return frozenset(SCOPES)
        result.add(scope)
        result.update(IMPLIES.get(scope, ()))
    return frozenset(result)


def normalise_scopes(values: Iterable[str]) -> list[str]:
    """Validated scope names (legacy ``read``/``publish``/``admin`` accepted), sorted, without duplicates."""
    result: set[str] = set()
    for value in values:
        for part in str(value).replace(",", " ").split():
            if part in LEGACY_SCOPES:
                result.update(LEGACY_SCOPES[part])
            elif part in SCOPES:
                result.add(part)
            else:
                raise ServiceError(f"unknown scope {part!r}; scopes are: {', '.join(SCOPES)}")
    if not result:
        raise ServiceError("at least one scope is needed")
    return sorted(result, key=SCOPES.index)


def covers(held: Iterable[str], wanted: Iterable[str]) -> bool:
    """Whether holding ``held`` includes everything ``wanted`` grants."""
    return expand(wanted) <= expand(held)


# --- organizations ------------------------------------------------------------------------


def default_organization(session: Session) -> Organization:
    org = session.scalar(select(Organization).where(Organization.name == DEFAULT_ORGANIZATION))
    if org is None:  # removed by hand: put it back rather than fail every request
        org = Organization(name=DEFAULT_ORGANIZATION, display_name="Default organization")
        session.add(org)
        session.flush()
    return org


def get_organization(session: Session, name: str) -> Organization:
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        raise NotFound(f"organization {name!r} not found")
    return org


def get_organization_by_id(session: Session, org_id: int | None) -> Organization | None:
    return session.get(Organization, org_id) if org_id is not None else None


def create_organization(session: Session, actor: Actor, name: str, display_name: str = "") -> Organization:
    if not ORG_NAME.match(name):
        raise ServiceError(f"invalid organization name {name!r}: lower-case letters, digits, '-' and '_', "
                           "starting with a letter or digit, at most 64 characters")
    if session.scalar(select(Organization.id).where(Organization.name == name)) is not None:
        raise Conflict(f"organization {name!r} already exists")
    org = Organization(name=name, display_name=display_name.strip() or name)
    session.add(org)
    session.flush()
    record(session, actor, "org.create", f"org:{name}", display_name=org.display_name)
    return org


def delete_organization(session: Session, actor: Actor, org: Organization) -> None:
    """Delete an organization that owns no namespaces; its service tokens are revoked."""
    from tfregistry.models import ApiToken

    if org.name == DEFAULT_ORGANIZATION:
        raise ServiceError("the default organization cannot be deleted")
    if organization_has_namespaces(session, org):
        raise Conflict(f"organization {org.name!r} still owns namespaces; move or delete them first")
    for token in session.scalars(select(ApiToken).where(ApiToken.organization_id == org.id)):
        token.revoked_at = token.revoked_at or utcnow()
        token.organization_id = None
    record(session, actor, "org.delete", f"org:{org.name}")
    session.delete(org)


def update_organization(session: Session, actor: Actor, org: Organization, display_name: str) -> Organization:
    """Change an organization's display name (empty: its name)."""
    org.display_name = display_name.strip() or org.name
    record(session, actor, "org.update", f"org:{org.name}", display_name=org.display_name)
    return org


def organization_has_namespaces(session: Session, org: Organization) -> bool:
    """Whether ``org`` owns a namespace (and so cannot be deleted)."""
    return session.scalar(select(Namespace.id).where(Namespace.organization_id == org.id).limit(1)) is not None


def save_namespace(session: Session, actor: Actor, org: Organization, name: str, visibility: str | None,
                   *, may_move: bool = False) -> Namespace:
    """Create namespace ``name`` in ``org``, or set its visibility (``None``: unchanged).  A namespace of
    another organization is taken over only with ``may_move`` (``orgs:manage`` registry-wide)."""
    from tfregistry.services.modules import NAME_RE, get_or_create_namespace

    if not NAME_RE.match(name):
        raise ServiceError(f"invalid namespace {name!r}: letters, digits, '-' and '_', at most 64 characters")
    if visibility is not None and visibility not in VISIBILITIES:
        raise ServiceError(f"visibility must be one of {', '.join(VISIBILITIES)}")
    existing = session.scalar(select(Namespace).where(Namespace.name == name))
    if existing is not None and existing.organization_id != org.id:
        if not may_move:
            raise Conflict(f"namespace {name!r} is already taken")
        existing.organization_id = org.id
        record(session, actor, "namespace.move", name, organization=org.name)
    namespace = existing or get_or_create_namespace(session, name, org.id)
    if visibility:
        namespace.visibility = visibility
    record(session, actor, "namespace.save", namespace.name, visibility=namespace.visibility)
    return namespace


def visible_organization(session: Session, identity: Identity, name: str) -> Organization:
    """The organization, if ``identity`` belongs to it or administers the registry; else "not found"
    (never "forbidden": other organizations' names are not disclosed)."""
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None or not (identity.scopes_in(org.id) or identity.scopes_in(None)):
        raise NotFound(f"organization {name!r} not found")
    return org


# --- role templates ---------------------------------------------------------------------------


def get_role(session: Session, name: str) -> RoleTemplate:
    role = session.scalar(select(RoleTemplate).where(RoleTemplate.name == name))
    if role is None:
        raise NotFound(f"role template {name!r} not found")
    return role


def save_role(session: Session, actor: Actor, name: str, scopes: Iterable[str], description: str = "",
              role: RoleTemplate | None = None) -> RoleTemplate:
    """Create (``role`` None) or change a custom role template."""
    if role is not None and role.builtin:
        raise ServiceError(f"the built-in role template {role.name!r} cannot be changed; define a custom one")
    if role is None:
        if not ROLE_NAME.match(name):
            raise ServiceError(f"invalid role template name {name!r}")
        if session.scalar(select(RoleTemplate.id).where(RoleTemplate.name == name)) is not None:
            raise Conflict(f"role template {name!r} already exists")
        role = RoleTemplate(name=name, builtin=False)
        session.add(role)
    role.scopes = normalise_scopes(scopes)
    role.description = description
    session.flush()
    record(session, actor, "role.save", f"role:{role.name}", scopes=role.scopes)
    return role


def delete_role(session: Session, actor: Actor, role: RoleTemplate) -> None:
    if role.builtin:
        raise ServiceError(f"the built-in role template {role.name!r} cannot be deleted")
    if session.scalar(select(Membership.id).where(Membership.role_id == role.id).limit(1)) is not None:
        raise Conflict(f"role template {role.name!r} is still given to members")
    record(session, actor, "role.delete", f"role:{role.name}")
    session.delete(role)


# --- users and memberships ----------------------------------------------------------------------


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def create_user(session: Session, actor: Actor, email: str | None, name: str = "",
                site_admin: bool = False) -> User:
    if email is not None:
        email = email.strip().lower()
        if not EMAIL.match(email):
            raise ServiceError(f"invalid e-mail address {email!r}")
        if session.scalar(select(User.id).where(User.email == email)) is not None:
            raise Conflict(f"a user with e-mail {email!r} already exists")
    user = User(email=email, name=name.strip(), site_admin=site_admin)
    session.add(user)
    session.flush()
    record(session, actor, "user.create", f"user:{user.id}", email=email, site_admin=site_admin or None)
    return user


def disable_user(session: Session, actor: Actor, user: User, disabled: bool = True) -> None:
    """Disable (or re-enable) a user: a disabled user's sessions and tokens stop working at once."""
    if user.disabled != disabled:
        user.session_epoch = (user.session_epoch or 0) + 1  # sessions from before never come back
    user.disabled = disabled
    record(session, actor, "user.disable" if disabled else "user.enable", f"user:{user.id}")
    if disabled:
        emit(session, "user.disabled", actor=actor,
             data={"user_id": user.id, "email": user.email, "name": user.name})


def set_site_admin(session: Session, actor: Actor, user: User, site_admin: bool) -> None:
    """Make ``user`` a site administrator (every scope everywhere), or no longer one."""
    if user.site_admin != site_admin:
        user.site_admin = site_admin
        record(session, actor, "user.site_admin", f"user:{user.id}", site_admin=site_admin)


def membership(session: Session, user: User, org: Organization) -> Membership | None:
    return session.scalar(select(Membership).where(Membership.user_id == user.id,
                                                   Membership.organization_id == org.id))


def set_membership(session: Session, actor: Actor, user: User, org: Organization, role: RoleTemplate,
                   source: str = "manual") -> Membership:
    """Give ``user`` ``role`` in ``org`` (adding or changing the membership)."""
    member = membership(session, user, org)
    if member is None:
        member = Membership(user=user, organization=org, role=role, source=source)
        session.add(member)
    elif member.role_id == role.id and member.source == source:
        return member
    else:
        member.role, member.source = role, source
    session.flush()
    record(session, actor, "membership.set", f"org:{org.name}", user=user.id, role=role.name, source=source)
    return member


def grant_role(session: Session, actor: Actor, held: Iterable[str], user: User, org: Organization,
               role: RoleTemplate) -> Membership:
    """Give ``user`` ``role`` in ``org`` on behalf of a caller holding ``held`` there: neither the new role
    nor the one it replaces may carry a scope the caller lacks (no privilege escalation)."""
    check_grantable(held, role.scopes)
    current = membership(session, user, org)
    if current is not None:
        check_grantable(held, current.role.scopes)
    return set_membership(session, actor, user, org, role)


def revoke_role(session: Session, actor: Actor, held: Iterable[str], member: Membership) -> None:
    """End a membership on behalf of a caller holding ``held`` in its organization (only roles whose
    scopes the caller holds)."""
    check_grantable(held, member.role.scopes)
    remove_membership(session, actor, member)


def remove_membership(session: Session, actor: Actor, member: Membership) -> None:
    record(session, actor, "membership.remove", f"org:{member.organization.name}", user=member.user_id,
           role=member.role.name)
    session.delete(member)


def sign_in(session: Session, actor: Actor, external: ExternalIdentity) -> User:
    """Find or provision the user an identity provider vouched for, and sync its managed memberships.

    Users are keyed by provider + subject only; an e-mail address is never used to join an
    existing account (an identity provider that lets people choose their address would
    otherwise hand out other people's accounts).
    """
    from tfregistry.interfaces import LoginError

    link = session.scalar(select(UserIdentity).where(UserIdentity.provider == external.provider,
                                                     UserIdentity.subject == external.subject))
    email = (external.email or "").strip().lower() or None
    if link is None:
        if email and session.scalar(select(User.id).where(User.email == email)) is not None:
            raise LoginError(f"the e-mail address {email} belongs to another account of this registry; "
                             "ask an administrator to link your sign-in to it")
        user = create_user(session, actor, email, external.name or "")
        session.add(UserIdentity(user_id=user.id, provider=external.provider, subject=external.subject))
    else:
        user = get_user(session, link.user_id)
        if user.disabled:
            raise LoginError("this account is disabled; ask a registry administrator")
        if email and email != user.email and session.scalar(select(User.id).where(User.email == email)) is None:
            user.email = email
        if external.name:
            user.name = external.name
    user.last_login_at = utcnow()
    if external.grants is not None:
        _sync_grants(session, actor, user, external)
    record(session, actor, "user.login", f"user:{user.id}", provider=external.provider)
    return user


def _sync_grants(session: Session, actor: Actor, user: User, external: ExternalIdentity) -> None:
    from tfregistry.interfaces import LoginError

    source = f"idp:{external.provider}"
    wanted: dict[str, str] = {}
    for org_name, role_name in external.grants or ():
        if session.scalar(select(RoleTemplate.id).where(RoleTemplate.name == role_name)) is None:
            raise LoginError(f"the {external.provider} role mapping names role template {role_name!r}, which does "
                             "not exist; ask a registry administrator to fix the mapping")
        # two mapped groups for one organization: the role with more scopes wins
        if org_name in wanted and covers(get_role(session, wanted[org_name]).scopes,
                                         get_role(session, role_name).scopes):
            continue
        wanted[org_name] = role_name
    for member in list(user.memberships):
        if member.source == source and member.organization.name not in wanted:
            remove_membership(session, actor, member)
    for org_name, role_name in wanted.items():
        org = session.scalar(select(Organization).where(Organization.name == org_name))
        if org is None:
            org = create_organization(session, actor, org_name)
        member = membership(session, user, org)
        if member is not None and member.source == "manual":
            continue  # an administrator's decision is not overridden by claims
        set_membership(session, actor, user, org, get_role(session, role_name), source=source)


def check_grantable(held: Iterable[str], role_scopes: Iterable[str]) -> None:
    """Refuse to hand out scopes the granting caller does not hold (no privilege escalation)."""
    missing = sorted(expand(role_scopes) - expand(held), key=SCOPES.index)
    if missing:
        raise Forbidden(f"you cannot grant scopes you do not hold: {', '.join(missing)}")
