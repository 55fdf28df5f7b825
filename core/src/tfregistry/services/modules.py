"""Modules: publishing, lookup, deprecation and deletion."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol, TypeVar

from sqlalchemy import Select, delete, func, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from tfregistry import semver
from tfregistry.analysis import ModuleAnalysis, analyse_module_archive, failed_analysis
from tfregistry.archives import (
    ArchiveError,
    ArchiveLimits,
    ArchiveReport,
    inspect_module_archive,
    iter_tar_gz,
    path_problem,
)
from tfregistry.events import emit
from tfregistry.interfaces import CHUNK_SIZE, HashingReader, StorageBackend
from tfregistry.models import DownloadEvent, DownloadTotal, Module, ModuleVersion, Namespace
from tfregistry.registry import ModuleVersionRef
from tfregistry.services import Conflict, NotFound, ServiceError
from tfregistry.services.audit import Actor, record
from tfregistry.services.storage import delete_quietly
from tfregistry.uploads import put_upload, spooled_digest

log = logging.getLogger(__name__)

# Terraform's rules (terraform-registry-address/module.go): namespace and name are
# 1-64 of [0-9A-Za-z_-] starting and ending with a letter or digit; system is 1-64
# lower-case letters or digits.
NAME_RE = re.compile(r"^[0-9A-Za-z](?:[0-9A-Za-z_-]{0,62}[0-9A-Za-z])?$")
SYSTEM_RE = re.compile(r"^[0-9a-z]{1,64}$")


def validate_address(namespace: str, name: str, system: str) -> None:
    """Raise :class:`ServiceError` unless Terraform accepts ``namespace/name/system``."""
    for label, value in (("namespace", namespace), ("name", name)):
        if not NAME_RE.match(value or ""):
            raise ServiceError(
                f"invalid module {label} {value!r}: use 1-64 letters, digits, '-' or '_', "
                "starting and ending with a letter or digit"
            )
    if not SYSTEM_RE.match(system or ""):
        raise ServiceError(f"invalid module system {system!r}: use 1-64 lower-case letters or digits (e.g. aws)")


#: The longest version string accepted: it becomes part of storage keys, which are bounded.
MAX_VERSION_LENGTH = 128


def parse_version(text: str) -> semver.Version:
    """The parsed version; :class:`ServiceError` (400) naming the field when it is not one."""
    if len(text) > MAX_VERSION_LENGTH:
        raise ServiceError(f"invalid version: it is {len(text)} characters long (at most {MAX_VERSION_LENGTH})")
    try:
        return semver.parse(text)
    except semver.InvalidVersion as exc:
        raise ServiceError(str(exc)) from None


def storage_key(namespace: str, name: str, system: str, version: str, sha256: str) -> str:
    """Where a version's archive lives; the digest keeps racing publishes of one version apart."""
    return f"modules/{namespace}/{name}/{system}/{version}/{sha256[:16]}/{namespace}-{name}-{system}-{version}.tar.gz"


def ref(mv: ModuleVersion) -> ModuleVersionRef:
    m = mv.module
    return ModuleVersionRef(m.namespace.name, m.name, m.system, mv.version, mv.storage_key, mv.sha256, mv.size)


@dataclass
class PublishResult:
    version: ModuleVersion
    created: bool


def reindex_module(session: Session, module_id: int) -> None:
    """Update the module's search document (:func:`tfregistry.services.search.reindex_module`)."""
    from tfregistry.services import search  # search reads latest_of from here

    search.reindex_module(session, module_id)


def find_module(session: Session, namespace: str, name: str, system: str) -> Module | None:
    return session.scalar(
        select(Module)
        .join(Module.namespace)
        .where(Namespace.name == namespace, Module.name == name, Module.system == system)
        .options(selectinload(Module.versions))
    )


def get_module(session: Session, namespace: str, name: str, system: str) -> Module:
    module = find_module(session, namespace, name, system)
    if module is None or not module.versions:
        raise NotFound(f"module {namespace}/{name}/{system} not found")
    return module


def get_version(session: Session, namespace: str, name: str, system: str, version: str) -> ModuleVersion:
    return version_of(get_module(session, namespace, name, system), version)


