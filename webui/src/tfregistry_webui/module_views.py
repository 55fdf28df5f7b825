"""Module pages: a version's tabs, its submodules and examples, compare, usage, archive files.

URLs (each tab its own page, no JavaScript needed)::

    /modules/<ns>/<name>/<system>                         latest release, Readme
    /modules/<ns>/<name>/<system>/<version>[/<tab>]
    /modules/<ns>/<name>/<system>/<tab>                   a tab of the latest release
    /modules/<ns>/<name>/<system>/<version>/submodules/<x>[/<tab>]
    /modules/<ns>/<name>/<system>/<version>/examples/<x>[/<tab>]
    /modules/<ns>/<name>/<system>/compare/<a>...<b>
    /modules/<ns>/<name>/<system>/<version>/files/<path>  a file of the archive (README images), size-capped
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.archives import ArchiveError, read_archive_files
from tfregistry.models import DownloadEvent, Module, ModuleVersion
from tfregistry.services import NotFound, ServiceError
from tfregistry.services import modules as svc
from tfregistry.web import current_registry
from tfregistry_webui import compare as compare_mod
from tfregistry_webui import provision, usage
from tfregistry_webui.files import serve_module_file
from tfregistry_webui.markdown import render_markdown
from tfregistry_webui.publish_views import module_version_actions
from tfregistry_webui.ui import (
    bp,
    is_version,
    layout_identity,
    markup_or_escape,
    plugin_tabs,
    registry_host,
    render_page,
)

#: The built-in tabs of a module version, in order (Changelog only when the archive has one).
VERSION_TABS = [("readme", "Readme"), ("inputs", "Inputs"), ("outputs", "Outputs"),
                ("dependencies", "Dependencies"), ("resources", "Resources"), ("submodules", "Submodules"),
                ("examples", "Examples"), ("changelog", "Changelog"), ("versions", "Versions"), ("usage", "Usage")]
#: The tabs of a submodule or an example ("code": the example's files).
PART_TABS = [("readme", "Readme"), ("inputs", "Inputs"), ("outputs", "Outputs"), ("dependencies", "Dependencies"),
             ("resources", "Resources")]
EXAMPLE_TABS = [*PART_TABS[:1], ("code", "Code"), *PART_TABS[1:]]
RESERVED = {t for t, _ in VERSION_TABS} | {"code", "compare", "files"}
#: Where submodules and examples live in an archive (and in their ``//`` addresses).
DIRECTORY = {"submodules": "modules", "examples": "examples"}
#: Example files shown: Terraform/OpenTofu sources and their notes.
EXAMPLE_SUFFIXES = (".tf", ".tf.json", ".tofu", ".tfvars", ".tfvars.json", ".md", ".hcl", ".txt")


# --- loading ---------------------------------------------------------------------------------------


def readable_module(session: Session, ns: str, name: str, system: str) -> Module:
    """The module after the same check the protocol makes (401/403, or 404 for a hidden namespace)."""
    auth.require(session, "modules:read", auth.namespace_for(session, ns))
    return svc.get_module(session, ns, name, system)


def address_of(module: Module) -> str:
    """``host/namespace/name/system``, as typed in a ``source`` argument."""
    return f"{registry_host()}/{module.namespace.name}/{module.name}/{module.system}"


def version_rows(session: Session, module: Module) -> list[dict[str, Any]]:
    """Every version, highest first, with what the picker and the Versions tab show."""
    ordered = svc.sorted_versions(module.versions)
    latest = svc.latest_version(module)
    ids = [mv.id for mv in ordered]
    counts = svc.download_counts(session, ids)
    for version_id, pending in current_registry().downloads.pending_counts(ids).items():
        counts[version_id] = counts.get(version_id, 0) + pending  # counted, not yet written (as the API does)
    return [{"mv": mv, "latest": latest is not None and mv.id == latest.id, "downloads": counts.get(mv.id, 0)}
            for mv in ordered]


def _doc_for(analysis: dict[str, Any] | None, kind: str | None, part: str | None) -> dict[str, Any] | None:
    if analysis is None:
        return None
    if kind is None:
        return analysis.get("root") or {}
    wanted = f"{DIRECTORY[kind]}/{part}"
    for doc in analysis.get(kind) or ():
        if doc.get("path") == wanted:
            return doc
    raise NotFound(f"no {kind[:-1]} {part!r} in this version")


def _problems(analysis: dict[str, Any] | None, kind: str | None, part: str | None) -> list[dict[str, Any]]:
    problems = (analysis or {}).get("problems") or []
    if kind is None:
        return problems
    prefix = f"{DIRECTORY[kind]}/{part}/"
    return [p for p in problems if str(p.get("path", "")).startswith(prefix)]


def module_plugin_tabs(mv: ModuleVersion) -> list[dict[str, Any]]:
    """Tabs plugins add to this version (``tfr_webui_module_tabs``)."""
    registry = current_registry()
    return plugin_tabs(registry.hooks.tfr_webui_module_tabs(registry=registry, module_version=svc.ref(mv),
                                                            identity=layout_identity()), RESERVED)


# --- the module page -----------------------------------------------------------------------------------


@bp.get("/modules/<ns>/<name>/<system>")
@bp.get("/modules/<ns>/<name>/<system>/<version>")
@bp.get("/modules/<ns>/<name>/<system>/<version>/<tab>")
def module_page(ns: str, name: str, system: str, version: str | None = None, tab: str | None = None) -> Any:
    """A module version's page (the latest release without a version), one tab per URL."""
    picked = request.args.get("version")
    if picked and version is None:  # the version picker without JavaScript: a GET form
        wanted_tab = request.args.get("tab") or None
        wanted_tab = wanted_tab if wanted_tab and wanted_tab != "readme" else None
        kind, part = request.args.get("kind"), request.args.get("part")
        if kind in DIRECTORY and part:  # the same submodule or example in the other version
            return redirect(url_for(".part_page", ns=ns, name=name, system=system, version=picked, kind=kind,
                                    part=part, tab=wanted_tab))
        return redirect(url_for(".module_page", ns=ns, name=name, system=system, version=picked, tab=wanted_tab))
    if version is not None and tab is None and not is_version(version):
        version, tab = None, version  # /modules/ns/name/system/<tab>: a tab of the latest version
    with current_registry().db.session() as session:
        module = readable_module(session, ns, name, system)
        if version is None:
            mv = svc.latest_version(module)
            if mv is None:
                raise NotFound(f"module {ns}/{name}/{system} has no versions")
        else:
            mv = svc.version_of(module, version)
        return _render(session, module, mv, tab or "readme", None, None)


