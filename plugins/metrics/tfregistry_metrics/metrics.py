"""The metrics, created once per process, and the observer that feeds them.

Every name starts with ``tfregistry_``.  Labels are bounded: route templates (never paths),
namespaces (never module names), provider os/arch, queue and job names from the code.

Under gunicorn with several workers (and for ``tfr worker`` processes on the same host),
``PROMETHEUS_MULTIPROC_DIR`` makes each process write its values to files there, and
``GET /metrics`` sums them (prometheus-client's multiprocess mode); the core's
``tfregistry.gunicorn_conf`` sets that directory up and marks exited workers dead.

The per-request metrics (requests, their duration, downloads) are counted in memory and written
to prometheus-client at most :data:`FLUSH_INTERVAL` seconds later (see :class:`PendingRequests`).
"""

from __future__ import annotations

import atexit
import bisect
import os
import platform
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "tfregistry_"

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LONG_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)

HTTP_REQUESTS = Counter(PREFIX + "http_requests", "HTTP requests answered, by method, route template and status.",
                        ["method", "route", "status"])
HTTP_DURATION = Histogram(PREFIX + "http_request_duration_seconds",
                          "Time the application took to answer, by method and route template.",
                          ["method", "route"], buckets=_DURATION_BUCKETS)
MODULE_DOWNLOADS = Counter(PREFIX + "module_downloads", "Module downloads answered, by namespace.", ["namespace"])
PROVIDER_DOWNLOADS = Counter(PREFIX + "provider_downloads",
                             "Provider package downloads answered, by namespace, os and arch.",
                             ["namespace", "os", "arch"])
PUBLISHES = Counter(PREFIX + "publishes", "Publish requests, by kind (module, provider), namespace and outcome "
                    "(published, refused; a refusal before the namespace is known has namespace \"\").",
                    ["kind", "namespace", "outcome"])
MIRROR_SYNC_RUNS = Counter(PREFIX + "mirror_sync_runs", "Mirror sync runs, by outcome (succeeded, partial, failed).",
                           ["outcome"])
MIRROR_SYNC_DURATION = Histogram(PREFIX + "mirror_sync_duration_seconds", "Duration of mirror sync runs.",
                                 buckets=_LONG_BUCKETS)
MIRROR_SYNC_BYTES = Counter(PREFIX + "mirror_sync_bytes", "Bytes copied by mirror sync runs.")
MIRROR_SYNC_ERRORS = Counter(PREFIX + "mirror_sync_errors", "Errors met by mirror sync runs.")
PULLTHROUGH_HITS = Counter(PREFIX + "pullthrough_hits", "Network-mirror requests answered from what the registry holds "
                           "(pull-through on).")
PULLTHROUGH_FETCHES = Counter(PREFIX + "pullthrough_upstream_fetches",
                              "Pull-through requests that went to an upstream, by outcome (fetched, failed).",
                              ["outcome"])
JOB_RUNS = Counter(PREFIX + "job_runs", "Job attempts, by queue, job and outcome (finished, failed).",
                   ["queue", "job", "outcome"])
JOB_FAILURES = Counter(PREFIX + "job_failures", "Job attempts that failed, by queue and job.", ["queue", "job"])
JOB_DURATION = Histogram(PREFIX + "job_duration_seconds", "Duration of job attempts, by queue.", ["queue"],
                         buckets=_LONG_BUCKETS)
NOTIFICATION_DELIVERIES = Counter(PREFIX + "notification_deliveries",
                                  "Notification delivery attempts, by notifier and outcome (delivered, failed).",
                                  ["notifier", "outcome"])
NOTIFICATION_FAILURES = Counter(PREFIX + "notification_failures", "Notification delivery attempts that failed.",
                                ["notifier"])
DB_POOL_IN_USE = Gauge(PREFIX + "db_pool_connections_in_use", "Database connections checked out of the pool.",
                       multiprocess_mode="livesum")
STORAGE_DURATION = Histogram(PREFIX + "storage_operation_duration_seconds",
                             "Duration of storage backend calls, by backend and operation.",
                             ["backend", "operation"], buckets=_DURATION_BUCKETS)
STORAGE_ERRORS = Counter(PREFIX + "storage_operation_errors", "Storage backend calls that failed (a missing object "
                         "is not counted), by backend and operation.", ["backend", "operation"])
SCM_TAG_MOVED = Counter(PREFIX + "scm_tag_moved", "Tags seen pointing at a new commit, by SCM provider.",
                        ["provider"])
