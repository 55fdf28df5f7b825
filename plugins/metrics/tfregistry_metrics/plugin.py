"""Hook implementations: the ``metrics.*`` settings, the observer, ``GET /metrics``."""

from __future__ import annotations

import atexit
import hmac
import logging
import os
import sys
from typing import Any

from tfregistry import StartupError, __version__, hookimpl

#: The tfregistry plugin API versions this plugin works with (``tfr_observers`` arrived in 1.2).
TFR_PLUGIN_API = ">=1.2,<2"

log = logging.getLogger("tfregistry_metrics")

#: The path the metrics are served under.
PATH = "/metrics"


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``metrics.enabled``, ``metrics.token``, ``metrics.allow_anonymous`` and ``metrics.port``."""
    settings.add("metrics.enabled", bool, default=False,
                 help="Serve GET /metrics (Prometheus text format). Off by default.")
    settings.add("metrics.token", str, secret=True,
                 help="Bearer token a scraper must send to GET /metrics (Authorization: Bearer ...). Required "
                 "when metrics.enabled, unless metrics.allow_anonymous.")
    settings.add("metrics.allow_anonymous", bool, default=False,
                 help="Serve GET /metrics without a token (only where the network keeps others away).")
    settings.add("metrics.port", int, default=0,
                 help="A port on which processes that are not gunicorn workers (tfr worker, tfr serve) also serve "
                 "their metrics over plain HTTP, on metrics.address. 0: none. Under gunicorn, /metrics of the "
                 "web port already includes every process sharing PROMETHEUS_MULTIPROC_DIR.")
    settings.add("metrics.address", str, default="127.0.0.1", help="Address metrics.port listens on.")


@hookimpl
def tfr_observers(registry: Any) -> Any:
    """The observer feeding the metrics (whether or not /metrics is served: ``tfr worker`` counts too)."""
    from tfregistry_metrics.metrics import MetricsObserver

    return MetricsObserver()


@hookimpl
def tfr_configure(registry: Any) -> None:
    """Check the settings; count pooled database connections in use; serve ``metrics.port`` if set."""
    s = registry.settings
    if s["metrics.enabled"] and not s["metrics.token"] and not s["metrics.allow_anonymous"]:
        raise StartupError("metrics.enabled needs metrics.token (the scraper's bearer token), or "
                           "metrics.allow_anonymous = true")
    _count_pool_checkouts(registry.db.engine)
    if s["metrics.port"] and "gunicorn.workers.base" not in sys.modules:
        _serve_port(registry, s["metrics.address"], s["metrics.port"])
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        atexit.register(_mark_dead, os.getpid())


def _count_pool_checkouts(engine: Any) -> None:
    from sqlalchemy import event

    from tfregistry_metrics.metrics import DB_POOL_IN_USE

    if getattr(engine, "_tfregistry_metrics", False):
        return
    engine._tfregistry_metrics = True
    event.listen(engine, "checkout", lambda *_: DB_POOL_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: DB_POOL_IN_USE.dec())


def _serve_port(registry: Any, address: str, port: int) -> None:
    from prometheus_client import start_http_server

    from tfregistry_metrics.metrics import scrape_registry

    try:
        start_http_server(port, addr=address, registry=scrape_registry(registry, __version__))
    except OSError as exc:
        raise StartupError(f"metrics.port {port} on {address}: {exc.strerror}") from None
    log.info("metrics served on http://%s:%s/metrics", address, port)


def _mark_dead(pid: int) -> None:
    """A process leaving multiprocess mode: its live gauges stop counting."""
    if pid != os.getpid():
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


@hookimpl
def tfr_register_blueprints(registry: Any, app: Any, api: Any) -> None:
    """``GET /metrics`` when ``metrics.enabled``."""
    if not registry.settings["metrics.enabled"]:
        return
    from flask import Response, request

    from tfregistry_metrics.metrics import exposition

    token = registry.settings["metrics.token"]

    def metrics() -> Any:
        if token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return Response("a bearer token (metrics.token) is required\n", 401,
                                {"WWW-Authenticate": 'Bearer realm="metrics"', "Cache-Control": "no-store"},
                                mimetype="text/plain")
        body, content_type = exposition(registry, __version__)
        return Response(body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"})

    app.add_url_rule(PATH, "tfregistry_metrics", metrics, methods=["GET"])
