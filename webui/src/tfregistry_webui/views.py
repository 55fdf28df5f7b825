"""Browse pages: home, module and provider lists, namespace pages.  Module and provider pages are in
:mod:`tfregistry_webui.module_views` and :mod:`tfregistry_webui.provider_views`."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from sqlalchemy import select

from tfregistry import auth
from tfregistry.models import Namespace, Organization
from tfregistry.services import NotFound, ServiceError
from tfregistry.services import modules as module_svc
from tfregistry.services import providers as provider_svc
from tfregistry.web import current_registry
from tfregistry_webui import queries
from tfregistry_webui.provider_views import latest_listed
from tfregistry_webui.ui import bp, render_page

PAGE_SIZE = 20


def page_args(default_limit: int = PAGE_SIZE) -> tuple[int, int]:
    """``offset`` and ``limit`` of a list page (limit at most 100); 400 page on nonsense."""
    values = []
    for name, default in (("offset", 0), ("limit", default_limit)):
        raw = request.args.get(name, str(default))
        if not raw.isdigit() or len(raw) > 9:
            raise ServiceError(f"{name} must be a non-negative whole number")
        values.append(int(raw))
    return values[0], max(1, min(values[1], 100))


def page_links(page: queries.Page) -> dict[str, str | None]:
    """URLs of the previous and next pages, keeping the other query parameters."""
    args = request.args.to_dict()

    def at(offset: int) -> str:
        return url_for(request.endpoint or "", **(request.view_args or {}), **{**args, "offset": offset})

    return {"prev": at(max(0, page.offset - page.limit)) if page.offset > 0 else None,
            "next": at(page.offset + page.limit) if page.has_more else None}


def latest(module: Any) -> Any:
    return module_svc.latest_version(module)


@bp.get("/")
def home() -> Any:
    registry = current_registry()
    with registry.db.session() as session:
        readable = auth.readable_namespace_ids(session)
        readable_providers = auth.readable_namespace_ids(session, "providers:read")
        return render_page(
            "home.html",
            counts=queries.counts(session, readable, readable_providers),
            recent=queries.recently_published(session, readable),
            popular=queries.most_downloaded(session, readable),
        )


@bp.get("/modules")
def modules() -> Any:
    q = request.args.get("q", "").strip()[:200]
    namespace = request.args.get("namespace", "").strip()
    system = request.args.get("system", "").strip()
    organization = request.args.get("organization", "").strip()
    provider = request.args.get("provider", "").strip()
    sort = request.args.get("sort", "relevance" if q else "name")
    if sort not in queries.MODULE_SORTS and not (sort == "relevance" and q):
        sort = "name"
    offset, limit = page_args()
    with current_registry().db.session() as session:
        readable = auth.readable_namespace_ids(session)
        page = queries.search_modules(session, readable, q=q, namespace=namespace, system=system,
                                      organization=organization if auth.multi_tenant() else None,
                                      provider=provider, sort=sort, offset=offset, limit=limit)
        downloads = queries.module_downloads(session, [m.id for m in page.items])
        sorts = ({"relevance": "Relevance"} if q else {}) | queries.MODULE_SORTS
        return render_page("modules.html", page_title="Search modules" if q else "Modules", page=page,
                           rows=[(m, latest(m), downloads.get(m.id, 0)) for m in page.items],
                           links=page_links(page), q=q, namespace=namespace, system=system, sort=sort,
                           sorts=sorts, organization=organization, provider=provider,
                           multi_tenant=auth.multi_tenant())


@bp.get("/providers")
def providers() -> Any:
    namespace = request.args.get("namespace", "").strip()
    offset, limit = page_args()
    with current_registry().db.session() as session:
        readable = auth.readable_namespace_ids(session, "providers:read")
        page = queries.list_providers(session, readable, namespace=namespace, offset=offset, limit=limit)
        rows = [(p, latest_listed(p)) for p in page.items]
        downloads = provider_svc.provider_download_totals(session, [p.id for p in page.items])
        return render_page("providers.html", page_title="Providers", page=page, rows=rows, downloads=downloads,
                           links=page_links(page), namespace=namespace)


@bp.get("/namespaces/<ns>")
def namespace(ns: str) -> Any:
    with current_registry().db.session() as session:
        found = session.scalar(select(Namespace).where(Namespace.name == ns))
        # the same check as reading a module: a hidden namespace is the same 404 as a missing one
        try:
            auth.require(session, "modules:read", found or auth.namespace_for(session, ns))
        except auth.PermissionDenied:
            auth.require(session, "providers:read", found or auth.namespace_for(session, ns))
        if found is None:
            raise NotFound(f"namespace {ns!r} not found")
        offset, limit = page_args()
        page = queries.search_modules(session, auth.readable_namespace_ids(session), q=None, namespace=ns,
                                      system=None, organization=None, provider=None, sort="name", offset=offset,
                                      limit=limit)
        readable_providers = auth.readable_namespace_ids(session, "providers:read")
        providers = list(session.scalars(queries.provider_query(readable_providers, namespace=ns)).unique())
        owner = session.get(Organization, found.organization_id) if found.organization_id else None
        downloads = queries.module_downloads(session, [m.id for m in page.items])
        manages_publishers = auth.allowed(auth.current_identity(session), "tokens:manage", found, session)
        return render_page("namespace.html", page_title=f"Namespace {ns}", ns=found, owner=owner,
                           manages_publishers=manages_publishers,
                           multi_tenant=auth.multi_tenant(), page=page, links=page_links(page),
                           modules=[(m, latest(m), downloads.get(m.id, 0)) for m in page.items],
                           providers=[(p, latest_listed(p)) for p in providers],
                           provider_downloads=provider_svc.provider_download_totals(session, [p.id for p in providers]))


import tfregistry_webui.account_views  # noqa: E402  (sign-in, tokens, publish forms: their routes join bp)
import tfregistry_webui.admin_ops_views  # noqa: E402  (jobs, audit log, system)
import tfregistry_webui.admin_supply_views  # noqa: E402  (signing keys and mirrors administration)
import tfregistry_webui.admin_views  # noqa: E402  (administration: its routes join bp)
import tfregistry_webui.docs_views  # noqa: E402
import tfregistry_webui.publish_views  # noqa: E402,F401
from tfregistry_webui import (  # noqa: E402,F401  (their routes join bp)
    module_views,
    provider_views,
    scm_views,
    trusted_publishing_views,
)
