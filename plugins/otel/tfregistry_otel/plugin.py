"""Hook implementations: the ``otel.*`` settings and the instrumentation of the app, its database and ``requests``."""

from __future__ import annotations

import logging
from typing import Any

from tfregistry import hookimpl

#: The tfregistry plugin API versions this plugin works with.
TFR_PLUGIN_API = ">=1.0,<2"

log = logging.getLogger("tfregistry_otel")


def declare_settings(settings: Any) -> None:
    """Declare ``otel.enabled``, ``otel.endpoint``, ``otel.service_name`` and ``otel.sample_ratio``."""
    settings.add("otel.enabled", bool, default=False, help="Trace requests, SQL and outgoing HTTP calls (OTLP).")
    settings.add("otel.endpoint", str,
                 help="OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces. Unset: the exporter's "
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318/v1/traces.")
    settings.add("otel.service_name", str, default="tfregistry", help="service.name of the spans.")
    settings.add("otel.sample_ratio", float, default=1.0,
                 help="Share of traces kept, 0 to 1 (parent-based: a traced caller's trace is followed).")


class Tracing:
    """The plugin as an object: ``Tracing(exporter)`` sends spans to ``exporter`` instead of OTLP (tests)."""

    def __init__(self, exporter: Any = None) -> None:
        self.exporter = exporter

    @hookimpl
    def tfr_add_settings(self, settings: Any) -> None:
        """Declare the ``otel.*`` settings."""
        declare_settings(settings)

    def provider(self, settings: Any) -> Any:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        ratio = float(settings["otel.sample_ratio"])
        if not 0 <= ratio <= 1:
            from tfregistry import StartupError

            raise StartupError(f"otel.sample_ratio must be between 0 and 1, not {ratio}")
        provider = TracerProvider(resource=Resource.create({"service.name": settings["otel.service_name"]}),
                                  sampler=ParentBased(TraceIdRatioBased(ratio)))
        if self.exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = settings["otel.endpoint"]
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint) if endpoint
                                                           else OTLPSpanExporter()))
        return provider

    @hookimpl
    def tfr_register_blueprints(self, registry: Any, app: Any, api: Any) -> None:
        """Instrument the Flask app, the database engine and ``requests`` (before any request is served)."""
        if not registry.settings["otel.enabled"]:
            return
        from opentelemetry.instrumentation.flask import FlaskInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        provider = self.provider(registry.settings)

        def tag_request(span: Any, environ: dict[str, Any]) -> None:
            # the id the core gave the request (docs/operations.md, "Request ids"), kept in the WSGI environ
            if span is not None and span.is_recording():
                span.set_attribute("tfregistry.request_id", environ.get("tfregistry.request_id") or "")

        FlaskInstrumentor().instrument_app(app, tracer_provider=provider, request_hook=tag_request)
        # SQLAlchemy and requests are instrumented process-wide: an application built later in the same
        # process (tests; one per process in production) takes the instrumentation over.
        sqlalchemy_instrumentor, requests_instrumentor = SQLAlchemyInstrumentor(), RequestsInstrumentor()
        for instrumentor in (sqlalchemy_instrumentor, requests_instrumentor):
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
        # The instrumentation declares "sqlalchemy < 2.1" and would do nothing on the 2.1 the core uses; its
        # engine events are the same in 2.1 (tests/integration/test_otel.py checks the SQL spans).
        sqlalchemy_instrumentor.instrument(engine=registry.db.engine, tracer_provider=provider, skip_dep_check=True)
        requests_instrumentor.instrument(tracer_provider=provider)
        registry.memo["tfregistry-otel"] = provider
        log.info("tracing on: service %s", registry.settings["otel.service_name"])


#: The instance the entry point loads (OTLP export); its hooks are this module's.
_default = Tracing()
tfr_add_settings = _default.tfr_add_settings
tfr_register_blueprints = _default.tfr_register_blueprints
