"""``/api/v1``: the caller (``me``), users, organizations, memberships, role templates, tokens, audit log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import MAX_ID, api_error, flag, module_name, pattern, text
from tfregistry.auth import Identity
from tfregistry.models import ApiToken, Membership, Namespace, Organization, RoleTemplate, User
from tfregistry.protocol import register_error_handlers
from tfregistry.services import NotFound, ServiceError
from tfregistry.services import identity as svc
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import AuditFilter, entries_page, entry_json, record
from tfregistry.web import current_registry

blp = Blueprint("api_identity", __name__, url_prefix="/api/v1",
                description="Users, organizations, roles, tokens, audit")
register_error_handlers(blp, api_error)


@contextmanager
def _session() -> Iterator[tuple[Session, Identity]]:
    """A database session and the authenticated caller (anonymous callers get 401)."""
    with current_registry().db.session() as session:
        identity = auth.current_identity(session)
        if identity.anonymous:
            raise auth.Unauthenticated("authentication required: send a registry token or sign in")
        yield session, identity


def _need(identity: Identity, scope: str, org: Organization | None = None) -> None:
    auth.require_scope(identity, scope, org)


def _actor(identity: Identity, org: Organization | None = None) -> Any:
    return auth.request_actor(identity, org.id if org else None)


def _visible_org(session: Session, identity: Identity, name: str) -> Organization:
    """The organization, if the caller belongs to it or administers the registry; else 404 (never 403:
    other organizations' names are not disclosed)."""
    return svc.visible_organization(session, identity, name)


def _parse_lifetime(value: Any) -> timedelta | None:
    from tfregistry.settings import parse_duration

    if value in (None, "", 0):
        return None
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:
        raise ServiceError(f"expires_in: {exc}") from None


# --- me ------------------------------------------------------------------------------------------


def _user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "name": user.name, "disabled": user.disabled,
            "site_admin": user.site_admin, "created_at": user.created_at, "last_login_at": user.last_login_at,
            "memberships": [{"organization": m.organization.name, "role": m.role.name, "source": m.source}
                            for m in user.memberships]}


@blp.route("/me")
class Me(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """Who the caller is: kind, user, organizations with roles and effective scopes."""
        with _session() as (session, identity):
            user = session.get(User, identity.user_id) if identity.user_id else None
            orgs = session.scalars(select(Organization).order_by(Organization.name)).all()
            return {
                "kind": identity.kind,
                "name": identity.name,
                "user": _user_json(user) if user else None,
                "token": {"id": identity.token_id, "namespace": identity.namespace} if identity.token_id else None,
                "registry_scopes": sorted(identity.scopes_in(None), key=svc.SCOPES.index),
                "organizations": [{"name": o.name, "scopes": sorted(identity.scopes_in(o.id), key=svc.SCOPES.index)}
                                  for o in orgs if identity.scopes_in(o.id)],
            }


# --- users ----------------------------------------------------------------------------------------


class UserArgs(ma.Schema):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=254))
    name = text(200, load_default="")
    site_admin = flag(load_default=False)


class UserPatch(ma.Schema):
    name = text(200)
    disabled = flag()
    site_admin = flag()


@blp.route("/users")
class Users(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """List users (``users:manage`` registry-wide)."""
        with _session() as (session, identity):
            _need(identity, "users:manage")
            return [_user_json(u) for u in session.scalars(select(User).order_by(User.id))]

    @blp.arguments(UserArgs)
    @blp.response(201)
    def post(self, args: dict[str, Any]) -> Any:
        """Add a user before their first sign-in (``users:manage``; ``admin`` to make a site admin)."""
        with _session() as (session, identity):
            _need(identity, "admin" if args["site_admin"] else "users:manage")
            user = svc.create_user(session, _actor(identity), args["email"], args["name"], args["site_admin"])
            session.commit()
            return _user_json(user)


@blp.route("/users/<id:user_id>")
class UserResource(MethodView):
    @blp.response(200)
    def get(self, user_id: int) -> Any:
        with _session() as (session, identity):
            if identity.user_id != user_id:
                _need(identity, "users:manage")
            return _user_json(svc.get_user(session, user_id))

    @blp.arguments(UserPatch)
    @blp.response(200)
    def patch(self, args: dict[str, Any], user_id: int) -> Any:
        """Rename, disable/enable (ends sessions and stops tokens at once) or change site admin."""
        with _session() as (session, identity):
            _need(identity, "admin" if "site_admin" in args else "users:manage")
            user = svc.get_user(session, user_id)
            if "name" in args:
                user.name = args["name"]
            if "disabled" in args and args["disabled"] != user.disabled:
                svc.disable_user(session, _actor(identity), user, args["disabled"])
            if "site_admin" in args:
                svc.set_site_admin(session, _actor(identity), user, args["site_admin"])
            session.commit()
            return _user_json(user)

    @blp.response(204)
    def delete(self, user_id: int) -> None:
        """Delete a user: memberships go, tokens are revoked."""
        with _session() as (session, identity):
            _need(identity, "users:manage")
            user = svc.get_user(session, user_id)
            for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)):
                token_svc.revoke_token(session, _actor(identity), token)
                token.user_id = None
            record(session, _actor(identity), "user.delete", f"user:{user.id}", email=user.email)
            session.delete(user)
            session.commit()


