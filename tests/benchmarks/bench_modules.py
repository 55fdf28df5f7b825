"""Benchmarks for the module registry: they print figures and never fail on time.

Run with ``tox -e bench`` (or ``pytest -s -o python_files='bench_*.py' tests/benchmarks``).
"""

from __future__ import annotations

import io
import os
import resource
import tarfile
import time

from tests.conftest import bearer, new_token, post_module

ARCHIVE_MB = 50


def _random_module(megabytes: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        main = tarfile.TarInfo("main.tf")
        main.size = 2
        tar.addfile(main, io.BytesIO(b"#\n"))
        blob = tarfile.TarInfo("data.bin")
        blob.size = megabytes * 1024 * 1024
        tar.addfile(blob, io.BytesIO(os.urandom(blob.size)))
    return buf.getvalue()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_publish_throughput(app_factory, database_url):
    app = app_factory()
    client, token = app.test_client(), new_token(app, "admin")
    archive = _random_module(ARCHIVE_MB)
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    r = post_module(client, token, archive=archive)
    elapsed = time.perf_counter() - start
    assert r.status_code == 201
    db = database_url.split(":")[0]
    print(f"\n[bench] publish {len(archive) / 2**20:.0f} MiB module on {db}: {elapsed:.2f} s, "
          f"{len(archive) / 2**20 / elapsed:.0f} MiB/s, peak RSS {_peak_rss_mb():.0f} MiB "
          f"(before {rss_before:.0f} MiB)")


def test_protocol_request_rate(app_factory, database_url):
    app = app_factory()
    client, token = app.test_client(), new_token(app, "read")
    admin = new_token(app, "admin")
    for i in range(30):
        assert post_module(client, admin, version=f"1.{i}.0").status_code == 201
    headers = bearer(token)
    for path in ("/v1/modules/acme/network/aws/versions", "/v1/modules/acme/network/aws/1.5.0/download"):
        n = 300
        start = time.perf_counter()
        for _ in range(n):
            assert client.get(path, headers=headers).status_code in (200, 204)
        elapsed = time.perf_counter() - start
        db = database_url.split(":")[0]
        print(f"\n[bench] GET {path} on {db}: {n / elapsed:.0f} req/s ({elapsed / n * 1000:.2f} ms each, "
              "one thread, test client)")
