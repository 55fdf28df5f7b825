"""Provider documentation forms: upload a version's docs, and preview a docs archive without storing it.

URLs::

    /providers/<ns>/<type>/<version>/docs/upload    replace the version's docs (as POST /api/v1/providers/.../docs)
    /publish/provider-docs/preview                  check and render an archive (as POST /api/v1/providers/docs/preview)

Both take the API's upload cap (``limits.provider_docs_max_bytes``, enforced while the body streams in),
call the API's :func:`~tfregistry.api.providers.docs_archive` and the same service functions
(:func:`~tfregistry.services.provider_docs.store_provider_docs`, :func:`~tfregistry.services.provider_docs.check_docs`)
after the same permission checks.  The preview reads the archive in memory and stores nothing.
"""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from tfregistry import auth
from tfregistry.api import providers as api_providers
from tfregistry.api.modules import upload_limit
from tfregistry.provider_docs import DocsReport
from tfregistry.services import ServiceError
from tfregistry.services import provider_docs as docs_svc
from tfregistry.services import providers as provider_svc
from tfregistry.web import current_registry
from tfregistry_webui import docs
from tfregistry_webui.provider_views import readable_provider
from tfregistry_webui.publish_views import may_publish, too_large
from tfregistry_webui.ui import bp, render_page

SETTING = "limits.provider_docs_max_bytes"
#: The most HTML the rendered pages of one preview may take; pages past it are listed, not rendered.
PREVIEW_BUDGET = 120 * 1024
#: Problems listed in the preview (the rest are counted; the API and ``tfr provider-docs preview`` list them all).
MAX_PROBLEMS_SHOWN = 50


def _archive() -> Any:
    """The uploaded archive's stream (the API's size check), or None when no file was chosen."""
    upload = request.files.get("archive")
    if upload is None or not upload.filename:
        return None
    return api_providers.docs_archive(current_registry(), upload)


# --- upload for an existing version -------------------------------------------------------------------------


@bp.route("/providers/<ns>/<type_>/<version>/docs/upload", methods=["GET", "POST"])
@upload_limit(SETTING)
def provider_docs_upload(ns: str, type_: str, version: str) -> Any:
    """Publish (or replace) a version's documentation from an archive of its ``docs/`` folder
    (``providers:write`` in the namespace, as the API)."""
    registry = current_registry()
    with registry.db.session() as session:
        # read first: a hidden namespace is the same 404 page as a missing one, as on the provider page
        readable_provider(session, ns, type_, "")
        pv = provider_svc.get_version(session, ns, type_, version)
        identity, actor = auth.require_in_namespace(session, "providers:write", ns, create=False)
        auth.require_package(identity, "provider", ns, type_)
        values: dict[str, Any] = {
            "page_title": f"Documentation of {ns}/{type_} {pv.version}", "label": f"{ns}/{type_} {pv.version}",
            "max_bytes": registry.settings[SETTING], "errors": {}, "result": None,
            "docs_url": url_for("tfr_webui.provider_page", ns=ns, type_=type_, version=pv.version, tab="docs"),
            "pages_now": len(docs_svc.doc_pages(session, pv)),
        }
        if request.method == "GET":
            return render_page("publish/provider_docs.html", **values)
        try:
            stream = _archive()
            if stream is None:
                values["errors"] = {"archive": "Choose the docs archive to upload."}
                return render_page("publish/provider_docs.html", 400, **values)
            values["result"] = docs_svc.store_provider_docs(session, actor, pv, stream,
                                                            api_providers.docs_limits(registry))
        except ServiceError as exc:
            session.rollback()
            if exc.status == 413:
                return too_large(SETTING)
            values["errors"] = {"archive": exc.message}
            return render_page("publish/provider_docs.html", exc.status, **values)
        values["pages_now"] = len(values["result"].report.pages)
        return render_page("publish/provider_docs.html", **values)


# --- preview ----------------------------------------------------------------------------------------------


@bp.route("/publish/provider-docs/preview", methods=["GET", "POST"])
@upload_limit(SETTING)
def provider_docs_preview() -> Any:
    """Check a docs archive and show its index, rendered pages and problems, storing nothing (for
    signed-in callers who may publish providers somewhere, as the API's preview)."""
    registry = current_registry()
    with registry.db.session() as session:
        identity, why_not = may_publish(session, "providers:write")
    values: dict[str, Any] = {"page_title": "Preview provider documentation", "why_not": why_not, "errors": {},
                              "max_bytes": registry.settings[SETTING], "preview": None,
                              "show": request.form.get("show", "").strip()[:300]}
    if request.method == "GET" or why_not:
        status = 200 if request.method == "GET" else 401 if identity.anonymous else 403
        return render_page("publish/provider_docs_preview.html", status, **values)
    try:
        stream = _archive()
        if stream is None:
            values["errors"] = {"archive": "Choose the docs archive to preview."}
            return render_page("publish/provider_docs_preview.html", 400, **values)
        report = docs_svc.check_docs(stream, api_providers.docs_limits(registry))
    except ServiceError as exc:
        if exc.status == 413:
            return too_large(SETTING)
        values["errors"] = {"archive": exc.message}
        return render_page("publish/provider_docs_preview.html", exc.status, **values)
    values["preview"] = preview(report, values["show"])
    return render_page("publish/provider_docs_preview.html", **values)


def anchor(category: str, slug: str) -> str:
    """The id of a page's section in the preview."""
    return f"doc-{category}-{slug}"


def preview(report: DocsReport, show: str = "") -> dict[str, Any]:
    """What the preview page shows: the sidebar, the pages rendered in sidebar order (those whose
    ``category/slug`` starts with ``show``, when given) until :data:`PREVIEW_BUDGET` is spent, the pages
    left unrendered, and the problems.  Links between rendered pages point at their sections."""
    grouped = docs_svc.group_pages(report.pages)
    by_key = {(p.category, p.slug): p for p in report.pages}
    order = [(p["category"], p["slug"]) for g in grouped for sub in g["subcategories"] for p in sub["pages"]]
    wanted = [key for key in order if f"{key[0]}/{key[1]}".startswith(show)]
    rendered: list[dict[str, Any]] = []
    problems = report.problems[:MAX_PROBLEMS_SHOWN]
    left = min(PREVIEW_BUDGET, docs.PAGE_BUDGET - docs.LAYOUT_BYTES - sum(2 * len(p) + 20 for p in problems)
               - docs.nav_bytes(docs.sidebar(grouped, None, lambda c, s: "#" + anchor(c, s))))
    for key in wanted:
        if left < 4096:
            break
        page = by_key[key]
        resolve = docs.link_resolver(page.path, by_key, lambda c, s: "#" + anchor(c, s), keep_fragment=False)
        # the section around the page (its path, title, subcategory and description) counts too
        left -= 2 * (len(page.path) + len(page.title) + len(page.subcategory) + len(page.description)) + 400
        html = docs.render_doc(page.content, resolve, budget=max(left, 1024))
        left -= len(html)
        rendered.append({"id": anchor(*key), "page": page, "html": html})
    shown = {(r["page"].category, r["page"].slug) for r in rendered}

    def url_of(category: str, slug: str) -> str | None:
        return "#" + anchor(category, slug) if (category, slug) in shown else None

    return {"pages": len(report.pages), "problems": problems, "more_problems": len(report.problems) - len(problems),
            "rendered": rendered,
            "not_rendered": len(report.pages) - len(rendered), "nav": docs.sidebar(grouped, None, url_of)}
