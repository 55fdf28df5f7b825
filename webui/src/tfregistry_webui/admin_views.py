"""Administration (issue 13): the admin layout's sections, the dashboard, users and role templates.

Organizations (members, namespaces, service tokens) are in :mod:`tfregistry_webui.admin_orgs_views`;
signing keys and mirrors, jobs, the audit log and the system page are other modules' (``/admin/keys``,
``/admin/mirrors``, ``/admin/jobs``, ``/admin/audit``, ``/admin/system``).  Every page checks the same
scopes as the API (:func:`tfregistry.auth.require_scope`) and changes things only through the services
the API calls, so the audit entries are the same.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import flash, get_flashed_messages, redirect, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.models import (
    ApiToken,
    DownloadEvent,
    GpgKey,
    Membership,
    MirrorConfig,
    MirrorRun,
    Module,
    ModuleVersion,
    Organization,
    Provider,
    ProviderVersion,
    RoleTemplate,
    User,
    UserIdentity,
    utcnow,
)
from tfregistry.services import ServiceError
from tfregistry.services import identity as identity_svc
from tfregistry.web import current_registry
from tfregistry_webui import queries
from tfregistry_webui.ui import bp, layout_identity, render_page

#: Scopes that make someone an administrator of something (they get the "Administration" link).
ADMIN_SCOPES = frozenset({"orgs:manage", "users:manage", "tokens:manage", "keys:manage", "mirrors:manage",
                          "audit:read", "admin"})
#: Scopes that open an organization's administration page.
ORG_ADMIN_SCOPES = frozenset({"orgs:manage", "users:manage", "tokens:manage"})
#: Mirror runs that count as failed on the dashboard.
FAILED_RUNS = ("failed", "partial", "interrupted")
#: How far back the dashboard counts downloads.
DOWNLOAD_WINDOW = timedelta(days=30)
USER_PAGE_SIZE = 50


# --- the admin layout ------------------------------------------------------------------------------


def admin_sections(identity: auth.Identity) -> list[dict[str, str]]:
    """The administration sections ``identity`` may use, in the sidebar's order (empty: none).  Plain
    paths: some sections are served by other modules."""
    anywhere = identity.scopes_anywhere()
    registry_wide = identity.scopes_in(None)
    sections = (
        ("Dashboard", "/admin", bool(anywhere & ADMIN_SCOPES)),
        ("Organizations", "/admin/organizations", bool(anywhere & ORG_ADMIN_SCOPES)),
        ("Users", "/admin/users", "users:manage" in registry_wide),
        ("Role templates", "/admin/roles", bool(anywhere & {"users:manage", "admin"})),
        ("Signing keys", "/admin/keys", "keys:manage" in anywhere),
        ("Mirrors", "/admin/mirrors", "mirrors:manage" in anywhere),
        ("Jobs", "/admin/jobs", "admin" in registry_wide),
        ("Audit log", "/admin/audit", "audit:read" in anywhere),
        ("System", "/admin/system", "admin" in registry_wide),
    )
    if not sections[0][2]:
        return []
    path = request.path
    current = max((url for _, url, shown in sections if shown and (path == url or path.startswith(url + "/"))),
                  key=len, default="")
    return [{"label": label, "url": url, "current": "page" if url == current else ""}
            for label, url, shown in sections if shown]


@bp.app_context_processor
def _admin_context() -> dict[str, Any]:
    """``admin_nav()`` for the header's "Administration" link and the admin layout's sidebar (computed only
    when a template asks; never fails, so error pages still render)."""
    return {"admin_nav": lambda: admin_sections(layout_identity(careful=True))}


def administrator(session: Session, scopes: frozenset[str] | set[str] = ADMIN_SCOPES) -> auth.Identity:
    """The caller, if they hold one of ``scopes`` somewhere; else 401 (anonymous) or 403."""
    identity = auth.current_identity(session)
    if identity.anonymous:
        raise auth.Unauthenticated("Sign in to use the administration pages.")
    if not identity.scopes_anywhere() & set(scopes):
        raise auth.PermissionDenied(f"{auth.describe(identity)} administers nothing on this registry")
    return identity


def field_errors(exc: ServiceError, fields: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """A service refusal as form errors: next to the first field whose words its message contains, else
    about the whole form."""
    lowered = exc.message.lower()
    for name, words in fields.items():
        if any(word in lowered for word in words):
            return {name: exc.message}
    return {"form": exc.message}


# --- dashboard ------------------------------------------------------------------------------------


def _recent_publishes(session: Session, readable_modules: Any, readable_providers: Any,
                      limit: int = 10) -> list[dict[str, Any]]:
    rows = [{"kind": "module", "label": f"{mv.module.namespace.name}/{mv.module.name}/{mv.module.system}",
             "version": mv.version, "at": mv.published_at, "by": mv.published_by,
             "url": url_for("tfr_webui.module_page", ns=mv.module.namespace.name, name=mv.module.name,
                            system=mv.module.system, version=mv.version)}
            for mv in queries.recently_published(session, readable_modules, limit)]
    provider_versions = session.scalars(
        select(ProviderVersion).join(Provider).where(Provider.namespace_id.in_(readable_providers),
                                                     Provider.hostname == "")
        .order_by(ProviderVersion.published_at.desc(), ProviderVersion.id.desc()).limit(limit))
    rows += [{"kind": "provider", "label": f"{pv.provider.namespace.name}/{pv.provider.type}",
              "version": pv.version, "at": pv.published_at, "by": pv.published_by,
              "url": url_for("tfr_webui.provider_page", ns=pv.provider.namespace.name, type_=pv.provider.type,
                             version=pv.version)}
             for pv in provider_versions]
    return sorted(rows, key=lambda row: row["at"], reverse=True)[:limit]


def _downloads_since(session: Session, readable_modules: Any, since: Any) -> int:
    return session.scalar(select(func.count()).select_from(DownloadEvent)
                          .join(ModuleVersion, DownloadEvent.module_version_id == ModuleVersion.id)
                          .join(Module).where(Module.namespace_id.in_(readable_modules), DownloadEvent.at >= since)
                          ) or 0


def _failed_mirrors(session: Session) -> list[tuple[MirrorConfig, MirrorRun]]:
    """Mirror configurations whose latest run failed (or partly failed, or was interrupted)."""
    latest = select(MirrorRun.config_id, func.max(MirrorRun.id).label("run_id")).group_by(MirrorRun.config_id) \
        .subquery()
    rows = session.execute(select(MirrorConfig, MirrorRun).join(latest, latest.c.config_id == MirrorConfig.id)
                           .join(MirrorRun, MirrorRun.id == latest.c.run_id)
                           .where(MirrorRun.status.in_(FAILED_RUNS)).order_by(MirrorRun.started_at.desc())).all()
    return [(config, run) for config, run in rows]


def _expiring_tokens(session: Session, identity: auth.Identity, until: Any) -> list[dict[str, Any]]:
    from tfregistry.services import tokens as token_svc

    now = utcnow()
    rows = session.scalars(select(ApiToken).where(ApiToken.revoked_at.is_(None), ApiToken.expires_at.is_not(None),
                                                  ApiToken.expires_at > now, ApiToken.expires_at <= until)
                           .order_by(ApiToken.expires_at))
    result = []
    for token in rows:
        if not token_svc.may_manage(identity, token):
            continue
        org = session.get(Organization, token.organization_id) if token.organization_id else None
        url = url_for("tfr_webui.admin_organization", org_name=org.name) + "#tokens" if org and \
            "tokens:manage" in identity.scopes_in(org.id) else url_for("tfr_webui.tokens")
        result.append({"token": token, "organization": org.name if org else None, "url": url})
    return result


def _expiring_keys(session: Session, identity: auth.Identity, until: Any) -> list[GpgKey]:
    """Signing keys not revoked that expire before ``until`` (or have expired), in namespaces where
    ``identity`` manages keys."""
    keys = session.scalars(select(GpgKey).where(GpgKey.revoked_at.is_(None), GpgKey.expires_at.is_not(None),
                                                GpgKey.expires_at <= until).order_by(GpgKey.expires_at))
    return [k for k in keys if auth.allowed(identity, "keys:manage", k.namespace, session)]


@bp.get("/admin")
def admin_dashboard() -> Any:
    """Counts, recent publishes, failed jobs and mirrors, what expires soon, and the services' health; each
    part only for those who may see the page it links to."""
    registry = current_registry()
    with registry.db.session() as session:
        identity = administrator(session)
        registry_wide = identity.scopes_in(None)
        readable_modules = auth.readable_namespace_ids(session, "modules:read")
        readable_providers = auth.readable_namespace_ids(session, "providers:read")
        counts = queries.counts(session, readable_modules, readable_providers)
        counts["provider_versions"] = session.scalar(
            select(func.count()).select_from(ProviderVersion).join(Provider)
            .where(Provider.namespace_id.in_(readable_providers))) or 0
        counts["downloads"] = _downloads_since(session, readable_modules, utcnow() - DOWNLOAD_WINDOW)
        window = timedelta(seconds=registry.settings["jobs.token_expiry_notice"] or 0) or timedelta(days=7)
        until = utcnow() + window
        values: dict[str, Any] = {
            "counts": counts,
            "recent": _recent_publishes(session, readable_modules, readable_providers),
            "window_days": max(1, round(window.total_seconds() / 86400)),
            "tokens": _expiring_tokens(session, identity, until),
            "keys": _expiring_keys(session, identity, until) if "keys:manage" in identity.scopes_anywhere() else None,
            "mirrors": _failed_mirrors(session) if "mirrors:read" in identity.scopes_anywhere() else None,
            "failed_jobs": None,
            "health": None,
        }
        if "admin" in registry_wide:
            from tfregistry.protocol.health import readiness_checks

            values["failed_jobs"] = _failed_jobs()
            values["health"] = readiness_checks(registry)
        return render_page("admin/dashboard.html", page_title="Administration", **values)


def _failed_jobs(limit: int = 10) -> list[Any] | str:
    """The newest failed jobs, or why they cannot be listed (Redis down)."""
    try:
        jobs = current_registry().jobs.list("failed")
    except Exception as exc:  # the dashboard shows the fault rather than failing
        return f"the job queue cannot be read: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
    return sorted(jobs, key=lambda j: j.ended_at or j.enqueued_at or utcnow(), reverse=True)[:limit]


# --- users ------------------------------------------------------------------------------------------


@bp.get("/admin/users")
def admin_users(status: int = 200, errors: dict[str, str] | None = None, values: dict[str, Any] | None = None) -> Any:
    """Users (``users:manage`` registry-wide), searched by e-mail or name, with last sign-in and identities,
    and the form to add one (re-shown with ``errors`` after a refused one)."""
    from tfregistry_webui.views import page_args, page_links

    q = request.args.get("q", "").strip()[:200]
    offset, limit = page_args(USER_PAGE_SIZE)
    with current_registry().db.session() as session:
        identity = administrator(session)
        auth.require_scope(identity, "users:manage")
        stmt = select(User).order_by(User.email, User.id)
        if q:
            pattern = f"%{q.lower()}%"
            stmt = stmt.where(or_(func.lower(User.email).like(pattern), func.lower(User.name).like(pattern)))
        users = list(session.scalars(stmt.offset(offset).limit(limit + 1)))
        page = queries.Page(users[:limit], offset, limit, len(users) > limit)
        ids = [u.id for u in page.items]
        identities: dict[int, list[str]] = {}
        for link in session.scalars(select(UserIdentity).where(UserIdentity.user_id.in_(ids))
                                    .order_by(UserIdentity.provider)):
            identities.setdefault(link.user_id, []).append(link.provider)
        return render_page("admin/users.html", status, page_title="Users", page=page, links=page_links(page), q=q,
                           identities=identities, notices=get_flashed_messages(), errors=errors or {},
                           values={"email": "", "name": "", **(values or {})},
                           may_flag="admin" in identity.scopes_in(None))


@bp.post("/admin/users")
def admin_user_create() -> Any:
    """Add a user before their first sign-in, so they can be given roles (``users:manage`` registry-wide;
    ``admin`` to make a site administrator), as ``POST /api/v1/users``."""
    form = request.form
    values = {"email": form.get("email", "").strip(), "name": form.get("name", "").strip(),
              "site_admin": form.get("site_admin") == "1"}
    with current_registry().db.session() as session:
        identity = administrator(session)
        auth.require_scope(identity, "admin" if values["site_admin"] else "users:manage")
        errors: dict[str, str] = {}
        status = 400
        if not values["email"]:
            errors["email"] = "Enter the person's e-mail address."
        if len(values["name"]) > 200:
            errors["name"] = "At most 200 characters."
        if not errors:
            try:
                user = identity_svc.create_user(session, auth.request_actor(identity), values["email"],
                                                values["name"], values["site_admin"])
                session.commit()
            except ServiceError as exc:
                session.rollback()
                errors, status = {"email": exc.message}, exc.status
        if errors:
            return admin_users(status=status, errors=errors, values=values)
        flash(f"{user.email} is added; give them a role in an organization.")
        return redirect(url_for("tfr_webui.admin_user", user_id=user.id), 303)


def _user_page(session: Session, identity: auth.Identity, user: User) -> Any:
    from tfregistry.services import tokens as token_svc

    links = list(session.scalars(select(UserIdentity).where(UserIdentity.user_id == user.id)
                                 .order_by(UserIdentity.provider)))
    tokens = [t for t in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id))
              if token_svc.may_manage(identity, t)]
    return render_page("admin/user.html", page_title=f"User {user.email or user.id}", user=user, links=links,
                       tokens=tokens, may_flag="admin" in identity.scopes_in(None),
                       yourself=user.id == identity.user_id, notices=get_flashed_messages())


@bp.get("/admin/users/<int:user_id>")
def admin_user(user_id: int) -> Any:
    """One user: identities, memberships, tokens; disable/enable and the site-admin flag."""
    with current_registry().db.session() as session:
        identity = administrator(session)
        auth.require_scope(identity, "users:manage")
        return _user_page(session, identity, identity_svc.get_user(session, user_id))


@bp.route("/admin/users/<int:user_id>/disable", methods=["GET", "POST"])
def admin_user_disable(user_id: int) -> Any:
    """Disable a user after a confirmation page: their sessions end and their tokens stop working at once."""
    with current_registry().db.session() as session:
        identity = administrator(session)
        auth.require_scope(identity, "users:manage")
        user = identity_svc.get_user(session, user_id)
        if request.method == "GET":
            return render_page("admin/user_disable.html", page_title=f"Disable {user.email or user.id}", user=user,
                               yourself=user.id == identity.user_id)
        if not user.disabled:
            identity_svc.disable_user(session, auth.request_actor(identity), user, True)
            session.commit()
        flash(f"{user.email or user.name or user.id} is disabled: their sessions and tokens no longer work.")
        return redirect(url_for("tfr_webui.admin_user", user_id=user.id), 303)


@bp.post("/admin/users/<int:user_id>/enable")
def admin_user_enable(user_id: int) -> Any:
    """Enable a disabled user again (they sign in anew; their tokens work again unless revoked or expired)."""
    with current_registry().db.session() as session:
        identity = administrator(session)
        auth.require_scope(identity, "users:manage")
        user = identity_svc.get_user(session, user_id)
        if user.disabled:
            identity_svc.disable_user(session, auth.request_actor(identity), user, False)
            session.commit()
        flash(f"{user.email or user.name or user.id} is enabled again.")
        return redirect(url_for("tfr_webui.admin_user", user_id=user.id), 303)


@bp.post("/admin/users/<int:user_id>/site-admin")
def admin_user_site_admin(user_id: int) -> Any:
    """Make a user a site administrator, or no longer one (``admin`` registry-wide, as the API asks)."""
    wanted = request.form.get("site_admin") == "1"
    with current_registry().db.session() as session:
        identity = administrator(session)
        auth.require_scope(identity, "admin")
        user = identity_svc.get_user(session, user_id)
        identity_svc.set_site_admin(session, auth.request_actor(identity), user, wanted)
        session.commit()
        flash(f"{user.email or user.name or user.id} is {'now' if wanted else 'no longer'} a site administrator.")
        return redirect(url_for("tfr_webui.admin_user", user_id=user.id), 303)


# --- role templates ---------------------------------------------------------------------------------


def scope_vocabulary() -> list[dict[str, Any]]:
    """Every scope with what it allows and what it implies, for the role pages' explanation."""
    return [{"scope": scope, "words": auth.ACTION_WORDS.get(scope, scope),
             "implies": identity_svc.IMPLIES.get(scope, ()) if scope != "admin" else ("every other scope",)}
            for scope in identity_svc.SCOPES]