def find_version_ref(session: Session, namespace: str, name: str, system: str,
                     version: str) -> tuple[int, ModuleVersionRef] | None:
    """The id and :class:`ModuleVersionRef` of exactly that version in one lean query (no ORM objects,
    no other versions loaded: the download path), else ``None``."""
    row = session.execute(
        select(ModuleVersion.id, Namespace.name, Module.name, Module.system, ModuleVersion.version,
               ModuleVersion.storage_key, ModuleVersion.sha256, ModuleVersion.size)
        .join(Module, ModuleVersion.module_id == Module.id)
        .join(Namespace, Module.namespace_id == Namespace.id)
        .where(Namespace.name == namespace, Module.name == name, Module.system == system,
               ModuleVersion.version == version)
    ).first()
    return None if row is None else (row[0], ModuleVersionRef(*row[1:]))


def version_strings(session: Session, namespace: str, name: str, system: str) -> list[str]:
    """Every version of the module, highest SemVer precedence first, in one lean query (the protocol's
    ``versions`` list); empty when there is no such module."""
    found = session.scalars(
        select(ModuleVersion.version)
        .join(Module, ModuleVersion.module_id == Module.id)
        .join(Namespace, Module.namespace_id == Namespace.id)
        .where(Namespace.name == namespace, Module.name == name, Module.system == system)
    ).all()
    return sorted(found, key=lambda v: semver.parse(v).sort_key(), reverse=True)


def version_of(module: Module, version: str) -> ModuleVersion:
    """``version`` of a module already loaded (with its versions), else :class:`NotFound`."""
    for mv in module.versions:
        if mv.version == version:
            return mv
    raise NotFound(f"module {module.namespace.name}/{module.name}/{module.system} has no version {version}")


def sorted_versions(versions: Sequence[ModuleVersion]) -> list[ModuleVersion]:
    """Highest SemVer precedence first."""
    return sorted(versions, key=lambda mv: semver.parse(mv.version).sort_key(), reverse=True)


def latest_version(module: Module) -> ModuleVersion | None:
    """The highest release (non-pre-release) version, else the highest pre-release."""
    return latest_of(module.versions)


class Versioned(Protocol):
    version: str
    prerelease: bool


_V = TypeVar("_V", bound=Versioned)


def latest_of(versions: Iterable[_V]) -> _V | None:
    """:func:`latest_version`'s rule over anything with ``version`` and ``prerelease`` (rows, too)."""
    ordered = sorted(versions, key=lambda mv: semver.parse(mv.version).sort_key(), reverse=True)
    releases = [mv for mv in ordered if not mv.prerelease]
    return (releases or ordered or [None])[0]


def get_or_create_namespace(session: Session, name: str, organization_id: int | None = None) -> Namespace:
    """The namespace ``name``; a new one goes into ``organization_id`` (default: the default organization)."""
    ns = session.scalar(select(Namespace).where(Namespace.name == name))
    if ns is None:
        from tfregistry.services.identity import default_organization

        org_id = organization_id or default_organization(session).id
        try:
            with session.begin_nested():  # a concurrent creator wins: fall back to its row
                ns = Namespace(name=name, organization_id=org_id)
                session.add(ns)
                session.flush()
        except IntegrityError:
            ns = session.scalar(select(Namespace).where(Namespace.name == name))
    assert ns is not None
    return ns


def _get_or_create_module(session: Session, namespace: str, name: str, system: str, description: str) -> Module:
    module = find_module(session, namespace, name, system)
    if module is None:
        ns = get_or_create_namespace(session, namespace)
        try:
            with session.begin_nested():
                module = Module(namespace=ns, name=name, system=system, description=description)
                session.add(module)
                session.flush()
        except IntegrityError:
            module = find_module(session, namespace, name, system)
            assert module is not None
    return module


def archive_limits(settings: Mapping[str, Any]) -> ArchiveLimits:
    """The module archive limits configured in ``settings`` (``limits.*``)."""
    return ArchiveLimits(
        max_files=settings["limits.module_max_files"],
        max_uncompressed_bytes=settings["limits.module_uncompressed_max_bytes"],
        max_compression_ratio=settings["limits.max_compression_ratio"],
    )


def analyse(archive: BinaryIO, limits: ArchiveLimits, label: str) -> dict[str, Any]:
    """:func:`tfregistry.analysis.analyse_module_archive`, never raising.

    ``archive`` is read as a stream from where it stands.  An unexpected failure is logged and
    becomes the result's only problem ("analysis failed: ..."), so that it never stops a publish.
    """
    return _never_raising(lambda: analyse_module_archive(archive, limits), label)


