"""Observability in the core: request telemetry, structured logs and the instrumentation points.

* :class:`RequestTelemetry` is the outermost WSGI middleware.  It gives each request its id
  (:func:`tfregistry.web.current_request_id`), times it, and afterwards writes one access-log line
  (logger ``tfregistry.access``, setting ``log.requests``) and hands one ``http_request``
  observation to the observers.
* :class:`Observers` holds what plugins returned from ``tfr_observers`` once, at start-up; the core
  calls ``registry.observe(name, value, **labels)`` at its instrumentation points (the vocabulary is
  :data:`OBSERVATIONS`).  With no observer installed a call is one attribute test.
* :func:`configure_logging` installs the ``log.format`` formatter (``text`` or ``json``); every
  record carries the request id.  :class:`GunicornLogger` formats gunicorn's own error and access
  logs the same way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from tfregistry.web import (
    NOT_REPLAYED_KEY,
    REQUEST_ID_KEY,
    ROUTE_KEY,
    TOKEN_KEY,
    _current_request_id,
    is_trusted,
    request_id_for,
)

log = logging.getLogger("tfregistry.telemetry")
access_log = logging.getLogger("tfregistry.access")

#: Every observation the core makes: name -> (what ``value`` is, label names).  Labels are bounded:
#: route *templates*, never paths; namespaces, never module names; no user input beyond namespace.
OBSERVATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "http_request": ("seconds the application took to answer", ("method", "route", "status")),
    "module_download": ("1 per module download answered (replays of cached answers too)", ("namespace",)),
    "provider_download": ("1 per provider package download answered", ("namespace", "os", "arch")),
    "module_publish": ("1 per module publish request", ("namespace", "outcome")),
    "provider_publish": ("1 per provider publish request", ("namespace", "outcome")),
    "mirror_sync": ("seconds one mirror sync run took", ("outcome",)),
    "mirror_sync_bytes": ("bytes one mirror sync run copied", ()),
    "mirror_sync_errors": ("errors one mirror sync run met", ()),
    "pullthrough_hit": ("1 per network-mirror request answered from what is held", ()),
    "pullthrough_fetch": ("1 per provider fetched from an upstream on demand", ("outcome",)),
    "job_run": ("seconds one job attempt took", ("queue", "job", "outcome")),
    "storage_operation": ("seconds one storage call took", ("backend", "operation", "outcome")),
    "notification_delivery": ("1 per notification delivery attempt", ("notifier", "outcome")),
    "scm_tag_moved": ("1 per tag seen pointing at a new commit", ("provider",)),
    "scm_webhook_rejected": ("1 per SCM webhook refused (bad signature, replay...)", ("provider", "reason")),
}

_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class Observers:
    """The observers plugins offered through ``tfr_observers``, resolved once (no pluggy call per event).

    ``observers(name, value, **labels)`` passes the observation to each; an observer that raises is
    logged and the caller carries on.  :attr:`active` is false when nobody listens, so a hot path
    may skip building labels.
    """

    def __init__(self, observers: Iterable[Any] = ()) -> None:
        self._observers = tuple(o for o in observers if o is not None)
        self.active = bool(self._observers)

    def __call__(self, name: str, value: float = 1.0, **labels: str) -> None:
        for observer in self._observers:
            try:
                observer.observe(name, value, labels)
            except Exception:  # an observer must never break the request or the job it watches
                log.exception("observer %r failed on %s", observer, name)


class RequestTelemetry:
    """Outermost WSGI middleware: request id, access log, ``http_request`` observation.

    The id is taken from ``X-Request-Id`` only when the direct peer is a trusted proxy
    (``proxy.trusted``) and ``proxy.request_id`` is on; otherwise a new one is made.
    """

    def __init__(self, wsgi_app: Callable[..., Any], observe: Observers, trusted: Iterable[Any],
                 accept_request_id: bool, log_requests: bool) -> None:
        self.wsgi_app = wsgi_app
        self.observe = observe
        self.trusted = list(trusted) if accept_request_id else []
        self.log_requests = log_requests

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        incoming = environ.get("HTTP_X_REQUEST_ID")
        if incoming is not None and not (self.trusted and is_trusted(environ.get("REMOTE_ADDR"), self.trusted)):
            incoming = None
        environ[REQUEST_ID_KEY] = rid = request_id_for(incoming)
        reset = _current_request_id.set(rid)
        start = time.perf_counter()
        status = "500"

        def note_status(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = line[:3]
            return start_response(line, headers, exc_info)

        try:
            return self.wsgi_app(environ, note_status)
        finally:
            if (self.observe.active or self.log_requests) and NOT_REPLAYED_KEY not in environ:
                self._done(environ, status, time.perf_counter() - start)
            _current_request_id.reset(reset)

    def _done(self, environ: dict[str, Any], status: str, duration: float) -> None:
        method = environ.get("REQUEST_METHOD", "")
        route = environ.get(ROUTE_KEY) or "(unmatched)"
        if self.observe.active:
            self.observe("http_request", duration, method=method if method in _METHODS else "other",
                         route=route, status=status)
        if self.log_requests and access_log.isEnabledFor(logging.INFO):
            ms = round(duration * 1000, 2)
            access_log.info("%s %s %s %sms", method, route, status, ms, extra={
                "http": {"method": method, "route": route, "status": int(status), "duration_ms": ms,
                         "token_id": environ.get(TOKEN_KEY)}})


# --- logs ---------------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Give every record a ``request_id`` attribute (the current request's, else ``None``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current_request_id.get()
        return True


def _install_record_factory() -> None:
    """Stamp every log record, of any logger, with the request id current when it is made."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "tfregistry", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = _current_request_id.get()
        return record

    factory.tfregistry = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``request_id``; request lines add ``http`` (method, route, status, duration_ms, token_id);
    ``exception`` holds a traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _current_request_id.get(),
        }
        http = getattr(record, "http", None)
        if http is not None:
            data["http"] = http
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``log.format``: ``json`` or ``text``."""
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Send ``tfregistry`` logs to stderr in ``fmt`` unless the host (pytest...) already handles them.

    Under gunicorn (whose own loggers are not the root logger) the handler is installed too, and
    :class:`GunicornLogger` formats gunicorn's lines the same way.
    """
    _install_record_factory()
    logger = logging.getLogger("tfregistry")
    logger.setLevel(level)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(make_formatter(fmt))
    logger.addHandler(handler)