ROLE_FIELDS = {"name": ("role template name", "already exists"), "scopes": ("scope",)}


def _roles_page(session: Session, identity: auth.Identity, status: int = 200, *,
                errors: dict[str, str] | None = None, values: dict[str, Any] | None = None) -> Any:
    roles = list(session.scalars(select(RoleTemplate).order_by(RoleTemplate.builtin.desc(), RoleTemplate.name)))
    members = dict(session.execute(select(Membership.role_id, func.count()).group_by(Membership.role_id)).all())
    return render_page("admin/roles.html", status, page_title="Role templates", roles=roles, members=members,
                       vocabulary=scope_vocabulary(), may_edit="admin" in identity.scopes_in(None),
                       errors=errors or {}, values={"name": "", "description": "", "scopes": [], **(values or {})},
                       notices=get_flashed_messages())


@bp.get("/admin/roles")
def admin_roles() -> Any:
    """Built-in and custom role templates, the scope vocabulary, and (``admin`` registry-wide) the form to
    define a custom one."""
    with current_registry().db.session() as session:
        identity = administrator(session, {"users:manage", "admin"})
        return _roles_page(session, identity)


def _role_form() -> dict[str, Any]:
    form = request.form
    return {"name": form.get("name", "").strip(), "description": form.get("description", "").strip(),
            "scopes": form.getlist("scopes")}


