"""Proof of the observability under the production command: a scripted workload against a 4-worker
gunicorn (publishes, a real ``terraform init``, a failed job and a mirror sync run by ``tfr worker``,
10,000 downloads of distinct modules), then ``/metrics``: counts summed across every process,
``promtool check metrics`` clean, fewer than 2,000 series; a request's id in its JSON log lines and in
the audit entry it wrote."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from tfregistry_metrics.metrics import FLUSH_INTERVAL

from tests.benchmarks._http import BIN, TERRAFORM_UA, publish_module, registry, seed_modules
from tests.conftest import REDIS_URL
from tests.e2e.conftest import Terraform
from tfregistry.db import make_engine
from tfregistry.testing.plugin import build_module_archive
from tfregistry.tls import ensure_self_signed

WORKERS = 4
DOWNLOADS = 10_000
NAMESPACES = ("obs0", "obs1", "obs2", "obs3")
METRICS_TOKEN = "proof-scrape-token-0123456789"
DOWNLOAD_ROUTE = "/v1/modules/<ns>/<name>/<system>/<version>/download"


def scrape(url: str, bundle: Path) -> str:
    r = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, verify=str(bundle),
                     timeout=30)
    assert r.status_code == 200, r.text
    return r.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(found: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name`` over every series whose labels include ``labels``."""
    return sum(v for (n, series), v in found.items()
               if n == name and all(dict(series).get(k) == want for k, want in labels.items()))


