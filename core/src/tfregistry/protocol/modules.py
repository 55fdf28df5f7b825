"""The Module Registry Protocol (``modules.v1``) and the public registry's browse API.

Shapes follow ``docs/reference/protocols.md`` §3; Terraform reads only the
``versions`` list and the ``X-Terraform-Get`` header of ``download``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint, jsonify, make_response, redirect, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.models import Module, ModuleVersion
from tfregistry.protocol import error, page_args, page_meta, register_error_handlers, url_ttl
from tfregistry.readcache import cacheable
from tfregistry.services import NotFound
from tfregistry.services import modules as svc
from tfregistry.services import search as search_svc
from tfregistry.web import current_registry

bp = Blueprint("tfr_modules", __name__, url_prefix="/v1/modules")
register_error_handlers(bp)


def _readable_module(session: Session, ns: str, name: str, system: str) -> Module:
    """The module, after checking the caller may read its namespace (401/403 before any 404)."""
    auth.require(session, "modules:read", auth.namespace_for(session, ns))
    return svc.get_module(session, ns, name, system)


def scm_source(mv: ModuleVersion) -> str:
    """The repository URL of a version published from source control, else ``""``."""
    from sqlalchemy.orm import object_session

    from tfregistry.models import ScmProvenance

    session = object_session(mv)
    provenance = session.get(ScmProvenance, mv.id) if session is not None and mv.id is not None else None
    return provenance.repository_url if provenance is not None else ""


def module_json(mv: ModuleVersion, downloads: int = 0) -> dict[str, Any]:
    m = mv.module
    return {
        "id": f"{m.namespace.name}/{m.name}/{m.system}/{mv.version}",
        "owner": "",
        "namespace": m.namespace.name,
        "name": m.name,
        "version": mv.version,
        "provider": m.system,
        "description": mv.description or m.description,
        "source": scm_source(mv),
        "published_at": mv.published_at.isoformat(),
        "downloads": downloads,
        "verified": False,
        "deprecated": mv.deprecated,
        "deprecation_reason": mv.deprecation_reason,
    }


def _list(session: Session, **filters: Any) -> Any:
    offset, limit = page_args()
    stmt = svc.module_query(auth.readable_namespace_ids(session), **filters)
    modules = session.scalars(stmt.offset(offset).limit(limit + 1)).unique().all()
    return _page(session, modules[:limit], offset, limit, len(modules) > limit)


def _page(session: Session, modules: Sequence[Module], offset: int, limit: int, has_more: bool) -> Any:
    latest = [mv for mv in (svc.latest_version(m) for m in modules) if mv is not None]
    counts = _download_counts(session, [mv.id for mv in latest])
    cacheable()
    return jsonify(meta=page_meta(offset, limit, has_more),
                   modules=[module_json(mv, counts.get(mv.id, 0)) for mv in latest])


@bp.get("")
@bp.get("/")
def list_all():
    with current_registry().db.session() as session:
        return _list(session, namespace=request.args.get("namespace"), system=request.args.get("provider"))


@bp.get("/search")
def search():
    q = request.args.get("q", "").strip()
    if not q:
        return error(400, "query parameter 'q' is required")
    offset, limit = page_args()
    with current_registry().db.session() as session:
        found = search_svc.search_modules(session, auth.readable_namespace_ids(session), q=q, offset=offset,
                                          limit=limit, namespace=request.args.get("namespace"),
                                          system=request.args.get("provider"))  # the public API's "provider"
        return _page(session, found.modules, offset, limit, found.has_more)


@bp.get("/<ns>")
def list_namespace(ns: str):
    with current_registry().db.session() as session:
        return _list(session, namespace=ns, system=request.args.get("provider"))


@bp.get("/<ns>/<name>")
def list_name(ns: str, name: str):
    with current_registry().db.session() as session:
        return _list(session, namespace=ns, name=name, system=request.args.get("provider"))


def _download_counts(session: Session, version_ids: list[int]) -> dict[int, int]:
    """Downloads written to the database plus those this process has counted and not written yet."""
    counts = svc.download_counts(session, version_ids)
    for version_id, pending in current_registry().downloads.pending_counts(version_ids).items():
        counts[version_id] = counts.get(version_id, 0) + pending
    return counts


#: A module directory as documented before (or without) analysis.
_EMPTY_DOC: dict[str, Any] = {"required_version": None, "inputs": [], "outputs": [], "dependencies": [],
                              "provider_dependencies": [], "resources": [], "data_sources": [], "files": []}


def _details(session: Session, module: Module, mv: ModuleVersion) -> dict[str, Any]:
    """The public registry's module details: root, submodules and examples from the stored analysis."""
    total = session.scalar(
        select(func.count()).select_from(ModuleVersion).where(ModuleVersion.module_id == module.id)
    )
    data = module_json(mv, _download_counts(session, [mv.id]).get(mv.id, 0))
    analysis = mv.analysis or {}
    root = {**_EMPTY_DOC, "empty": False, **(analysis.get("root") or {}),
            "path": "", "name": module.name, "readme": mv.readme or ""}
    providers = [module.system] + [p["name"] for p in root["provider_dependencies"]]
    data.update(
        root=root,
        submodules=analysis.get("submodules") or [],
        examples=analysis.get("examples") or [],
        providers=list(dict.fromkeys(providers)),
        analysis_problems=analysis.get("problems") or [],
        versions=[v.version for v in svc.sorted_versions(module.versions)],
        version_count=total,
        sha256=mv.sha256,
        size=mv.size,
    )
    return data


