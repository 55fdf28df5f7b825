"""Shared helpers for the deployment-file tests: paths, the chart renderer (Helm's own engine through the
``helm-python-sdk`` bindings, Helm v4) and the plugins a branch may not have yet."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "tfregistry"
BIN = Path(sys.executable).parent
#: Plugins named by the Dockerfile that this checkout does not have yet (space-separated, e.g.
#: "notify-smtp notify-webhook metrics"); their settings are excused from the settings checks too.
SKIP_PLUGINS = set(os.environ.get("TFREGISTRY_TEST_IMAGE_SKIP_PLUGINS", "").split())


def dockerfile_plugins() -> list[str]:
    """The default of the Dockerfile's PLUGINS build argument."""
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    m = re.search(r'^ARG PLUGINS="([^"]*)"', text, re.M)
    assert m, "the Dockerfile declares no ARG PLUGINS default"
    return m.group(1).split()


def render_chart(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render the chart offline with Helm's engine; every manifest as a dict (NOTES.txt left out)."""
    from helm_python import Chart

    chart = Chart.load(CHART)
    rendered = chart.render(values or {}, name="reg", namespace="tfr", is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs
