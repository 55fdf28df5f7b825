"""A mirror sync whose ``tfr worker`` is SIGKILLed half-way: RQ gives the job to another worker, which finishes it.

The upstream is a second registry server behind :class:`UpstreamProxy`, which holds the
download of one package so the worker can be killed at an exact point: the newest version
committed, the next one half-stored (its SHA256SUMS, signature and first package already in
storage, no row yet).  After the kill the job still looks started in Redis; the maintenance any
worker runs once the dead worker's heartbeat has expired (job timeout + 60 s, asked for here
"as of later" instead of waited for, as in tests/integration/test_jobs.py) puts it back on the
queue, and a second worker completes the sync.  Every selected package must then be stored
exactly once, byte for byte the upstream's, with nothing left over for ``tfr storage gc``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
import sqlalchemy as sa

from tests.conftest import REDIS_URL
from tests.e2e.conftest import DATABASES, RegistryServer, running_server, unique
from tests.e2e.upstream_proxy import UpstreamProxy
from tests.providers_kit import build_release, h1_of_zip

pytestmark = pytest.mark.e2e

ORIGIN = "upstream.example.test"
VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0")  # a sync copies the newest first
PLATFORMS = ("linux_amd64", "darwin_arm64")
JOB_TIMEOUT = 60
WORKER_TIMEOUT = 60.0


def api(server: RegistryServer, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    response = server.request(method, path, token=server.admin_token,
                              body=json.dumps(body).encode() if body is not None else None,
                              headers={"Content-Type": "application/json"} if body is not None else None)
    return response.status, json.loads(response.body) if response.body else None


def is_package(path: str) -> bool:
    return path.endswith(".zip")


def start_worker(server: RegistryServer, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``tfr worker`` on the server's database, storage and Redis, in its own process group."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tfregistry", "worker", "--queues", "mirror", *extra],
                                env=server.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def database_url(server: RegistryServer) -> str:
    return server.env.get("TFR_DATABASE_URL") or f"sqlite:///{server.data_dir / 'registry.db'}"


def stored_rows(server: RegistryServer, ns: str) -> dict[str, list[tuple[Any, ...]]]:
    """The downstream's provider, version and package rows for ``ns``, straight from its database."""
    engine = sa.create_engine(database_url(server))
    try:
        with engine.connect() as conn:
            where = "JOIN namespaces n ON p.namespace_id = n.id WHERE n.name = :ns"
            return {
                "providers": list(conn.execute(sa.text(
                    f"SELECT p.hostname, p.type FROM providers p {where}"), {"ns": ns})),
                "versions": list(conn.execute(sa.text(
                    "SELECT pv.version, pv.shasums_key, pv.signature_key FROM provider_versions pv "
                    f"JOIN providers p ON pv.provider_id = p.id {where}"), {"ns": ns})),
                "packages": list(conn.execute(sa.text(
                    "SELECT pv.version, pp.os || '_' || pp.arch, pp.storage_key, pp.sha256, pp.h1 "
                    "FROM provider_packages pp JOIN provider_versions pv ON pp.provider_version_id = pv.id "
                    f"JOIN providers p ON pv.provider_id = p.id {where}"), {"ns": ns})),
            }
    finally:
        engine.dispose()


def storage_objects(server: RegistryServer, ns: str) -> set[str]:
    """Keys of every object the downstream's local storage holds for mirrored providers of ``ns``."""
    root = server.data_dir / "storage"
    base = root / "mirror" / ORIGIN / ns
    return {str(p.relative_to(root)) for p in base.rglob("*") if p.is_file()} if base.exists() else set()


def gc_candidates(server: RegistryServer) -> list[str]:
    """What ``tfr storage gc --dry-run --grace 0s`` would remove."""
    out = server.cli("storage", "gc", "--dry-run", "--grace", "0s")
    return sorted(line.split()[2] for line in out.splitlines() if line.startswith("would remove "))