# --- organizations and memberships ---------------------------------------------------------------------


class OrgArgs(ma.Schema):
    name = ma.fields.String(required=True, validate=[ma.validate.Length(1, 64),
                                                         pattern(r"^[a-z0-9][a-z0-9_-]*$")],
                            metadata={"example": "acme"})
    display_name = text(200, load_default="")


class OrgPatch(ma.Schema):
    display_name = text(200, required=True)


class MemberArgs(ma.Schema):
    role = text(64, 1, required=True, metadata={"description": "admin, mirror-manager, publisher, viewer "
                                                     "or a custom role template"})


class NamespaceArgs(ma.Schema):
    name = module_name("namespace", required=True, metadata={"example": "acme"})
    visibility = ma.fields.String(load_default=None, validate=ma.validate.OneOf(svc.VISIBILITIES))


def _org_json(org: Organization) -> dict[str, Any]:
    return {"name": org.name, "display_name": org.display_name, "created_at": org.created_at}


@blp.route("/organizations")
class Organizations(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """Organizations the caller belongs to (all of them for registry administrators)."""
        with _session() as (session, identity):
            orgs = session.scalars(select(Organization).order_by(Organization.name))
            return [_org_json(o) for o in orgs if identity.scopes_in(o.id) or identity.scopes_in(None)]

    @blp.arguments(OrgArgs)
    @blp.response(201)
    def post(self, args: dict[str, Any]) -> Any:
        """Create an organization (``orgs:manage`` registry-wide)."""
        with _session() as (session, identity):
            _need(identity, "orgs:manage")
            org = svc.create_organization(session, _actor(identity), args["name"], args["display_name"])
            session.commit()
            return _org_json(org)


@blp.route("/organizations/<org_name>")
class OrganizationResource(MethodView):
    @blp.response(200)
    def get(self, org_name: str) -> Any:
        with _session() as (session, identity):
            return _org_json(_visible_org(session, identity, org_name))

    @blp.arguments(OrgPatch)
    @blp.response(200)
    def patch(self, args: dict[str, Any], org_name: str) -> Any:
        with _session() as (session, identity):
            org = _visible_org(session, identity, org_name)
            _need(identity, "orgs:manage", org)
            svc.update_organization(session, _actor(identity, org), org, args["display_name"])
            session.commit()
            return _org_json(org)

    @blp.response(204)
    def delete(self, org_name: str) -> None:
        """Delete an organization that owns no namespaces (``orgs:manage`` registry-wide)."""
        with _session() as (session, identity):
            org = _visible_org(session, identity, org_name)
            _need(identity, "orgs:manage")
            svc.delete_organization(session, _actor(identity, org), org)
            session.commit()


@blp.route("/organizations/<org_name>/members")
class Members(MethodView):
    @blp.response(200)
    def get(self, org_name: str) -> Any:
        """Members and their roles (any member may look)."""
        with _session() as (session, identity):
            org = _visible_org(session, identity, org_name)
            members = session.scalars(select(Membership).where(Membership.organization_id == org.id))
            return [{"user": m.user_id, "email": m.user.email, "name": m.user.name, "role": m.role.name,
                     "source": m.source} for m in members]


def _member_user(session: Session, who: str) -> User:
    user = session.get(User, int(who)) if who.isdigit() else session.scalar(
        select(User).where(User.email == who.lower()))
    if user is None:
        raise NotFound(f"user {who!r} not found")
    return user


@blp.route("/organizations/<org_name>/members/<who>")
class Member(MethodView):
    @blp.arguments(MemberArgs)
    @blp.response(200)
    def put(self, args: dict[str, Any], org_name: str, who: str) -> Any:
        """Give a user (id or e-mail) a role (``users:manage`` in the organization; only roles whose
        scopes the caller holds there)."""
        with _session() as (session, identity):
            org = _visible_org(session, identity, org_name)
            _need(identity, "users:manage", org)
            role = svc.get_role(session, args["role"])
            user = _member_user(session, who)
            svc.grant_role(session, _actor(identity, org), identity.scopes_in(org.id), user, org, role)
            session.commit()
            return {"user": user.id, "organization": org.name, "role": role.name}

    @blp.response(204)
    def delete(self, org_name: str, who: str) -> None:
        with _session() as (session, identity):
            org = _visible_org(session, identity, org_name)
            _need(identity, "users:manage", org)
            member = svc.membership(session, _member_user(session, who), org)
            if member is None:
                raise NotFound(f"{who} is not a member of {org.name}")
            svc.revoke_role(session, _actor(identity, org), identity.scopes_in(org.id), member)
            session.commit()


@blp.route("/organizations/<org_name>/namespaces")
class OrgNamespaces(MethodView):
    @blp.response(200)
    def get(self, org_name: str) -> Any:
        with _session() as (session, identity):
            org = _visible_org(session, identity, org_name)
            return [{"name": n.name, "visibility": n.visibility} for n in session.scalars(
                select(Namespace).where(Namespace.organization_id == org.id).order_by(Namespace.name))]

    @blp.arguments(NamespaceArgs)
    @blp.response(201)
    def post(self, args: dict[str, Any], org_name: str) -> Any:
        """Create a namespace in the organization, or set its visibility (``orgs:manage`` there).
        Moving another organization's namespace needs ``orgs:manage`` registry-wide."""
        with _session() as (session, identity):
            org = _visible_org(session, identity, org_name)
            _need(identity, "orgs:manage", org)
            ns = svc.save_namespace(session, _actor(identity, org), org, args["name"], args["visibility"],
                                    may_move="orgs:manage" in identity.scopes_in(None))
            session.commit()
            return {"name": ns.name, "visibility": ns.visibility, "organization": org.name}


#: Scope names, and the legacy shorthands ``read``/``publish`` (services.identity.normalise_scopes).
SCOPE_NAMES = (*svc.SCOPES, "read", "publish")


# --- role templates -------------------------------------------------------------------------------------


class RoleArgs(ma.Schema):
    name = ma.fields.String(required=True, validate=[ma.validate.Length(1, 64), pattern(r"^[a-z0-9][a-z0-9_-]*$")])
    scopes = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(SCOPE_NAMES)), required=True,
                            validate=ma.validate.Length(1, 64))
    description = text(load_default="")


