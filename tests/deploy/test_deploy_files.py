"""The deployment files, each checked by a tool made for its format: hadolint (Dockerfile), the Compose
specification's JSON schema (check-jsonschema's vendored copy), Helm's own engine plus kubernetes-validate
(the chart), systemd-analyze verify (the units)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import BIN, CHART, DEPLOY, ROOT, SKIP_PLUGINS, render_chart

KUBERNETES_VERSION = "1.37.0"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
#: Words that mark a credential-looking value as a placeholder nobody could log in with.
CREDENTIAL_ENV = re.compile(r"(SECRET|PASSWORD|TOKEN|KEY|CREDENTIALS|CONNECTION_STRING|DATABASE_URL|REDIS_URL)")


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = _run(str(BIN / "hadolint"), str(DEPLOY / "docker" / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_tfr_as_non_root_with_a_health_check() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    final = text.split("\nFROM ")[-1]
    assert re.search(r"^USER 10001", final, re.M)
    assert 'ENTRYPOINT ["tfr"]' in final and 'CMD ["web"]' in final
    assert "/health" in final.split("HEALTHCHECK", 1)[1].split("\n\n")[0]
    assert "install.sh" not in final and "apt-get" not in final, "no build step in the final stage"


@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.production.yaml"]])
def test_compose_files_validate_against_the_compose_spec(files: list[str]) -> None:
    result = _run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                  *[str(DEPLOY / "compose" / f) for f in files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_env_example_names_every_required_variable_and_holds_no_value() -> None:
    compose = "".join((DEPLOY / "compose" / f).read_text() for f in ("compose.yaml", "compose.production.yaml"))
    required = set(re.findall(r"\$\{(\w+):\?", compose))
    example = dict(line.split("=", 1) for line in (DEPLOY / "compose" / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert required <= set(example), sorted(required - set(example))
    for name in required:
        if CREDENTIAL_ENV.search(name) or name.endswith("_USER"):
            assert example[name] == "", f"{name} must have no example value"


def _validate(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    builtin = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    manifest = tmp_path / "manifests.yaml"
    manifest.write_text(yaml.safe_dump_all(builtin))
    result = _run(str(BIN / "kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(manifest))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(builtin), result.stdout


def _values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=[p.name for p in VALUES_FILES])
def test_chart_renders_and_validates(values_file: Path, tmp_path: Path) -> None:
    docs = render_chart(_values(values_file))
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Job", "Service", "ConfigMap", "ServiceAccount"} <= kinds
    _validate(docs, tmp_path)
    for doc in docs:
        for pod in _pod_specs(doc):
            assert pod["securityContext"]["runAsNonRoot"] is True
            for c in pod["containers"]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
                assert c["resources"]["requests"]


def test_chart_without_a_database_fails_with_a_clear_message() -> None:
    from helm_python.errors import HelmError

    with pytest.raises(HelmError, match="externalDatabase: set existingSecret"):
        render_chart({})


def test_chart_rolls_pods_when_the_configuration_changes() -> None:
    base = _values(CHART / "ci" / "minimal-values.yaml")

    def checksum(values: dict[str, Any]) -> str:
        web = next(d for d in render_chart(values)
                   if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-web"))
        return web["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum(base) != checksum({**base, "logLevel": "DEBUG"})


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] in ("Deployment", "Job"):
        return [doc["spec"]["template"]["spec"]]
    return []


def _known_settings() -> set[str]:
    out = _run(str(BIN / "tfr"), "config", "show").stdout
    return {line.split(" = ", 1)[0] for line in out.splitlines() if " = " in line}


def assert_config_accepted(data: dict[str, str], tmp_path: Path) -> None:
    """``tfr config show`` with ``data`` (a ConfigMap's TFR_* variables) as its environment accepts every value."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFR_")}
    env.update({k: str(v) for k, v in data.items() if k.startswith("TFR_") and k.split("__")[0][4:].lower()
                not in SKIP_PLUGINS})
    env["TFR_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([str(BIN / "tfr"), "config", "show"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=[p.name for p in VALUES_FILES])
def test_chart_configmap_values_are_accepted_by_the_settings(values_file: Path, tmp_path: Path) -> None:
    configmap = next(d for d in render_chart(_values(values_file)) if d["kind"] == "ConfigMap")
    assert_config_accepted(configmap["data"], tmp_path)


def test_chart_environment_variables_are_real_settings() -> None:
    known = _known_settings()
    assert "storage.s3.bucket" in known  # the check itself works
    names: set[str] = set()
    for values_file in VALUES_FILES:
        for doc in render_chart(_values(values_file)):
            if doc["kind"] == "ConfigMap":
                names |= set(doc["data"])
            for pod in _pod_specs(doc):
                for c in pod["containers"]:
                    names |= {e["name"] for e in c.get("env", [])}
    keys = {n[4:].lower().replace("__", ".") for n in names if n.startswith("TFR_")}
    excused = {k for k in keys if k.split(".")[0] in SKIP_PLUGINS}
    assert keys - excused <= known, sorted(keys - excused - known)


def test_no_rendered_secret_or_environment_variable_holds_a_literal_credential() -> None:
    for values_file in VALUES_FILES:
        for doc in render_chart(_values(values_file)):
            assert doc["kind"] != "Secret", f"{values_file.name}: credentials come from existing Secrets only"
            for pod in _pod_specs(doc):
                for c in pod["containers"]:
                    for env in c.get("env", []):
                        if CREDENTIAL_ENV.search(env["name"]):
                            assert "value" not in env and "secretKeyRef" in env["valueFrom"], env
            if doc["kind"] == "ConfigMap":
                for name in doc["data"]:
                    assert not CREDENTIAL_ENV.search(name), f"{name} belongs in a Secret"
    # defaults: nothing in values.yaml is a credential
    text = (CHART / "values.yaml").read_text()
    for key in ("secretKey", "gpgEncryptionKey", "url", "accessKeyId", "secretAccessKey", "accountKey",
                "connectionString", "credentialsJson", "clientSecret", "token"):
        for m in re.finditer(rf"^\s+{key}: (.*)$", text, re.M):
            assert m.group(1).split("#")[0].strip() == '""', m.group(0)


def test_inline_credentials_go_into_the_charts_secret() -> None:
    values = _values(CHART / "ci" / "minimal-values.yaml")
    values["externalDatabase"] = {"url": "postgresql+psycopg://u:p@db/tfr"}
    docs = render_chart(values)
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert base64.b64decode(secret["data"]["database-url"]).decode() == "postgresql+psycopg://u:p@db/tfr"


def test_values_schema_rejects_an_unknown_storage_backend() -> None:
    from helm_python.errors import HelmError

    values = _values(CHART / "ci" / "minimal-values.yaml")
    values["storage"]["backend"] = "ftp"
    with pytest.raises(HelmError):
        render_chart(values)


def test_prometheus_rules_copy_equals_the_monitoring_rules() -> None:
    source = ROOT / "deploy" / "monitoring" / "prometheus-rules.yaml"
    assert (CHART / "files" / "prometheus-rules.yaml").read_text() == source.read_text()


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} == {"tfregistry-web.service", "tfregistry-worker.service",
                                       "tfregistry-scheduler.service"}
    tfr = BIN / "tfr"
    for unit in units:
        text = unit.read_text()
        commands = re.findall(r"^ExecStart(?:Pre)?=/opt/tfregistry/venv/bin/tfr (\S+)", text, re.M)
        assert commands
        for command in commands:  # each command exists in the installed package
            assert _run(str(tfr), command, "--help").returncode == 0, command
        # verify with the venv path pointing at this environment's tfr
        (tmp_path / unit.name).write_text(text.replace("/opt/tfregistry/venv/bin/tfr", str(tfr)))
    assert analyze is not None, "systemd-analyze is missing: .ci/run installs the systemd package"
    result = _run(analyze, "verify", "--man=no", *[str(tmp_path / u.name) for u in units])
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "EnvironmentFile" not in line and line.strip()]
    assert result.returncode == 0 or not problems, "\n".join(problems)


