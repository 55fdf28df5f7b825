"""Module search: a full-text index of each module's latest version, and the query over it.

The index (migration 0008) is one row per module, keyed by the module id, holding the text of the
module's latest version (:func:`tfregistry.services.modules.latest_of`): namespace, name, system,
description, README, and the symbols its analysis found (input and output names of the root, resource and
data source types of the root and its submodules).  SQLite keeps it in an FTS5 virtual table, PostgreSQL in
a ``tsvector`` column with a GIN index (the ``simple`` configuration: no stemming, no stop words).

Identifiers: ``aws_s3_bucket`` is findable as a whole (the query ``aws_s3_bucket`` does not match
``aws_s3_bucket_policy``) and by its parts (``s3``).  SQLite's tokenizer keeps ``_`` inside tokens and the
document adds each identifier's parts; PostgreSQL's parser splits at ``_`` and the document adds each whole
identifier as a lexeme of its own.

The index holds text only: who may read a module, and the namespace, system and organization filters, are
read from the live tables in the same query, so visibility changes need no reindex.  The writers keep it
current by calling :func:`reindex_module` after a publish, a delete or a (re)analysis; ``tfr search
reindex`` rebuilds it all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql import literal_column

from tfregistry.models import Module, ModuleVersion, Namespace, Organization
from tfregistry.services import ServiceError
from tfregistry.services.modules import latest_of, module_download_totals

#: The index; not in the SQLAlchemy models (see :func:`tfregistry.db.include_name`).
TABLE = "module_search"
#: README text beyond this many characters is not indexed (PostgreSQL caps a tsvector at 1 MB).
MAX_README = 100_000
#: Longer query text is cut here, and only this many terms are used.
MAX_QUERY = 256
MAX_TERMS = 16
#: The orders :func:`search_modules` knows; ``relevance`` needs a query.
SORTS = ("relevance", "downloads", "recent", "name")
#: FTS5 bm25 column weights (namespace, name, system, description, readme, symbols); PostgreSQL uses
#: ts_rank's A (namespace, name, system), B (description), C (symbols) and D (readme) classes instead.
BM25_WEIGHTS = (5.0, 10.0, 2.0, 4.0, 1.0, 3.0)

_WORD = re.compile(r"\w+")
_ALNUM = re.compile(r"[^\W_]")
_PARTS = re.compile(r"[^\W_]+")
_IDENTIFIER = re.compile(r"^\w+$")

_Db = Session | Connection
_SIMPLE = literal_column("'simple'::regconfig")


@dataclass
class Document:
    """The indexed text of one module."""

    module_id: int
    namespace: str
    name: str
    system: str
    description: str
    readme: str
    symbols: str
    providers: list[str]

    def identifiers(self) -> list[str]:
        """Every word with an ``_`` in it, lower-cased, once."""
        text = " ".join((self.namespace, self.name, self.description, self.readme, self.symbols))
        seen = {w.lower() for w in _WORD.findall(text) if "_" in w and _ALNUM.search(w) and len(w) <= 200}
        return sorted(seen)


@dataclass
class SearchResult:
    """A page of modules (versions loaded) and whether more follow."""

    modules: list[Module]
    has_more: bool


def _is_postgres(db: _Db) -> bool:
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    return dialect.name == "postgresql"


# --- the document ------------------------------------------------------------------------


def _symbols(analysis: Any) -> tuple[list[str], list[str]]:
    """Words to index and providers used, from a version's analysis (shape in tfregistry.analysis)."""
    if not isinstance(analysis, dict):
        return [], []
    root = analysis.get("root") if isinstance(analysis.get("root"), dict) else {}
    subs = [d for d in analysis.get("submodules") or [] if isinstance(d, dict)]
    words: list[str] = []
    providers: list[str] = []

    def names(doc: dict[str, Any], key: str, field: str) -> list[str]:
        return [str(item[field]) for item in doc.get(key) or [] if isinstance(item, dict) and item.get(field)]

    words += names(root, "inputs", "name") + names(root, "outputs", "name")
    types: list[str] = []
    for doc in (root, *subs):
        types += names(doc, "resources", "type") + names(doc, "data_sources", "type")
        for req in doc.get("provider_dependencies") or []:
            if not isinstance(req, dict):
                continue
            if req.get("name"):
                providers.append(str(req["name"]).lower())
            source = str(req.get("source") or "").lower()
            if source:
                providers.append(source)
                if source.count("/") == 2:  # registry.terraform.io/hashicorp/aws: also hashicorp/aws
                    providers.append(source.split("/", 1)[1])
    for local in dict.fromkeys(t.split("_", 1)[0].lower() for t in types):
        # used without required_providers: Terraform implies hashicorp/<prefix> (terraform_data is built in)
        if local not in providers and local != "terraform":
            providers += [local, f"hashicorp/{local}"]
    return list(dict.fromkeys(words + types)), list(dict.fromkeys(providers))