def _check_role_form(values: dict[str, Any], new: bool) -> dict[str, str]:
    errors = {}
    if new and not identity_svc.ROLE_NAME.match(values["name"]):
        errors["name"] = ("Lower-case letters, digits, '-' and '_', starting with a letter or digit, "
                          "at most 64 characters.")
    if not values["scopes"]:
        errors["scopes"] = "Tick at least one scope."
    if len(values["description"]) > 2000:
        errors["description"] = "At most 2000 characters."
    return errors


@bp.post("/admin/roles")
def admin_role_create() -> Any:
    """Define a custom role template (``admin`` registry-wide; the API's ``POST /api/v1/roles``)."""
    values = _role_form()
    with current_registry().db.session() as session:
        identity = administrator(session, {"users:manage", "admin"})
        auth.require_scope(identity, "admin")
        errors = _check_role_form(values, new=True)
        status = 400
        if not errors:
            try:
                identity_svc.save_role(session, auth.request_actor(identity), values["name"], values["scopes"],
                                       values["description"])
                session.commit()
            except ServiceError as exc:
                session.rollback()
                errors, status = field_errors(exc, ROLE_FIELDS), exc.status
        if errors:
            return _roles_page(session, identity, status, errors=errors, values=values)
        flash(f"Role template “{values['name']}” is defined.")
        return redirect(url_for("tfr_webui.admin_roles"), 303)