@pytest.mark.parametrize("database", DATABASES)
def test_a_worker_killed_mid_sync_leaves_nothing_half_done_and_another_worker_completes_it(
        database: str, upstream: RegistryServer, redis_db: redis_lib.Redis, signer: Any, tmp_path: Path) -> None:
    ns = unique("crash")
    upstream.register_key(ns, signer.public_armor, tmp_path)
    releases = {v: build_release(tmp_path / v, "foo", v, platforms=PLATFORMS, key=signer) for v in VERSIONS}
    for release in releases.values():
        upstream.publish_provider(release.dist, ns)
    upstream_zips = {(v, p): r.zips[r.zip_name(p)] for v, r in releases.items() for p in PLATFORMS}
    want = {key: hashlib.sha256(data).hexdigest() for key, data in upstream_zips.items()}
    newest, interrupted = VERSIONS[-1], VERSIONS[-2]

    env = {"SSL_CERT_FILE": str(upstream.bundle), "TFR_REDIS_URL": REDIS_URL, "TFR_JOBS__RETRIES": "1",
           "TFR_JOBS__HEARTBEAT_SECONDS": "1",
           "TFR_JOBS__BACKOFF_SECONDS": "0", "TFR_JOBS__TIMEOUT": str(JOB_TIMEOUT)}
    (tmp_path / "downstream").mkdir()
    with UpstreamProxy(upstream) as proxy, running_server(database, tmp_path / "downstream", env) as downstream:
        status, config = api(downstream, "POST", "/api/v1/mirrors", {
            "upstream_host": ORIGIN, "upstream_url": proxy.url, "upstream_token": upstream.admin_token,
            "namespace": ns, "type": "foo"})
        assert status == 201, config
        status_path = f"/api/v1/mirrors/{config['id']}/status"

        # Hold the download of the newest-but-one version's second package: by then the newest version
        # is committed and the held one has stored its SHA256SUMS, signature and first package.
        proxy.hold(is_package, nth=len(PLATFORMS) + 2)
        first = start_worker(downstream, tmp_path / "worker-1.log")
        try:
            status, job = api(downstream, "POST", f"/api/v1/mirrors/{config['id']}/sync")
            assert status == 202, job
            assert proxy.held.wait(WORKER_TIMEOUT), \
                f"the sync never reached the held download\n{(tmp_path / 'worker-1.log').read_text()}"
            half = stored_rows(downstream, ns)
            assert sorted((v, p) for v, p, *_ in half["packages"]) == [(newest, p) for p in sorted(PLATFORMS)]
            assert [v for v, *_ in half["versions"]] == [newest], "some but not all versions are stored"
            debris = gc_candidates(downstream)
            assert len(debris) == 3 and all(f"/{interrupted}/" in key for key in debris), debris
            os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-download
            first.wait(timeout=10)
        finally:
            kill(first)
        proxy.release()

        _, runs = api(downstream, "GET", status_path)
        assert [r["status"] for r in runs] == ["running"], runs
        _, job = api(downstream, "GET", f"/api/v1/jobs/{job['job']}")
        assert job["status"] == "started", job  # RQ cannot know yet that its worker is dead

        # What an operator does: ask for the sync again.  Once the dead worker's heartbeat has expired
        # (3 x jobs.heartbeat_seconds), the job is known abandoned and is queued again at once, without
        # waiting for RQ to time it out (jobs.timeout + 60 s).
        deadline = time.monotonic() + 30
        while True:
            status, again = api(downstream, "POST", f"/api/v1/mirrors/{config['id']}/sync")
            assert status == 202, again
            if again["status"] == "queued" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert again["status"] == "queued" and again["job"] == job["id"], again

        second = start_worker(downstream, tmp_path / "worker-2.log", "--burst")
        try:
            assert second.wait(timeout=WORKER_TIMEOUT) == 0, (tmp_path / "worker-2.log").read_text()
        finally:
            kill(second)
        _, job = api(downstream, "GET", f"/api/v1/jobs/{job['id']}")
        assert job["status"] == "finished", job

        # The run history: the interrupted run, then a successful one that skipped what was committed.
        _, runs = api(downstream, "GET", status_path)
        assert len(runs) == 2, runs
        done, killed = runs
        assert killed["status"] == "interrupted" and "interrupted" in killed["errors"][-1], killed
        assert done["status"] == "succeeded" and done["errors"] == [], done
        assert (done["versions"], done["packages"], done["skipped"]) == \
            (len(VERSIONS) - 1, (len(VERSIONS) - 1) * len(PLATFORMS), len(PLATFORMS)), done
        assert done["bytes"] == sum(len(data) for (v, _), data in upstream_zips.items() if v != newest)

        # Every version and package exactly once, each object referenced once, nothing left over.
        rows = stored_rows(downstream, ns)
        assert rows["providers"] == [(ORIGIN, "foo")]
        assert sorted(v for v, *_ in rows["versions"]) == sorted(VERSIONS)
        packages = {(v, p): (key, sha, h1) for v, p, key, sha, h1 in rows["packages"]}
        assert len(packages) == len(rows["packages"]) == len(want), rows["packages"]
        assert {k: sha for k, (_, sha, _) in packages.items()} == want
        referenced = [key for _, sums, sig in rows["versions"] for key in (sums, sig)] + \
            [key for key, _, _ in packages.values()]
        assert len(referenced) == len(set(referenced)), "a storage object is referenced twice"
        assert storage_objects(downstream, ns) == set(referenced), "objects in storage that no row refers to"
        for (version, platform), (key, _, h1) in packages.items():
            stored = (downstream.data_dir / "storage" / key).read_bytes()
            assert hashlib.sha256(stored).hexdigest() == want[version, platform], key
            assert h1 == h1_of_zip(upstream_zips[version, platform]), key
        assert gc_candidates(downstream) == []

        # What Terraform sees through the network mirror protocol: every version, every platform, the
        # upstream's hashes, and archives that are the upstream's bytes.
        base = f"/v1/providers/{ORIGIN}/{ns}/foo"
        index = downstream.get(f"{base}/index.json", token=downstream.admin_token)
        assert index.status == 200, index.body
        assert sorted(index.json()["versions"]) == sorted(VERSIONS)
        for version in VERSIONS:
            answer = downstream.get(f"{base}/{version}.json", token=downstream.admin_token)
            assert answer.status == 200, answer.body
            archives = answer.json()["archives"]
            assert sorted(archives) == sorted(PLATFORMS)
            for platform, archive in archives.items():
                data = upstream_zips[version, platform]
                assert sorted(archive["hashes"]) == sorted([h1_of_zip(data), f"zh:{want[version, platform]}"])
                url = urlsplit(archive["url"])
                assert url.netloc == downstream.host, archive["url"]
                download = downstream.get(f"{url.path}?{url.query}")
                assert download.status == 200 and download.body == data, (version, platform, download.status)