def download_all(url: str, bundle: Path, token: str, paths: list[str], threads: int = 8) -> list[int]:
    """GET every path (Terraform's user agent), spread over ``threads`` connections; returns the statuses."""
    statuses: list[int] = []
    lock = threading.Lock()

    def work(part: list[str]) -> None:
        with requests.Session() as session:
            session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": TERRAFORM_UA})
            got = [session.get(url + path, verify=str(bundle), timeout=60).status_code for path in part]
        with lock:
            statuses.extend(got)

    workers = [threading.Thread(target=work, args=(paths[i::threads],)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return statuses


@pytest.mark.parametrize("database", ["postgresql"])
def test_metrics_and_logs_under_a_four_worker_gunicorn(tmp_path: Path, database: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (apt-get install prometheus; .ci/run installs it)"
    import redis

    redis_url = REDIS_URL
    redis.Redis.from_url(redis_url).flushdb()
    tls = ensure_self_signed(tmp_path / "tls")
    multiproc = tmp_path / "prometheus"
    env = {"SSL_CERT_FILE": str(tls.bundle), "TFR_PLUGINS": "tfregistry-storage-local,tfregistry-metrics",
           "TFR_METRICS__ENABLED": "true", "TFR_METRICS__TOKEN": METRICS_TOKEN, "TFR_LOG__FORMAT": "json",
           "TFR_LOG_LEVEL": "INFO", "TFR_PROXY__TRUSTED": "127.0.0.1/32", "TFR_REDIS_URL": redis_url,
           "TFR_JOBS__RETRIES": "0", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with registry(database, tmp_path / "registry", extra_env=env, tls=(tls.cert, tls.key)) as srv:
        admin = srv.create_token("admin", name="proof")
        srv.start(WORKERS)

        # --- publishes: through the CLI, and one through the API with a proxy's request id -------------
        archive = tmp_path / "module.tar.gz"
        for ns in NAMESPACES:
            archive.write_bytes(build_module_archive(ns))
            publish_module(srv, admin, f"{ns}/mod/aws", "1.0.0", archive)
        publish = requests.post(srv.url + "/api/v1/modules", headers={
            "Authorization": f"Bearer {admin}", "X-Request-Id": "proof-publish-0001"},
            data={"namespace": "obs0", "name": "traced", "system": "aws", "version": "1.0.0"},
            files={"archive": ("m.tar.gz", build_module_archive("traced"))}, verify=str(tls.bundle), timeout=60)
        assert publish.status_code == 201, publish.text
        assert publish.headers["X-Request-Id"] == "proof-publish-0001"
        refused = requests.post(srv.url + "/api/v1/modules", headers={"Authorization": f"Bearer {admin}"},
                                data={"namespace": "obs0", "name": "broken", "system": "aws", "version": "1.0.0"},
                                files={"archive": ("m.tar.gz", b"not a tarball")}, verify=str(tls.bundle), timeout=60)
        assert refused.status_code == 400, refused.text

        # --- real terraform init ------------------------------------------------------------------------
        terraform = Terraform(SimpleNamespace(bundle=tls.bundle, host=srv.host), tmp_path / "tf")
        work = terraform.workdir(f'module "m" {{\n  source  = "{srv.host}/obs1/mod/aws"\n  version = "1.0.0"\n}}\n')
        result = terraform.init(work, token=admin)
        assert result.rc == 0, str(result)

        # --- a mirror sync (its upstream is down: the run fails) and a job that fails, run by tfr worker ---
        mirror = requests.post(srv.url + "/api/v1/mirrors", headers={"Authorization": f"Bearer {admin}"},
                               json={"upstream_host": "upstream.invalid", "upstream_url": "http://127.0.0.1:9",
                                     "namespace": "hashicorp", "type": "random"},
                               verify=str(tls.bundle), timeout=60)
        assert mirror.status_code == 201, mirror.text
        sync = requests.post(f"{srv.url}/api/v1/mirrors/{mirror.json()['id']}/sync",
                             headers={"Authorization": f"Bearer {admin}"}, verify=str(tls.bundle), timeout=60)
        assert sync.status_code in (200, 202), sync.text
        from tfregistry.jobs import RQQueue

        RQQueue(redis_url, 0, 1, 600, 600, 600).enqueue("tfregistry.jobs:mirror_sync", 987_654, queue="mirror")
        worker = subprocess.run([str(BIN / "tfr"), "worker", "--burst", "--queues", "mirror"], env=srv.env,
                                capture_output=True, text=True, timeout=300)
        assert worker.returncode == 0, worker.stdout + worker.stderr

        # --- 10,000 downloads of distinct modules ------------------------------------------------------
        seed_modules(srv.database_url, DOWNLOADS, NAMESPACES, template="obs0/mod/aws/1.0.0")
        paths = [f"/v1/modules/{NAMESPACES[i % len(NAMESPACES)]}/bulk{i:06d}/aws/1.0.0/download"
                 for i in range(DOWNLOADS)]
        statuses = download_all(srv.url, tls.bundle, admin, paths)
        assert statuses.count(204) == DOWNLOADS

        # --- /metrics --------------------------------------------------------------------------------------
        # each worker writes its request metrics at least every FLUSH_INTERVAL (docs/operations: metrics)
        time.sleep(2 * FLUSH_INTERVAL)
        text = scrape(srv.url, tls.bundle)
        found = samples(text)
        assert total(found, "tfregistry_module_downloads_total") == DOWNLOADS + 1  # + terraform init's
        for ns in NAMESPACES:
            assert total(found, "tfregistry_module_downloads_total", namespace=ns) == \
                DOWNLOADS / len(NAMESPACES) + (ns == "obs1")
        assert total(found, "tfregistry_http_requests_total", route=DOWNLOAD_ROUTE, status="204") == DOWNLOADS + 1
        assert total(found, "tfregistry_http_request_duration_seconds_count", route=DOWNLOAD_ROUTE) == DOWNLOADS + 1
        assert total(found, "tfregistry_publishes_total", kind="module", outcome="published") == len(NAMESPACES) + 1
        assert total(found, "tfregistry_publishes_total", kind="module", namespace="obs0", outcome="refused") == 1
        # the worker's jobs are in the web's /metrics: one sync run that failed, one job that raised
        assert total(found, "tfregistry_mirror_sync_runs_total", outcome="failed") == 1
        assert total(found, "tfregistry_mirror_sync_errors_total") >= 1
        assert total(found, "tfregistry_job_runs_total", queue="mirror", job="mirror_sync") == 2
        assert total(found, "tfregistry_job_failures_total", queue="mirror", job="mirror_sync") == 1
        assert total(found, "tfregistry_job_queue_depth", queue="mirror") == 0
        assert total(found, "tfregistry_build_info") == 1
        assert total(found, "tfregistry_storage_operation_duration_seconds_count", operation="put") >= len(NAMESPACES)

        # every worker served part of it, and the counts above are their sum
        pids = {int(m.group(1)) for p in multiproc.iterdir() if (m := re.match(r"counter_(\d+)\.db$", p.name))}
        assert len(pids & set(srv.worker_pids())) >= 2, (pids, srv.worker_pids())
        again = samples(scrape(srv.url, tls.bundle))  # any worker answers with the same sums
        assert total(again, "tfregistry_module_downloads_total") == DOWNLOADS + 1

        series = [line for line in text.splitlines() if line and not line.startswith("#")]
        print(f"\n[proof] /metrics after {DOWNLOADS} downloads of distinct modules: {len(series)} series")
        assert len(series) < 2000
        assert "bulk0" not in text and "traced" not in text  # no module names in labels

        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr

        # --- the request id in the JSON log lines and the audit entry ------------------------------------
        srv.stop()
        lines = [json.loads(line) for line in srv.log_text().splitlines() if line.startswith("{")]
        mine = [line for line in lines if line.get("request_id") == "proof-publish-0001"]
        access = [line for line in mine if line["logger"] == "tfregistry.access"]
        assert len(access) == 1, mine
        assert access[0]["http"]["route"] == "/api/v1/modules" and access[0]["http"]["status"] == 201
        assert isinstance(access[0]["http"]["token_id"], int) and admin not in srv.log_text()
        assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
        engine = make_engine(srv.database_url)
        try:
            with engine.connect() as conn:
                audit = conn.execute(sa.text("SELECT action, token_id FROM audit_log WHERE request_id = :rid"),
                                     {"rid": "proof-publish-0001"}).all()
        finally:
            engine.dispose()
        assert [(a.action, a.token_id) for a in audit] == [("module.publish", access[0]["http"]["token_id"])]
