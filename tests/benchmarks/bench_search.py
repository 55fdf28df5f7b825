"""Module search at scale: prints index build time and per-query server time (p50/p95/p99) and the
number of SQL statements per search; never fails on time.

``TFR_BENCH_SEARCH_MODULES`` (default 10000) modules with a description, a README of ~150 words and an
analysis (inputs, outputs, resource types, providers), plus download events.  Run with
``tox -e bench -- tests/benchmarks/bench_search.py``.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from tfregistry.models import DownloadEvent, Module, ModuleVersion, Namespace
from tfregistry.services.modules import rebuild_download_totals
from tfregistry.services.search import reindex_all, search_modules

TOTAL = int(os.environ.get("TFR_BENCH_SEARCH_MODULES", "10000"))
RUNS = 40

rng = random.Random(12)
WORDS = [f"w{i}" for i in range(3000)] + ["network", "bucket", "cluster", "database", "queue", "gateway"]
SERVICES = ["s3", "ec2", "vpc", "iam", "rds", "eks", "lambda", "sqs", "sns", "kms", "route53", "elb"]
TYPES = [f"aws_{s}_{k}" for s in SERVICES for k in ("bucket", "instance", "policy", "role", "attachment",
                                                        "cluster", "endpoint", "key", "rule", "group")]


def _words(n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _analysis() -> dict[str, Any]:
    return {"analyzer": 1, "submodules": [], "examples": [], "changelog": None, "problems": [], "root": {
        "path": "", "inputs": [{"name": f"{rng.choice(WORDS)}_{rng.choice(WORDS)}"} for _ in range(6)],
        "outputs": [{"name": f"{rng.choice(WORDS)}_id"} for _ in range(3)],
        "resources": [{"name": "this", "type": rng.choice(TYPES)} for _ in range(4)],
        "data_sources": [{"name": "this", "type": rng.choice(TYPES)}],
        "provider_dependencies": [{"name": "aws", "source": "hashicorp/aws", "version": ""}]}}


def _seed(app: Any) -> None:
    registry = app.extensions["tfregistry"]
    with registry.db.session() as s:
        s.add_all(Namespace(name=f"ns{i}") for i in range(20))
        s.flush()
        ns_ids = list(s.scalars(sa.select(Namespace.id)))
        now = datetime.now(UTC)
        modules = [{"namespace_id": ns_ids[i % len(ns_ids)], "name": f"mod{i:05d}", "system": "aws",
                    "description": _words(8), "created_at": now} for i in range(TOTAL)]
        s.execute(sa.insert(Module), modules)
        ids = list(s.scalars(sa.select(Module.id).order_by(Module.id)))
        s.execute(sa.insert(ModuleVersion), [
            {"module_id": mid, "version": version, "prerelease": False, "description": "", "storage_key": "k",
             "size": 1, "sha256": "0" * 64, "readme": _words(150), "analysis": _analysis(),
             "published_at": now - timedelta(minutes=rng.randrange(100000)), "published_by": "bench"}
            for mid in ids for version in ("1.0.0", "1.1.0")])
        version_ids = list(s.scalars(sa.select(ModuleVersion.id)))
        s.execute(sa.insert(DownloadEvent), [{"module_version_id": rng.choice(version_ids), "at": now}
                                            for _ in range(50_000)])
        rebuild_download_totals(s)
        s.commit()


def _percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms"


def test_search_at_scale(app_factory, database_url):
    app = app_factory()
    registry = app.extensions["tfregistry"]
    db = database_url.split(":")[0].split("+")[0]
    start = time.perf_counter()
    _seed(app)
    seeded = time.perf_counter() - start
    with registry.db.session() as s:
        start = time.perf_counter()
        count = reindex_all(s)
        s.commit()
        built = time.perf_counter() - start
    print(f"\n[bench] search on {db}: seeded {TOTAL} modules in {seeded:.1f} s; reindex_all {count} modules "
          f"in {built:.1f} s")

    statements: list[str] = []

    def count_statement(*_args: Any) -> None:
        statements.append("x")

    cases = {
        "common word (network)": {"q": "network"},
        "rare word (w17)": {"q": "w17"},
        "identifier (aws_s3_bucket)": {"q": "aws_s3_bucket"},
        "identifier part (s3)": {"q": "s3"},
        "two words, prefix (bucket netw)": {"q": "bucket netw"},
        "common word sorted by downloads": {"q": "network", "sort": "downloads"},
        "no query, by name, page 50": {"offset": 1000, "limit": 20},
        "no query, by downloads": {"sort": "downloads"},
        "no query, recent": {"sort": "recent"},
        "provider filter": {"provider": "hashicorp/aws", "sort": "name"},
    }
    engine = registry.db.engine
    for label, kwargs in cases.items():
        samples = []
        for _ in range(RUNS):
            with registry.db.session() as s:
                statements.clear()
                event.listen(engine, "before_cursor_execute", count_statement)
                start = time.perf_counter()
                found = search_modules(s, sa.select(Namespace.id), **{"limit": 20, **kwargs})
                samples.append((time.perf_counter() - start) * 1000)
                event.remove(engine, "before_cursor_execute", count_statement)
        print(f"[bench] search on {db}, {label}: {_percentiles(samples)}; {len(found.modules)} shown, "
              f"{len(statements)} SQL statements")
