"""Read-only queries the pages need beyond the services: counts, recent and popular lists, sorting.

Every function takes ``readable``, the sub-select of namespace ids the caller may read
(:func:`tfregistry.auth.readable_namespace_ids`), so a page never counts or lists what the API
would hide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from tfregistry.models import DownloadEvent, Module, ModuleVersion, Namespace, Provider

#: Sort orders of the module list; ``relevance`` only applies with a query.
MODULE_SORTS = {"name": "Name", "downloads": "Most downloaded", "recent": "Recently published"}


@dataclass
class Page:
    """One page of a list: the rows, where it starts, and whether more follow."""

    items: list[Any]
    offset: int
    limit: int
    has_more: bool


def counts(session: Session, readable_modules: Select, readable_providers: Select) -> dict[str, int]:
    """How many modules, module versions and providers the caller can see."""
    modules = session.scalar(select(func.count()).select_from(Module).where(Module.namespace_id.in_(readable_modules)))
    versions = session.scalar(select(func.count()).select_from(ModuleVersion).join(Module)
                              .where(Module.namespace_id.in_(readable_modules)))
    providers = session.scalar(select(func.count()).select_from(Provider)
                               .where(Provider.namespace_id.in_(readable_providers), Provider.versions.any()))
    return {"modules": modules or 0, "versions": versions or 0, "providers": providers or 0}


def recently_published(session: Session, readable: Select, limit: int = 8) -> list[ModuleVersion]:
    """The newest module versions, newest first."""
    return list(session.scalars(
        select(ModuleVersion).join(Module).where(Module.namespace_id.in_(readable))
        .order_by(ModuleVersion.published_at.desc(), ModuleVersion.id.desc()).limit(limit)
    ))


def _download_totals() -> Any:
    return (select(ModuleVersion.module_id.label("module_id"), func.count(DownloadEvent.id).label("downloads"))
            .join(DownloadEvent, DownloadEvent.module_version_id == ModuleVersion.id)
            .group_by(ModuleVersion.module_id).subquery())


def most_downloaded(session: Session, readable: Select, limit: int = 8) -> list[tuple[Module, int]]:
    """Modules with the most downloads (all versions), most first."""
    totals = _download_totals()
    rows = session.execute(
        select(Module, totals.c.downloads).join(totals, totals.c.module_id == Module.id)
        .where(Module.namespace_id.in_(readable)).order_by(totals.c.downloads.desc(), Module.name).limit(limit)
    ).all()
    return [(module, downloads) for module, downloads in rows]


def module_downloads(session: Session, module_ids: list[int]) -> dict[int, int]:
    """Downloads of each module, all versions together."""
    if not module_ids:
        return {}
    rows = session.execute(
        select(ModuleVersion.module_id, func.count(DownloadEvent.id))
        .join(DownloadEvent, DownloadEvent.module_version_id == ModuleVersion.id)
        .where(ModuleVersion.module_id.in_(module_ids)).group_by(ModuleVersion.module_id))
    return {module_id: count for module_id, count in rows}


def search_modules(session: Session, readable: Select, *, q: str | None, namespace: str | None,
                   system: str | None, organization: str | None, provider: str | None, sort: str, offset: int,
                   limit: int) -> Page:
    """The module list and search of the web UI: :func:`tfregistry.services.search.search_modules`
    (the full-text index, the same service as ``GET /api/v1/modules``) as a :class:`Page`."""
    from tfregistry.services import search

    found = search.search_modules(session, readable, q=q or None, namespace=namespace or None,
                                  system=system or None, organization=organization or None,
                                  provider=provider or None, sort=sort, offset=offset, limit=limit)
    return Page(found.modules, offset, limit, found.has_more)


def provider_query(readable: Select, *, namespace: str | None = None) -> Select[tuple[Provider]]:
    """Providers with versions that the caller may read (the registry's own and mirrored ones), by namespace
    and type."""
    stmt = (select(Provider).join(Provider.namespace)
            .where(Provider.namespace_id.in_(readable), Provider.versions.any())
            .options(selectinload(Provider.versions)).order_by(Namespace.name, Provider.type, Provider.hostname))
    if namespace:
        stmt = stmt.where(Namespace.name == namespace)
    return stmt


def list_providers(session: Session, readable: Select, *, namespace: str | None, offset: int,
                   limit: int) -> Page:
    rows = list(session.scalars(provider_query(readable, namespace=namespace).offset(offset).limit(limit + 1)).unique())
    return Page(rows[:limit], offset, limit, len(rows) > limit)
