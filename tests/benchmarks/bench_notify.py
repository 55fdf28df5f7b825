"""Publishing while a notification target is dead: prints publish times, never fails on time.

Three runs of ``TFR_BENCH_PUBLISHES`` (default 20) module publishes through the API, each on a fresh
app on the same database (the ``app_factory`` fixture: SQLite and PostgreSQL, jobs in-process as in
the embedded default):

* no subscription;
* a webhook subscription whose receiver accepts connections and never answers (the notifier waits
  its timeout, ``plugins.tfregistry-notify-webhook.timeout``, here 2 s, one attempt each);
* a webhook subscription to a port nothing listens on (connection refused).

Printed: the median and the slowest publish of each run.  Before its app closes, each run waits (not
timed) for its deliveries to end.  Deliveries run in jobs, so a dead target
should leave the publish times unchanged; the figures show it.  Run with ``tox -e bench --
tests/benchmarks/bench_notify.py``.
"""

from __future__ import annotations

import base64
import os
import socket
import statistics
import time

import tfregistry_notify_webhook.plugin as webhook_plugin

from tests.conftest import bearer, new_token, post_module

PUBLISHES = int(os.environ.get("TFR_BENCH_PUBLISHES", "20"))
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _publish_times(app_factory, name: str, url: str | None) -> list[float]:
    app = app_factory({"plugins.tfregistry-notify-webhook.timeout": 2, "notify.backoff_seconds": 1,
                       "notify.max_attempts": 1}, plugins=(webhook_plugin,))
    client, token = app.test_client(), new_token(app, "admin")
    if url is not None:
        response = client.post("/api/v1/notifications/subscriptions", headers=bearer(token), json={
            "name": "bench", "events": ["*"], "notifier": "webhook", "target": {"url": url, "secret": SECRET}})
        assert response.status_code == 201, response.get_json()
    times = []
    for i in range(PUBLISHES):
        start = time.perf_counter()
        response = post_module(client, token, name=name, version=f"1.0.{i}")
        times.append(time.perf_counter() - start)
        assert response.status_code == 201, response.get_json()
    # the deliveries end (dead) before the app and its database go; not part of the figures
    app.extensions["tfregistry"].jobs.wait(timeout=10 + 3 * PUBLISHES)
    return times


def test_publish_time_with_a_dead_notification_target(app_factory, database_url):
    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    refused_port = refused.getsockname()[1]
    refused.close()
    try:
        runs = {
            "no subscription": _publish_times(app_factory, "quiet", None),
            "receiver never answers": _publish_times(app_factory, "silent",
                                                     f"http://127.0.0.1:{silent.getsockname()[1]}/"),
            "connection refused": _publish_times(app_factory, "refused", f"http://127.0.0.1:{refused_port}/"),
        }
    finally:
        silent.close()
    db = database_url.split(":", 1)[0]
    for name, times in runs.items():
        print(f"\n[{db}] publish x{len(times)}, {name}: median {statistics.median(times) * 1000:.1f} ms, "
              f"slowest {max(times) * 1000:.1f} ms")