def _role_json(role: RoleTemplate) -> dict[str, Any]:
    return {"name": role.name, "description": role.description, "scopes": role.scopes, "builtin": role.builtin}


@blp.route("/roles")
class Roles(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """Role templates and their scopes."""
        with _session() as (session, _):
            return [_role_json(r) for r in session.scalars(select(RoleTemplate).order_by(RoleTemplate.id))]

    @blp.arguments(RoleArgs)
    @blp.response(201)
    def post(self, args: dict[str, Any]) -> Any:
        """Define a custom role template from the scope list (``admin`` registry-wide)."""
        with _session() as (session, identity):
            _need(identity, "admin")
            role = svc.save_role(session, _actor(identity), args["name"], args["scopes"], args["description"])
            session.commit()
            return _role_json(role)


@blp.route("/roles/<name>")
class Role(MethodView):
    @blp.arguments(RoleArgs)
    @blp.response(200)
    def put(self, args: dict[str, Any], name: str) -> Any:
        with _session() as (session, identity):
            _need(identity, "admin")
            role = svc.save_role(session, _actor(identity), name, args["scopes"], args["description"],
                                 role=svc.get_role(session, name))
            session.commit()
            return _role_json(role)

    @blp.response(204)
    def delete(self, name: str) -> None:
        with _session() as (session, identity):
            _need(identity, "admin")
            svc.delete_role(session, _actor(identity), svc.get_role(session, name))
            session.commit()


# --- tokens ------------------------------------------------------------------------------------------


class TokenArgs(ma.Schema):
    name = text(200, 1, required=True)
    kind = ma.fields.String(load_default="personal", validate=ma.validate.OneOf(["personal", "service", "site"]))
    organization = text(64, load_default=None, metadata={"description": "For service tokens"})
    scopes = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(SCOPE_NAMES)), required=True,
                            validate=ma.validate.Length(1, 64), metadata={
                                "description": "Scopes, or the shorthands read, publish, admin"})
    namespace = text(64, load_default=None)
    expires_in = ma.fields.Raw(load_default=None, metadata={"description": "Seconds, or e.g. '30d', '12h'"})


