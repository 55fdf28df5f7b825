"""The application factory: the only place a Flask app is built.

Production: ``gunicorn "tfregistry.app:create_app()"`` (settings from ``TFR_CONFIG``
and ``TFR_`` variables; run ``tfr db upgrade`` as a deploy step first).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy.exc import DBAPIError

from tfregistry import StartupError
from tfregistry.api import make_api
from tfregistry.db import Database, Timeouts, default_database_url
from tfregistry.plugins import BackendRegister, PluginManager, get_plugin_manager
from tfregistry.registry import Registry
from tfregistry.services.storage import RETRY_AFTER_SECONDS
from tfregistry.settings import Settings, SettingsDeclarations, build_settings, load_raw
from tfregistry.telemetry import RequestTelemetry, configure_logging
from tfregistry.web import (
    EXTENSION_KEY,
    RegistryRequest,
    TrustedProxyMiddleware,
    add_request_id_header,
    assign_request_id,
)

log = logging.getLogger("tfregistry")

BOOTSTRAP_KEYS = ("plugins.load", "plugins.disable", "plugins.trace")


@dataclass
class Bootstrap:
    """Settings and plugins, before any app or connection exists (what the CLI needs too)."""

    settings: Settings
    pm: PluginManager

    def database(self) -> Database:
        url = self.settings["database_url"] or default_database_url(self.settings.data_dir)
        if url.startswith("sqlite"):
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        s = self.settings
        return Database(url, Timeouts(s["database.connect_timeout"], s["database.pool_timeout"],
                                      s["database.busy_timeout"]))

    def storage_backends(self) -> BackendRegister:
        return self.pm.collect("tfr_register_storage_backends", BackendRegister("storage"))

    def notifiers(self) -> dict[str, Any]:
        """Every offered notification channel (:class:`tfregistry.interfaces.Notifier`), built, by name."""
        register = self.pm.collect("tfr_register_notifiers", BackendRegister("notifier"))
        return {name: backend.factory(self.settings) for name, backend in register.backends.items()}

    def auth_providers(self) -> dict[str, Any]:
        """The sign-in methods named in ``auth.providers``, built (an unconfigured one stops start-up)."""
        register = self.pm.collect("tfr_register_auth_providers", BackendRegister("auth"))
        providers = {}
        for name in self.settings["auth.providers"]:
            if name not in register.backends:
                offered = ", ".join(sorted(register.backends)) or "none: install tfregistry-auth-oidc or -azuread"
                raise StartupError(f"auth.providers names {name!r}, which no installed plugin offers "
                                   f"(offered: {offered})")
            providers[name] = register.backends[name].factory(self.settings)
        return providers

    def scm_providers(self) -> dict[str, Any]:
        """Every offered source-control provider (:class:`tfregistry.interfaces.ScmProvider`), built, by name."""
        register = self.pm.collect("tfr_register_scm_providers", BackendRegister("scm"))
        return {name: backend.factory(self.settings) for name, backend in register.backends.items()}

    def active_storage_name(self, db: Database | None = None) -> str:
        """``storage.backend``, unless a completed ``tfr storage migrate`` switched to another backend."""
        from tfregistry.services.storage import switched_backend

        configured = self.settings["storage.backend"]
        database = db or self.database()
        try:
            with database.session() as session:
                switched = switched_backend(session)
        except DBAPIError:  # a database not yet migrated has no state table
            switched = None
        if switched and switched != configured:
            log.warning("storage.backend is %r in the configuration, but `tfr storage migrate` switched to %r; "
                        "using %r (update the configuration to match)", configured, switched, switched)
            return switched
        return configured

    def storage(self, name: str | None = None) -> Any:
        """Build the storage backend ``name`` (default: the active one)."""
        name = name or self.active_storage_name()
        offered = self.storage_backends().backends
        if name not in offered:
            hint = " (pip install tfregistry-storage-local)" if name == "local" else ""
            raise StartupError(
                f"storage backend {name!r} (setting storage.backend) is not available{hint}; "
                f"installed backends: {', '.join(sorted(offered)) or 'none'}"
            )
        try:
            backend = offered[name].factory(self.settings)
        except StartupError:
            raise
        except Exception as exc:
            raise StartupError(f"storage backend {name!r} could not be set up: {exc}") from exc
        backend.name = backend.name or name
        return backend


def bootstrap(
    config: Mapping[str, Any] | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    plugins: Iterable[Any] = (),
    load_entrypoints: bool = True,
) -> Bootstrap:
    """Read settings and load plugins in the documented order."""
    raw = load_raw(config_path, environ, config)
    core = SettingsDeclarations()
    from tfregistry.default_plugins import core as core_plugin

    core_plugin.tfr_add_settings(core)
    early = build_settings(core, {k: v for k, v in raw.items() if k in BOOTSTRAP_KEYS})
    pm = get_plugin_manager(
        load_entrypoints=load_entrypoints,
        allow=early["plugins.load"],
        block=early["plugins.disable"],
        extra=plugins,
        trace=early["plugins.trace"],
    )
    settings = build_settings(pm.collect("tfr_add_settings", SettingsDeclarations()), raw)
    configure_logging(settings["log_level"], settings["log.format"])
    return Bootstrap(settings, pm)


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    plugins: Iterable[Any] = (),
    load_entrypoints: bool = True,
) -> Flask:
    """Build the application.

    :param config: setting overrides (dotted or nested keys), applied last.
    :param config_path: TOML file; default ``TFR_CONFIG``.
    :param environ: environment to read ``TFR_`` variables from; default ``os.environ``.
    :param plugins: extra plugin objects to register (tests, one-off site plugins).
    :param load_entrypoints: load installed plugins from entry points.
    :raises StartupError: with a message naming the setting or plugin at fault.
    """
    return build_app(bootstrap(config, config_path=config_path, environ=environ, plugins=plugins,
                               load_entrypoints=load_entrypoints))


def build_app(boot: Bootstrap) -> Flask:
    """Build the application from settings and plugins already loaded (see :func:`create_app`)."""
    settings, pm = boot.settings, boot.pm
    db = boot.database()
    if not db.is_up_to_date():
        raise StartupError(f"the database schema at {db.engine.url!r} is not up to date: run `tfr db upgrade`")
    register = boot.storage_backends()
    storage = boot.storage(boot.active_storage_name(db))
    problems = storage.check()
    if problems:
        raise StartupError(f"storage backend {storage.name!r} is not usable: " + "; ".join(problems)
                           + " (`tfr storage check` runs the same probe)")

    app = Flask("tfregistry")
    app.request_class = RegistryRequest
    app.config["JSON_SORT_KEYS"] = False
    registry = Registry(settings, pm, db, storage, register.backends)
    registry.auth_providers = boot.auth_providers()
    registry.scm_providers = boot.scm_providers()
    registry.notifiers = boot.notifiers()
    app.extensions[EXTENSION_KEY] = registry
    if settings["cache.enabled"]:
        from tfregistry.readcache import ReadCache, replay_safe

        if replay_safe(registry):
            app.wsgi_app = ReadCache(app.wsgi_app, registry)  # type: ignore[method-assign]
        else:
            logging.getLogger("tfregistry.readcache").info(
                "read cache off: a plugin implements tfr_authenticate or tfr_permission_allowed")
    app.wsgi_app = TrustedProxyMiddleware(app.wsgi_app, settings["proxy.trusted"])  # type: ignore[method-assign]
    app.wsgi_app = RequestTelemetry(  # type: ignore[method-assign]
        app.wsgi_app, registry.observe, settings["proxy.trusted"], settings["proxy.request_id"],
        settings["log.requests"])
    app.before_request(assign_request_id)
    app.after_request(add_request_id_header)
    app.after_request(http_caching)

    app.register_error_handler(413, upload_too_large)
    register_fault_handlers(app)
    api = make_api(app)
    pm.hook.tfr_register_blueprints(registry=registry, app=app, api=api)
    registry.discovery = merge_discovery(pm.hook.tfr_service_discovery(registry=registry))
    pm.hook.tfr_configure.call_historic(kwargs={"registry": registry})
    from tfregistry.jobs import InProcessQueue, periodic_jobs

    if isinstance(registry.jobs, InProcessQueue) and settings["jobs.scheduler_in_process"]:
        registry.jobs.start_periodic(periodic_jobs(registry))
    return app


def http_caching(response: Any) -> Any:
    """``Cache-Control`` and ``ETag`` on the answers views marked :func:`~tfregistry.readcache.cacheable`
    (the Terraform protocols' reads; ``If-None-Match`` gets 304); ``no-store`` on everything else that
    sets no policy of its own, so nothing carrying a token, a session or a form is kept by a cache."""
    from flask import g, request

    if "Cache-Control" in response.headers:
        return response
    max_age = g.get("tfr_http_cache")
    if max_age is None or response.status_code != 200 or response.direct_passthrough:
        response.headers["Cache-Control"] = "no-store"
        return response
    response.headers["Cache-Control"] = f"private, max-age={int(max_age)}" if max_age >= 1 else "private, no-cache"
    response.add_etag()
    return response.make_conditional(request)


def upload_too_large(error: Exception) -> Any:
    """Werkzeug stopped reading an upload at the size cap: say which setting sets it."""
    from tfregistry.api import api_error

    return api_error(413, "the upload is larger than this registry accepts (setting limits.module_archive_max_bytes)")


#: Seconds a client is told to wait (``Retry-After``) when a backing service is unavailable.
RETRY_AFTER = str(RETRY_AFTER_SECONDS)


def _render_fault(status: int, message: str, **headers: str) -> Any:
    """A JSON error in the shape of the API the request went to (no traceback, ever)."""
    from flask import request

    from tfregistry.api import api_error
    from tfregistry.protocol import error

    render = api_error if request.path.startswith("/api/") else error
    return render(status, message, **headers)


def _short(exc: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's statement dump and background link."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]


def database_error(exc: Exception) -> Any:
    """One answer for "the database is unavailable": 503 naming it; anything else is a logged 500."""
    from tfregistry.db import is_unavailable

    if is_unavailable(exc):
        log.warning("database unavailable: %s", _short(exc))
        return _render_fault(503, f"the database is unavailable ({_short(exc)}); try again later",
                             **{"Retry-After": RETRY_AFTER})
    log.error("database error", exc_info=exc)
    return _render_fault(500, "internal error: the database refused the request (see the server log)")


def storage_error(exc: Exception) -> Any:
    """One answer for storage faults (:func:`~tfregistry.services.storage.storage_fault`): 507 out of space,
    else 503 with ``Retry-After``."""
    from tfregistry.services.storage import storage_fault

    status, message, headers = storage_fault(exc)  # type: ignore[arg-type]
    log.log(logging.ERROR if status == 507 else logging.WARNING, "storage fault: %s", exc)
    return _render_fault(status, message, **headers)


def queue_error(exc: Exception) -> Any:
    """Redis (``redis_url``) cannot be reached: 503 naming it; nothing was enqueued."""
    log.warning("job queue unavailable: %s", exc)
    return _render_fault(503, f"the job queue (Redis, setting redis_url) is unavailable: {exc}; nothing was "
                         "enqueued, try again later", **{"Retry-After": RETRY_AFTER})


def register_fault_handlers(app: Flask) -> None:
    """App-wide answers for backing services that fail (database, storage, Redis).

    Blueprints keep their own handlers for domain errors; these catch what
    reaches the app, so every endpoint answers a fault the same way.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from tfregistry.interfaces import StorageError

    app.register_error_handler(DBAPIError, database_error)
    app.register_error_handler(PoolTimeout, database_error)
    app.register_error_handler(StorageError, storage_error)
    app.register_error_handler(RedisConnectionError, queue_error)
    app.register_error_handler(RedisTimeoutError, queue_error)


def merge_discovery(fragments: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Merge ``tfr_service_discovery`` fragments; a service id offered twice stops start-up."""
    merged: dict[str, Any] = {}
    for fragment in fragments:
        for key, value in (fragment or {}).items():
            if key in merged:
                raise StartupError(f"two plugins offer the discovery service {key!r}")
            merged[key] = value
    return merged
