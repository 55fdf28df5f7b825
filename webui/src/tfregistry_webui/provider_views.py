"""Provider pages: versions, platforms, signing keys, the ``required_providers`` snippet, mirrored badges.

URLs (a mirrored provider adds ``?origin=<host>``)::

    /providers/<ns>/<type>[/<version>][/<tab>]
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
from tfregistry.services import providers as provider_svc
from tfregistry.services.gpgkeys import active_keys
from tfregistry.web import current_registry
from tfregistry_webui import provision, publish_views
from tfregistry_webui.ui import (
    bp,
    is_version,
    layout_identity,
    markup_or_escape,
    plugin_tabs,
    registry_host,
    render_page,
)

#: Built-in tabs; "docs" appears when the version has documentation pages (tfr publish provider --docs).
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
    origin = request.args.get("origin", "").strip().lower()
    picked = request.args.get("version")
    if picked and version is None:  # the version picker without JavaScript
        return redirect(url_for(".provider_page", ns=ns, type_=type_, version=picked, origin=origin or None,
                                tab=request.args.get("tab") or None))
    if version is not None and tab is None and not is_version(version):
        version, tab = None, version
    tab = tab or "overview"
    registry = current_registry()
    with registry.db.session() as session:
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
        latest = latest_listed(provider)
        doc_pages = session.scalar(select(func.count()).select_from(ProviderDocPage)
                                   .where(ProviderDocPage.provider_version_id == pv.id)) or 0
        extra = provider_plugin_tabs(provider, pv)
        link = {"ns": ns, "type_": type_, "version": pv.version, "origin": origin or None}
        tabs = [{"id": t, "label": label, "url": url_for(".provider_page", **link, tab=None if t == "overview" else t)}
                for t, label in PROVIDER_TABS if t != "docs" or doc_pages]
        tabs += [{"id": t["id"], "label": t["label"], "url": url_for(".provider_page", **link, tab=t["id"])}
                 for t in extra]
        if tab not in {t["id"] for t in tabs}:
            raise NotFound(f"no tab {tab!r} here")
        values: dict[str, Any] = {
            "provider": provider, "pv": pv, "listed": listed, "latest": latest, "tab": tab, "tabs": tabs,
            "origin": origin, "snippet": required_providers_snippet(
                provider, pv, registry_host(), registry.settings["webui.version_constraint_template"]),
            "platforms": sorted(pv.packages, key=lambda k: (k.os, k.arch)),
            "actions": publish_views.provider_version_actions(session, pv),
            "page_title": f"{ns}/{type_}" + (f" (mirrored from {provider.hostname})" if provider.hostname else ""),
        }
        if tab == "keys":
            values["keys"] = [] if provider.hostname else active_keys(session, provider.namespace)
        elif tab == "docs":
            values["doc_pages"] = list(session.scalars(
                select(ProviderDocPage).where(ProviderDocPage.provider_version_id == pv.id)
                .order_by(ProviderDocPage.category, ProviderDocPage.subcategory, ProviderDocPage.title)))
        for t in extra:
            if t["id"] == tab:
                values["plugin_body"] = markup_or_escape(t["render"]())
        return render_page("provider.html", **values)