def test_compose_registry_environment_is_accepted_by_the_settings(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())

    def fill(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(3)
        if default is not None and m.group(2) == ":-":
            return default
        return "https://placeholder.example" if name.endswith(("URL", "ENDPOINT")) else "placeholder-0123456789abcdef"

    for service in ("migrate", "web", "worker", "scheduler"):
        env = {k: re.sub(r"\$\{(\w+)(:[-?])?([^}]*)?\}", fill, str(v))
               for k, v in compose["services"][service]["environment"].items()}
        assert env["TFR_STORAGE__BACKEND"] == "s3" and env["TFR_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert_config_accepted(env, tmp_path)


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=[p.name for p in VALUES_FILES])
def test_helm_lint_strict(values_file: Path) -> None:
    from helm_python import lint

    report = lint(CHART, _values(values_file), strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert report["total_charts_linted"] == 1 and not problems, problems


def test_prometheus_rule_is_rendered_from_the_charts_copy_of_the_rules(tmp_path: Path) -> None:
    from helm_python import Chart

    chart = tmp_path / "tfregistry"
    shutil.copytree(CHART, chart)
    rules = {"groups": [{"name": "tfregistry", "rules": [
        {"alert": "TfregistryDown", "expr": "up{job=\"tfregistry\"} == 0", "for": "5m",
         "annotations": {"summary": "{{ $labels.instance }} is down"}}]}]}
    (chart / "files" / "prometheus-rules.yaml").write_text(yaml.safe_dump(rules))
    values = yaml.safe_load((CHART / "ci" / "all-features-values.yaml").read_text())
    rendered = Chart.load(chart).render(values, name="reg", namespace="tfr", is_install=True)
    rule = yaml.safe_load(rendered["tfregistry/templates/prometheusrule.yaml"])
    assert rule["kind"] == "PrometheusRule" and rule["spec"]["groups"] == rules["groups"]
    monitor = yaml.safe_load(rendered["tfregistry/templates/servicemonitor.yaml"])
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["authorization"]["credentials"] == {"name": "tfregistry-metrics",
                                                                               "key": "metrics-token"}
