"""Administration of organizations: list, create, edit, delete; members and their roles; namespaces and
their visibility; the organization's service tokens.

The rules are the API's (``/api/v1/organizations...``, ``/api/v1/tokens``): an organization another caller
does not belong to is "not found" (:func:`tfregistry.services.identity.visible_organization`), scopes are
checked with :func:`tfregistry.auth.require_scope`, and every change goes through the same service function
(so the same audit entry).  Memberships mapped from an identity provider are shown but not changed here:
the next sign-in would put them back.
"""

from __future__ import annotations

from typing import Any

from flask import flash, get_flashed_messages, redirect, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.models import ApiToken, Membership, Namespace, Organization, RoleTemplate, User
from tfregistry.services import NotFound, ServiceError
from tfregistry.services import identity as identity_svc
from tfregistry.services import tokens as token_svc
from tfregistry.web import current_registry
from tfregistry_webui.account_views import (
    DEFAULT_EXPIRY,
    EXPIRIES,
    GRACES,
    NO_STORE,
    _lifetime,
    _status,
    token_form_errors,
)
from tfregistry_webui.admin_views import ORG_ADMIN_SCOPES, administrator, field_errors
from tfregistry_webui.ui import bp, render_page

VISIBILITY_LABELS = {
    "inherit": "Inherit (follows the site's anonymous-read setting)",
    "public": "Public (anyone, even without signing in)",
    "authenticated": "Authenticated (anyone signed in, any organization)",
    "private": "Private (members of this organization)",
}
ORG_FIELDS = {"name": ("organization name", "already exists"), "display_name": ("display",)}
MEMBER_FIELDS = {"email": ("user", "e-mail", "member"), "role": ("role", "grant", "scope")}
NAMESPACE_FIELDS = {"visibility": ("visibility",), "namespace": ("namespace",)}
TOKEN_FIELDS = {"scopes": ("scope",), "token_namespace": ("namespace",), "name": ("a token needs a name",)}


def _org_admin(session: Session, org_name: str) -> tuple[auth.Identity, Organization]:
    """The caller and the organization, which they must be able to see (else 404, as the API answers)."""
    identity = administrator(session, ORG_ADMIN_SCOPES)
    return identity, identity_svc.visible_organization(session, identity, org_name)


def _actor(identity: auth.Identity, org: Organization | None = None) -> Any:
    return auth.request_actor(identity, org.id if org is not None else None)


# --- list and create ------------------------------------------------------------------------------


def _orgs_page(session: Session, identity: auth.Identity, status: int = 200, *,
               errors: dict[str, str] | None = None, values: dict[str, str] | None = None) -> Any:
    registry_wide = bool(identity.scopes_in(None))
    orgs = [o for o in session.scalars(select(Organization).order_by(Organization.name))
            if registry_wide or identity.scopes_in(o.id) & ORG_ADMIN_SCOPES]
    ids = [o.id for o in orgs]
    members = dict(session.execute(select(Membership.organization_id, func.count())
                                   .where(Membership.organization_id.in_(ids)).group_by(Membership.organization_id)).all())
    namespaces = dict(session.execute(select(Namespace.organization_id, func.count())
                                      .where(Namespace.organization_id.in_(ids)).group_by(Namespace.organization_id)).all())
    return render_page("admin/organizations.html", status, page_title="Organizations", orgs=orgs, members=members,
                       namespaces=namespaces, may_create="orgs:manage" in identity.scopes_in(None),
                       errors=errors or {}, values={"name": "", "display_name": "", **(values or {})},
                       notices=get_flashed_messages(), multi_tenant=auth.multi_tenant())


@bp.get("/admin/organizations")
def admin_organizations() -> Any:
    """The organizations the caller administers (every one for registry administrators)."""
    with current_registry().db.session() as session:
        return _orgs_page(session, administrator(session, ORG_ADMIN_SCOPES))


@bp.post("/admin/organizations")
def admin_organization_create() -> Any:
    """Create an organization (``orgs:manage`` registry-wide)."""
    form = request.form
    values = {"name": form.get("name", "").strip(), "display_name": form.get("display_name", "").strip()}
    with current_registry().db.session() as session:
        identity = administrator(session, ORG_ADMIN_SCOPES)
        auth.require_scope(identity, "orgs:manage")
        errors: dict[str, str] = {}
        status = 400
        if not identity_svc.ORG_NAME.match(values["name"]):
            errors["name"] = ("Lower-case letters, digits, '-' and '_', starting with a letter or digit, "
                              "at most 64 characters.")
        if len(values["display_name"]) > 200:
            errors["display_name"] = "At most 200 characters."
        if not errors:
            try:
                org = identity_svc.create_organization(session, _actor(identity), values["name"],
                                                       values["display_name"])
                session.commit()
            except ServiceError as exc:
                session.rollback()
                errors, status = field_errors(exc, ORG_FIELDS), exc.status
        if errors:
            return _orgs_page(session, identity, status, errors=errors, values=values)
        flash(f"Organization “{org.name}” is created.")
        return redirect(url_for("tfr_webui.admin_organization", org_name=org.name), 303)


