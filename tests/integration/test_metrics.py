"""tfregistry-metrics through the app: GET /metrics protection, what the core's observations count,
and the ``tfr_observers`` hook contract (one resolution at start-up, a failing observer never breaks a request)."""

from __future__ import annotations

from typing import Any

import pytest
import tfregistry_metrics.plugin as metrics_plugin
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import bearer, new_token, post_module
from tfregistry import StartupError, hookimpl
from tfregistry.telemetry import OBSERVATIONS

TOKEN = "scrape-token-0123456789"
ENABLED = {"metrics.enabled": True, "metrics.token": TOKEN}


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", headers=bearer(TOKEN))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.get_data(as_text=True)) for s in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_by_default(app_factory):
    client = app_factory(plugins=(metrics_plugin,)).test_client()
    assert client.get("/metrics").status_code == 404


def test_metrics_need_the_token(app_factory):
    client = app_factory(ENABLED, plugins=(metrics_plugin,)).test_client()
    for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {TOKEN}"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401 and "tfregistry_" not in r.get_data(as_text=True)
    assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 200


def test_enabling_metrics_without_a_token_stops_start_up(app_factory):
    with pytest.raises(StartupError, match="metrics.token"):
        app_factory({"metrics.enabled": True}, plugins=(metrics_plugin,))
    anonymous = app_factory({"metrics.enabled": True, "metrics.allow_anonymous": True}, plugins=(metrics_plugin,))
    assert anonymous.test_client().get("/metrics").status_code == 200


def test_requests_downloads_publishes_and_refusals_are_counted(app_factory):
    app = app_factory(ENABLED, plugins=(metrics_plugin,))
    client = app.test_client()
    token = new_token(app, "admin")
    before = scrape(client)
    assert post_module(client, token).status_code == 201
    scoped = new_token(app, "modules:write", namespace="acme")
    assert post_module(client, scoped, namespace="nowhere").status_code in (403, 404)  # refused before the namespace
    assert post_module(client, token, archive=b"not an archive").status_code in (400, 409, 422)  # refused in acme
    path = "/v1/modules/acme/network/aws/1.0.0/download"
    for _ in range(3):  # the second and third are replayed by the read cache: still counted
        assert client.get(path, headers={**bearer(token), "User-Agent": "Terraform/1.9.8"}).status_code == 204
    assert client.get("/v1/modules/acme/nothing/aws/versions", headers=bearer(token)).status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/modules/<ns>/<name>/<system>/<version>/download"
    assert delta("tfregistry_module_downloads_total", namespace="acme") == 3
    assert delta("tfregistry_http_requests_total", method="GET", route=route, status="204") == 3
    assert delta("tfregistry_http_request_duration_seconds_count", method="GET", route=route) == 3
    assert delta("tfregistry_http_requests_total", method="GET", route="/v1/modules/<ns>/<name>/<system>/versions",
                 status="404") == 1
    assert delta("tfregistry_publishes_total", kind="module", namespace="acme", outcome="published") == 1
    assert delta("tfregistry_publishes_total", kind="module", namespace="", outcome="refused") == 1
    assert delta("tfregistry_publishes_total", kind="module", namespace="acme", outcome="refused") == 1
    assert delta("tfregistry_storage_operation_duration_seconds_count", backend="local", operation="put") >= 1
    # labels never carry paths, module names or user input beyond namespaces
    text = client.get("/metrics", headers=bearer(TOKEN)).get_data(as_text=True)
    assert "network" not in text and "nowhere" not in text and "1.0.0" not in text
    assert value(after, "tfregistry_build_info", version="0.1.0", python=__import__("platform").python_version()) == 1


def test_failed_jobs_and_queue_depth(app_factory):
    app = app_factory({**ENABLED, "jobs.retries": 0}, plugins=(metrics_plugin,))
    registry = app.extensions["tfregistry"]
    client = app.test_client()
    before = scrape(client)
    registry.jobs.enqueue("tfregistry.jobs:mirror_sync", 999_999, queue="mirror")  # no such configuration
    registry.jobs.wait()
    after = scrape(client)
    assert (value(after, "tfregistry_job_failures_total", queue="mirror", job="mirror_sync")
            - value(before, "tfregistry_job_failures_total", queue="mirror", job="mirror_sync")) == 1
    assert value(after, "tfregistry_job_queue_depth", queue="mirror") == 0


def test_signing_key_expiry_is_exported(app_factory):
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from tfregistry.models import GpgKey

    app = app_factory(ENABLED, plugins=(metrics_plugin,))
    client = app.test_client()
    token = new_token(app, "admin")
    r = client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"}, headers=bearer(token))
    assert r.status_code == 201, r.get_data(as_text=True)
    expires = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
    with app.extensions["tfregistry"].db.session() as session:
        key = session.scalars(sa.select(GpgKey)).one()
        key.expires_at, key_id = expires, key.key_id
        session.commit()
    samples = scrape(client)
    assert value(samples, "tfregistry_signing_key_expiry_timestamp_seconds", namespace="acme",
                 key_id=key_id) == expires.timestamp()


def test_every_observation_feeds_a_metric():
    from tfregistry_metrics.metrics import MetricsObserver

    assert all(hasattr(MetricsObserver, "_" + name) for name in OBSERVATIONS)


def test_hook_tfr_observers_is_resolved_once_and_a_failing_observer_is_harmless(app_factory):
    calls: list[str] = []

    class Broken:
        def observe(self, name, value, labels):
            calls.append(name)
            raise RuntimeError("observer bug")

    class Plugin:
        resolved = 0

        @hookimpl
        def tfr_observers(self, registry):
            Plugin.resolved += 1
            return Broken()

    app = app_factory(plugins=(Plugin(),))
    client = app.test_client()
    for _ in range(3):
        assert client.get("/.well-known/terraform.json").status_code == 200
    assert Plugin.resolved == 1
    assert calls.count("http_request") == 3


def test_metrics_port_serves_a_process_outside_gunicorn(app_factory):
    """``metrics.port``: what a ``tfr worker`` on another host offers Prometheus (plain HTTP, no token)."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = app_factory({"metrics.port": port}, plugins=(metrics_plugin,))
    registry = app.extensions["tfregistry"]
    registry.jobs.enqueue("tfregistry.jobs:storage_gc", queue="default")
    registry.jobs.wait()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for family in text_string_to_metric_families(text) for s in family.samples}
    assert value(found, "tfregistry_job_runs_total", queue="default", job="storage_gc", outcome="finished") >= 1
    assert any(name == "tfregistry_build_info" for name, _ in found)
    assert app.test_client().get("/metrics").status_code == 404  # the web path stays off (metrics.enabled)