def _never_raising(run: Callable[[], dict[str, Any]], label: str) -> dict[str, Any]:
    try:
        return run()
    except Exception as exc:
        log.exception("analysis of module %s failed", label)
        return failed_analysis(f"analysis failed: {type(exc).__name__}: {exc}")


def _inspect(fileobj: BinaryIO, limits: ArchiveLimits) -> tuple[str, int, ArchiveReport, ModuleAnalysis]:
    """Check the archive and collect what its analysis needs in one read: ``(sha256, size, report, analysis)``.

    An upload hashed while it arrived (:func:`~tfregistry.uploads.spooled_digest`) is not hashed again."""
    spooled = spooled_digest(fileobj)
    if spooled is not None:
        fileobj.seek(0)
    reader: Any = fileobj if spooled is not None else HashingReader(fileobj)
    analysis = ModuleAnalysis(limits)
    try:
        report = inspect_module_archive(reader, limits, analysis.collect)
    except ArchiveError as exc:
        raise ServiceError(f"invalid module archive: {exc}") from None
    if spooled is not None:
        return spooled[1], fileobj.seek(0, 2), report, analysis
    while reader.read(CHUNK_SIZE):  # hash whatever follows the end of the tar stream
        pass
    return reader.sha256, reader.size, report, analysis


def publish_module(
    session: Session,
    storage: StorageBackend,
    actor: Actor,
    *,
    namespace: str,
    name: str,
    system: str,
    version: str,
    archive: BinaryIO,
    limits: ArchiveLimits,
    description: str = "",
) -> PublishResult:
    """Validate and store a module version.

    ``archive`` must be seekable.  The bytes are stored before the row is committed;
    if anything fails afterwards the object is removed again (or, should that fail
    too, left for ``tfr storage gc``, which removes objects no row refers to).
    Publishing identical bytes again is idempotent; different bytes are a conflict.
    """
    validate_address(namespace, name, system)
    parsed = parse_version(version)
    version = str(parsed)
    sha256, size, report, inspected = _inspect(archive, limits)

    existing = find_module(session, namespace, name, system)
    if existing is not None:
        for mv in existing.versions:
            if mv.version == version:
                return _same_or_conflict(mv, sha256)

    analysis = _never_raising(lambda: inspected.result(report), f"{namespace}/{name}/{system}/{version}")
    archive.seek(0)
    key = storage_key(namespace, name, system, version, sha256)
    stored = put_upload(storage, key, archive, content_type="application/gzip")
    if stored.sha256 != sha256 or stored.size != size:
        storage.delete(key)
        raise ServiceError("the archive changed while it was being stored; try again", status=500)
    try:
        module = _get_or_create_module(session, namespace, name, system, description)
        if description and not module.description:
            module.description = description
        mv = ModuleVersion(
            module=module,
            version=version,
            prerelease=parsed.is_prerelease,
            description=description,
            storage_key=key,
            size=size,
            sha256=sha256,
            readme=report.readme,
            published_by=actor.name,
            analysis=analysis,
        )
        session.add(mv)
        session.flush()
        reindex_module(session, module.id)
        record(session, actor, "module.publish", f"{namespace}/{name}/{system}/{version}", sha256=sha256, size=size)
        emit(session, "module.published", actor=actor, namespace=namespace,
             data={"namespace": namespace, "name": name, "system": system, "version": version, "sha256": sha256,
                   "size": size})
        session.commit()
    except IntegrityError:
        session.rollback()
        winner = get_version(session, namespace, name, system, version)
        if winner.storage_key != key:
            delete_quietly(storage, [key])
        return _same_or_conflict(winner, sha256)
    except BaseException:
        session.rollback()
        delete_quietly(storage, [key])
        raise
    return PublishResult(mv, created=True)


def _same_or_conflict(mv: ModuleVersion, sha256: str) -> PublishResult:
    if mv.sha256 == sha256:
        return PublishResult(mv, created=False)
    m = mv.module
    raise Conflict(
        f"module {m.namespace.name}/{m.name}/{m.system} version {mv.version} already exists with different "
        "content; versions are immutable, publish a new version"
    )