# --- one organization -----------------------------------------------------------------------------


def _grantable_roles(session: Session, held: frozenset[str]) -> list[RoleTemplate]:
    """Role templates whose scopes the caller holds (the only ones they may give)."""
    return [r for r in session.scalars(select(RoleTemplate).order_by(RoleTemplate.builtin.desc(), RoleTemplate.name))
            if identity_svc.covers(held, r.scopes)]


def _org_page(session: Session, identity: auth.Identity, org: Organization, status: int = 200, *,
              errors: dict[str, dict[str, str]] | None = None, values: dict[str, dict[str, Any]] | None = None) -> Any:
    """The organization's page; ``errors``/``values`` per form (``edit``, ``member``, ``namespace``, ``token``)."""
    held = identity.scopes_in(org.id)
    members = list(session.scalars(select(Membership).join(User).where(Membership.organization_id == org.id)
                                   .order_by(User.email, User.id)))
    namespaces = list(session.scalars(select(Namespace).where(Namespace.organization_id == org.id)
                                      .order_by(Namespace.name)))
    tokens = [t for t in session.scalars(select(ApiToken).where(ApiToken.kind == "service",
                                                                ApiToken.organization_id == org.id)
                                         .order_by(ApiToken.id))
              if token_svc.may_manage(identity, t)] if "tokens:manage" in held else []
    may = {"edit": "orgs:manage" in held, "delete": "orgs:manage" in identity.scopes_in(None),
           "members": "users:manage" in held, "namespaces": "orgs:manage" in held, "tokens": "tokens:manage" in held}
    roles = _grantable_roles(session, held)
    errors = errors or {}
    values = values or {}
    defaults = {
        "edit": {"display_name": org.display_name},
        "member": {"email": "", "role": "viewer"},
        "namespace": {"namespace": "", "visibility": "private" if auth.multi_tenant() else "inherit"},
        "token": {"name": "", "token_namespace": "", "expires_in": DEFAULT_EXPIRY, "scopes": ["modules:read"]},
    }
    return render_page(
        "admin/organization.html", status, page_title=f"Organization {org.name}", org=org, members=members,
        namespaces=namespaces, tokens=tokens, statuses={t.id: _status(t) for t in tokens}, may=may,
        roles=roles, role_options={r.name: f"{r.name}: {', '.join(r.scopes)}" for r in roles},
        visibilities=VISIBILITY_LABELS,
        token_scopes=[s for s in identity_svc.SCOPES if s in held], scope_help=auth.ACTION_WORDS,
        expiries=EXPIRIES, graces=GRACES, multi_tenant=auth.multi_tenant(), notices=get_flashed_messages(),
        errors={form: errors.get(form, {}) for form in defaults},
        values={form: {**defaults[form], **values.get(form, {})} for form in defaults},
        is_default=org.name == identity_svc.DEFAULT_ORGANIZATION)


@bp.get("/admin/organizations/<org_name>")
def admin_organization(org_name: str) -> Any:
    """An organization: its details, members, namespaces and service tokens, with the forms the caller may use."""
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        return _org_page(session, identity, org)


def _form_failed(session: Session, identity: auth.Identity, org: Organization, form: str, exc: ServiceError,
                 fields: dict[str, tuple[str, ...]], values: dict[str, Any]) -> Any:
    session.rollback()
    return _org_page(session, identity, org, exc.status if exc.status != 404 else 400,
                     errors={form: field_errors(exc, fields)}, values={form: values})


@bp.post("/admin/organizations/<org_name>")
def admin_organization_edit(org_name: str) -> Any:
    """Change the display name (``orgs:manage`` in the organization)."""
    values = {"display_name": request.form.get("display_name", "").strip()}
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        auth.require_scope(identity, "orgs:manage", org)
        if len(values["display_name"]) > 200:
            return _org_page(session, identity, org, 400, errors={"edit": {"display_name": "At most 200 characters."}},
                             values={"edit": values})
        identity_svc.update_organization(session, _actor(identity, org), org, values["display_name"])
        session.commit()
        flash("The display name is saved.")
        return redirect(url_for("tfr_webui.admin_organization", org_name=org.name), 303)