def documents(db: _Db, module_ids: Sequence[int] | None = None, chunk: int = 500) -> Iterator[Document]:
    """The search documents of ``module_ids`` (all modules when None); modules without versions have none.

    Column-level queries only (no ORM entities), so a migration can call it too.
    """
    mod_stmt = (select(Module.id, Namespace.name.label("namespace"), Module.name, Module.system, Module.description)
                .join(Namespace, Namespace.id == Module.namespace_id).order_by(Module.id))
    if module_ids is not None:
        mod_stmt = mod_stmt.where(Module.id.in_(list(module_ids)))
    modules = db.execute(mod_stmt).all()
    for start in range(0, len(modules), chunk):
        batch = modules[start:start + chunk]
        versions: dict[int, list[Any]] = {}
        for row in db.execute(select(ModuleVersion.id, ModuleVersion.module_id, ModuleVersion.version,
                                     ModuleVersion.prerelease)
                              .where(ModuleVersion.module_id.in_([m.id for m in batch]))):
            versions.setdefault(row.module_id, []).append(row)
        latest = {m_id: latest_of(rows) for m_id, rows in versions.items()}
        details = {row.id: row for row in db.execute(
            select(ModuleVersion.id, ModuleVersion.description, ModuleVersion.readme, ModuleVersion.analysis)
            .where(ModuleVersion.id.in_([mv.id for mv in latest.values() if mv is not None])))}
        for m in batch:
            mv = latest.get(m.id)
            if mv is None:
                continue
            d = details[mv.id]
            words, providers = _symbols(d.analysis)
            if not providers:  # not analysed (yet), or nothing found: the system is the best guess
                providers = [m.system.lower()]
            yield Document(m.id, m.namespace, m.name, m.system, d.description or m.description or "",
                           (d.readme or "")[:MAX_README], " ".join(words), providers)


def _with_parts(text: str) -> str:
    """``text`` plus the parts of each ``_`` identifier in it (SQLite keeps ``_`` inside tokens)."""
    parts = [" ".join(_PARTS.findall(w)) for w in _WORD.findall(text) if "_" in w]
    return " ".join([text, *parts]) if parts else text


def _providers_text(providers: Iterable[str]) -> str:
    return " " + " ".join(p.replace(" ", "") for p in providers) + " "


def _write(db: _Db, doc: Document) -> None:
    params = {"id": doc.module_id, "providers": _providers_text(doc.providers)}
    if _is_postgres(db):
        db.execute(sa.text(
            f"INSERT INTO {TABLE} (module_id, document, providers) VALUES (:id, "
            "setweight(to_tsvector('simple', :head), 'A') || setweight(to_tsvector('simple', :description), 'B')"
            " || setweight(to_tsvector('simple', :symbols), 'C') || setweight(to_tsvector('simple', :readme), 'D')"
            " || setweight(array_to_tsvector(CAST(:identifiers AS text[])), 'C'), :providers) "
            "ON CONFLICT (module_id) DO UPDATE SET document = excluded.document, providers = excluded.providers"),
            {**params, "head": f"{doc.namespace} {doc.name} {doc.system}", "description": doc.description,
             "symbols": doc.symbols, "readme": doc.readme, "identifiers": doc.identifiers()})
        return
    db.execute(sa.text(f"DELETE FROM {TABLE} WHERE rowid = :id"), {"id": doc.module_id})
    db.execute(sa.text(
        f"INSERT INTO {TABLE} (rowid, namespace, name, system, description, readme, symbols, providers) "
        "VALUES (:id, :namespace, :name, :system, :description, :readme, :symbols, :providers)"),
        {**params, "namespace": _with_parts(doc.namespace), "name": _with_parts(doc.name), "system": doc.system,
         "description": _with_parts(doc.description), "readme": _with_parts(doc.readme),
         "symbols": _with_parts(doc.symbols)})


def _key(db: _Db) -> str:
    return "module_id" if _is_postgres(db) else "rowid"


def reindex_module(db: _Db, module_id: int) -> None:
    """Bring one module's index row up to date (call after flushing a publish, delete or analysis).

    A module that no longer exists or has no version loses its row.  Runs in the caller's transaction.
    """
    docs = list(documents(db, [module_id]))
    if not docs:
        db.execute(sa.text(f"DELETE FROM {TABLE} WHERE {_key(db)} = :id"), {"id": module_id})
        return
    _write(db, docs[0])


def reindex_all(db: _Db) -> int:
    """Rebuild the whole index (``tfr search reindex``, migration 0008); returns the number of modules indexed."""
    db.execute(sa.text(f"DELETE FROM {TABLE}"))
    count = 0
    for doc in documents(db):
        _write(db, doc)
        count += 1
    # cached search answers (tfregistry.readcache) were made from the old index
    db.execute(sa.text("UPDATE catalog_state SET generation = generation + 1 WHERE id = 1"))
    return count


# --- the query ---------------------------------------------------------------------------


def query_terms(q: str) -> list[str]:
    """The user's words: whitespace-separated, each with at least one letter or digit (cut to a bound)."""
    return [t for t in q[:MAX_QUERY].replace("\x00", " ").split() if _ALNUM.search(t)][:MAX_TERMS]