class RotateArgs(ma.Schema):
    grace = ma.fields.Raw(load_default=None, metadata={"description": "How long the old secret keeps working: "
                                                       "seconds or e.g. '1h' (default: it stops at once)"})


def _token_json(token: ApiToken, session: Session, secret: str | None = None) -> dict[str, Any]:
    org = session.get(Organization, token.organization_id) if token.organization_id else None
    data = {"id": token.id, "name": token.name, "kind": token.kind, "prefix": token.display_prefix,
            "scopes": token.scopes, "namespace": token.namespace, "user": token.user_id,
            "organization": org.name if org else None, "created_at": token.created_at,
            "expires_at": token.expires_at, "last_used_at": token.last_used_at, "last_used_ip": token.last_used_ip,
            "rotated_at": token.rotated_at, "previous_secret_expires_at": token.previous_expires_at,
            "revoked_at": token.revoked_at}
    if secret is not None:
        data["secret"] = secret
    return data


@blp.route("/tokens")
class Tokens(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """Tokens the caller may manage: their own personal tokens, service tokens of organizations where they
        hold ``tokens:manage``, every token for registry administrators.  Never secrets."""
        with _session() as (session, identity):
            return [_token_json(t, session) for t in token_svc.manageable_tokens(session, identity)]

    @blp.arguments(TokenArgs)
    @blp.response(201)
    def post(self, args: dict[str, Any]) -> Any:
        """Create a token; the response holds the secret, shown this once.  A personal token is never wider
        than its user's roles; a service token's scopes must be held by its creator in that organization."""
        with _session() as (session, identity):
            token, secret = token_svc.issue_token(
                session, _actor(identity), identity, name=args["name"], scopes=args["scopes"],
                kind=args["kind"], organization=args["organization"], namespace=args["namespace"],
                expires_in=_parse_lifetime(args["expires_in"]))
            session.commit()
            return _token_json(token, session, secret)


@blp.route("/tokens/<id:token_id>")
class TokenResource(MethodView):
    @blp.response(200)
    def get(self, token_id: int) -> Any:
        with _session() as (session, identity):
            return _token_json(token_svc.manageable_token(session, identity, token_id), session)

    @blp.response(204)
    def delete(self, token_id: int) -> None:
        """Revoke a token; it stops working on the next request."""
        with _session() as (session, identity):
            token = token_svc.manageable_token(session, identity, token_id)
            token_svc.revoke_token(session, _actor(identity), token)
            session.commit()


@blp.route("/tokens/<id:token_id>/rotate")
class TokenRotate(MethodView):
    @blp.arguments(RotateArgs)
    @blp.response(200)
    def post(self, args: dict[str, Any], token_id: int) -> Any:
        """Issue a new secret (shown once); with ``grace`` the old one keeps working that long."""
        with _session() as (session, identity):
            token = token_svc.manageable_token(session, identity, token_id)
            secret = token_svc.rotate_token(session, _actor(identity), token, _parse_lifetime(args["grace"]))
            session.commit()
            return _token_json(token, session, secret)


# --- audit log ---------------------------------------------------------------------------------------


class AuditArgs(ma.Schema):
    organization = text(64, load_default=None)
    actor = text(255, load_default=None)
    action = text(255, load_default=None, metadata={"description": "Exact action, or a prefix ending in "
                                                           "'.' (e.g. 'token.')"})
    since = ma.fields.AwareDateTime(load_default=None)
    until = ma.fields.AwareDateTime(load_default=None)
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=MAX_ID))
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))


@blp.route("/audit")
class Audit(MethodView):
    @blp.arguments(AuditArgs, location="query")
    @blp.response(200)
    def get(self, args: dict[str, Any]) -> Any:
        """Audit entries, newest first, filtered by organization, actor, action and time range.  ``audit:read``
        registry-wide sees everything; in an organization, only that organization's entries."""
        with _session() as (session, identity):
            org = auth.require_audit_read(session, identity, args["organization"])
            filters = AuditFilter(org.id if org else None, args["actor"], args["action"], args["since"],
                                  args["until"])
            rows, more = entries_page(session, filters, args["offset"], args["limit"])
            entries = [entry_json(e) for e in rows]
            meta: dict[str, Any] = {"offset": args["offset"], "limit": args["limit"]}
            if more:
                meta["next_offset"] = args["offset"] + args["limit"]
            return {"entries": entries, "meta": meta}

