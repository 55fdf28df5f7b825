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

from tfregistry.models import DownloadTotal, Module, ModuleVersion, Namespace, Provider

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
    """The newest module versions the caller may read, newest first.

    First among the newest few hundred versions of all (read through the ``published_at`` index),
    and only when fewer than ``limit`` of those are readable, among all versions.
    """
    def newest(candidates: Select | None) -> list[ModuleVersion]:
        stmt = select(ModuleVersion).join(Module).where(Module.namespace_id.in_(readable))
        if candidates is not None:
            stmt = stmt.where(ModuleVersion.id.in_(candidates))
        return list(session.scalars(stmt.order_by(ModuleVersion.published_at.desc(), ModuleVersion.id.desc())
                                    .limit(limit)))

    window = select(ModuleVersion.id).order_by(ModuleVersion.published_at.desc()).limit(max(200, limit * 25))
    found = newest(select(window.subquery().c.id))
    return found if len(found) == limit else newest(None)


def most_downloaded(session: Session, readable: Select, limit: int = 8) -> list[tuple[Module, int]]:
    """Modules with the most downloads (all versions), most first: the top totals first, then their rows."""
    total = func.sum(DownloadTotal.count)
    top = session.execute(
        select(DownloadTotal.module_id, total).join(Module, Module.id == DownloadTotal.module_id)
        .where(Module.namespace_id.in_(readable)).group_by(DownloadTotal.module_id)
        .order_by(total.desc(), DownloadTotal.module_id).limit(limit)).all()
    modules = {m.id: m for m in session.scalars(select(Module).where(Module.id.in_([row[0] for row in top])))}
    return [(modules[module_id], int(downloads)) for module_id, downloads in top if module_id in modules]


def module_downloads(session: Session, module_ids: list[int]) -> dict[int, int]:
    """Downloads of each module, all versions together."""
    if not module_ids:
        return {}
    rows = session.execute(select(DownloadTotal.module_id, func.sum(DownloadTotal.count))
                           .where(DownloadTotal.module_id.in_(module_ids)).group_by(DownloadTotal.module_id))
    return {module_id: int(count) for module_id, count in rows}


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
