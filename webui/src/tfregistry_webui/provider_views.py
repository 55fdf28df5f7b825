"""Provider pages: versions, platforms, signing keys, the ``required_providers`` snippet, mirrored badges.

URLs (a mirrored provider adds ``?origin=<host>``)::

    /providers/<ns>/<type>[/<version>][/<tab>]
    /providers/<ns>/<type>[/<version>]/docs/<category>/<slug>     a documentation page
"""

from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.models import Provider, ProviderDocPage, ProviderVersion
from tfregistry.registry import ProviderVersionRef
from tfregistry.services import NotFound
from tfregistry.services import provider_docs as docs_svc
from tfregistry.services import providers as provider_svc
from tfregistry.services.gpgkeys import active_keys
from tfregistry.web import current_registry
from tfregistry_webui import docs, provision
from tfregistry_webui.publish_views import provider_version_actions
from tfregistry_webui.ui import (
    bp,
    is_version,
    layout_identity,
    markup_or_escape,
    plugin_tabs,
    registry_host,
    render_page,
)

#: Built-in tabs; "docs" (tfr publish provider --docs) is left out for a mirrored provider without pages.
PROVIDER_TABS = [("overview", "Overview"), ("docs", "Documentation"), ("versions", "Versions"),
                 ("keys", "Signing keys")]
PUBLIC_REGISTRY = "registry.terraform.io"


def listed_versions(provider: Provider) -> list[ProviderVersion]:
    """Versions Terraform can install (signed, with packages), highest first: what the protocol lists."""
    return [pv for pv in provider_svc.sorted_versions(provider.versions) if provider_svc.signed(pv) and pv.packages]


def latest_listed(provider: Provider) -> ProviderVersion | None:
    """The highest installable release, else the highest pre-release."""
    listed = listed_versions(provider)
    releases = [pv for pv in listed if not pv.prerelease]
    return (releases or listed or [None])[0]


def readable_provider(session: Session, ns: str, type_: str, origin: str) -> Provider:
    """The provider after the same check the protocol makes (401/403, or 404 for a hidden namespace)."""
    auth.require(session, "providers:read", auth.namespace_for(session, ns))
    provider = provider_svc.get_provider(session, ns, type_, origin)
    if not provider.versions:
        raise NotFound(f"provider {ns}/{type_} not found")
    return provider


def required_providers_snippet(provider: Provider, pv: ProviderVersion, host: str, template: str) -> str:
    """The ``terraform { required_providers { ... } }`` block for this provider and version."""
    if provider.hostname:  # mirrored: Terraform knows it by its origin address
        prefix = "" if provider.hostname == PUBLIC_REGISTRY else f"{provider.hostname}/"
        source = f"{prefix}{provider.namespace.name}/{provider.type}"
    else:
        source = f"{host}/{provider.namespace.name}/{provider.type}"
    constraint = provision.version_constraint(template, pv.version)
    return ("terraform {\n  required_providers {\n"
            f"    {provision.block_label(provider.type)} = {{\n      source  = \"{source}\"\n"
            f"      version = \"{constraint}\"\n    }}\n  }}\n}}\n")


def provider_plugin_tabs(provider: Provider, pv: ProviderVersion) -> list[dict[str, Any]]:
    """Tabs plugins add to this version (``tfr_webui_provider_tabs``)."""
    registry = current_registry()
    ref = ProviderVersionRef(provider.namespace.name, provider.type, pv.version, provider.hostname)
    results = registry.hooks.tfr_webui_provider_tabs(registry=registry, provider_version=ref,
                                                     identity=layout_identity())
    return plugin_tabs(results, {t for t, _ in PROVIDER_TABS})


@bp.get("/providers/<ns>/<type_>")
@bp.get("/providers/<ns>/<type_>/<version>")
@bp.get("/providers/<ns>/<type_>/<version>/<tab>")
def provider_page(ns: str, type_: str, version: str | None = None, tab: str | None = None) -> Any:
    """A provider version's page (the latest without a version), one tab per URL."""
    origin = request.args.get("origin", "").strip().lower()
    picked = request.args.get("version")
    if picked and version is None:  # the version picker without JavaScript
        return _picked(ns, type_, picked, origin)
    if version is not None and tab is None and not is_version(version):
        version, tab = None, version
    tab = tab or "overview"
    with current_registry().db.session() as session:
        provider, listed, pv = load_version(session, ns, type_, version, origin)
        values = page_values(session, provider, listed, pv, origin, tab)
        if tab == "keys":
            values["keys"] = [] if provider.hostname else active_keys(session, provider.namespace)
        elif tab == "docs":
            values.update(docs_values(session, provider, pv, origin, None))
        for t in values.pop("extra_tabs"):
            if t["id"] == tab:
                values["plugin_body"] = markup_or_escape(t["render"]())
        return render_page("provider.html", **values)


@bp.get("/providers/<ns>/<type_>/docs/<category>/<slug>")
@bp.get("/providers/<ns>/<type_>/<version>/docs/<category>/<slug>")
def provider_doc_page(ns: str, type_: str, category: str, slug: str, version: str | None = None) -> Any:
    """One documentation page of a provider version (of the latest without a version), in the
    Documentation tab with the docs sidebar; the same read check as the provider page."""
    origin = request.args.get("origin", "").strip().lower()
    with current_registry().db.session() as session:
        provider, listed, pv = load_version(session, ns, type_, version, origin)
        page = docs_svc.get_doc_page(session, pv, category, slug)
        values = page_values(session, provider, listed, pv, origin, "docs")
        values.pop("extra_tabs")
        values.update(docs_values(session, provider, pv, origin, page))
        return render_page("provider.html", **values)