@bp.route("/admin/organizations/<org_name>/delete", methods=["GET", "POST"])
def admin_organization_delete(org_name: str) -> Any:
    """Delete an organization (``orgs:manage`` registry-wide), after a confirmation page; refused, with the
    reason, while it owns namespaces."""
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        auth.require_scope(identity, "orgs:manage")
        if request.method == "GET":
            owned = list(session.scalars(select(Namespace.name).where(Namespace.organization_id == org.id)
                                         .order_by(Namespace.name)))
            return render_page("admin/organization_delete.html", page_title=f"Delete organization {org.name}",
                               org=org, namespaces=owned, is_default=org.name == identity_svc.DEFAULT_ORGANIZATION)
        identity_svc.delete_organization(session, _actor(identity, org), org)
        session.commit()
        flash(f"Organization “{org_name}” is deleted.")
        return redirect(url_for("tfr_webui.admin_organizations"), 303)


# --- members ------------------------------------------------------------------------------------------


def _member(session: Session, org: Organization, user_id: int) -> Membership:
    member = session.scalar(select(Membership).where(Membership.organization_id == org.id,
                                                     Membership.user_id == user_id))
    if member is None:
        raise NotFound(f"user {user_id} is not a member of {org.name}")
    return member


def _manual(member: Membership) -> None:
    if member.source != "manual":
        raise ServiceError(f"this membership comes from the identity provider ({member.source.removeprefix('idp:')}) "
                           "and follows its group claims at every sign-in; change the mapping there", status=409)


@bp.post("/admin/organizations/<org_name>/members")
def admin_member_add(org_name: str) -> Any:
    """Give a user, found by e-mail, a role in the organization (``users:manage`` there; only roles whose
    scopes the caller holds there)."""
    values = {"email": request.form.get("email", "").strip().lower(), "role": request.form.get("role", "")}
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        auth.require_scope(identity, "users:manage", org)
        user = session.scalar(select(User).where(User.email == values["email"])) if values["email"] else None
        if user is None:
            message = ("Enter the member's e-mail address." if not values["email"] else
                       f"No user has the e-mail address {values['email']}: people appear after their first sign-in, "
                       "or a site administrator adds them.")
            return _org_page(session, identity, org, 400, errors={"member": {"email": message}},
                             values={"member": values})
        current = identity_svc.membership(session, user, org)
        try:
            if current is not None:
                _manual(current)
            role = identity_svc.get_role(session, values["role"])
            identity_svc.grant_role(session, _actor(identity, org), identity.scopes_in(org.id), user, org, role)
            session.commit()
        except ServiceError as exc:
            return _form_failed(session, identity, org, "member", exc, MEMBER_FIELDS, values)
        flash(f"{user.email} is now {role.name} in {org.name}.")
        return redirect(url_for("tfr_webui.admin_organization", org_name=org.name) + "#members", 303)


@bp.post("/admin/organizations/<org_name>/members/<int:user_id>")
def admin_member_role(org_name: str, user_id: int) -> Any:
    """Change a member's role (``users:manage``; never to or from a role with scopes the caller lacks)."""
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        auth.require_scope(identity, "users:manage", org)
        member = _member(session, org, user_id)
        _manual(member)
        role = identity_svc.get_role(session, request.form.get("role", ""))
        identity_svc.grant_role(session, _actor(identity, org), identity.scopes_in(org.id), member.user, org, role)
        session.commit()
        flash(f"{member.user.email or member.user.name} is now {role.name} in {org.name}.")
        return redirect(url_for("tfr_webui.admin_organization", org_name=org.name) + "#members", 303)


@bp.route("/admin/organizations/<org_name>/members/<int:user_id>/remove", methods=["GET", "POST"])
def admin_member_remove(org_name: str, user_id: int) -> Any:
    """Remove a member, after a confirmation page."""
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        auth.require_scope(identity, "users:manage", org)
        member = _member(session, org, user_id)
        _manual(member)
        if request.method == "GET":
            return render_page("admin/member_remove.html", page_title=f"Remove a member of {org.name}", org=org,
                               member=member)
        label = member.user.email or member.user.name
        identity_svc.revoke_role(session, _actor(identity, org), identity.scopes_in(org.id), member)
        session.commit()
        flash(f"{label} is no longer a member of {org.name}.")
        return redirect(url_for("tfr_webui.admin_organization", org_name=org.name) + "#members", 303)


# --- namespaces ----------------------------------------------------------------------------------------


