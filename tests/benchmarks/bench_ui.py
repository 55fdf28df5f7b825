"""Web UI pages at scale: server time (p50/p95/p99) of the module list, search and module pages with
10,000 modules (``TFR_BENCH_SEARCH_MODULES``), on SQLite and PostgreSQL; never fails on time.

The catalog is seeded as in :mod:`tests.benchmarks.bench_search` (a README of ~150 words and an analysis per
version, 50,000 download events) and the pages are rendered in process through the Flask test client with a
token (so the time is the server's: routing, permission check, queries, templates), each ``RUNS`` times.
Run with ``tox -e bench -- tests/benchmarks/bench_ui.py``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from sqlalchemy import select

import tfregistry_webui.plugin as webui_plugin
from tests.benchmarks.bench_search import TOTAL, _seed
from tests.conftest import bearer, new_token
from tfregistry.models import Module, Namespace
from tfregistry.services.search import reindex_all

RUNS = 40

PAGES = {
    "home": "/",
    "module list, by name": "/modules",
    "module list, page 50": "/modules?offset=1000",
    "module list, by downloads": "/modules?sort=downloads",
    "search, common word": "/modules?q=network",
    "search, resource type": "/modules?q=aws_s3_bucket",
    "module page (readme)": "/modules/{ns}/mod00007/aws/1.1.0",
    "module inputs tab": "/modules/{ns}/mod00007/aws/1.1.0/inputs",
    "module resources tab": "/modules/{ns}/mod00007/aws/1.1.0/resources",
    "module versions tab": "/modules/{ns}/mod00007/aws/1.1.0/versions",
    "module usage tab": "/modules/{ns}/mod00007/aws/1.1.0/usage",
    "compare 1.0.0...1.1.0": "/modules/{ns}/mod00007/aws/compare/1.0.0...1.1.0",
    "namespace page": "/namespaces/{ns}",
}


def _percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {q[49]:6.1f} ms  p95 {q[94]:6.1f} ms  p99 {q[98]:6.1f} ms"


def test_ui_pages_at_scale(app_factory: Any, database_url: str) -> None:
    app = app_factory(plugins=(webui_plugin,))
    registry = app.extensions["tfregistry"]
    db = database_url.split(":")[0].split("+")[0]
    _seed(app)
    with registry.db.session() as s:
        reindex_all(s)
        s.commit()
    with registry.db.session() as s:
        ns = s.scalar(select(Namespace.name).join(Module, Module.namespace_id == Namespace.id)
                      .where(Module.name == "mod00007"))
    token = new_token(app, "admin", name="bench-ui")
    client = app.test_client()
    print(f"\n[bench] web UI on {db}, {TOTAL} modules, server time over {RUNS} requests each (token, in process)")
    for label, template in PAGES.items():
        path = template.format(ns=ns)
        first = client.get(path, headers=bearer(token))
        assert first.status_code == 200, (path, first.status_code, first.get_data(as_text=True)[:500])
        samples = []
        for _ in range(RUNS):
            start = time.perf_counter()
            response = client.get(path, headers=bearer(token))
            samples.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        print(f"[bench]   {label:28s} {_percentiles(samples)}  ({len(first.data) / 1024:.0f} KiB)")
