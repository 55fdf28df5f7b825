"""Gunicorn settings for the registry: ``gunicorn -c python:tfregistry.gunicorn_conf "tfregistry.app:create_app()"``.

Threaded workers (``gthread``) keep client connections open between requests, which roughly
doubles what each worker answers compared with the default ``sync`` workers (figures in
``docs/performance.md``).  Command-line flags and ``GUNICORN_CMD_ARGS`` still override these,
e.g. ``-w 4``.  Each worker writes its pending download counts when it stops cleanly
(SIGTERM, or a restart by the arbiter).
"""

from __future__ import annotations

import os
from typing import Any

#: Two processes per core is gunicorn's usual advice; threads carry the waiting on the database.
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) * 2))
worker_class = "gthread"
threads = 8
keepalive = 5
#: Long uploads (provider releases) must not be cut off by the worker timeout.
timeout = 300
graceful_timeout = 30


def worker_exit(server: Any, worker: Any) -> None:
    """Write the worker's pending download events before it goes."""
    app = getattr(worker, "wsgi", None)
    registry = getattr(app, "extensions", {}).get("tfregistry") if app is not None else None
    if registry is not None:
        registry.downloads.close()