def set_deprecated(session: Session, actor: Actor, mv: ModuleVersion, deprecated: bool, reason: str | None) -> None:
    """Flag (or unflag) a version as deprecated; it stays installable."""
    mv.deprecated = deprecated
    mv.deprecation_reason = reason if deprecated else None
    m = mv.module
    action = "module.deprecate" if deprecated else "module.undeprecate"
    record(session, actor, action, f"{m.namespace.name}/{m.name}/{m.system}/{mv.version}", reason=reason)
    if deprecated:
        emit(session, "module.deprecated", actor=actor, namespace=m.namespace.name,
             data={"namespace": m.namespace.name, "name": m.name, "system": m.system, "version": mv.version,
                   "reason": reason})
    session.commit()


def delete_version(session: Session, storage: StorageBackend, actor: Actor, mv: ModuleVersion) -> None:
    """Delete a version: its row, its download events and its bytes."""
    m = mv.module
    module_id = m.id
    target = f"{m.namespace.name}/{m.name}/{m.system}/{mv.version}"
    key = mv.storage_key
    record(session, actor, "module.delete", target, sha256=mv.sha256)
    emit(session, "module.deleted", actor=actor, namespace=m.namespace.name,
         data={"namespace": m.namespace.name, "name": m.name, "system": m.system, "version": mv.version})
    session.delete(mv)
    session.flush()
    if not session.scalar(select(func.count()).select_from(ModuleVersion).where(ModuleVersion.module_id == m.id)):
        session.delete(m)
        session.flush()
    reindex_module(session, module_id)
    session.commit()
    delete_quietly(storage, [key])


def download_counts(session: Session, version_ids: Sequence[int]) -> dict[int, int]:
    """Downloads written so far of each of these versions (from ``download_totals``)."""
    if not version_ids:
        return {}
    rows = session.execute(select(DownloadTotal.module_version_id, DownloadTotal.count)
                           .where(DownloadTotal.module_version_id.in_(version_ids)))
    return {version_id: count for version_id, count in rows}


def module_download_totals() -> Any:
    """A subquery of ``(module_id, downloads)``: every version's downloads added up, per module."""
    return (select(DownloadTotal.module_id.label("module_id"), func.sum(DownloadTotal.count).label("downloads"))
            .group_by(DownloadTotal.module_id).subquery())


#: One module download as :class:`~tfregistry.readcache.DownloadRecorder` keeps it: module version id,
#: token id, client address, user agent (at most 300 characters), Unix time.
DownloadRow = tuple[int, int | None, str | None, str | None, float]
_EVENT_COLUMNS = ("module_version_id", "token_id", "client_ip", "user_agent", "at")


def record_downloads(session: Session, rows: Sequence[DownloadRow]) -> int:
    """Write download events and add them to the versions' totals, in the session's transaction;
    events of versions deleted meanwhile are dropped.  Returns how many were written."""
    ids = {row[0] for row in rows}
    modules = {version_id: module_id for version_id, module_id in session.execute(
        select(ModuleVersion.id, ModuleVersion.module_id).where(ModuleVersion.id.in_(ids)))}
    rows = [row for row in rows if row[0] in modules]
    if not rows:
        return 0
    _insert_events(session, rows)
    added: dict[int, int] = {}
    for row in rows:
        added[row[0]] = added.get(row[0], 0) + 1
    dialect = session.get_bind().dialect.name
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    stmt = upsert(DownloadTotal).values([{"module_version_id": v, "module_id": modules[v], "count": n}
                                         for v, n in sorted(added.items())])
    session.execute(stmt.on_conflict_do_update(index_elements=[DownloadTotal.module_version_id],
                                               set_={"count": DownloadTotal.count + stmt.excluded.count}))
    return len(rows)


def _insert_events(session: Session, rows: Sequence[DownloadRow]) -> None:
    """The events through the driver itself (``COPY`` on PostgreSQL, ``executemany`` on SQLite).

    A busy registry writes thousands of events a second, in the same processes that answer
    requests; SQLAlchemy's per-row parameter handling cost more CPU than the answers themselves.
    On SQLite timestamps go through the column's own type, so they are stored exactly as the ORM
    would; on PostgreSQL :func:`_copy_chunks` writes the same instants as text."""
    conn = session.connection()
    table = DownloadEvent.__table__
    columns = ", ".join(_EVENT_COLUMNS)
    if conn.dialect.name == "postgresql":
        with conn.connection.driver_connection.cursor() as cursor, \
                cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for chunk in _copy_chunks(rows):
                copy.write(chunk)
                time.sleep(COPY_PAUSE)
        return
    to_db = table.c.at.type.bind_processor(conn.dialect)

    def when(at: float) -> Any:
        value = datetime.fromtimestamp(at, UTC)
        return to_db(value) if to_db is not None else value

    values = [(version_id, token_id, ip, agent, when(at)) for version_id, token_id, ip, agent, at in rows]
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) VALUES (?, ?, ?, ?, ?)", values)


#: Events per piece of ``COPY`` text, and the pause after each piece.  The recorder runs in a
#: thread of a process that answers requests: a batch converted in one go held the GIL for
#: milliseconds, and every request that arrived meanwhile waited (PostgreSQL download p99 over
#: 10 ms).  A real pause, not ``sleep(0)``, lets the waiting request thread take the GIL.
COPY_CHUNK = 500
COPY_PAUSE = 0.0002
_COPY_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": ""})


def _copy_chunks(rows: Sequence[DownloadRow]) -> Iterable[str]:
    """The rows in PostgreSQL's ``COPY`` text format, :data:`COPY_CHUNK` lines at a time.

    Text fields are escaped (backslash, tab, newline, carriage return; NUL, which no text
    column can hold, dropped); instants are written as UTC to the microsecond.  Addresses,
    agents and seconds repeat within a batch, so each is formatted once."""
    texts: dict[str | None, str] = {None: _COPY_NULL}
    seconds: dict[int, str] = {}

    def text(value: str | None) -> str:
        out = texts.get(value)
        if out is None:
            out = texts[value] = value.translate(_COPY_ESCAPES)  # type: ignore[union-attr]
        return out

    def instant(at: float) -> str:
        whole, micros = divmod(round(at * 1_000_000), 1_000_000)
        prefix = seconds.get(whole)
        if prefix is None:
            prefix = seconds[whole] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole))
        return f"{prefix}.{micros:06d}+00"

    for start in range(0, len(rows), COPY_CHUNK):
        yield "".join(f"{version_id}\t{_COPY_NULL if token_id is None else token_id}\t{text(ip)}\t{text(agent)}\t"
                      f"{instant(at)}\n"
                      for version_id, token_id, ip, agent, at in rows[start:start + COPY_CHUNK])


def rebuild_download_totals(session: Session) -> None:
    """Recount every version's total from the download events (after events were written by other means)."""
    session.execute(delete(DownloadTotal))
    session.execute(insert(DownloadTotal).from_select(
        ["module_version_id", "module_id", "count"],
        select(DownloadEvent.module_version_id, ModuleVersion.module_id, func.count())
        .join(ModuleVersion, ModuleVersion.id == DownloadEvent.module_version_id)
        .group_by(DownloadEvent.module_version_id, ModuleVersion.module_id)))


def module_query(
    readable: Select | None = None, *, namespace: str | None = None, name: str | None = None,
    system: str | None = None, q: str | None = None,
) -> Select[tuple[Module]]:
    """Modules matching the filters; ``readable`` restricts to namespace ids a caller may see."""
    stmt = select(Module).join(Module.namespace).options(selectinload(Module.versions))
    if readable is not None:
        stmt = stmt.where(Module.namespace_id.in_(readable))
    if namespace:
        stmt = stmt.where(Namespace.name == namespace)
    if name:
        stmt = stmt.where(Module.name == name)
    if system:
        stmt = stmt.where(Module.system == system)
    if q:
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Module.name.ilike(like, escape="\\"), Namespace.name.ilike(like, escape="\\"),
                              Module.description.ilike(like, escape="\\")))
    return stmt.order_by(Namespace.name, Module.name, Module.system)


# --- files inside a version's archive (README links and images) ----------------------------------

#: Largest file :func:`module_archive_file` serves by default.
ARCHIVE_FILE_MAX_BYTES = 5 * 1024 * 1024
#: Image types served as themselves, with the magic bytes their content must start with.  Anything else,
#: SVG included (it can hold scripts), is served as plain text.
_IMAGE_TYPES = {
    ".png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    ".jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".gif": ("image/gif", (b"GIF87a", b"GIF89a")),
    ".webp": ("image/webp", (b"RIFF",)),
}
TEXT_TYPE = "text/plain; charset=utf-8"


