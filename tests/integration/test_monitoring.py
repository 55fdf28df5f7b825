"""deploy/monitoring: every dashboard and alert expression names real metrics; promtool checks and tests the rules;
docs/operations.md lists exactly the metrics the plugin exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tfregistry_metrics.metrics as metrics
import yaml
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
METRIC_NAME = re.compile(r"\b(tfregistry_[a-z0-9_]+)\b")

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_families() -> dict[str, str]:
    """Family name -> type, of everything the plugin exports."""
    families = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                families[family.name] = family.type
    families.update({name: "gauge" for name, _, _ in metrics.SCRAPE_GAUGES.values()})
    families[metrics.BUILD_INFO] = "gauge"
    return families


def sample_names() -> set[str]:
    return {family + suffix for family, kind in exported_families().items() for suffix in SUFFIXES[kind]}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_expression_names_existing_metrics(source):
    expressions = dashboard_expressions() if source == "dashboard" else rule_expressions()
    known = sample_names()
    assert expressions
    for expr in expressions:
        names = METRIC_NAME.findall(expr)
        recorded = re.findall(r"\btfregistry:[a-z0-9_:]+", expr)
        assert names or recorded, f"{expr!r} names no tfregistry metric"
        unknown = [n for n in names if n not in known]
        assert not unknown, f"{expr!r} names metrics the plugin does not export: {unknown}"


def test_the_dashboard_shows_every_metric():
    shown = {n for expr in dashboard_expressions() for n in METRIC_NAME.findall(expr)}
    missing = [family for family, kind in exported_families().items()
               if not any(family + suffix in shown for suffix in SUFFIXES[kind])]
    assert not missing, f"metrics no dashboard panel shows: {missing}"


def test_operations_doc_lists_exactly_the_exported_metrics():
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("## Metrics"):text.index("## Request ids")]
    documented = set(re.findall(r"^\| `(tfregistry_[a-z0-9_]+)`", section, re.M))
    expected = {family + ("_total" if kind == "counter" else "") for family, kind in exported_families().items()}
    assert documented == expected


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is required (apt-get install prometheus; .ci/run installs it)")
    return path


def test_promtool_checks_the_rules(promtool):
    done = subprocess.run([promtool, "check", "rules", "prometheus-rules.yaml"], cwd=MONITORING,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_of_the_alerts(promtool):
    done = subprocess.run([promtool, "test", "rules", "prometheus-rules.test.yaml"], cwd=MONITORING,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    alerts = {rule["alert"] for group in yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    tested = set(re.findall(r"alertname: (\w+)", (MONITORING / "prometheus-rules.test.yaml").read_text()))
    assert alerts == tested, f"alerts without a unit test: {alerts - tested}"