def _readable_latest(session: Session, ns: str, name: str, system: str) -> tuple[Module, ModuleVersion]:
    module = _readable_module(session, ns, name, system)
    mv = svc.latest_version(module)
    if mv is None:
        raise NotFound(f"module {ns}/{name}/{system} has no versions")
    return module, mv


@bp.get("/<ns>/<name>/<system>")
def latest_details(ns: str, name: str, system: str):
    with current_registry().db.session() as session:
        module, mv = _readable_latest(session, ns, name, system)
        cacheable()
        return jsonify(_details(session, module, mv))


@bp.get("/<ns>/<name>/<system>/<version>")
def version_details(ns: str, name: str, system: str, version: str):
    with current_registry().db.session() as session:
        module = _readable_module(session, ns, name, system)
        details = _details(session, module, svc.version_of(module, version))
        cacheable()
        return jsonify(details)


@bp.get("/<ns>/<name>/<system>/versions")
def versions(ns: str, name: str, system: str):
    with current_registry().db.session() as session:
        auth.require(session, "modules:read", auth.namespace_for(session, ns))
        ordered = svc.version_strings(session, ns, name, system)
        if not ordered:
            svc.get_module(session, ns, name, system)  # the 404
        cacheable()
        return jsonify(modules=[{
            "source": f"{ns}/{name}/{system}",
            "versions": [{"version": v, "root": {"providers": [], "dependencies": []}, "submodules": []}
                         for v in ordered],
        }])


@bp.get("/<ns>/<name>/<system>/<version>/download")
def download(ns: str, name: str, system: str, version: str):
    registry = current_registry()
    with registry.db.session() as session:
        auth.require(session, "modules:read", auth.namespace_for(session, ns))
        found = svc.find_version_ref(session, ns, name, system, version)
        if found is None:  # the precise 404: no such module, or no such version of it
            svc.version_of(svc.get_module(session, ns, name, system), version)
            raise NotFound(f"module {ns}/{name}/{system} has no version {version}")
        mv_id, ref = found
        location = registry.hooks.tfr_module_download_location(registry=registry, module_version=ref)
        identity = auth.current_identity(session)
    # counted in memory and written in batches: a download never waits for a commit
    registry.downloads.add(mv_id, identity.token_id, request.remote_addr, request.user_agent.string)
    cacheable(url_ttl() / 2, download=mv_id, observe=(("module_download", {"namespace": ref.namespace}),))
    # Terraform reads only the header (204).  OpenTofu also accepts a 200 JSON body,
    # which other clients get too; Terraform would ignore it but 204 is the documented answer.
    if request.user_agent.string.startswith("Terraform/"):
        response = make_response("", 204)
    else:
        response = jsonify(location=location)
    response.headers["X-Terraform-Get"] = location
    return response


@bp.get("/<ns>/<name>/<system>/download")
def download_latest(ns: str, name: str, system: str):
    with current_registry().db.session() as session:
        _, mv = _readable_latest(session, ns, name, system)
        target = url_for(".download", ns=ns, name=name, system=system, version=mv.version)
    return redirect(target, code=302)
