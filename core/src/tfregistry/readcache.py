"""Replayed answers for the Terraform protocols' read endpoints, and buffered download counting.

Nearly every request ``terraform init`` sends asks for the same few kilobytes of JSON again.
:class:`ReadCache` is WSGI middleware that keeps each such answer in the process after a view
has produced it, and replays it without Flask, the ORM or a permission check while the
**catalog generation** it was made under is still the database's:

* Database triggers (migration 0006) bump ``catalog_state.generation`` in the same transaction
  as every change to namespaces, organizations, memberships, roles, modules, providers, signing
  keys, and to the columns of tokens and users that decide who may read what.  A change made by
  any process, replica or tool is therefore seen by every replica's next request: the cache
  reads the generation on each request (one indexed single-row ``SELECT`` on a connection of
  the thread's own), so there is no staleness window to configure.
* An answer is only replayed to the **same credential** that received it (no token, or the
  SHA-256 of the bearer token), on the same host, scheme, path prefix, path and query, and for
  the same kind of client (Terraform, or others, who get a JSON body for module downloads).
  So it never crosses tenants or permission levels; requests with a browser session cookie,
  other ``Authorization`` schemes, or while a third-party plugin implements
  ``tfr_authenticate`` / ``tfr_permission_allowed`` are never replayed.
* Views opt in with :func:`cacheable`; an answer lives at most ``cache.ttl`` seconds, never
  past the credential's expiry, and never longer than half the lifetime of the signed
  download URLs it contains.

Download events are counted by :class:`DownloadRecorder`: appended in memory and written in
batches by a background thread, so no download costs its request a commit; the rest is
written when the application closes (``registry.close()``, and at interpreter exit, which
covers gunicorn's graceful worker shutdown).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import g, request
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from tfregistry.models import DownloadEvent, ModuleVersion, utcnow
from tfregistry.protocol import files
from tfregistry.web import request_id_for

if TYPE_CHECKING:
    from tfregistry.db import Database
    from tfregistry.registry import Registry

log = logging.getLogger("tfregistry.readcache")

#: Keys this module keeps in the WSGI environ of a request.
_KEY = "tfregistry.readcache.key"
_HINT = "tfregistry.readcache.hint"
#: Response headers never stored: they belong to one request.
_PER_REQUEST_HEADERS = {"x-request-id", "set-cookie", "date"}
_GENERATION_SQL = "SELECT generation FROM catalog_state WHERE id = 1"


@dataclass(frozen=True)
class CacheHint:
    """What a view said about its answer (see :func:`cacheable`)."""

    ttl: float
    #: Epoch seconds after which the credential that received the answer stops working.
    valid_until: float | None
    #: Count a module download of this version each time the answer is replayed.
    download: int | None
    token_id: int | None


@dataclass(frozen=True)
class Entry:
    generation: int
    expires: float
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    download: int | None
    token_id: int | None


def cacheable(ttl: float | None = None, *, download: int | None = None) -> None:
    """Let the read cache replay the answer of the current request.

    Call it from a view once the answer is certain (after the permission check).  ``ttl``
    shortens the entry's life (answers with signed URLs pass half the URL lifetime);
    ``download``, a module version id, makes every replay count a download of it.
    Outside the cache (disabled, or a request it does not handle) this does nothing.
    """
    environ = request.environ
    if _KEY not in environ:
        return
    identity = g.get("tfr_identity")
    environ[_HINT] = CacheHint(
        ttl=float("inf") if ttl is None else ttl,
        valid_until=getattr(identity, "valid_until", None),
        download=download,
        token_id=getattr(identity, "token_id", None),
    )


class Generation:
    """The catalog generation as the database has it now.

    Read on connections of its own (outside the application's pool, in autocommit, so every
    read sees the latest commit), kept in a small free list: a thread takes one for the read
    and puts it back, so servers that start a thread per request do not open one per request.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def current(self) -> int | None:
        """The generation, or ``None`` when it cannot be read (then nothing is replayed)."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child never uses its parent's connections
                self._free, self._pid = [], os.getpid()
            conn = self._free.pop() if self._free else None
        if conn is None:
            conn = self._connect()
            if conn is None:
                return None
        try:
            cursor = conn.cursor()
            cursor.execute(_GENERATION_SQL)
            row = cursor.fetchone()
            cursor.close()
        except Exception:  # a broken connection: dropped, the answer is made without the cache
            with contextlib.suppress(Exception):
                conn.close()
            return None
        with self._lock:
            self._free.append(conn)
        return int(row[0]) if row else None

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
        """Close the idle connections (one in use is closed by its reader's next failure or dropped)."""
        with self._lock:
            idle, self._free = self._free, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


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


class ReadCache:
    """WSGI middleware replaying the answers views marked :func:`cacheable` (see the module docstring)."""

    def __init__(self, wsgi_app: Callable[..., Any], registry: Registry) -> None:
        self.wsgi_app = wsgi_app
        self.registry = registry
        self.generation = registry.generation
        self.max_entries = registry.settings["cache.max_entries"]
        self.max_ttl = float(registry.settings["cache.ttl"])
        self._entries: OrderedDict[tuple[Any, ...], Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET" or not path.startswith(("/v1/", "/.well-known/")):
            return self.wsgi_app(environ, start_response)
        if path.startswith(files.PREFIX):  # bytes are streamed, not replayed; only Flask is skipped
            served = files.serve_plain_get(self.registry, environ, start_response)
            return served if served is not None else self.wsgi_app(environ, start_response)
        credential = credential_key(environ)
        if credential is None:
            return self.wsgi_app(environ, start_response)
        generation = self.generation.current()
        if generation is None:
            return self.wsgi_app(environ, start_response)
        key = (credential, environ.get("HTTP_HOST", ""), environ.get("wsgi.url_scheme", ""),
               environ.get("SCRIPT_NAME", ""), path, environ.get("QUERY_STRING", ""),
               environ.get("HTTP_USER_AGENT", "").startswith("Terraform/"))
        entry = self._entries.get(key)
        if entry is not None and entry.generation == generation and time.time() < entry.expires:
            self.hits += 1
            return self._replay(entry, environ, start_response)
        self.misses += 1
        return self._fill(key, generation, environ, start_response)

    def _replay(self, entry: Entry, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if entry.download is not None:
            self.registry.downloads.add(entry.download, entry.token_id, environ.get("REMOTE_ADDR"),
                                        environ.get("HTTP_USER_AGENT"))
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID"))
        start_response(entry.status, [*entry.headers, ("X-Request-Id", request_id)])
        return [entry.body]

    def _fill(self, key: tuple[Any, ...], generation: int, environ: dict[str, Any],
              start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[_KEY] = key
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers]
            return start_response(status, headers, exc_info)

        body = self.wsgi_app(environ, capture)
        hint: CacheHint | None = environ.get(_HINT)
        if hint is None or not captured or captured[0][:3] not in ("200", "204") or any(
                name.lower() == "set-cookie" for name, _ in captured[1]):
            return body
        try:
            data = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        now = time.time()
        expires = min(now + min(hint.ttl, self.max_ttl), hint.valid_until or float("inf"))
        headers = [(k, v) for k, v in captured[1] if k.lower() not in _PER_REQUEST_HEADERS]
        entry = Entry(generation, expires, captured[0], headers, data, hint.download, hint.token_id)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return [data]


def replay_safe(registry: Registry) -> bool:
    """Whether every ``tfr_authenticate`` and ``tfr_permission_allowed`` implementation is built in:
    a plugin's decision may depend on more than the credential (an address, the time of day)."""
    from tfregistry.plugins import DEFAULT_PLUGINS

    hooks = (registry.hooks.tfr_authenticate, registry.hooks.tfr_permission_allowed)
    return all(impl.plugin_name in DEFAULT_PLUGINS for hook in hooks for impl in hook.get_hookimpls())


class DownloadRecorder:
    """Module download events, appended in memory and written in batches.

    A background thread (started on first use in each process) writes them every
    ``downloads.flush_interval`` seconds, or sooner once ``batch`` are waiting; :meth:`close`
    writes the rest.  If the database refuses a batch it is kept (up to ``max_pending``
    events, the oldest dropped first, with a warning) and tried again.
    """

    def __init__(self, db: Database, interval: float, batch: int = 500, max_pending: int = 100_000) -> None:
        self.db = db
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        atexit.register(self.close)

    def add(self, module_version_id: int, token_id: int | None, ip: str | None, user_agent: str | None) -> None:
        """Count one download (never blocks on the database)."""
        row = {"module_version_id": module_version_id, "token_id": token_id, "client_ip": ip,
               "user_agent": (user_agent or "")[:300], "at": utcnow()}
        with self._lock:
            self._pending.append(row)
            waiting = len(self._pending)
            if self._thread is None or self._pid != os.getpid():
                self._start()
        if waiting >= self.batch:
            self._wake.set()

    def pending_counts(self, version_ids: Sequence[int]) -> dict[int, int]:
        """Downloads of these versions counted in this process and not written yet."""
        wanted = set(version_ids)
        counts: dict[int, int] = {}
        with self._lock:
            for row in self._pending:
                if row["module_version_id"] in wanted:
                    counts[row["module_version_id"]] = counts.get(row["module_version_id"], 0) + 1
        return counts

    def flush(self) -> int:
        """Write what is waiting; returns how many events were written."""
        with self._flush_lock:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                written = self._write(rows)
            except Exception as exc:  # keep the events for the next attempt
                with self._lock:
                    self._pending[:0] = rows
                    dropped = len(self._pending) - self.max_pending
                    if dropped > 0:
                        del self._pending[:dropped]
                log.warning("could not write %d download events (kept for the next attempt%s): %s", len(rows),
                            f", {dropped} oldest dropped" if dropped > 0 else "", exc)
                return 0
            return written

    def _write(self, rows: list[dict[str, Any]]) -> int:
        with self.db.session() as session:
            # versions deleted since their download was counted take their events with them
            ids = {row["module_version_id"] for row in rows}
            alive = set(session.scalars(select(ModuleVersion.id).where(ModuleVersion.id.in_(ids))))
            rows = [row for row in rows if row["module_version_id"] in alive]
            if rows:
                session.execute(insert(DownloadEvent), rows)
                session.commit()
        return len(rows)

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