@bp.post("/admin/organizations/<org_name>/namespaces")
def admin_namespace_save(org_name: str) -> Any:
    """Create a namespace in the organization or change its visibility (``orgs:manage`` there; taking over
    another organization's namespace needs ``orgs:manage`` registry-wide)."""
    values = {"namespace": request.form.get("namespace", "").strip(), "visibility": request.form.get("visibility", "")}
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        auth.require_scope(identity, "orgs:manage", org)
        if not values["namespace"]:
            return _org_page(session, identity, org, 400, values={"namespace": values},
                             errors={"namespace": {"namespace": "Enter a namespace name."}})
        try:
            namespace = identity_svc.save_namespace(session, _actor(identity, org), org, values["namespace"],
                                                    values["visibility"] or None,
                                                    may_move="orgs:manage" in identity.scopes_in(None))
            session.commit()
        except ServiceError as exc:
            return _form_failed(session, identity, org, "namespace", exc, NAMESPACE_FIELDS, values)
        flash(f"Namespace “{namespace.name}” is {namespace.visibility}.")
        return redirect(url_for("tfr_webui.admin_organization", org_name=org.name) + "#namespaces", 303)


# --- service tokens ----------------------------------------------------------------------------------


def _org_token(session: Session, identity: auth.Identity, org: Organization, token_id: int) -> ApiToken:
    token = token_svc.manageable_token(session, identity, token_id)
    if token.kind != "service" or token.organization_id != org.id:
        raise NotFound(f"token {token_id} not found")
    return token


def _secret_page(org: Organization, token: ApiToken, secret: str, title: str) -> Any:
    """The secret, shown this once (the "My tokens" page's template, leading back to the organization)."""
    response = render_page("account/token_secret.html", page_title=title, title=title, token=token, secret=secret,
                           organization=org.name, back_url=url_for("tfr_webui.admin_organization",
                                                                   org_name=org.name) + "#tokens",
                           back_label=f"Back to organization {org.name}")
    response.headers.update(NO_STORE)
    return response


@bp.post("/admin/organizations/<org_name>/tokens")
def admin_token_create(org_name: str) -> Any:
    """Create a service token of the organization (``tokens:manage`` there; only scopes the caller holds there)."""
    form = request.form
    values = {"name": form.get("name", "").strip(), "token_namespace": form.get("token_namespace", "").strip(),
              "expires_in": form.get("expires_in", DEFAULT_EXPIRY), "scopes": form.getlist("scopes")}
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        auth.require_scope(identity, "tokens:manage", org)
        errors = token_form_errors(values, "token_namespace")
        if errors:
            return _org_page(session, identity, org, 400, errors={"token": errors}, values={"token": values})
        try:
            token, secret = token_svc.issue_token(
                session, auth.request_actor(identity), identity, name=values["name"], scopes=values["scopes"],
                kind="service", organization=org.name, namespace=values["token_namespace"] or None,
                expires_in=_lifetime(values["expires_in"]))
            session.commit()
        except ServiceError as exc:
            return _form_failed(session, identity, org, "token", exc, TOKEN_FIELDS, values)
        return _secret_page(org, token, secret, "Service token created")


@bp.post("/admin/organizations/<org_name>/tokens/<int:token_id>/rotate")
def admin_token_rotate(org_name: str, token_id: int) -> Any:
    """Give a service token a new secret (shown once); the old one works for the chosen grace period."""
    grace = request.form.get("grace", "")
    if grace not in GRACES:
        raise ServiceError("choose one of the offered grace periods")
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        token = _org_token(session, identity, org, token_id)
        secret = token_svc.rotate_token(session, auth.request_actor(identity), token, _lifetime(grace))
        session.commit()
        return _secret_page(org, token, secret, "Service token rotated")


@bp.route("/admin/organizations/<org_name>/tokens/<int:token_id>/revoke", methods=["GET", "POST"])
def admin_token_revoke(org_name: str, token_id: int) -> Any:
    """Revoke a service token after a confirmation page; it stops working on the next request."""
    with current_registry().db.session() as session:
        identity, org = _org_admin(session, org_name)
        token = _org_token(session, identity, org, token_id)
        back = url_for("tfr_webui.admin_organization", org_name=org.name) + "#tokens"
        if request.method == "GET":
            return render_page("account/revoke.html", page_title=f"Revoke token {token.name}", token=token,
                               signs_out=token.id == identity.token_id and identity.browser_session,
                               action=url_for("tfr_webui.admin_token_revoke", org_name=org.name, token_id=token.id),
                               cancel_url=back)
        token_svc.revoke_token(session, auth.request_actor(identity), token)
        session.commit()
        flash(f"Token “{token.name}” is revoked.")
        return redirect(back, 303)
