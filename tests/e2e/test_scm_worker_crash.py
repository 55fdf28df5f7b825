"""An SCM sync whose ``tfr worker`` is SIGKILLed in the middle of publishing: nothing half-published, and
the sync asked for again is completed by another worker, each version published exactly once.

The repository holds two matching tags; the sync publishes them one after the other.  The git server
holds the second tag's pack download, so the worker is killed with the first version committed and the
second one in progress (fetched tree, nothing stored yet).  As in test_mirror_worker_crash.py, the
operator asks for the sync again; once the dead worker's heartbeat has expired the same job is queued
again, and a second worker completes it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from tests.conftest import REDIS_URL
from tests.e2e.conftest import DATABASES, RegistryServer, running_server, unique
from tests.e2e.test_mirror_worker_crash import api, gc_candidates, kill
from tfregistry.testing.git import GitHttpServer

pytestmark = pytest.mark.e2e
WORKER_TIMEOUT = 60.0


def start_worker(server: RegistryServer, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tfregistry", "worker", "--queues", "scm", *extra],
                                env=server.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


@pytest.mark.parametrize("database", DATABASES)
def test_a_worker_killed_mid_publish_leaves_nothing_half_published(
        database: str, redis_db: redis_lib.Redis, tmp_path: Path) -> None:
    ns = unique("scmcrash")
    env = {"TFR_REDIS_URL": REDIS_URL, "TFR_JOBS__RETRIES": "0", "TFR_JOBS__HEARTBEAT_SECONDS": "1",
           "TFR_JOBS__BACKOFF_SECONDS": "0", "TFR_JOBS__TIMEOUT": "60", "TFR_SCM__RECONCILE_INTERVAL": "0"}
    (tmp_path / "srv").mkdir()
    with GitHttpServer(tmp_path / "git") as git, running_server(database, tmp_path / "srv", env) as server:
        repo = git.create_repo("net")
        first = repo.commit({"main.tf": "# 1.0.0\n"})
        repo.tag("v1.0.0")
        second = repo.commit({"main.tf": "# 1.1.0\n"})
        repo.tag("v1.1.0")
        status, conn = api(server, "POST", "/api/v1/scm/connections", {
            "name": unique("c"), "provider": "git", "auth_method": "none"})
        assert status == 201, conn
        status, link = api(server, "POST", "/api/v1/scm/links", {
            "connection_id": conn["id"], "repository": git.repo_url("net"), "namespace": ns, "name": "net",
            "system": "generic"})
        assert status == 201, link

        git.hold(2)  # the second version's clone
        worker = start_worker(server, tmp_path / "worker-1.log")
        try:
            status, job = api(server, "POST", f"/api/v1/scm/links/{link['id']}/sync")
            assert status == 202, job
            assert git.held.wait(WORKER_TIMEOUT), (tmp_path / "worker-1.log").read_text()
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            kill(worker)
        git.release()

        def versions() -> list[str]:
            r = server.get(f"/v1/modules/{ns}/net/generic/versions", token=server.admin_token)
            return sorted(v["version"] for v in r.json()["modules"][0]["versions"]) if r.status == 200 else []

        assert versions() == ["1.0.0"]  # the first committed, the second not half there
        assert gc_candidates(server) == []

        deadline = time.monotonic() + 30
        while True:
            status, again = api(server, "POST", f"/api/v1/scm/links/{link['id']}/sync")
            assert status == 202, again
            if again["status"] == "queued" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert again["status"] == "queued" and again["job"] == job["job"], again
        second_worker = start_worker(server, tmp_path / "worker-2.log", "--burst")
        try:
            assert second_worker.wait(timeout=WORKER_TIMEOUT) == 0, (tmp_path / "worker-2.log").read_text()
        finally:
            kill(second_worker)

        assert versions() == ["1.0.0", "1.1.0"]
        for version, sha in (("1.0.0", first), ("1.1.0", second)):
            status, prov = api(server, "GET", f"/api/v1/scm/provenance/{ns}/net/generic/{version}")
            assert status == 200 and prov["commit_sha"] == sha, prov
        assert gc_candidates(server) == []
        stored = sorted(p for p in (server.data_dir / "storage" / "modules" / ns).rglob("*.tar.gz"))
        assert len(stored) == 2, stored  # each version stored once
        assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in stored}) == 2