SCM_WEBHOOK_REJECTIONS = Counter(PREFIX + "scm_webhook_rejections", "SCM webhooks refused, by provider and reason.",
                                 ["provider", "reason"])

#: Metrics the scrape computes from :meth:`tfregistry.registry.Registry.gauges` (name -> (help, labels)).
SCRAPE_GAUGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "job_queue_depth": (PREFIX + "job_queue_depth", "Jobs waiting in a queue (queued or scheduled for retry).",
                        ("queue",)),
    "signing_key_expiry": (PREFIX + "signing_key_expiry_timestamp_seconds",
                           "Unix time each namespace signing key expires (keys with an expiry, not revoked).",
                           ("namespace", "key_id")),
}
BUILD_INFO = PREFIX + "build_info"


def _status(value: str) -> str:
    return value if value.isdigit() else "other"


#: Seconds the per-request metrics of a process may wait in memory before they are written.
FLUSH_INTERVAL = 1.0


class PendingRequests:
    """Request counts, durations and downloads, added up in memory and written in one go.

    Each update of a prometheus-client metric takes a process-wide lock, and in multiprocess mode
    also asks the kernel for the process id and writes to a memory-mapped file: four such updates
    for a replayed download answer cost about a tenth of the whole answer.  Here a request adds to
    plain dictionaries; :meth:`flush` writes the sums, from a thread every :data:`FLUSH_INTERVAL`
    seconds, before every scrape this process answers, and when the process exits.  A scrape
    therefore sees another worker's requests at most :data:`FLUSH_INTERVAL` seconds late.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._durations: dict[tuple[str, str], list[float]] = {}
        self._counts: dict[tuple[Any, tuple[str, ...]], float] = {}
        self._pid = 0

    def request(self, method: str, route: str, status: str, duration: float) -> None:
        key = (method, route, status)
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            durations = self._durations.get(key[:2])
            if durations is None:
                durations = self._durations[key[:2]] = []
            durations.append(duration)
            if self._pid != os.getpid():
                self._start()

    def count(self, counter: Any, labels: tuple[str, ...], value: float) -> None:
        key = (counter, labels)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + value
            if self._pid != os.getpid():
                self._start()

    def flush(self) -> None:
        """Write what was counted since the last flush to the prometheus-client metrics."""
        with self._flush_lock:
            with self._lock:
                requests, self._requests = self._requests, {}
                durations, self._durations = self._durations, {}
                counts, self._counts = self._counts, {}
            for (method, route, status), n in requests.items():
                HTTP_REQUESTS.labels(method, route, status).inc(n)
            for (method, route), values in durations.items():
                _observe_all(HTTP_DURATION.labels(method, route), values)
            for (counter, labels), value in counts.items():
                counter.labels(*labels).inc(value)

    def _start(self) -> None:
        """The flushing thread of this process (a forked child starts its own); called under the lock."""
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="tfr-metrics-flush", daemon=True).start()
        atexit.unregister(self.flush)  # once per process, also in a forked child
        atexit.register(self.flush)

    def _run(self) -> None:
        pid = os.getpid()
        while self._pid == pid:
            time.sleep(FLUSH_INTERVAL)
            self.flush()


def _observe_all(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for each value, as one update per bucket where prometheus-client's
    histogram is laid out as expected (one value per bucket, the last one +Inf, and a sum)."""
    buckets, total = getattr(histogram, "_buckets", None), getattr(histogram, "_sum", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    if buckets is None or total is None or not bounds or len(buckets) != len(bounds) or bounds[-1] != float("inf"):
        for value in values:
            histogram.observe(value)
        return
    per_bucket: dict[int, int] = {}
    for value in values:
        index = bisect.bisect_left(bounds, value)  # the first bound >= value ("le"), +Inf at the latest
        per_bucket[index] = per_bucket.get(index, 0) + 1
    total.inc(sum(values))
    for index, n in per_bucket.items():
        buckets[index].inc(n)


#: This process's pending per-request metrics.
PENDING = PendingRequests()


class MetricsObserver:
    """Turns the core's observations (``registry.observe``) into metric updates."""

    def observe(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        handler = getattr(self, "_" + name, None)
        if handler is not None:
            handler(value, labels)

    def _http_request(self, value: float, labels: Mapping[str, str]) -> None:
        PENDING.request(labels["method"], labels["route"], _status(labels["status"]), value)

    def _module_download(self, value: float, labels: Mapping[str, str]) -> None:
        PENDING.count(MODULE_DOWNLOADS, (labels["namespace"],), value)

    def _provider_download(self, value: float, labels: Mapping[str, str]) -> None:
        PENDING.count(PROVIDER_DOWNLOADS, (labels["namespace"], labels["os"], labels["arch"]), value)

    def _module_publish(self, value: float, labels: Mapping[str, str]) -> None:
        PUBLISHES.labels("module", labels["namespace"], labels["outcome"]).inc(value)

    def _provider_publish(self, value: float, labels: Mapping[str, str]) -> None:
        PUBLISHES.labels("provider", labels["namespace"], labels["outcome"]).inc(value)

    def _mirror_sync(self, value: float, labels: Mapping[str, str]) -> None:
        MIRROR_SYNC_RUNS.labels(labels["outcome"]).inc()
        MIRROR_SYNC_DURATION.observe(value)

    def _mirror_sync_bytes(self, value: float, labels: Mapping[str, str]) -> None:
        MIRROR_SYNC_BYTES.inc(value)

    def _mirror_sync_errors(self, value: float, labels: Mapping[str, str]) -> None:
        MIRROR_SYNC_ERRORS.inc(value)

    def _pullthrough_hit(self, value: float, labels: Mapping[str, str]) -> None:
        PULLTHROUGH_HITS.inc(value)

    def _pullthrough_fetch(self, value: float, labels: Mapping[str, str]) -> None:
        PULLTHROUGH_FETCHES.labels(labels["outcome"]).inc(value)

    def _job_run(self, value: float, labels: Mapping[str, str]) -> None:
        JOB_RUNS.labels(labels["queue"], labels["job"], labels["outcome"]).inc()
        JOB_DURATION.labels(labels["queue"]).observe(value)
        if labels["outcome"] == "failed":
            JOB_FAILURES.labels(labels["queue"], labels["job"]).inc()

    def _storage_operation(self, value: float, labels: Mapping[str, str]) -> None:
        STORAGE_DURATION.labels(labels["backend"], labels["operation"]).observe(value)
        if labels["outcome"] == "error":
            STORAGE_ERRORS.labels(labels["backend"], labels["operation"]).inc()

    def _notification_delivery(self, value: float, labels: Mapping[str, str]) -> None:
        NOTIFICATION_DELIVERIES.labels(labels["notifier"], labels["outcome"]).inc(value)
        if labels["outcome"] != "delivered":
            NOTIFICATION_FAILURES.labels(labels["notifier"]).inc(value)

    def _scm_tag_moved(self, value: float, labels: Mapping[str, str]) -> None:
        SCM_TAG_MOVED.labels(labels["provider"]).inc(value)

    def _scm_webhook_rejected(self, value: float, labels: Mapping[str, str]) -> None:
        SCM_WEBHOOK_REJECTIONS.labels(labels["provider"], labels["reason"]).inc(value)


class ScrapeCollector(Collector):
    """Computed at each scrape: build information, job queue depth, signing key expiry times."""

    def __init__(self, registry: Any, version: str) -> None:
        self.registry = registry
        self.version = version

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(BUILD_INFO, "tfregistry build information (always 1).",
                                 labels=["version", "python"])
        info.add_metric([self.version, platform.python_version()], 1)
        yield info
        families = {key: GaugeMetricFamily(name, help_, labels=list(labels))
                    for key, (name, help_, labels) in SCRAPE_GAUGES.items()}
        for key, value, labels in self.registry.gauges():
            family = families.get(key)
            if family is not None:
                family.add_metric([labels[name] for name in SCRAPE_GAUGES[key][2]], value)
        yield from families.values()


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when multiprocess mode is on (several processes share the metrics)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _FlushFirst(Collector):
    """Registered first in a scrape's registry: writes this process's pending metrics before the others read them."""

    def collect(self) -> Iterator[Any]:
        PENDING.flush()
        return iter(())


class _ThisProcess(Collector):
    """prometheus-client's default registry (this process's metrics), as a collector of another registry."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def scrape_registry(registry: Any, version: str) -> Any:
    """What a scrape reads: every process's metrics (multiprocess mode) or this one's, and :class:`ScrapeCollector`."""
    from prometheus_client import CollectorRegistry

    collected = CollectorRegistry(auto_describe=False)
    collected.register(_FlushFirst())
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(collected)
    else:
        collected.register(_ThisProcess())
    collected.register(ScrapeCollector(registry, version))
    return collected


def exposition(registry: Any, version: str) -> tuple[bytes, str]:
    """The metrics in Prometheus text format, and their content type."""
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    return generate_latest(scrape_registry(registry, version)), CONTENT_TYPE_LATEST