def _prefix(term: str, last: bool) -> bool:
    """Only the last word matches as a prefix, and never an identifier (``aws_s3_bucket`` means that type)."""
    return last and "_" not in term


def fts5_match(terms: Sequence[str]) -> str:
    """An FTS5 MATCH expression: every term a quoted string (never FTS5 syntax), all required."""
    out = []
    for i, term in enumerate(terms):
        quoted = '"' + term.replace('"', '""') + '"'
        out.append(quoted + "*" if _prefix(term, i == len(terms) - 1) else quoted)
    return " ".join(out)


def _pg_tsquery(terms: Sequence[str]) -> ColumnElement[Any]:
    """A tsquery ANDing one sub-query per term, each built by PostgreSQL from a bound parameter."""
    parts: list[ColumnElement[Any]] = []
    for i, term in enumerate(terms):
        if "_" in term and _IDENTIFIER.match(term):  # a whole identifier: the lexeme itself (only \w, no quoting)
            parts.append(sa.cast(sa.literal(f"'{term.lower()}'"), TSQUERY))
            continue
        phrase = func.phraseto_tsquery(_SIMPLE, sa.literal(term, sa.Text))
        if _prefix(term, i == len(terms) - 1):
            phrase = sa.case((func.numnode(phrase) == 0, phrase),
                             else_=sa.cast(sa.cast(phrase, sa.Text) + ":*", TSQUERY))
        parts.append(phrase)
    query = parts[0]
    for part in parts[1:]:
        query = query.op("&&")(part)
    return query


def _fts_table() -> sa.TableClause:
    return sa.table(TABLE, sa.column("rowid"), sa.column("module_id"), sa.column("document"),
                    sa.column("providers"))


def _like_word(word: str) -> str:
    """A LIKE pattern finding `` word `` in the space-delimited providers text."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"% {escaped} %"


def search_modules(
    session: Session, readable: Select | None, *, q: str | None = None, namespace: str | None = None,
    system: str | None = None, organization: str | None = None, provider: str | None = None,
    sort: str | None = None, offset: int = 0, limit: int = 20,
) -> SearchResult:
    """A page of the modules ``readable`` allows that match ``q`` and the filters, in ``sort`` order.

    ``q`` is user text, never search syntax: words are all required, the last one also as a prefix.
    ``provider`` is a provider the module requires (local name or source, e.g. ``aws`` or ``hashicorp/aws``).
    ``sort``: relevance (the default with ``q``), downloads, recent (newest version first) or name (the
    default without ``q``).  One query (plus one loading the modules' versions), whatever the page.
    """
    sort = sort or ("relevance" if q else "name")
    if sort not in SORTS:
        raise ServiceError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    terms = query_terms(q or "")
    if q and q.strip() and not terms:  # nothing searchable (only punctuation): nothing matches
        return SearchResult([], False)
    postgres = _is_postgres(session)
    idx = _fts_table()
    key = idx.c.module_id if postgres else idx.c.rowid
    stmt = (select(Module).join(Namespace, Namespace.id == Module.namespace_id)
            .options(selectinload(Module.versions)))
    rank: ColumnElement[Any] | None = None
    if terms or provider:
        stmt = stmt.join(idx, key == Module.id)
    if terms:
        if postgres:
            tsq = _pg_tsquery(terms)
            stmt = stmt.where(idx.c.document.op("@@")(tsq))
            rank = -func.ts_rank(idx.c.document, tsq)
        else:
            stmt = stmt.where(literal_column(TABLE).op("MATCH")(fts5_match(terms)))
            rank = func.bm25(literal_column(TABLE), *BM25_WEIGHTS)
    if provider:
        stmt = stmt.where(idx.c.providers.like(_like_word(provider.strip().lower()), escape="\\"))
    if readable is not None:
        stmt = stmt.where(Module.namespace_id.in_(readable))
    if namespace:
        stmt = stmt.where(Namespace.name == namespace)
    if system:
        stmt = stmt.where(Module.system == system)
    if organization:
        stmt = stmt.join(Organization, Organization.id == Namespace.organization_id).where(
            Organization.name == organization)
    order: list[Any] = []
    if sort == "relevance" and rank is not None:
        order.append(rank)
    elif sort == "downloads":
        counts = module_download_totals()
        stmt = stmt.outerjoin(counts, counts.c.module_id == Module.id)
        order.append(func.coalesce(counts.c.downloads, 0).desc())
    elif sort == "recent":
        newest = (select(ModuleVersion.module_id, func.max(ModuleVersion.published_at).label("at"))
                  .group_by(ModuleVersion.module_id).subquery())
        stmt = stmt.join(newest, newest.c.module_id == Module.id)
        order.append(newest.c.at.desc())
    order += [Namespace.name, Module.name, Module.system, Module.id]
    modules = list(session.scalars(stmt.order_by(*order).offset(offset).limit(limit + 1)).unique())
    return SearchResult(modules[:limit], len(modules) > limit)
