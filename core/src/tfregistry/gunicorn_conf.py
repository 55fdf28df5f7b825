"""Gunicorn settings for the registry: ``gunicorn -c python:tfregistry.gunicorn_conf "tfregistry.app:create_app()"``.

Threaded workers keep client connections open between requests, which roughly doubles what each
worker answers compared with the default ``sync`` workers; the registry's worker
(:class:`tfregistry.worker.ReplayWorker`, gunicorn's ``gthread`` plus replayed protocol answers sent
by its event loop without a thread hand-over) adds as much again (figures in ``docs/performance.md``).
Command-line flags and ``GUNICORN_CMD_ARGS`` still override these, e.g. ``-w 4`` or ``-k gthread``
(gunicorn's own threaded worker, without the replay step).  Each worker writes its pending download
counts when it stops cleanly (SIGTERM, or a restart by the arbiter).
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
import threading
from typing import Any

from tfregistry.web import SHARED_ANSWERS_ENV

#: Two processes per core is gunicorn's usual advice; threads carry the waiting on the database.
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) * 2))
worker_class = "tfregistry.worker.ReplayWorker"
threads = 8
keepalive = 5
#: Long uploads (provider releases) must not be cut off by the worker timeout.
timeout = 300
graceful_timeout = 30


#: gunicorn's own error log and access log (``--access-logfile``) in the ``log.format`` of the registry.
logger_class = "tfregistry.telemetry.GunicornLogger"


def _multiprocess_metrics_dir() -> str | None:
    """prometheus-client's multiprocess mode (tfregistry-metrics): each worker writes its metrics to files in
    ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them.  Without the variable, a fresh directory is made;
    with it, files left by an earlier run are removed (they would add old counts).  ``None`` without
    prometheus-client."""
    try:
        import importlib.util

        if importlib.util.find_spec("prometheus_client") is None:
            return None
    except ValueError:
        return None
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tfregistry-metrics-")
        return path
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(path, name))
    return path


#: Set when this module is read, in the arbiter, before any worker (and any metric) exists.
metrics_dir = _multiprocess_metrics_dir()
_made_metrics_dir = metrics_dir is not None and metrics_dir.startswith(tempfile.gettempdir() + os.sep
                                                                       + "tfregistry-metrics-")


def _shared_answers_dir() -> str | None:
    """Answers one worker built, read by the others (:class:`tfregistry.readcache.SharedAnswers`): a
    fresh, private directory for each run, so no answer outlives the server that made it.  ``None``
    (each worker builds its own) where no temporary directory can be made."""
    try:
        path = tempfile.mkdtemp(prefix="tfregistry-answers-")
    except OSError:
        os.environ.pop(SHARED_ANSWERS_ENV, None)
        return None
    os.environ[SHARED_ANSWERS_ENV] = path
    return path


answers_dir = _shared_answers_dir()


_tls_lock = threading.Lock()
_tls_context: tuple[tuple[Any, ...], Any] | None = None


def _file_stamp(path: str | None) -> tuple[Any, ...]:
    """What tells a changed file from the one a context was made from (``path`` alone when absent)."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        st = None
    return (path,) if st is None else (path, st.st_mtime_ns, st.st_size, st.st_ino)


def ssl_context(config: Any, default_ssl_context_factory: Any) -> Any:
    """With ``--certfile``/``--keyfile``: one TLS context per worker, made again when a file changes.

    gunicorn otherwise builds a context for every connection (reading the system's CA store, the
    certificate and the key), which doubled the cost of each new TLS connection; ``terraform init``
    opens one per module archive and provider file.  A renewed certificate is used from the next
    connection on, as before."""
    global _tls_context
    stamp = tuple(_file_stamp(p) for p in (config.certfile, config.keyfile, config.ca_certs))
    with _tls_lock:
        if _tls_context is None or _tls_context[0] != stamp:
            _tls_context = (stamp, default_ssl_context_factory())
        return _tls_context[1]


def child_exit(server: Any, worker: Any) -> None:
    """A worker has gone: its live gauges (connections in use) stop counting; its counters are kept."""
    if metrics_dir:
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid, metrics_dir)


def on_exit(server: Any) -> None:
    """Remove the directories this configuration made for the run."""
    if metrics_dir and _made_metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if answers_dir:
        shutil.rmtree(answers_dir, ignore_errors=True)


def post_worker_init(worker: Any) -> None:
    """The application is loaded: what it made so far lives as long as the worker, so the garbage
    collector stops walking it (``gc.freeze``).  A full collection otherwise visits every object of
    Flask, SQLAlchemy and the plugins, tens of milliseconds that land on some request's latency."""
    gc.collect()
    gc.freeze()


def worker_exit(server: Any, worker: Any) -> None:
    """Write the worker's pending download events before it goes."""
    app = getattr(worker, "wsgi", None)
    registry = getattr(app, "extensions", {}).get("tfregistry") if app is not None else None
    if registry is not None:
        registry.downloads.close()
