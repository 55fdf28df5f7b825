"""The plugin's declarations: settings and the observer contract."""

from __future__ import annotations

import pytest
import tfregistry_metrics.plugin as plugin
from tfregistry_metrics.metrics import PREFIX, MetricsObserver

from tfregistry.testing.plugin import declared_settings


def test_settings_are_declared_with_safe_defaults():
    declared = declared_settings(plugin)
    assert declared["metrics.enabled"]["default"] is False
    assert declared["metrics.token"]["secret"] is True
    assert declared["metrics.allow_anonymous"]["default"] is False


def test_unknown_observations_are_ignored_and_known_ones_need_their_labels():
    observer = MetricsObserver()
    observer.observe("something_new", 1.0, {})  # a newer core's observation: ignored, no error
    with pytest.raises(KeyError):
        observer.observe("module_download", 1.0, {})


def test_metric_names_share_one_prefix():
    from prometheus_client import REGISTRY

    ours = [name for name in REGISTRY._names_to_collectors if "tfregistry" in name]
    assert ours and all(name.startswith(PREFIX) for name in ours)


def test_durations_written_in_one_go_read_as_if_observed_one_by_one():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest
    from tfregistry_metrics.metrics import _DURATION_BUCKETS, _observe_all

    values = [0.0, 0.004, 0.005, 0.0051, 0.01, 0.3, 0.3, 2.5, 29.9, 30.0, 31.0, 1e6]
    texts = []
    for write in (lambda h: [h.observe(v) for v in values], lambda h: _observe_all(h, values)):
        registry = CollectorRegistry()
        histogram = Histogram("d_seconds", "d", ["route"], buckets=_DURATION_BUCKETS, registry=registry)
        write(histogram.labels("/r"))
        texts.append([line for line in generate_latest(registry).decode().splitlines() if "_created" not in line])
    assert texts[0] == texts[1]
    assert 'd_seconds_bucket{le="0.005",route="/r"} 3.0' in texts[1]  # a value on a bound counts in its bucket
    assert 'd_seconds_bucket{le="+Inf",route="/r"} 12.0' in texts[1]


def test_request_metrics_wait_in_memory_until_a_flush():
    from tfregistry_metrics.metrics import HTTP_REQUESTS, MODULE_DOWNLOADS, PENDING

    def value(metric, *labels):
        return metric.labels(*labels)._value.get()

    observer = MetricsObserver()
    before = value(HTTP_REQUESTS, "GET", "/pending-test", "200"), value(MODULE_DOWNLOADS, "pending-ns")
    PENDING.flush()
    with PENDING._flush_lock:  # the flushing thread waits meanwhile
        observer.observe("http_request", 0.002, {"method": "GET", "route": "/pending-test", "status": "200"})
        observer.observe("module_download", 1.0, {"namespace": "pending-ns"})
        observer.observe("module_download", 1.0, {"namespace": "pending-ns"})
        assert (value(HTTP_REQUESTS, "GET", "/pending-test", "200"), value(MODULE_DOWNLOADS, "pending-ns")) == before
    PENDING.flush()
    assert value(HTTP_REQUESTS, "GET", "/pending-test", "200") == before[0] + 1
    assert value(MODULE_DOWNLOADS, "pending-ns") == before[1] + 2
