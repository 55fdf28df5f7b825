"""tfregistry-otel with the SDK's in-memory exporter: request, SQL and outgoing HTTP spans in one trace."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tfregistry_otel.plugin import Tracing

from tests.conftest import bearer, new_token, post_module
from tfregistry import StartupError


@pytest.fixture
def upstream():
    """A plain HTTP server the view below calls through ``requests``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_requests_sql_and_outgoing_calls_are_traced(app_factory, upstream):
    exporter = InMemorySpanExporter()
    app = app_factory({"otel.enabled": True, "otel.service_name": "registry-under-test"},
                      plugins=(Tracing(exporter),))
    app.add_url_rule("/-/call-upstream", "call_upstream", lambda: requests.get(upstream, timeout=5).text)
    client = app.test_client()
    token = new_token(app, "admin")
    assert post_module(client, token).status_code == 201
    exporter.clear()
    r = client.get("/v1/modules/acme/network/aws/versions", headers=bearer(token))
    assert r.status_code == 200
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert len(server) == 1
    request_span = server[0]
    assert request_span.attributes["http.route"] == "/v1/modules/<ns>/<name>/<system>/versions"
    assert request_span.attributes["tfregistry.request_id"] == r.headers["X-Request-Id"]
    assert request_span.resource.attributes["service.name"] == "registry-under-test"
    sql = [s for s in spans if s.attributes.get("db.system") in ("sqlite", "postgresql")]
    assert sql and all(s.context.trace_id == request_span.context.trace_id for s in sql)

    exporter.clear()
    assert client.get("/-/call-upstream").get_data() == b"ok"
    spans = exporter.get_finished_spans()
    client_spans = [s for s in spans if s.kind.name == "CLIENT" and "db.system" not in s.attributes]
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert len(client_spans) == 1 and len(server) == 1
    assert client_spans[0].parent.span_id == server[0].context.span_id


def test_tracing_off_by_default_and_a_bad_ratio_stops_start_up(app_factory):
    exporter = InMemorySpanExporter()
    app = app_factory(plugins=(Tracing(exporter),))
    assert app.test_client().get("/.well-known/terraform.json").status_code == 200
    assert exporter.get_finished_spans() == ()
    with pytest.raises(StartupError, match="otel.sample_ratio"):
        app_factory({"otel.enabled": True, "otel.sample_ratio": 2}, plugins=(Tracing(exporter),))