def log_format_setting(environ: Mapping[str, str] | None = None) -> str:
    """``log.format`` as the configuration file and ``TFR_`` variables give it (gunicorn reads it
    before any application exists)."""
    from tfregistry.settings import load_raw

    raw = load_raw(None, environ)
    value = raw.get("log.format")
    return str(value.value) if value is not None else "text"


try:
    from gunicorn.glogging import Logger as _GunicornBase
except ImportError:  # gunicorn is optional (the embedded server does not need it)
    _GunicornBase = object


class GunicornLogger(_GunicornBase):  # type: ignore[misc,valid-type]
    """gunicorn's logger, writing its error log and access log (``--access-logfile``) in ``log.format``.

    Access lines carry the same ``http`` fields as ``tfregistry.access`` (the route template and the
    token id come from the request's WSGI environ) and the request id.  Selected by
    :mod:`tfregistry.gunicorn_conf`.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # decided once per (re)load: gunicorn's settings are looked up through __getattr__, four per request
        self._logs_access = bool(cfg.accesslog or cfg.logconfig or cfg.logconfig_dict or cfg.syslog)
        formatter = make_formatter(log_format_setting())
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.addFilter(RequestIdFilter())
                handler.setFormatter(formatter)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self._logs_access:
            return
        status = str(getattr(resp, "status", "") or "")[:3]
        ms = round(request_time.total_seconds() * 1000, 2)
        method = environ.get("REQUEST_METHOD", "")
        route = environ.get(ROUTE_KEY) or "(unmatched)"
        http = {"method": method, "route": route, "status": int(status) if status.isdigit() else None,
                "duration_ms": ms, "token_id": environ.get(TOKEN_KEY), "bytes": getattr(resp, "sent", None),
                "remote_addr": environ.get("REMOTE_ADDR")}
        record = self.access_log.makeRecord(self.access_log.name, logging.INFO, __file__, 0,
                                            "%s %s %s %sms", (method, route, status, ms), None,
                                            extra={"http": http})
        record.request_id = environ.get(REQUEST_ID_KEY)
        self.access_log.handle(record)


def observed_publish(observe: Observers, session: Any, kind: str, namespace: str, package: str,
                     publish: Callable[[Any], Any]) -> Any:
    """Check the caller may publish the ``kind`` (``module``, ``provider``) ``package`` (``NAME/SYSTEM``
    or ``TYPE``) in ``namespace`` (a token limited to some packages, :func:`auth.require_package`), run
    ``publish(actor)``, and observe ``<kind>_publish`` with outcome ``published`` or ``refused``.

    A refusal before the permission check has passed is labelled with an empty namespace (it may not
    exist: never a label from user input); after it, with the namespace.
    """
    from tfregistry import auth

    checked = ""
    try:
        identity, actor = auth.require_in_namespace(session, f"{kind}s:write", namespace)
        checked = namespace
        auth.require_package(identity, kind, namespace, package)
        result = publish(actor)
    except Exception:
        if observe.active:
            observe(f"{kind}_publish", namespace=checked, outcome="refused")
        raise
    if observe.active:
        observe(f"{kind}_publish", namespace=checked, outcome="published")
    return result


class ObservedStorage:
    """The active storage backend, observing ``storage_operation`` for each call of :data:`TIMED`
    (seconds; labels backend, operation, outcome ``ok``/``not_found``/``error``).

    Used only when an observer is installed; every other attribute is the backend's own.
    """

    TIMED = frozenset(("put", "put_file", "open", "exists", "delete", "size", "presigned_url", "check"))

    def __init__(self, backend: Any, observe: Observers) -> None:
        object.__setattr__(self, "_backend", backend)
        object.__setattr__(self, "_observe", observe)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._backend, name)
        if name not in self.TIMED:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            from tfregistry.interfaces import ObjectNotFound

            start = time.perf_counter()
            outcome = "error"
            try:
                result = attr(*args, **kwargs)
                outcome = "ok"
                return result
            except ObjectNotFound:
                outcome = "not_found"
                raise
            finally:
                self._observe("storage_operation", time.perf_counter() - start,
                              backend=str(self._backend.name), operation=name, outcome=outcome)

        return timed

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._backend, name, value)


#: What :func:`current_gauges` reports: name -> (meaning, label names).
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "job_queue_depth": ("jobs waiting in a queue (queued or scheduled for retry)", ("queue",)),
    "signing_key_expiry": ("Unix time a namespace's signing key expires (keys with an expiry, not revoked)",
                           ("namespace", "key_id")),
}


def current_gauges(registry: Any) -> list[tuple[str, float, dict[str, str]]]:
    """The state a scrape reports (:data:`GAUGES`), read now: ``(name, value, labels)`` triples.

    Reads Redis (RQ queue lengths) or the in-process queue, and the database; a backing service
    that is down leaves its gauges out (logged) rather than failing the scrape.
    """
    from sqlalchemy import select

    from tfregistry.jobs import QUEUES, RQQueue
    from tfregistry.models import GpgKey

    gauges: list[tuple[str, float, dict[str, str]]] = []
    try:
        jobs = registry.jobs
        if isinstance(jobs, RQQueue):
            from rq.registry import ScheduledJobRegistry

            for name in QUEUES:
                queue = jobs.queue(name)
                gauges.append(("job_queue_depth", float(queue.count + ScheduledJobRegistry(queue=queue).count),
                               {"queue": name}))
        else:
            waiting = {name: 0 for name in QUEUES}
            for info in jobs.list():
                if info.status in ("queued", "scheduled"):
                    waiting[info.queue] = waiting.get(info.queue, 0) + 1
            gauges += [("job_queue_depth", float(n), {"queue": q}) for q, n in waiting.items()]
    except Exception as exc:  # Redis away: the scrape still answers
        log.warning("job queue depth not available: %s", exc)
    try:
        with registry.db.session() as session:
            rows = session.execute(select(GpgKey).where(GpgKey.expires_at.is_not(None),
                                                        GpgKey.revoked_at.is_(None))).scalars()
            gauges += [("signing_key_expiry", key.expires_at.timestamp(),
                        {"namespace": key.namespace.name, "key_id": key.key_id}) for key in rows]
    except Exception as exc:
        log.warning("signing key expiry not available: %s", exc)
    return gauges
