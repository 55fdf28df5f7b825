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
