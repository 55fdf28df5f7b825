"""Provider documentation: storing a version's ``docs/`` pages, and reading them back.

Docs are not the signed artefact, so a version's docs may be replaced: publishing docs again
swaps the whole set (in one transaction, audited as ``provider.docs``); the packages and
SHA256SUMS stay immutable.  Reading and checking the archive is :mod:`tfregistry.provider_docs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from tfregistry.models import ProviderDocPage, ProviderVersion
from tfregistry.provider_docs import CATEGORIES, CATEGORY_LABELS, DocsError, DocsLimits, DocsReport, read_docs_archive
from tfregistry.services import Conflict, NotFound, ServiceError
from tfregistry.services.audit import Actor, record


class _Page(Protocol):
    path: str
    category: str
    slug: str
    title: str
    subcategory: str
    description: str


@dataclass
class StoreResult:
    report: DocsReport
    #: How many pages the version had before (0: its first docs).
    replaced: int


def _label(pv: ProviderVersion) -> str:
    p = pv.provider
    return f"{p.namespace.name}/{p.type}/{pv.version}"


def check_docs(archive: BinaryIO, limits: DocsLimits) -> DocsReport:
    """Read a docs archive without storing anything (the preview): its pages and problems.
    :class:`ServiceError` (400, or 413 for a limit) when the archive is refused."""
    try:
        return read_docs_archive(archive, limits)
    except DocsError as exc:
        raise ServiceError(f"invalid docs archive: {exc}", status=exc.status) from None


def store_provider_docs(session: Session, actor: Actor, pv: ProviderVersion, archive: BinaryIO,
                        limits: DocsLimits) -> StoreResult:
    """Check a docs archive and make its pages the documentation of ``pv``, replacing any it had.

    Nothing is stored when the archive is refused (:func:`check_docs`).  Files skipped are
    returned as problems; they do not stop the rest.
    """
    report = check_docs(archive, limits)
    replaced = session.scalar(select(func.count()).select_from(ProviderDocPage)
                              .where(ProviderDocPage.provider_version_id == pv.id)) or 0
    try:
        session.execute(delete(ProviderDocPage).where(ProviderDocPage.provider_version_id == pv.id))
        session.add_all(ProviderDocPage(provider_version_id=pv.id, path=page.path, category=page.category,
                                        slug=page.slug, title=page.title, subcategory=page.subcategory,
                                        description=page.description, content=page.content)
                        for page in report.pages)
        session.flush()
        record(session, actor, "provider.docs", _label(pv), pages=len(report.pages), replaced=replaced,
               problems=len(report.problems))
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"the docs of {_label(pv)} were replaced concurrently; try again") from None
    except BaseException:
        session.rollback()
        raise
    return StoreResult(report, replaced)


def doc_pages(session: Session, pv: ProviderVersion) -> list[ProviderDocPage]:
    """The pages of a version, without their content (it is loaded only if read)."""
    return list(session.scalars(select(ProviderDocPage).where(ProviderDocPage.provider_version_id == pv.id)
                                .options(defer(ProviderDocPage.content))))


def get_doc_page(session: Session, pv: ProviderVersion, category: str, slug: str) -> ProviderDocPage:
    """One page with its content; :class:`NotFound` when the version has no such page."""
    page = session.scalar(select(ProviderDocPage).where(
        ProviderDocPage.provider_version_id == pv.id, ProviderDocPage.category == category,
        ProviderDocPage.slug == slug))
    if page is None:
        raise NotFound(f"{_label(pv)} has no documentation page {category}/{slug}")
    return page


def page_summary(page: _Page) -> dict[str, Any]:
    return {"path": page.path, "category": page.category, "slug": page.slug, "title": page.title,
            "subcategory": page.subcategory, "description": page.description}


def group_pages(pages: Sequence[_Page]) -> list[dict[str, Any]]:
    """Pages as the sidebar shows them: categories in :data:`~tfregistry.provider_docs.CATEGORIES` order,
    then subcategories (pages without one first, then by name), then pages by title.  Summaries only."""
    grouped: dict[str, dict[str, list[_Page]]] = {}
    for page in pages:
        grouped.setdefault(page.category, {}).setdefault(page.subcategory, []).append(page)
    order = {name: i for i, name in enumerate(CATEGORIES)}
    return [{
        "category": category,
        "label": CATEGORY_LABELS.get(category, category),
        "subcategories": [{
            "name": sub,
            "pages": [page_summary(p) for p in sorted(subs[sub], key=lambda p: (p.title.casefold(), p.slug))],
        } for sub in sorted(subs, key=lambda s: (s != "", s.casefold()))],
    } for category, subs in sorted(grouped.items(), key=lambda item: order.get(item[0], len(order)))]
