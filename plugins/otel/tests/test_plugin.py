"""The plugin's declarations."""

from __future__ import annotations

import tfregistry_otel.plugin as plugin

from tfregistry.testing.plugin import declared_settings


def test_tracing_is_off_until_enabled():
    declared = declared_settings(plugin)
    assert declared["otel.enabled"]["default"] is False
    assert declared["otel.sample_ratio"]["default"] == 1.0
    assert declared["otel.service_name"]["default"] == "tfregistry"