def safe_content_type(path: str, data: bytes) -> str:
    """The type to serve an archive file as: PNG, JPEG, GIF and WebP images (when their bytes say so too)
    as themselves, anything else as ``text/plain; charset=utf-8``: never HTML, SVG or script."""
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    image = _IMAGE_TYPES.get(suffix)
    if image is not None and data.startswith(image[1]) and (suffix != ".webp" or data[8:12] == b"WEBP"):
        return image[0]
    return TEXT_TYPE


def _archive_path(path: str) -> str:
    """``path`` checked (relative, no ``..``, no backslash or control character) and normalised."""
    problem = path_problem(path)
    if problem or "\\" in path or path.startswith("/"):
        raise NotFound(f"no file {path!r} in this module version")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise NotFound(f"no file {path!r} in this module version")
    return "/".join(parts)


def module_archive_file(storage: StorageBackend, mv: ModuleVersion, path: str,
                        max_bytes: int = ARCHIVE_FILE_MAX_BYTES, *,
                        limits: ArchiveLimits | None = None) -> tuple[bytes, str]:
    """One regular file of a version's archive, as ``(content, content type)`` (:func:`safe_content_type`).

    The archive is streamed from storage and read only up to the file.  :class:`NotFound` for a
    path that is unsafe, missing, a directory or a link (links are never followed);
    :class:`ServiceError` 413 for a file larger than ``max_bytes``.  The web layer must add
    ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy: sandbox`` to the answer.
    """
    wanted = _archive_path(path)
    label = f"{path!r} in this module version"
    fh = storage.open(mv.storage_key)
    try:
        for entry in iter_tar_gz(fh, limits or ArchiveLimits()):
            if entry.name != wanted:
                continue
            if entry.kind != "file":
                kind = {"dir": "a directory", "symlink": "a symbolic link"}.get(entry.kind, entry.kind)
                raise NotFound(f"{label} is {kind}, not a regular file (links are not followed)")
            if entry.size > max_bytes:
                raise ServiceError(f"{label} is larger than {max_bytes} bytes; it is not shown", status=413)
            data = entry.read(max_bytes)
            return data, safe_content_type(wanted, data)
    except ArchiveError as exc:
        raise ServiceError(f"the archive of this module version cannot be read: {exc}", status=500) from None
    finally:
        fh.close()
    raise NotFound(f"no file {label}")


def versions_to_analyse(session: Session, address: str | None = None, everything: bool = False) -> list[int]:
    """Ids of the versions ``tfr modules reanalyze`` works on, oldest first.

    ``address`` is ``namespace/name/system`` (every version) or ``namespace/name/system/version``;
    without it, every version never analysed (``analysis`` is NULL), or every version with ``everything``.
    """
    stmt = select(ModuleVersion.id).order_by(ModuleVersion.id)
    if address:
        parts = address.strip("/").split("/")
        if len(parts) not in (3, 4):
            raise ServiceError(f"invalid module address {address!r}: use namespace/name/system[/version]")
        module = get_module(session, *parts[:3])
        ids = [mv.id for mv in module.versions] if len(parts) == 3 else [version_of(module, parts[3]).id]
        return sorted(ids)
    if not everything:
        stmt = stmt.where(ModuleVersion.analysis.is_(None))
    return list(session.scalars(stmt))


def reanalyse_versions(session: Session, storage: StorageBackend, limits: ArchiveLimits,
                       version_ids: Sequence[int]) -> int:
    """Read each version's archive from storage and store its analysis again; returns how many were done.

    Versions deleted meanwhile are skipped; each version is committed on its own, so a retry redoes little.
    """
    done = 0
    for version_id in version_ids:
        mv = session.get(ModuleVersion, version_id)
        if mv is None:
            continue
        m = mv.module
        with storage.open(mv.storage_key) as fh:
            mv.analysis = analyse(fh, limits, f"{m.namespace.name}/{m.name}/{m.system}/{mv.version}")
        session.flush()
        reindex_module(session, mv.module_id)  # the search document holds the analysis' symbols
        session.commit()
        done += 1
    return done