@bp.route("/admin/roles/<name>", methods=["GET", "POST"])
def admin_role(name: str) -> Any:
    """A role template: its scopes; a custom one's description and scopes can be changed here."""
    with current_registry().db.session() as session:
        identity = administrator(session, {"users:manage", "admin"})
        role = identity_svc.get_role(session, name)
        errors: dict[str, str] = {}
        values = {"name": role.name, "description": role.description, "scopes": list(role.scopes)}
        status = 200
        if request.method == "POST":
            auth.require_scope(identity, "admin")
            values = {**_role_form(), "name": role.name}
            errors = _check_role_form(values, new=False)
            if not errors:
                try:
                    identity_svc.save_role(session, auth.request_actor(identity), role.name, values["scopes"],
                                           values["description"], role=role)
                    session.commit()
                    flash(f"Role template “{role.name}” is saved.")
                    return redirect(url_for("tfr_webui.admin_roles"), 303)
                except ServiceError as exc:
                    session.rollback()
                    errors = field_errors(exc, ROLE_FIELDS)
            status = 400
        members = session.scalar(select(func.count()).select_from(Membership).where(Membership.role_id == role.id))
        return render_page("admin/role.html", status, page_title=f"Role template {role.name}", role=role,
                           vocabulary=scope_vocabulary(), may_edit="admin" in identity.scopes_in(None)
                           and not role.builtin, errors=errors, values=values, members=members or 0)


@bp.route("/admin/roles/<name>/delete", methods=["GET", "POST"])
def admin_role_delete(name: str) -> Any:
    """Delete a custom role template that nobody holds, after a confirmation page."""
    with current_registry().db.session() as session:
        identity = administrator(session, {"users:manage", "admin"})
        auth.require_scope(identity, "admin")
        role = identity_svc.get_role(session, name)
        if request.method == "GET":
            held = session.scalar(select(func.count()).select_from(Membership).where(Membership.role_id == role.id))
            return render_page("admin/role_delete.html", page_title=f"Delete role template {role.name}", role=role,
                               members=held or 0)
        identity_svc.delete_role(session, auth.request_actor(identity), role)
        session.commit()
        flash(f"Role template “{name}” is deleted.")
        return redirect(url_for("tfr_webui.admin_roles"), 303)


from tfregistry_webui import admin_orgs_views  # noqa: E402,F401  (organization pages: their routes join bp)
