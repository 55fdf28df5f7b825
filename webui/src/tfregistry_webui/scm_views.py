"""Source control pages (issue #14): connections, the link wizard, a link's page (sync now, delivery log,
redeliver, delete) and the moved-tag violations.

Shown only when SCM providers are installed (else every page is "not found").  Each page calls what
``/api/v1/scm`` calls, after the same checks (:mod:`tfregistry.api.scm`'s ``scm_organization``,
``scm_connection``, ``link_target``, ``scm_link``, ``visible_*``), so refusals and audit entries are the API's.
The wizard is plain GET forms (connection, repository, module and tag pattern, preview) ending in one POST.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, get_flashed_messages, redirect, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import scm as scm_api
from tfregistry.api.providers import encryption_key
from tfregistry.models import Organization, ScmLink
from tfregistry.services import ServiceError
from tfregistry.services import scm as scm_svc
from tfregistry.web import current_registry
from tfregistry_webui.account_views import NO_STORE
from tfregistry_webui.admin_views import field_errors
from tfregistry_webui.ui import bp, render_page

CONNECTION_FIELDS = {"ssh_known_hosts": ("ssh_known_hosts",), "ssh_private_key": ("ssh_private_key",),
                     "name": ("connection named", "name"), "provider": ("provider",),
                     "auth_method": ("accept", "oauth"), "token": ("token", "credentials", "refused"),
                     "base_url": ("base url", "url"), "organization": ("organization",)}
LINK_FIELDS = {"tag_pattern": ("tag pattern", "{name}"), "subdirectory": ("subdirectory",),
               "namespace": ("namespace",), "name": ("name",), "system": ("system", "provider name"),
               "repository": ("repository", "url")}
AUTH_LABELS = {"token": "Access token", "oauth": "OAuth (authorize in the system)", "none": "None (public repository)",
               "ssh_key": "SSH deploy key"}


def _providers() -> dict[str, Any]:
    """The installed SCM providers; 404 when there are none (the pages do not exist)."""
    providers = current_registry().scm_providers
    if not providers:
        abort(404)
    return providers


def _publisher(session: Session) -> auth.Identity:
    """The caller, signed in and allowed to publish modules somewhere (401/403 otherwise)."""
    _providers()
    identity = auth.current_identity(session)
    if identity.anonymous:
        raise auth.Unauthenticated("Sign in to manage source control connections.")
    if "modules:write" not in identity.scopes_anywhere():
        raise auth.PermissionDenied(f"{auth.describe(identity)} may publish modules nowhere on this registry")
    return identity


def _organizations(session: Session, identity: auth.Identity) -> list[Organization]:
    """Organizations where the caller may publish modules (where they may create connections)."""
    return [o for o in session.scalars(select(Organization).order_by(Organization.name))
            if "modules:write" in identity.scopes_in(o.id)]


def nav_entry(identity: auth.Identity) -> list[dict[str, str]]:
    """The "Source control" navigation entry, for callers who may publish modules (and only with providers)."""
    registry = current_registry()
    if not registry.scm_providers or identity.anonymous or "modules:write" not in identity.scopes_anywhere():
        return []
    return [{"label": "Source control", "url": url_for("tfr_webui.scm_home")}]


# --- connections -------------------------------------------------------------------------------------


def _home(session: Session, identity: auth.Identity, status: int = 200, *, errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None) -> Any:
    providers = current_registry().scm_providers
    orgs = _organizations(session, identity)
    org_names = {o.id: o.name for o in session.scalars(select(Organization))}
    first = next(iter(providers.values()))
    defaults = {"organization": orgs[0].name if orgs else "", "name": "", "provider": first.name,
                "auth_method": first.auth_methods[0], "base_url": "", "username": "", "ssh_known_hosts": ""}
    return render_page(
        "scm/home.html", status, page_title="Source control",
        connections=scm_api.visible_connections(session, identity), links=scm_api.visible_links(session, identity),
        org_names=org_names, orgs=orgs, providers=providers, auth_labels=AUTH_LABELS,
        errors=errors or {}, values={**defaults, **(values or {})}, notices=get_flashed_messages())


@bp.get("/scm")
def scm_home() -> Any:
    """Connections and links the caller may use, and the form to add a connection."""
    with current_registry().db.session() as session:
        return _home(session, _publisher(session))


@bp.post("/scm/connections")
def scm_connection_create() -> Any:
    """Create a connection (``modules:write`` in its organization), its secrets stored encrypted; an OAuth
    connection then sends the browser to the system to authorize the registry."""
    form = request.form
    values = {f: form.get(f, "").strip() for f in ("organization", "name", "provider", "auth_method", "base_url",
                                                   "username", "ssh_known_hosts")}
    registry = current_registry()
    with registry.db.session() as session:
        identity = _publisher(session)
        errors: dict[str, str] = {}
        if not values["name"]:
            errors["name"] = "Enter a name, e.g. github."
        provider = registry.scm_providers.get(values["provider"])
        if provider is None:
            errors["provider"] = "Choose one of the installed providers."
        elif values["auth_method"] not in provider.auth_methods:
            errors["auth_method"] = (f"{provider.label or provider.name} connections accept "
                                     f"{', '.join(AUTH_LABELS.get(m, m) for m in provider.auth_methods)}.")
        if errors:
            return _home(session, identity, 400, errors=errors, values=values)
        try:
            org = scm_api.scm_organization(session, identity, values["organization"] or None)
            actor = auth.request_actor(identity, org.id)
            conn = scm_svc.create_connection(
                session, actor, registry.scm_providers, encryption_key(registry), organization_id=org.id,
                name=values["name"], provider=values["provider"], auth_method=values["auth_method"],
                base_url=values["base_url"] or None, username=values["username"] or None,
                token=form.get("token") or None, ssh_private_key=form.get("ssh_private_key") or None,
                ssh_known_hosts=form.get("ssh_known_hosts") or None, verify=form.get("verify") == "on")
            authorize = None
            if conn.auth_method == "oauth":
                authorize = scm_svc.start_oauth(session, actor, provider, conn, encryption_key(registry),
                                                scm_api.oauth_callback_url(), return_to=_back_here())
            session.commit()
        except ServiceError as exc:
            session.rollback()
            return _home(session, identity, exc.status if exc.status != 404 else 400,
                         errors=field_errors(exc, CONNECTION_FIELDS), values=values)
        if authorize:
            return redirect(authorize, 303)
        flash(f"Connection “{conn.name}” is created.")
        return redirect(url_for("tfr_webui.scm_home") + "#connections", 303)


def _back_here() -> str:
    """Where the OAuth callback sends the browser back: the connections list."""
    return url_for("tfr_webui.scm_home") + "#connections"


@bp.post("/scm/connections/<int:connection_id>/authorize")
def scm_connection_authorize(connection_id: int) -> Any:
    """Start (or repeat) the OAuth authorization of an ``oauth`` connection: off to the system."""
    registry = current_registry()
    with registry.db.session() as session:
        identity = _publisher(session)
        conn = scm_api.scm_connection(session, identity, connection_id)
        url = scm_svc.start_oauth(session, auth.request_actor(identity, conn.organization_id),
                                  scm_svc.provider_for(registry.scm_providers, conn.provider), conn,
                                  encryption_key(registry), scm_api.oauth_callback_url(), return_to=_back_here())
        session.commit()
    return redirect(url, 303)


@bp.route("/scm/connections/<int:connection_id>/delete", methods=["GET", "POST"])
def scm_connection_delete(connection_id: int) -> Any:
    """Delete a connection and its links (published versions stay), after a confirmation page."""
    with current_registry().db.session() as session:
        identity = _publisher(session)
        conn = scm_api.scm_connection(session, identity, connection_id)
        if request.method == "GET":
            return render_page("scm/connection_delete.html", page_title=f"Delete connection {conn.name}", conn=conn,
                               links=session.scalar(select(func.count()).select_from(ScmLink)
                                                    .where(ScmLink.connection_id == conn.id)))
        name = conn.name
        scm_svc.delete_connection(session, auth.request_actor(identity, conn.organization_id), conn)
        session.commit()
        flash(f"Connection “{name}” is deleted.")
        return redirect(url_for("tfr_webui.scm_home") + "#connections", 303)


# --- the link wizard ---------------------------------------------------------------------------------


WIZARD_FIELDS = ("connection", "repository", "namespace", "name", "system", "subdirectory", "tag_pattern")


def _wizard(session: Session, identity: auth.Identity, values: dict[str, str], status: int = 200, *,
            errors: dict[str, str] | None = None, preview: bool = False) -> Any:
    registry = current_registry()
    errors = dict(errors or {})
    connections = scm_api.visible_connections(session, identity)
    conn = provider = None
    repositories: list[Any] | None = None
    tags: list[Any] | None = None
    if values["connection"]:
        if not values["connection"].isdigit():
            abort(404)
        conn = scm_api.scm_connection(session, identity, int(values["connection"]))  # another's: 404
    if conn is not None:
        provider = scm_svc.provider_for(registry.scm_providers, conn.provider)
        if not values["repository"]:
            try:
                creds = scm_svc.credentials(conn, encryption_key(registry))
                repositories = scm_svc.call(provider, "list repositories", provider.list_repositories, creds)
            except ServiceError as exc:
                if exc.status != 400:  # 400: the system cannot list them (plain git): type the URL instead
                    errors["repository"] = exc.message
        elif preview and not errors:
            try:
                tags = scm_svc.preview_tags(provider, scm_svc.credentials(conn, encryption_key(registry)),
                                            repository=values["repository"], name=values["name"],
                                            tag_pattern=values["tag_pattern"])
            except ServiceError as exc:
                errors.update(field_errors(exc, LINK_FIELDS))
                status = exc.status if exc.status != 404 else 400
    step = 1 if conn is None else 2 if not values["repository"] or "repository" in errors else 3
    return render_page("scm/wizard.html", status, page_title="Link a repository to a module", step=step,
                       connections=connections, conn=conn, provider=provider, repositories=repositories, tags=tags,
                       values=values, errors=errors)


def _wizard_values(source: Any) -> dict[str, str]:
    values = {f: source.get(f, "").strip() for f in WIZARD_FIELDS}
    values["tag_pattern"] = values["tag_pattern"] or "v{version}"
    values["system"] = values["system"] or "generic"
    return values


@bp.get("/scm/link")
def scm_link_wizard() -> Any:
    """The wizard: connection, then repository, then module, subdirectory and tag pattern with a preview
    of the matching tags (``preview=1``), each step a GET form."""
    with current_registry().db.session() as session:
        identity = _publisher(session)
        values = _wizard_values(request.args)
        errors: dict[str, str] = {}
        preview = request.args.get("preview") == "1"
        if preview:
            for field in ("namespace", "name", "system"):
                if not values[field]:
                    errors[field] = "Required."
        return _wizard(session, identity, values, 400 if errors else 200, errors=errors, preview=preview)


@bp.post("/scm/links")
def scm_link_create() -> Any:
    """Create the link (the API's checks and audit entry); show the webhook URL and secret once."""
    form = request.form
    values = _wizard_values(form)
    registry = current_registry()
    with registry.db.session() as session:
        identity = _publisher(session)
        try:
            connection_id = int(values["connection"])
        except ValueError:
            return _wizard(session, identity, values, 400, errors={"connection": "Choose one of your connections."})
        missing = {f: "Required." for f in ("repository", "namespace", "name", "system") if not values[f]}
        if missing:
            return _wizard(session, identity, values, 400, errors=missing)
        try:
            conn, actor = scm_api.link_target(session, connection_id, values["namespace"])
            link, secret = scm_svc.create_link(
                session, actor, scm_svc.provider_for(registry.scm_providers, conn.provider), conn,
                encryption_key(registry), repository=values["repository"], namespace=values["namespace"],
                name=values["name"], system=values["system"], subdirectory=values["subdirectory"],
                tag_pattern=values["tag_pattern"],
                webhook_url=scm_api.webhook_url_of("{id}") if form.get("create_webhook") == "on" else None)
            session.commit()
        except ServiceError as exc:
            session.rollback()
            return _wizard(session, identity, values, exc.status if exc.status != 404 else 400,
                           errors=field_errors(exc, LINK_FIELDS), preview=False)
        link_id, module = link.id, f"{link.namespace}/{link.name}/{link.system}"
        supports_webhooks = conn.provider in registry.scm_providers and \
            registry.scm_providers[conn.provider].supports_webhooks
        hook_id = link.hook_id
    imported = False
    if form.get("import_tags") == "on":
        scm_api.enqueue_sync(registry, link_id)
        imported = True
    response = render_page("scm/link_created.html", page_title="Repository linked", link_id=link_id, module=module,
                           webhook_url=scm_api.webhook_url_of(link_id), secret=secret, hook_id=hook_id,
                           supports_webhooks=supports_webhooks, imported=imported)
    response.headers.update(NO_STORE)
    return response


# --- one link ----------------------------------------------------------------------------------------


@bp.get("/scm/links/<int:link_id>")
def scm_link_page(link_id: int) -> Any:
    """A link: its details, "sync now", the delivery log with redeliver, and delete."""
    with current_registry().db.session() as session:
        _publisher(session)
        link, _ = scm_api.scm_link(session, link_id)
        provider = current_registry().scm_providers.get(link.connection.provider)
        return render_page("scm/link.html", page_title=f"Link {link.namespace}/{link.name}/{link.system}",
                           link=link, supports_webhooks=provider is not None and provider.supports_webhooks,
                           webhook_url=scm_api.webhook_url_of(link.id), deliveries=scm_svc.deliveries(session, link.id),
                           notices=get_flashed_messages())


@bp.post("/scm/links/<int:link_id>/sync")
def scm_link_sync(link_id: int) -> Any:
    """Sync now (also "import existing matching tags"): queue the link's reconcile job."""
    registry = current_registry()
    with registry.db.session() as session:
        _publisher(session)
        scm_api.scm_link(session, link_id)
    job = scm_api.enqueue_sync(registry, link_id)
    flash(f"Sync queued (job {job.id}): matching tags not published yet are published; moved tags are recorded.")
    return redirect(url_for("tfr_webui.scm_link_page", link_id=link_id), 303)


@bp.post("/scm/links/<int:link_id>/deliveries/<int:delivery>/redeliver")
def scm_redeliver(link_id: int, delivery: int) -> Any:
    """Process an accepted delivery again (the API's rules: a rejected one or a redelivery is refused)."""
    registry = current_registry()
    with registry.db.session() as session:
        _publisher(session)
        result = scm_api.redeliver(registry, session, link_id, delivery)
    flash(f"Delivery {delivery} redelivered: {result.outcome} ({result.status_code}).")
    return redirect(url_for("tfr_webui.scm_link_page", link_id=link_id) + "#deliveries", 303)


@bp.route("/scm/links/<int:link_id>/delete", methods=["GET", "POST"])
def scm_link_delete(link_id: int) -> Any:
    """Remove a link and its webhook after a confirmation page; published versions stay."""
    registry = current_registry()
    with registry.db.session() as session:
        _publisher(session)
        link, identity = scm_api.scm_link(session, link_id)
        if request.method == "GET":
            return render_page("scm/link_delete.html", page_title=f"Delete link {link.id}", link=link)
        label = f"{link.namespace}/{link.name}/{link.system}"
        scm_svc.delete_link(session, auth.request_actor(identity),
                            scm_svc.provider_for(registry.scm_providers, link.connection.provider), link,
                            encryption_key(registry))
        session.commit()
        flash(f"The link of {label} is deleted; its published versions stay.")
        return redirect(url_for("tfr_webui.scm_home") + "#links", 303)


# --- violations --------------------------------------------------------------------------------------


@bp.get("/scm/violations")
def scm_violations() -> Any:
    """Tags that moved after their version was published, in modules the caller may read (as the API)."""
    _providers()
    with current_registry().db.session() as session:
        rows = [scm_svc.violation_json(v, session) for v in scm_api.visible_violations(session)]
        return render_page("scm/violations.html", page_title="Moved tags", violations=rows)