@bp.get("/modules/<ns>/<name>/<system>/<version>/<any(submodules, examples):kind>/<part>")
@bp.get("/modules/<ns>/<name>/<system>/<version>/<any(submodules, examples):kind>/<part>/<tab>")
def part_page(ns: str, name: str, system: str, version: str, kind: str, part: str, tab: str = "readme") -> Any:
    """A submodule's or an example's page: the same tabs (an example adds Code), its own ``//`` address."""
    with current_registry().db.session() as session:
        module = readable_module(session, ns, name, system)
        mv = svc.version_of(module, version)
        return _render(session, module, mv, tab, kind, part)


def _tab_list(base: dict[str, str], kind: str | None, part: str | None, analysis: dict[str, Any] | None,
              doc: dict[str, Any] | None, extra_tabs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's tabs with their URLs and item counts (Changelog only when there is one)."""
    if kind is None:
        available = [(t, label) for t, label in VERSION_TABS if t != "changelog" or (analysis or {}).get("changelog")]
        available += [(t["id"], t["label"]) for t in extra_tabs]
        tabs = [{"id": t, "label": label, "url": url_for(".module_page", **base, tab=None if t == "readme" else t)}
                for t, label in available]
    else:
        available = EXAMPLE_TABS if kind == "examples" else PART_TABS
        tabs = [{"id": t, "label": label, "url": url_for(".part_page", **base, kind=kind, part=part,
                                                          tab=None if t == "readme" else t)} for t, label in available]
    for t in tabs:
        t["count"] = _count(t["id"], doc, analysis)
    return tabs


def _render(session: Session, module: Module, mv: ModuleVersion, tab: str, kind: str | None,
            part: str | None) -> Any:
    """The module page (``kind`` ``None``) or a submodule's or example's page, showing ``tab``."""
    settings = current_registry().settings
    analysis = mv.analysis
    doc = _doc_for(analysis, kind, part)
    base = {"ns": module.namespace.name, "name": module.name, "system": module.system, "version": mv.version}
    extra_tabs = module_plugin_tabs(mv) if kind is None else []
    tabs = _tab_list(base, kind, part, analysis, doc, extra_tabs)
    if tab not in {t["id"] for t in tabs}:
        raise NotFound(f"no tab {tab!r} here")
    address = address_of(module)
    sub_path = f"{DIRECTORY[kind]}/{part}" if kind else ""
    source = f"{address}//{sub_path}" if sub_path else address
    rows = version_rows(session, module)
    this = next(r for r in rows if r["mv"].id == mv.id)
    constraint = provision.version_constraint(settings["webui.version_constraint_template"], mv.version,
                                              latest=this["latest"])
    snippet = provision.provision_snippet(label=part or module.name, source=source, constraint=constraint,
                                          inputs=(doc or {}).get("inputs") or [])
    values: dict[str, Any] = {
        "module": module, "mv": mv, "rows": rows, "this": this, "total_downloads": sum(r["downloads"] for r in rows),
        "analysis": analysis, "doc": doc, "kind": kind, "part": part, "tab": tab, "tabs": tabs,
        "address": address, "source": source, "snippet": snippet,
        "problems": _problems(analysis, kind, part), "base": base,
        "actions": module_version_actions(session, mv) if kind is None else None,
        "page_title": f"{module.namespace.name}/{module.name}/{module.system}" + (f" · {sub_path}" if sub_path else ""),
    }
    values.update(_tab_values(session, module, mv, tab, kind, part, doc, analysis, extra_tabs, base))
    from tfregistry.services.scm import violations_of_version

    values["tag_moved"] = violations_of_version(session, mv.id)  # SCM: tags moved after publishing (banner)
    return render_page("module.html", **values)


def _count(tab: str, doc: dict[str, Any] | None, analysis: dict[str, Any] | None) -> int | None:
    if doc is None:
        return None
    lists = {"inputs": ["inputs"], "outputs": ["outputs"], "dependencies": ["dependencies", "provider_dependencies"],
             "resources": ["resources", "data_sources"]}
    if tab in lists:
        return sum(len(doc.get(key) or ()) for key in lists[tab])
    if tab in ("submodules", "examples"):
        return len((analysis or {}).get(tab) or ())
    return None


def _tab_values(session: Session, module: Module, mv: ModuleVersion, tab: str, kind: str | None, part: str | None,
                doc: dict[str, Any] | None, analysis: dict[str, Any] | None, extra_tabs: list[dict[str, Any]],
                base: dict[str, str]) -> dict[str, Any]:
    """What the shown tab needs (only that tab's data is computed)."""
    if tab == "readme":
        text = mv.readme if kind is None else (doc or {}).get("readme")
        files_base = url_for(".archive_file", **base, path=(f"{DIRECTORY[kind]}/{part}/" if kind else "") + "x")[:-1]
        return {"readme_html": render_markdown(text, link_base=files_base) if text else None}
    if tab == "changelog":
        return {"changelog_html": render_markdown(analysis["changelog"], link_base=None)}
    if tab == "versions":
        return {}
    if tab == "usage":
        return _usage_values(session, module)
    if tab == "code":
        return {"files": example_files(mv, module, part or "")}
    for extra in extra_tabs:
        if extra["id"] == tab:
            return {"plugin_body": markup_or_escape(extra["render"]())}
    return {}


def example_files(mv: ModuleVersion, module: Module, part: str) -> list[dict[str, Any]]:
    """The example's files from the stored archive (capped), sources rewritten to the registry address."""
    directory = f"examples/{part}"
    registry = current_registry()

    def wanted(name: str) -> bool:
        return posixpath.dirname(name) == directory and name.endswith(EXAMPLE_SUFFIXES)

    fh = registry.storage.open(mv.storage_key)
    try:
        found = read_archive_files(fh, wanted)
    except ArchiveError as exc:
        return [{"name": "(archive)", "text": f"The archive could not be read: {exc}", "truncated": False}]
    finally:
        fh.close()
    address = address_of(module)
    files = []
    # the configuration first, then notes and variable files
    for item in sorted(found, key=lambda f: (not f.name.endswith((".tf", ".tofu", ".tf.json")), f.name)):
        text = item.data.decode("utf-8", errors="replace")
        if item.name.endswith((".tf", ".tofu")):
            text = provision.rewrite_example_sources(text, example_dir=directory, address=address, version=mv.version)
        files.append({"name": posixpath.basename(item.name), "text": text, "truncated": item.truncated})
    return files


def _usage_values(session: Session, module: Module) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    since = datetime.combine(today - timedelta(days=400), datetime.min.time(), tzinfo=UTC)
    versions = {mv.id: mv.version for mv in module.versions}
    rows = session.execute(
        select(DownloadEvent.at, DownloadEvent.user_agent, DownloadEvent.module_version_id)
        .where(DownloadEvent.module_version_id.in_(list(versions)), DownloadEvent.at >= since)
        .execution_options(yield_per=5000))
    stats = usage.aggregate(((at, agent, versions[vid]) for at, agent, vid in rows), today)
    return {
        "usage": stats,
        "weekly_chart": usage.bar_chart(stats.weeks, title=f"Downloads per week, last {usage.WEEKS} weeks",
                                        label_format="%d %b", chart_id="chart-weeks"),
        "monthly_chart": usage.bar_chart(stats.months, title=f"Downloads per month, last {usage.MONTHS} months",
                                         label_format="%b %Y", chart_id="chart-months"),
        "client_versions": usage.group_client_versions(stats),
        "version_by_month": usage.by_version_table(stats, stats.months[-6:]),
        "recent_months": stats.months[-6:],
    }


# --- compare ---------------------------------------------------------------------------------------------


@bp.get("/modules/<ns>/<name>/<system>/compare")
@bp.get("/modules/<ns>/<name>/<system>/compare/<spec>")
def compare(ns: str, name: str, system: str, spec: str | None = None) -> Any:
    if spec is None:  # the form on the Versions tab
        a, b = request.args.get("from", ""), request.args.get("to", "")
        if not a or not b:
            raise ServiceError("choose two versions to compare")
        return redirect(url_for(".compare", ns=ns, name=name, system=system, spec=f"{a}...{b}"))
    if "..." not in spec:
        raise ServiceError("compare two versions as A...B, e.g. 1.0.0...1.1.0")
    a, b = spec.split("...", 1)
    with current_registry().db.session() as session:
        module = readable_module(session, ns, name, system)
        old, new = svc.version_of(module, a), svc.version_of(module, b)
        sections = []
        if old.analysis is not None and new.analysis is not None:
            sections.append(("Root module", compare_mod.compare_docs(old.analysis.get("root") or {},
                                                                     new.analysis.get("root") or {})))
            old_subs = {d.get("path"): d for d in old.analysis.get("submodules") or ()}
            for doc in new.analysis.get("submodules") or ():
                if doc.get("path") in old_subs:
                    found = compare_mod.compare_docs(old_subs[doc["path"]], doc)
                    if not found.empty:
                        sections.append((doc["path"], found))
        return render_page("compare.html", page_title=f"Compare {ns}/{name}/{system} {a}...{b}", module=module,
                           old=old, new=new, sections=sections, rows=version_rows(session, module))


# --- files of the archive (README images and links) ----------------------------------------------------------


@bp.get("/modules/<ns>/<name>/<system>/<version>/files/<path:path>")
def archive_file(ns: str, name: str, system: str, version: str, path: str) -> Any:
    """A file inside the version's archive, for README links and images (the ``link_base`` given to
    :func:`~tfregistry_webui.markdown.render_markdown`); see :func:`tfregistry_webui.files.serve_module_file`."""
    return serve_module_file(ns, name, system, version, path)
