"""Replayed answers for the Terraform protocols' read endpoints, and buffered download counting.

Nearly every request ``terraform init`` sends asks for the same few kilobytes of JSON again.
:class:`ReadCache` is WSGI middleware that keeps each such answer in the process after a view
has produced it, and replays it without Flask, the ORM or a permission check while the
**catalog generation** it was made under is still the database's:

* Database triggers (migration 0006) bump ``catalog_state.generation`` in the same transaction
  as every change to namespaces, organizations, memberships, roles, modules, providers, signing
  keys, and to the columns of tokens and users that decide who may read what.  On SQLite the
  cache reads the generation on each request (one single-row ``SELECT``), so a change made by
  any process or tool is seen by the next request.  On PostgreSQL each bump also sends a
  ``NOTIFY`` (migration 0008) and a listener thread per process keeps the value, so a request
  costs no round trip: a change is seen by the replica that made it at once (after any commit of
  its own the committing thread, and the next request, read the generation directly), and by
  every other replica as soon as the notification arrives, at the latest
  ``2 × cache.generation_heartbeat`` (1 s) later, should notifications stop (see
  :class:`Generation`).
* An answer is only replayed to the **same credential** that received it (no token, or the
  SHA-256 of the bearer token), on the same host, scheme, path prefix, path and query, and for
  the same kind of client (Terraform, or others, who get a JSON body for module downloads).
  So it never crosses tenants or permission levels; requests with a browser session cookie,
  other ``Authorization`` schemes, or while a third-party plugin implements
  ``tfr_authenticate`` / ``tfr_permission_allowed`` are never replayed.
* Views opt in with :func:`cacheable`; an answer lives at most ``cache.ttl`` seconds, never
  past the credential's expiry, and never longer than half the lifetime of the signed
  download URLs it contains.
* A JSON answer of :data:`GZIP_MIN` bytes or more is also kept gzip-compressed and sent so to
  clients that accept it (Terraform's Go HTTP client does), see :func:`gzip_variant`.

Download events are counted by :class:`DownloadRecorder`: appended in memory and written in
batches by a background thread, so no download costs its request a commit; the rest is
written when the application closes (``registry.close()``, and at interpreter exit, which
covers gunicorn's graceful worker shutdown).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import gzip
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import g, request
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tfregistry.protocol import files
from tfregistry.web import (
    NOT_REPLAYED_KEY,
    REPLAY_ONLY_KEY,
    ROUTE_KEY,
    SHARED_ANSWERS_ENV,
    TOKEN_KEY,
    current_registry,
    environ_request_id,
)

if TYPE_CHECKING:
    from tfregistry.db import Database
    from tfregistry.registry import Registry
    from tfregistry.services.modules import DownloadRow

log = logging.getLogger("tfregistry.readcache")

#: Keys this module keeps in the WSGI environ of a request.
_KEY = "tfregistry.readcache.key"
_HINT = "tfregistry.readcache.hint"
#: Response headers never stored: they belong to one request.
_PER_REQUEST_HEADERS = {"x-request-id", "set-cookie", "date"}
_GENERATION_SQL = "SELECT generation FROM catalog_state WHERE id = 1"
#: Longest a request waits for another one making the same answer, in seconds.
FILL_WAIT = 5.0
#: Largest signed file :meth:`ReadCache.replay_only` sends (module archives are usually smaller).
LOOP_FILE_SIZE = 256 * 1024
#: Answers of at least this many bytes are also kept gzip-compressed, for clients that accept it.
GZIP_MIN = 1024


@dataclass(frozen=True)
class CacheHint:
    """What a view said about its answer (see :func:`cacheable`)."""

    ttl: float
    #: Epoch seconds after which the credential that received the answer stops working.
    valid_until: float | None
    #: Count a module download of this version each time the answer is replayed.
    download: int | None
    token_id: int | None
    #: Observations (name, labels) made again each time the answer is replayed.
    observations: tuple[tuple[str, dict[str, str]], ...] = ()
    #: Count a download of this provider version each time the answer is replayed.
    provider_download: int | None = None


@dataclass(frozen=True)
class Entry:
    generation: int
    expires: float
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    download: int | None
    token_id: int | None
    route: str | None = None
    etag: str | None = None
    observations: tuple[tuple[str, dict[str, str]], ...] = ()
    provider_download: int | None = None
    #: The same answer gzip-compressed, with its own headers (see :func:`gzip_variant`).
    gzipped: tuple[list[tuple[str, str]], bytes] | None = None

    def for_client(self, environ: dict[str, Any]) -> tuple[list[tuple[str, str]], bytes]:
        """The headers and body to send: compressed where there is such a variant and the client accepts it."""
        if self.gzipped is not None and accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING")):
            return self.gzipped
        return self.headers, self.body


def gzip_variant(headers: list[tuple[str, str]], body: bytes
                 ) -> tuple[list[tuple[str, str]], tuple[list[tuple[str, str]], bytes] | None]:
    """An answer's headers, and its gzip-compressed variant (headers, body), where worth having.

    A JSON or text body of :data:`GZIP_MIN` bytes or more that compresses to less than 90% is
    kept compressed as well (level 6, no timestamp, so every process makes the same bytes).  Both
    variants then carry ``Vary: Accept-Encoding``; the compressed one has ``Content-Encoding:
    gzip``, its own ``Content-Length``, and its own ``ETag`` (the answer's with ``-gzip``), as
    a strong validator must differ between encodings.
    """
    names = {k.lower(): v for k, v in headers}
    kind = names.get("content-type", "")
    if (len(body) < GZIP_MIN or "content-encoding" in names
            or not kind.startswith(("application/json", "text/"))):
        return headers, None
    packed = gzip.compress(body, compresslevel=6, mtime=0)
    if len(packed) >= 0.9 * len(body):
        return headers, None
    vary = names.get("vary")
    plain = [(k, v) for k, v in headers if k.lower() != "vary"]
    plain.append(("Vary", f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"))
    packed_headers = []
    for k, v in plain:
        if k.lower() == "content-length":
            v = str(len(packed))
        elif k.lower() == "etag" and v.endswith('"'):
            v = v[:-1] + '-gzip"'
        packed_headers.append((k, v))
    packed_headers.append(("Content-Encoding", "gzip"))
    return plain, (packed_headers, packed)


@functools.lru_cache(maxsize=64)
def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value admits gzip (``gzip``, ``x-gzip`` or ``*``, with a q above 0)."""
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if not q.startswith("q="):
            return True
        try:
            return float(q[2:]) > 0
        except ValueError:
            return False
    return False


def cacheable(ttl: float | None = None, *, download: int | None = None, provider_download: int | None = None,
              observe: tuple[tuple[str, dict[str, str]], ...] = ()) -> None:
    """Let the read cache replay the answer of the current request, and HTTP caches keep it.

    Call it from a view once the answer is certain (after the permission check).  ``ttl``
    shortens the entry's life (answers with signed URLs pass half the URL lifetime);
    ``download``, a module version id, makes every replay count a download of it (``provider_download``:
    a provider version id, the same);
    ``observe``, ``(name, labels)`` pairs, are made now and again on every replay
    (``registry.observe``).  The answer gets ``Cache-Control`` (``http.cache_max_age``, at most
    ``ttl``) and an ``ETag``.  Outside the cache (disabled, or a request it does not handle) only
    the observations and headers apply.
    """
    if observe:
        registry = current_registry()
        if registry.observe.active:
            for name, labels in observe:
                registry.observe(name, **labels)
    max_age = current_registry().settings["http.cache_max_age"]
    g.tfr_http_cache = max_age if ttl is None else min(max_age, ttl)
    environ = request.environ
    if _KEY not in environ:
        return
    identity = g.get("tfr_identity")
    environ[_HINT] = CacheHint(
        ttl=float("inf") if ttl is None else ttl,
        valid_until=getattr(identity, "valid_until", None),
        download=download,
        token_id=getattr(identity, "token_id", None),
        observations=observe,
        provider_download=provider_download,
    )


#: The PostgreSQL channel every generation bump notifies (migration 0008); the payload is the new value.
NOTIFY_CHANNEL = "tfregistry_catalog"


class Generation:
    """The catalog generation as the database has it now.

    On SQLite (in WAL mode, the registry's) a call first reads the WAL-index header from the
    database's ``-shm`` file (:class:`WalIndexHeader`): every commit rewrites it, so while it is
    the one seen at the last direct read, the generation read then still holds; otherwise (and
    without a usable ``-shm`` file) the generation is read.

    On PostgreSQL a :class:`GenerationListener` thread per
    process LISTENs for bumps and the value it holds is used without a round trip, as long as its
    connection has proved alive within ``2 × heartbeat`` seconds; otherwise (and on the next call
    after this process committed a transaction, which may have bumped it) the generation is read
    directly.  Right after such a commit the committing thread also reads it and hands it to the
    listener, so calls that never make a round trip (``read=False``) see it as well.

    Direct reads use connections of their own (outside the application's pool, in autocommit, so
    every read sees the latest commit), kept in a small free list: a thread takes one for the read
    and puts it back, so servers that start a thread per request do not open one per request.
    """

    def __init__(self, engine: Engine, *, heartbeat: float = 0.5, sessionmaker: Any = None) -> None:
        self._engine = engine
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._heartbeat = heartbeat
        self._listen = engine.dialect.name == "postgresql" and heartbeat > 0
        self._listener: GenerationListener | None = None
        #: SQLite: the WAL-index header (opened after a first direct read) and what it was at the last one.
        self._wal: WalIndexHeader | None = None
        self._wal_path = _wal_index_path(engine)
        self._seen: tuple[bytes, int] | None = None
        #: Set after any commit of this process's sessions: the next call that may read, reads directly.
        self._dirty = True
        #: Until the first direct read, and when the read after a commit of this process failed: calls
        #: that make no round trip (``read=False``) do not trust the listener's value.
        self._blind = True
        if sessionmaker is not None:
            event.listen(sessionmaker, "after_commit", self._committed)

    def _committed(self, session: Any) -> None:
        """A commit of this process may have bumped the generation (in a trigger).  The next call
        that may make a round trip reads directly; on PostgreSQL the committing thread also reads it
        at once, before its request is answered, so that calls which make none (the worker's event
        loop asks with ``read=False``) see it too, without waiting for the notification."""
        self._dirty = True
        listener = self._listener_for_this_process()
        if listener is None:
            return  # SQLite: read on every call anyway
        value = self._read()
        if value is None:
            self._blind = True
        else:
            listener.observe(value)
            self._blind = False

    def current(self, *, read: bool = True) -> int | None:
        """The generation, or ``None`` when it cannot be known (then nothing is replayed).

        ``read=False``: ``None`` rather than a round trip to a database server (PostgreSQL without a
        trusted listener value); SQLite's local read is still made."""
        listener = self._listener_for_this_process()
        if listener is not None and not (self._dirty if read else self._blind):
            value = listener.value()
            if value is not None:
                return value
        if listener is not None and not read:
            return None
        self._dirty = False
        wal, seen = self._wal, self._seen
        header = wal.read() if wal is not None and self._pid == os.getpid() else None
        if header is not None and seen is not None and seen[0] == header:
            return seen[1]
        value = self._read()
        if listener is not None and value is not None:
            listener.observe(value)
            self._blind = False
        if value is not None and self._wal_path is not None:
            self._remember(header, value)
        return value

    def _remember(self, header: bytes | None, value: int) -> None:
        """SQLite: keep the value with the header read *before* it (a commit in between only costs a
        read more); open the header once a connection of ours holds the ``-shm`` file open."""
        if self._wal is None:
            with self._lock:
                if self._wal is None and self._free and self._pid == os.getpid():
                    self._wal = WalIndexHeader.open(self._wal_path)
                    if self._wal is None:  # not in WAL mode: read on every call, without trying again
                        self._wal_path = None
            return
        if header is not None:
            self._seen = (header, value)

    def _listener_for_this_process(self) -> GenerationListener | None:
        if not self._listen:
            return None
        with self._lock:
            if self._pid != os.getpid():  # a forked child never uses its parent's connections or thread
                self._forked()
            if self._listener is None:
                self._listener = GenerationListener(self._connect, self._heartbeat)
                self._listener.start()
            return self._listener

    def _read(self) -> int | None:
        with self._lock:
            if self._pid != os.getpid():
                self._forked()
            conn = self._free.pop() if self._free else None
        if conn is None:
            conn = self._connect()
            if conn is None:
                return None
        try:
            value = _select_generation(conn)
        except Exception:  # a broken connection: dropped, the answer is made without the cache
            self._drop_wal()
            with contextlib.suppress(Exception):
                conn.close()
            return None
        with self._lock:
            self._free.append(conn)
        return value

    def _forked(self) -> None:
        """In a forked child (called under the lock): none of the parent's connections, thread or
        ``-shm`` file (the file is safe to read only while a connection of this process holds it)."""
        self._free, self._pid, self._listener = [], os.getpid(), None
        self._wal, self._seen = None, None

    def _drop_wal(self) -> None:
        wal, self._wal, self._seen = self._wal, None, None
        if wal is not None:
            wal.close()

    def _connect(self) -> Any:
        try:
            raw = self._engine.raw_connection()
            conn = raw.driver_connection
            raw.detach()  # ours alone from now on, never handed back to the pool
            if self._engine.dialect.name == "postgresql":
                conn.autocommit = True
        except Exception:  # the database is down: the views answer that themselves
            return None
        return conn

    def close(self) -> None:
        """Stop the listener; close the idle connections (one in use is closed by its reader's next failure)."""
        with self._lock:
            idle, self._free = self._free, []
            listener, self._listener = self._listener, None
            self._drop_wal()
        if listener is not None:
            listener.stop()
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


#: The WAL-index header: two copies of 48 bytes at the start of the ``-shm`` file (https://www.sqlite.org/walformat.html).
_WAL_HEADER_COPY = 48


def _wal_index_path(engine: Engine) -> str | None:
    """The ``-shm`` file of a SQLite database file (``None``: not SQLite, or not a file)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.realpath(database) + "-shm"  # SQLite names it after the resolved path too


class WalIndexHeader:
    """SQLite's WAL-index header, read from the database's ``-shm`` file.

    Every commit in WAL mode rewrites it (a change counter, the last frame, salts and checksums:
    https://www.sqlite.org/walformat.html), which is how SQLite's own readers learn that their
    cached pages are stale.  Reading 96 bytes costs a fifth of the generation ``SELECT``.  The
    writer updates the second copy first, then the first; two copies that differ (a commit under
    way) or an uninitialised header read as ``None``, and the caller reads the database.

    The file is read with ``pread``, never mapped, so a file that shrank cannot crash the process,
    and it is used only while a connection of this process has the database open: SQLite deletes or
    resets the ``-shm`` file only when no connection holds it.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open(cls, path: str) -> WalIndexHeader | None:
        """The header of ``path``, or ``None`` where there is none (not in WAL mode, no ``pread``)."""
        if not hasattr(os, "pread"):
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        header = cls(fd)
        if header.read() is None:
            header.close()
            return None
        return header

    def read(self) -> bytes | None:
        """Both copies of the header when they agree and it is initialised, else ``None``."""
        try:
            data = os.pread(self._fd, 2 * _WAL_HEADER_COPY, 0)
        except OSError:
            return None
        if len(data) != 2 * _WAL_HEADER_COPY or data[:_WAL_HEADER_COPY] != data[_WAL_HEADER_COPY:] or not data[12]:
            return None
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _select_generation(conn: Any) -> int | None:
    cursor = conn.cursor()
    try:
        cursor.execute(_GENERATION_SQL)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return int(row[0]) if row else None


class GenerationListener(threading.Thread):
    """PostgreSQL: holds the catalog generation, learnt from ``NOTIFY`` as each bump commits.

    LISTENs first, then reads the generation, so no bump falls between the two.  Every
    ``heartbeat`` seconds it reads the generation again on the same connection: that proves the
    connection alive and corrects the value should a notification ever be lost.  The value is
    trusted only within ``2 × heartbeat`` of the last proof; a connection that fails or hangs
    therefore costs speed (direct reads), never correctness.  A failed connection is replaced,
    with a growing pause between attempts.
    """

    def __init__(self, connect: Callable[[], Any], heartbeat: float) -> None:
        super().__init__(name="tfregistry-generation-listener", daemon=True)
        self._connect = connect
        self._heartbeat = heartbeat
        self._value: int | None = None
        self._trusted_until = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conn: Any = None

    def value(self) -> int | None:
        """The generation, or ``None`` while the connection has not proved alive recently."""
        with self._lock:
            return self._value if time.monotonic() < self._trusted_until else None

    def observe(self, value: int, *, proof: bool = False) -> None:
        """Take a generation read elsewhere (generations only grow); ``proof``: read on our connection."""
        with self._lock:
            self._value = value if self._value is None else max(self._value, value)
            if proof:
                self._trusted_until = time.monotonic() + 2 * self._heartbeat

    def stop(self) -> None:
        self._stopping.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def run(self) -> None:
        pause = 0.1
        while not self._stopping.is_set():
            conn = self._connect()
            if conn is None:
                self._stopping.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            self._conn = conn
            try:
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                while not self._stopping.is_set():
                    value = _select_generation(conn)
                    if value is not None:
                        self.observe(value, proof=True)
                    pause = 0.1
                    for note in conn.notifies(timeout=self._heartbeat):
                        with contextlib.suppress(ValueError):
                            self.observe(int(note.payload))
            except Exception as exc:  # dropped connection, server restart: untrusted until reconnected
                if not self._stopping.is_set():
                    log.warning("catalog generation listener: %s; reading the generation per request until "
                                "it reconnects", exc)
            with self._lock:
                self._trusted_until = 0.0
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
            self._stopping.wait(pause)
            pause = min(pause * 2, 5.0)


def credential_key(environ: dict[str, Any]) -> str | None:
    """Who is asking, as a cache key part: ``""`` for no credentials, the bearer token's SHA-256,
    or ``None`` for credentials the cache does not handle (sessions, other schemes)."""
    if "tfr_session=" in environ.get("HTTP_COOKIE", ""):
        return None
    header = environ.get("HTTP_AUTHORIZATION")
    if not header:
        return ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return hashlib.sha256(value.strip().encode()).hexdigest()


def _cache_key(credential: str, environ: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two requests the same to the cache: the caller, where and what they asked, and
    whether the client is Terraform (which gets ``204`` for a module download, others a body)."""
    return (credential, environ.get("HTTP_HOST", ""), environ.get("wsgi.url_scheme", ""),
            environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
            environ.get("HTTP_USER_AGENT", "").startswith("Terraform/"))


#: Most answers a process writes to :class:`SharedAnswers` between two sweeps.
SHARED_MAX_FILES = 2000


class SharedAnswers:
    """Answers a process built, kept as files for the other processes of the same server.

    Each worker keeps its own :class:`ReadCache`, so after a start or a publish every worker built
    every answer again, and a client's first requests met a worker that had not built them yet
    (most of ``terraform init``'s first rounds).  A miss first looks here; an answer it builds is
    written here.  A file is named by the catalog generation and a hash of the whole cache key
    (the caller's credential included), so it serves exactly the requests the building process
    would have replayed it to, and only while the catalog is unchanged; it also carries the
    entry's expiry.  Files of older generations, and files older than ``max_age``, are removed as
    newer ones are written, and a process writes at most ``max_files`` between two such sweeps.
    Written to a temporary name and renamed, so a reader never sees half a file; anything
    unreadable is a miss.
    """

    def __init__(self, directory: str, scope: str, max_age: float, max_files: int = SHARED_MAX_FILES) -> None:
        self.directory = directory
        #: Part of every file's name hash: the database the answers came from.
        self.scope = scope
        #: No entry lives longer (``cache.ttl``): older files are removed.
        self.max_age = max_age
        #: Most files this process writes between two sweeps (a crawler's distinct URLs fill no disk).
        self.max_files = max_files
        self._swept = -1
        self._next_sweep = 0.0
        self._written = 0

    def _path(self, key: tuple[Any, ...], generation: int) -> str:
        digest = hashlib.sha256(repr((self.scope, key)).encode()).hexdigest()
        return os.path.join(self.directory, f"{generation}-{digest}.json")

    def get(self, key: tuple[Any, ...], generation: int) -> Entry | None:
        """The answer for ``key`` at ``generation`` another process built, if it is still fresh."""
        try:
            with open(self._path(key, generation), "rb") as f:
                data = json.loads(f.read())
            entry = Entry(generation, float(data["expires"]), data["status"],
                          [(k, v) for k, v in data["headers"]], base64.b64decode(data["body"]),
                          data["download"], data["token_id"], data["route"], data["etag"],
                          tuple((name, dict(labels)) for name, labels in data["observations"]),
                          data["provider_download"],
                          None if data["gzipped"] is None else ([(k, v) for k, v in data["gzipped"][0]],
                                                                base64.b64decode(data["gzipped"][1])))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return entry if time.time() < entry.expires else None

    def put(self, key: tuple[Any, ...], entry: Entry) -> None:
        """Offer ``entry`` to the other processes (best effort: a failure only means they build it)."""
        now = time.time()
        if entry.generation > self._swept or now >= self._next_sweep:
            self._sweep(entry.generation, now)
        if self._written >= self.max_files:
            return
        self._written += 1
        path = self._path(key, entry.generation)
        data = {"expires": entry.expires, "status": entry.status, "headers": entry.headers,
                "body": base64.b64encode(entry.body).decode("ascii"), "download": entry.download,
                "token_id": entry.token_id, "route": entry.route, "etag": entry.etag,
                "observations": [[name, labels] for name, labels in entry.observations],
                "provider_download": entry.provider_download,
                "gzipped": None if entry.gzipped is None else [
                    entry.gzipped[0], base64.b64encode(entry.gzipped[1]).decode("ascii")]}
        temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(temporary, path)
        except OSError as exc:
            log.debug("could not share a replayed answer: %s", exc)
            with contextlib.suppress(OSError):
                os.remove(temporary)

    def _sweep(self, generation: int, now: float) -> None:
        """Remove the files of generations before ``generation`` and those older than :attr:`max_age`
        (their entries have expired; temporary files a crash left too)."""
        self._swept, self._next_sweep, self._written = max(self._swept, generation), now + self.max_age, 0
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for item in entries:
            prefix, _, _ = item.name.partition("-")
            try:
                old = item.stat().st_mtime < now - self.max_age
            except OSError:
                continue
            if old or (prefix.isdigit() and int(prefix) < generation):
                with contextlib.suppress(OSError):
                    os.remove(item.path)


class ReadCache:
    """WSGI middleware replaying the answers views marked :func:`cacheable` (see the module docstring)."""

    def __init__(self, wsgi_app: Callable[..., Any], registry: Registry) -> None:
        self.wsgi_app = wsgi_app
        self.registry = registry
        self.observe = registry.observe
        self.generation = registry.generation
        self.max_entries = registry.settings["cache.max_entries"]
        self.max_ttl = float(registry.settings["cache.ttl"])
        self._entries: OrderedDict[tuple[Any, ...], Entry] = OrderedDict()
        self._lock = threading.Lock()
        #: Keys whose answer a request is making now (see :meth:`_fill_once`).
        self._building: dict[tuple[Any, ...], threading.Event] = {}
        #: Files a server's event loop may send itself (see :meth:`replay_only`): small ones, from a local disk.
        self._loop_files = registry.storage.staging_directory() is not None
        shared = os.environ.get(SHARED_ANSWERS_ENV)
        self.shared = (SharedAnswers(shared, registry.db.engine.url.render_as_string(hide_password=True),
                                     self.max_ttl, min(self.max_entries, SHARED_MAX_FILES))
                       if shared and os.path.isdir(shared) else None)
        self.hits = 0
        self.misses = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if REPLAY_ONLY_KEY in environ:
            return self.replay_only(environ, start_response)
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        if method in ("GET", "HEAD") and path.startswith(files.PREFIX):
            # bytes are streamed, not replayed; only Flask is skipped (go-getter sends HEAD first)
            served = self._plain_file(environ, start_response)
            return served if served is not None else self.wsgi_app(environ, start_response)
        if method != "GET" or not path.startswith(("/v1/", "/.well-known/")):
            return self.wsgi_app(environ, start_response)
        credential = credential_key(environ)
        if credential is None:
            return self.wsgi_app(environ, start_response)
        generation = self.generation.current()
        if generation is None:
            return self.wsgi_app(environ, start_response)
        key = _cache_key(credential, environ)
        entry = self._entries.get(key)
        if entry is not None and entry.generation == generation and time.time() < entry.expires:
            self.hits += 1
            return self._replay(entry, environ, start_response)
        self.misses += 1
        return self._fill_once(key, generation, environ, start_response)

    def _fill_once(self, key: tuple[Any, ...], generation: int, environ: dict[str, Any],
                   start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Make the answer, or wait for the request already making the same one and replay it.

        A burst of the same miss (the connections of a load balancer's pool, a thousand-version
        document after a publish) is built once, not once per thread: threads building the same
        answer side by side only slow each other and the event loop down.  A follower waits at
        most :data:`FILL_WAIT` seconds, and makes the answer itself if the leader's was not kept."""
        with self._lock:
            building = self._building.get(key)
            leader = building is None
            if leader:
                building = self._building[key] = threading.Event()
        if not leader:
            building.wait(FILL_WAIT)
            entry = self._entries.get(key)
            if entry is not None and entry.generation == generation and time.time() < entry.expires:
                self.hits += 1
                return self._replay(entry, environ, start_response)
            return self._fill(key, generation, environ, start_response)
        try:
            return self._fill(key, generation, environ, start_response)
        finally:
            with self._lock:
                self._building.pop(key, None)
            building.set()

    def replay_only(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer from memory, or set ``NOT_REPLAYED`` in the environ and return nothing, having done
        nothing else (no miss counted, no database round trip beyond SQLite's local read).

        A signed file of at most :data:`LOOP_FILE_SIZE` bytes on a local disk is answered too (read
        from the page cache, it costs less than the hand-over to a thread); larger files, and files
        in object storage, are not."""
        path = environ.get("PATH_INFO", "")
        if self._loop_files and path.startswith(files.PREFIX) and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            served = self._plain_file(environ, start_response, max_size=LOOP_FILE_SIZE)
            if served is not None:
                return served
            environ[NOT_REPLAYED_KEY] = True
            return []
        credential = credential_key(environ)
        if (environ.get("REQUEST_METHOD") == "GET" and credential is not None
                and path.startswith(("/v1/", "/.well-known/")) and not path.startswith(files.PREFIX)):
            generation = self.generation.current(read=False)
            key = _cache_key(credential, environ)
            entry = self._entries.get(key)
            if (generation is not None and entry is not None and entry.generation == generation
                    and time.time() < entry.expires):
                self.hits += 1
                return self._replay(entry, environ, start_response)
        environ[NOT_REPLAYED_KEY] = True
        return []

    def _plain_file(self, environ: dict[str, Any], start_response: Callable[..., Any],
                    max_size: int | None = None) -> Iterable[bytes] | None:
        """A signed file without Flask (:func:`files.serve_plain_get`), or ``None`` for the view."""
        environ[ROUTE_KEY] = files.ROUTE
        return files.serve_plain_get(self.registry, environ, start_response, max_size=max_size)

    def _replay(self, entry: Entry, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if entry.download is not None:
            self.registry.downloads.add(entry.download, entry.token_id, environ.get("REMOTE_ADDR"),
                                        environ.get("HTTP_USER_AGENT"))
        if entry.provider_download is not None:
            self.registry.downloads.add_provider(entry.provider_download)
        environ[ROUTE_KEY] = entry.route
        environ[TOKEN_KEY] = entry.token_id
        if entry.observations and self.observe.active:
            for name, labels in entry.observations:
                self.observe(name, **labels)
        request_id = environ_request_id(environ)
        headers, body = entry.for_client(environ)
        if entry.etag is not None and _matches(environ.get("HTTP_IF_NONE_MATCH"), entry.etag,
                                               entry.gzipped is not None):
            start_response("304 NOT MODIFIED", [(k, v) for k, v in headers if k.lower() in _KEPT_ON_304]
                           + [("X-Request-Id", request_id)])
            return []
        start_response(entry.status, [*headers, ("X-Request-Id", request_id)])
        return [body]

    def _fill(self, key: tuple[Any, ...], generation: int, environ: dict[str, Any],
              start_response: Callable[..., Any]) -> Iterable[bytes]:
        shared = self.shared.get(key, generation) if self.shared is not None else None
        if shared is not None:  # built by another worker of this server
            self._keep(key, shared)
            return self._replay(shared, environ, start_response)
        environ[_KEY] = key
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # Held until the answer is known: a kept answer may go out compressed.  Flask (Werkzeug)
            # never uses the write() callable start_response returns.
            captured[:] = [status, headers, exc_info]
            return _no_write

        body = self.wsgi_app(environ, capture)
        hint: CacheHint | None = environ.get(_HINT)
        if hint is None or not captured or captured[0][:3] not in ("200", "204") or any(
                name.lower() == "set-cookie" for name, _ in captured[1]):
            if captured:
                start_response(*captured)
            return body
        try:
            data = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        now = time.time()
        expires = min(now + min(hint.ttl, self.max_ttl), hint.valid_until or float("inf"))
        headers, gzipped = gzip_variant(
            [(k, v) for k, v in captured[1] if k.lower() not in _PER_REQUEST_HEADERS], data)
        etag = next((v for k, v in headers if k.lower() == "etag"), None)
        entry = Entry(generation, expires, captured[0], headers, data, hint.download, hint.token_id,
                      environ.get(ROUTE_KEY), etag, hint.observations, hint.provider_download, gzipped)
        self._keep(key, entry)
        if self.shared is not None:
            self.shared.put(key, entry)
        headers, data = entry.for_client(environ)
        per_request = [(k, v) for k, v in captured[1] if k.lower() in _PER_REQUEST_HEADERS]
        start_response(captured[0], [*headers, *per_request])
        return [data]

    def _keep(self, key: tuple[Any, ...], entry: Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


#: Headers a 304 repeats from the answer it stands for (RFC 9110, 15.4.5).
_KEPT_ON_304 = {"etag", "cache-control", "vary", "expires", "content-location"}


def _matches(if_none_match: str | None, etag: str, gzipped: bool = False) -> bool:
    """Whether ``If-None-Match`` names ``etag``, or with ``gzipped`` the compressed variant's tag
    (weak comparison, as RFC 9110 asks for it: either encoding validates the same answer)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    tags = {bare, bare[:-1] + '-gzip"'} if gzipped and bare.endswith('"') else {bare}
    return any(tag.strip().removeprefix("W/") in tags for tag in if_none_match.split(","))


def _no_write(data: bytes) -> None:
    raise RuntimeError("the read cache holds start_response until the answer is known: no write() callable")


def replay_safe(registry: Registry) -> bool:
    """Whether every ``tfr_authenticate`` and ``tfr_permission_allowed`` implementation is built in:
    a plugin's decision may depend on more than the credential (an address, the time of day)."""
    from tfregistry.plugins import DEFAULT_PLUGINS

    hooks = (registry.hooks.tfr_authenticate, registry.hooks.tfr_permission_allowed)
    return all(impl.plugin_name in DEFAULT_PLUGINS for hook in hooks for impl in hook.get_hookimpls())


class DownloadRecorder:
    """Module download events and provider download counts, kept in memory and written in batches.

    A background thread (started on first use in each process) writes them every
    ``downloads.flush_interval`` seconds, or sooner once ``batch`` are waiting; :meth:`close`
    writes the rest.  If the database refuses a batch it is kept (up to ``max_pending``
    events, the oldest dropped first, with a warning) and tried again.
    """

    def __init__(self, db: Database, interval: float, batch: int = 5000, max_pending: int = 100_000) -> None:
        self.db = db
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._pending: list[DownloadRow] = []
        #: Provider version id -> downloads not written yet (no per-event rows for providers).
        self._providers: dict[int, int] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        atexit.register(self.close)

    def add(self, module_version_id: int, token_id: int | None, ip: str | None, user_agent: str | None) -> None:
        """Count one download (never blocks on the database)."""
        row = (module_version_id, token_id, ip, (user_agent or "")[:300], time.time())
        with self._lock:
            self._pending.append(row)
            waiting = len(self._pending)
            if self._thread is None or self._pid != os.getpid():
                self._start()
        if waiting >= self.batch:
            self._wake.set()

    def add_provider(self, provider_version_id: int) -> None:
        """Count one provider download (the registry protocol's ``download`` answer); never blocks."""
        with self._lock:
            self._providers[provider_version_id] = self._providers.get(provider_version_id, 0) + 1
            if self._thread is None or self._pid != os.getpid():
                self._start()

    def pending_provider_counts(self, version_ids: Sequence[int]) -> dict[int, int]:
        """Provider downloads of these versions counted in this process and not written yet."""
        with self._lock:
            return {v: self._providers[v] for v in version_ids if v in self._providers}

    def pending_counts(self, version_ids: Sequence[int]) -> dict[int, int]:
        """Downloads of these versions counted in this process and not written yet."""
        wanted = set(version_ids)
        counts: dict[int, int] = {}
        with self._lock:
            for row in self._pending:
                if row[0] in wanted:
                    counts[row[0]] = counts.get(row[0], 0) + 1
        return counts

    def flush(self) -> int:
        """Write what is waiting; returns how many events were written."""
        with self._flush_lock:
            with self._lock:
                rows, self._pending = self._pending, []
                providers, self._providers = self._providers, {}
            if not rows and not providers:
                return 0
            try:
                written = self._write(rows, providers)
            except Exception as exc:  # keep the events for the next attempt
                with self._lock:
                    self._pending[:0] = rows
                    for version_id, n in providers.items():
                        self._providers[version_id] = self._providers.get(version_id, 0) + n
                    dropped = len(self._pending) - self.max_pending
                    if dropped > 0:
                        del self._pending[:dropped]
                log.warning("could not write %d download events (kept for the next attempt%s): %s", len(rows),
                            f", {dropped} oldest dropped" if dropped > 0 else "", exc)
                return 0
            return written

    def _write(self, rows: list[DownloadRow], providers: dict[int, int]) -> int:
        from tfregistry.services.modules import record_downloads
        from tfregistry.services.providers import record_provider_downloads

        with self.db.session() as session:
            written = record_downloads(session, rows) if rows else 0
            written += record_provider_downloads(session, providers) if providers else 0
            session.commit()
        return written

    def _start(self) -> None:
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tfr-download-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the writer thread and write everything still waiting."""
        atexit.unregister(self.close)
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None
        self.flush()