def _picked(ns: str, type_: str, picked: str, origin: str) -> Any:
    """Where the version picker goes: the same tab, or the same documentation page when the picked
    version has it (else its Documentation tab)."""
    link = {"ns": ns, "type_": type_, "version": picked, "origin": origin or None}
    category, _, slug = request.args.get("doc", "").partition("/")
    if category and slug:
        with current_registry().db.session() as session:
            _, _, pv = load_version(session, ns, type_, picked, origin)
            if session.scalar(select(func.count()).select_from(ProviderDocPage).where(
                    ProviderDocPage.provider_version_id == pv.id, ProviderDocPage.category == category,
                    ProviderDocPage.slug == slug)):
                return redirect(url_for(".provider_doc_page", **link, category=category, slug=slug))
        return redirect(url_for(".provider_page", **link, tab="docs"))
    return redirect(url_for(".provider_page", **link, tab=request.args.get("tab") or None))


def load_version(session: Session, ns: str, type_: str, version: str | None,
                 origin: str) -> tuple[Provider, list[ProviderVersion], ProviderVersion]:
    """The provider (after the read check), its listed versions, and the version asked for (the latest
    installable one when ``version`` is None); :class:`NotFound` when there is no such version."""
    provider = readable_provider(session, ns, type_, origin)
    listed = listed_versions(provider)
    if version is None:
        pv = latest_listed(provider)
        if pv is None:
            raise NotFound(f"provider {ns}/{type_} has no installable version")
    else:
        pv = next((v for v in listed if v.version == version), None)
        if pv is None:
            raise NotFound(f"provider {ns}/{type_} has no version {version}")
    return provider, listed, pv


def page_values(session: Session, provider: Provider, listed: list[ProviderVersion], pv: ProviderVersion,
                origin: str, tab: str) -> dict[str, Any]:
    """What every tab of the provider page shows (header, tabs, snippet, facts, version actions);
    ``extra_tabs``: the plugins' tabs, with their ``render``."""
    registry = current_registry()
    ns, type_ = provider.namespace.name, provider.type
    extra = provider_plugin_tabs(provider, pv)
    link = {"ns": ns, "type_": type_, "version": pv.version, "origin": origin or None}
    # Documentation: always for our own providers (an empty state says how to publish docs), for
    # mirrored ones only when they have pages.
    has_docs = not provider.hostname or bool(_page_count(session, pv))
    tabs = [{"id": t, "label": label, "url": url_for(".provider_page", **link, tab=None if t == "overview" else t)}
            for t, label in PROVIDER_TABS if t != "docs" or has_docs]
    tabs += [{"id": t["id"], "label": t["label"], "url": url_for(".provider_page", **link, tab=t["id"])}
             for t in extra]
    if tab not in {t["id"] for t in tabs}:
        raise NotFound(f"no tab {tab!r} here")
    return {
        "provider": provider, "pv": pv, "listed": listed, "latest": latest_listed(provider), "tab": tab,
        "tabs": tabs, "origin": origin, "snippet": required_providers_snippet(
            provider, pv, registry_host(), registry.settings["webui.version_constraint_template"]),
        "platforms": sorted(pv.packages, key=lambda k: (k.os, k.arch)),
        "page_title": f"{ns}/{type_}" + (f" (mirrored from {provider.hostname})" if provider.hostname else ""),
        "actions": provider_version_actions(session, pv), "extra_tabs": extra,
        "downloads": provider_svc.download_counts(
            session, [v.id for v in listed], registry.downloads.pending_provider_counts([v.id for v in listed])),
    }


def _page_count(session: Session, pv: ProviderVersion) -> int:
    return session.scalar(select(func.count()).select_from(ProviderDocPage)
                          .where(ProviderDocPage.provider_version_id == pv.id)) or 0


def docs_values(session: Session, provider: Provider, pv: ProviderVersion, origin: str,
                page: ProviderDocPage | None) -> dict[str, Any]:
    """The Documentation tab: the sidebar, and ``page`` rendered (the overview, ``index.md``, when None);
    for a page, its title as the page title and its description as the meta description."""
    link = {"ns": provider.namespace.name, "type_": provider.type, "version": pv.version, "origin": origin or None}
    pages = docs_svc.doc_pages(session, pv)
    known = {(p.category, p.slug) for p in pages}

    def url_of(category: str, slug: str) -> str:
        return url_for(".provider_doc_page", **link, category=category, slug=slug)

    if page is None and ("index", "index") in known:
        page = docs_svc.get_doc_page(session, pv, "index", "index")
    nav = docs.sidebar(docs_svc.group_pages(pages), (page.category, page.slug) if page else None, url_of)
    values: dict[str, Any] = {"doc_count": len(pages), "doc_page": page, "doc_html": None, "doc_nav": nav,
                              "doc_upload_url": url_for("tfr_webui.provider_docs_upload", **link)}
    if page is not None:
        values["doc_html"] = docs.render_doc(page.content, docs.link_resolver(page.path, known, url_of),
                                             budget=docs.doc_budget(nav))
        values["page_title"] = page.title or page.slug
        values["meta_description"] = page.description
    return values
