"""Caching headers on the protocol reads, no-store on secrets, JSON log lines carrying the request id."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, new_token, post_module
from tfregistry.models import AuditEntry
from tfregistry.telemetry import JsonFormatter, current_gauges
from tfregistry.web import current_request_id

VERSIONS = "/v1/modules/acme/network/aws/versions"


@pytest.mark.parametrize("cache", [True, False], ids=["read-cache", "no-read-cache"])
def test_protocol_reads_carry_an_etag_and_answer_if_none_match_with_304(app_factory, cache):
    app = app_factory({"cache.enabled": cache})
    client = app.test_client()
    token = new_token(app, "admin")
    assert post_module(client, token).status_code == 201
    first = client.get(VERSIONS, headers=bearer(token))
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    for _ in range(2):  # the second is a replay when the read cache is on
        again = client.get(VERSIONS, headers={**bearer(token), "If-None-Match": etag})
        assert again.status_code == 304 and again.get_data() == b""
        assert again.headers["ETag"] == etag and again.headers["X-Request-Id"]
    other = client.get(VERSIONS, headers={**bearer(token), "If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.get_json() == first.get_json()
    # a new version changes the answer and its tag: the old tag no longer matches
    assert post_module(client, token, version="1.1.0").status_code == 201
    changed = client.get(VERSIONS, headers={**bearer(token), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_cache_max_age_setting_and_signed_url_answers(app_factory):
    app = app_factory({"http.cache_max_age": "120s", "downloads.url_ttl": "60s"})
    client = app.test_client()
    token = new_token(app, "admin")
    assert post_module(client, token).status_code == 201
    assert client.get(VERSIONS, headers=bearer(token)).headers["Cache-Control"] == "private, max-age=120"
    assert client.get("/.well-known/terraform.json").headers["Cache-Control"] == "private, max-age=120"
    # an answer holding a signed URL is never kept past half the URL's life
    download = client.get("/v1/modules/acme/network/aws/1.0.0/download", headers=bearer(token))
    assert download.headers["Cache-Control"] == "private, max-age=30"


def test_answers_carrying_secrets_are_no_store(app_factory):
    app = app_factory()
    client = app.test_client()
    token = new_token(app, "admin")
    created = client.post("/api/v1/tokens", json={"name": "ci", "kind": "service", "organization": "default",
                                                         "scopes": ["modules:read"]},
                          headers=bearer(token))
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.headers["Cache-Control"] == "no-store"
    assert client.get("/api/v1/tokens", headers=bearer(token)).headers["Cache-Control"] == "no-store"
    refused = client.get(VERSIONS, headers=bearer("tfr_not-a-token"))
    assert refused.status_code == 401 and refused.headers["Cache-Control"] == "no-store"


def test_json_log_lines_and_the_audit_entry_carry_the_request_id(app_factory, caplog):
    app = app_factory()
    client = app.test_client()
    token = new_token(app, "admin")
    caplog.set_level(logging.INFO, logger="tfregistry")
    r = post_module(client, token)
    assert r.status_code == 201
    rid = r.headers["X-Request-Id"]
    lines = [json.loads(JsonFormatter().format(rec)) for rec in caplog.records if rec.request_id == rid]
    access = [line for line in lines if line["logger"] == "tfregistry.access"]
    assert len(access) == 1
    line = access[0]
    assert {"time", "level", "logger", "message", "request_id"} <= set(line) and line["level"] == "INFO"
    assert line["http"]["method"] == "POST" and line["http"]["route"] == "/api/v1/modules"
    assert line["http"]["status"] == 201 and line["http"]["duration_ms"] > 0
    with app.extensions["tfregistry"].db.session() as session:
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "module.publish")).one()
        assert entry.request_id == rid
        assert line["http"]["token_id"] == entry.token_id is not None
    assert token not in caplog.text  # the secret is never logged, only its id


def test_current_request_id_inside_and_outside_a_request(app_factory):
    app = app_factory()
    seen: list[str | None] = []
    app.add_url_rule("/-/probe", "probe", lambda: seen.append(current_request_id()) or "ok")
    r = app.test_client().get("/-/probe")
    assert seen == [r.headers["X-Request-Id"]]
    assert current_request_id() is None


def test_gauges_report_queue_depth_per_queue(app_factory):
    registry = app_factory().extensions["tfregistry"]
    depth = {labels["queue"]: v for name, v, labels in current_gauges(registry) if name == "job_queue_depth"}
    assert depth == {"default": 0, "mirror": 0, "scm": 0, "notify": 0}


def test_gunicorn_access_log_in_the_same_json_shape(monkeypatch, capsys):
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from tfregistry.telemetry import GunicornLogger
    from tfregistry.web import REQUEST_ID_KEY, ROUTE_KEY, TOKEN_KEY

    monkeypatch.setenv("TFR_LOG__FORMAT", "json")
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = GunicornLogger(cfg)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/modules/acme/net/aws/versions", "REMOTE_ADDR": "10.0.0.9",
               REQUEST_ID_KEY: "rid-42", ROUTE_KEY: "/v1/modules/<ns>/<name>/<system>/versions", TOKEN_KEY: 7}
    logger.access(SimpleNamespace(status="200 OK", sent=123, headers=[]), SimpleNamespace(), environ,
                  timedelta(milliseconds=12.5))
    logger.error("worker %s booted", 17)
    out = capsys.readouterr()
    lines = [json.loads(line) for line in (out.out + out.err).splitlines()]
    access = next(line for line in lines if line["logger"] == "gunicorn.access")
    assert access["request_id"] == "rid-42" and access["level"] == "INFO"
    assert access["http"] == {"method": "GET", "route": "/v1/modules/<ns>/<name>/<system>/versions", "status": 200,
                              "duration_ms": 12.5, "token_id": 7, "bytes": 123, "remote_addr": "10.0.0.9"}
    assert "/acme/" not in json.dumps(access)  # the route template, not the path
    error = next(line for line in lines if line["logger"] == "gunicorn.error")
    assert error["message"] == "worker 17 booted" and error["request_id"] is None
