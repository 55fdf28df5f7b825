"""Trusted publishing end to end: a real ``tfr serve`` subprocess, OIDC issuers (IDTokenProxy in front of
oidc-provider-mock, one per platform), the ``tfr`` client run as a CI job runs it, the GitHub Action's and
the GitLab component's steps run in a shell with the platform's documented variables, and the real
Terraform CLI installing what was published.

The CI side follows the platforms' documentation:

* GitHub Actions: the runner sets ``ACTIONS_ID_TOKEN_REQUEST_URL`` and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; a
  ``GET`` of the URL with ``&audience=...`` and ``Authorization: bearer <request token>`` answers
  ``{"count": ..., "value": "<jwt>"}`` (https://docs.github.com/en/actions/reference/security/oidc, and
  actions/toolkit's ``core.getIDToken``); ``GITHUB_REF_TYPE``/``GITHUB_REF_NAME`` name the tag
  (https://docs.github.com/en/actions/reference/workflows-and-actions/variables).
* GitLab CI/CD: ``id_tokens: TFR_ID_TOKEN`` puts the token in that variable; ``CI_COMMIT_TAG`` names the tag
  (https://docs.gitlab.com/ci/secrets/id_token_authentication/, https://docs.gitlab.com/ci/variables/predefined_variables/).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tfregistry_auth_oidc.testing import IDTokenProxy, OIDCMock

from tests.e2e.conftest import CLI_TIMEOUT, DATABASES, RegistryServer, Terraform, clean_environ, running_server, unique
from tests.trusted_publishing_kit import (
    AZURE_ACCESS_TOKEN,
    GITHUB_REQUEST_TOKEN,
    AzureOidcRequestEndpoint,
    GitHubTokenEndpoint,
    gitlab_claims,
)
from tests.trusted_publishing_kit import module_dir as kit_module_dir

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "tfregistry"  # the registry's default trusted_publishing.audience
GREETING = "published from CI"


@pytest.fixture(scope="module")
def oidc_mock() -> Iterator[OIDCMock]:
    with OIDCMock() as mock:
        yield mock


@pytest.fixture(scope="module")
def github_issuer(oidc_mock: OIDCMock) -> Iterator[IDTokenProxy]:
    with IDTokenProxy(oidc_mock) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def gitlab_issuer(oidc_mock: OIDCMock) -> Iterator[IDTokenProxy]:
    with IDTokenProxy(oidc_mock) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def github_runner(github_issuer: IDTokenProxy) -> Iterator[GitHubTokenEndpoint]:
    with GitHubTokenEndpoint(github_issuer) as endpoint:
        yield endpoint


@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with running_server(request.param, tmp_path_factory.mktemp(f"tp-{request.param}")) as srv:
        yield srv


def client_env(server: RegistryServer, **extra: str) -> dict[str, str]:
    """A CI job's environment: nothing of ours inherited, the server's CA trusted, the tfr client on PATH."""
    env = clean_environ()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["SSL_CERT_FILE"] = str(server.bundle)
    env.update(extra)
    return env


def tfr(server: RegistryServer, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tfregistry", *args], env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, check=False)


def github_env(server: RegistryServer, runner: GitHubTokenEndpoint, tmp_path: Path, **extra: str) -> dict[str, str]:
    variables = {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/infra",
                 "GITHUB_REF": "refs/tags/v1.0.0", "GITHUB_REF_NAME": "v1.0.0", "GITHUB_REF_TYPE": "tag",
                 "GITHUB_RUN_ID": "5719284231", "RUNNER_TEMP": str(tmp_path),
                 "ACTIONS_ID_TOKEN_REQUEST_URL": runner.url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": GITHUB_REQUEST_TOKEN}
    return client_env(server, **{**variables, **extra})


def add_publisher(server: RegistryServer, namespace: str, platform: str, issuer: str, conditions: dict[str, str],
                  packages: list[str]) -> str:
    """``tfr trusted-publisher add`` as an organization admin runs it; returns its output."""
    args = ["trusted-publisher", "add", namespace, "--platform", platform, "--issuer", issuer,
            "--url", server.url, "--token", server.admin_token]
    for key, value in conditions.items():
        args += ["--condition", f"{key}={value}"]
    for package in packages:
        args += ["--package", package]
    result = tfr(server, *args, env=client_env(server))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def new_namespace(server: RegistryServer) -> str:
    namespace = unique("tp")
    server.cli("namespace", namespace, "--visibility", "private")
    return namespace


def module_dir(tmp_path: Path) -> Path:
    return kit_module_dir(tmp_path, GREETING)


def installs(terraform: Terraform, server: RegistryServer, namespace: str, version: str) -> None:
    """The real Terraform installs ``namespace/network/generic`` at ``version`` and applies it."""
    workdir = terraform.workdir(f'module "m" {{\n  source  = "{server.host}/{namespace}/network/generic"\n'
                                f'  version = "{version}"\n}}\noutput "greeting" {{\n  value = module.m.greeting\n}}\n')
    token = server.create_token("read")
    result = terraform.init(workdir, token=token)
    assert result.rc == 0, str(result)
    applied = terraform.apply(workdir, token=token)
    assert applied.rc == 0, str(applied)
    assert f'greeting = "{GREETING}"' in applied.stdout


@pytest.fixture
def terraform(server: RegistryServer, tmp_path: Path) -> Terraform:
    return Terraform(server, tmp_path)


def test_tfr_publish_exchanges_the_github_token_and_terraform_installs_the_module(
        server, github_issuer, github_runner, terraform, tmp_path):
    namespace = new_namespace(server)
    output = add_publisher(server, namespace, "github", github_issuer.issuer,
                           {"repository": "acme/infra", "ref": "refs/tags/v*"}, ["module:network/generic"])
    assert "repository=acme/infra" in output and "ref=refs/tags/v*" in output
    github_runner.claims = {"repository": "acme/infra", "ref": "refs/tags/v1.0.0"}
    env = github_env(server, github_runner, tmp_path)
    result = tfr(server, "publish", "module", str(module_dir(tmp_path)), "--namespace", namespace, "--name",
                 "network", "--system", "generic", "--version", "1.0.0", "--url", server.url, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trusted publishing (github)" in result.stderr
    assert f"published: {namespace}/network/generic/1.0.0" in result.stdout
    assert github_runner.requests[-1]["args"]["audience"] == AUDIENCE
    installs(terraform, server, namespace, "1.0.0")
    listed = tfr(server, "trusted-publisher", "list", namespace, "--url", server.url, "--token", server.admin_token,
                 env=client_env(server))
    assert listed.returncode == 0 and github_issuer.issuer in listed.stdout
    publisher_id = listed.stdout.split("\t", 1)[0]
    removed = tfr(server, "trusted-publisher", "remove", namespace, publisher_id, "--url", server.url, "--token",
                  server.admin_token, env=client_env(server))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert tfr(server, "trusted-publisher", "list", namespace, "--url", server.url, "--token", server.admin_token,
               env=client_env(server)).stdout == ""
    # without a publisher the same CI job is refused, and says so
    result = tfr(server, "publish", "module", str(tmp_path / "module"), "--namespace", namespace, "--name",
                 "network", "--system", "generic", "--version", "1.0.1", "--url", server.url, env=env)
    assert result.returncode == 1
    assert f"no trusted publisher in namespace '{namespace}' trusts the issuer" in result.stderr


def test_tfr_publish_is_refused_for_another_repository_and_another_module(server, github_issuer, github_runner,
                                                                         tmp_path):
    namespace = new_namespace(server)
    add_publisher(server, namespace, "github", github_issuer.issuer, {"repository": "acme/infra"},
                  ["module:network/generic"])
    github_runner.claims = {"repository": "evil/infra"}
    env = github_env(server, github_runner, tmp_path)
    source = str(module_dir(tmp_path))
    result = tfr(server, "publish", "module", source, "--namespace", namespace, "--name", "network", "--system",
                 "generic", "--version", "1.0.0", "--url", server.url, "--oidc", env=env)
    assert result.returncode == 1
    assert "repository: 'evil/infra' does not match 'acme/infra'" in result.stderr
    github_runner.claims = {"repository": "acme/infra"}
    result = tfr(server, "publish", "module", source, "--namespace", namespace, "--name", "storage", "--system",
                 "generic", "--version", "1.0.0", "--url", server.url, "--oidc", env=env)
    assert result.returncode == 1
    assert "may publish only module:network/generic" in result.stderr
    assert server.get(f"/v1/modules/{namespace}/storage/generic/versions", token=server.admin_token).status == 404


# --- the integrations' steps, run as the platforms run them ----------------------------------------------


def _github_expression(value: str, inputs: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        if not expression.startswith("inputs."):
            raise AssertionError(f"action.yml uses an expression this test does not evaluate: {expression}")
        return inputs[expression[len("inputs."):]]
    return re.sub(r"\$\{\{(.*?)\}\}", replace, value)


def run_github_action(with_: dict[str, str], env: dict[str, str], workspace: Path) -> list[str]:
    """Run deploy/ci/github/action.yml's steps with bash as the runner does (inputs resolved from ``with_``
    and the defaults); returns each step's output."""
    action_dir = ROOT / "deploy" / "ci" / "github"
    action = yaml.safe_load((action_dir / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    missing = [name for name, spec in action["inputs"].items() if spec.get("required") and name not in with_]
    assert not missing, f"required inputs not given: {missing}"
    inputs.update(with_)
    outputs = []
    for step in action["runs"]["steps"]:
        assert step["shell"] == "bash"
        step_env = {**env, "GITHUB_ACTION_PATH": str(action_dir), "GITHUB_WORKSPACE": str(workspace)}
        step_env.update({k: _github_expression(str(v), inputs) for k, v in step.get("env", {}).items()})
        script = _github_expression(step["run"], inputs)
        # the runner's bash invocation for shell: bash (https://docs.github.com/en/actions/reference/
        # workflows-and-actions/workflow-syntax#jobsjob_idstepsshell)
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=step_env,
                                cwd=workspace, capture_output=True, text=True, timeout=CLI_TIMEOUT * 2, check=False)
        assert result.returncode == 0, f"step {step['name']!r} failed:\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout + result.stderr)
    return outputs


def run_gitlab_component(inputs: dict[str, str], env: dict[str, str], workspace: Path) -> list[str]:
    """Run deploy/ci/gitlab/templates/publish.yml's job script (inputs interpolated as GitLab does, the job's
    variables set) with sh -e, line by line as the runner does; returns each line's output."""
    spec, jobs = yaml.safe_load_all((ROOT / "deploy" / "ci" / "gitlab" / "templates" / "publish.yml").read_text())
    values = {name: str(item.get("default", "")) for name, item in spec["spec"]["inputs"].items()}
    missing = [name for name, item in spec["spec"]["inputs"].items() if "default" not in item and name not in inputs]
    assert not missing, f"inputs without a default not given: {missing}"
    values.update(inputs)

    def interpolate(text: str) -> str:
        return re.sub(r"\$\[\[\s*inputs\.(\w+)\s*\]\]", lambda m: values[m.group(1)], text)

    job = jobs["tfr-publish"]
    assert interpolate(job["id_tokens"]["TFR_ID_TOKEN"]["aud"]) == values["audience"]
    job_env = {**env, **{k: interpolate(str(v)) for k, v in job["variables"].items()}}
    outputs = []
    for line in job["script"]:
        result = subprocess.run(["sh", "-e", "-c", interpolate(line)], env=job_env, cwd=workspace,
                                capture_output=True, text=True, timeout=CLI_TIMEOUT * 2, check=False)
        assert result.returncode == 0, f"script line failed:\n{line}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout + result.stderr)
    return outputs


def test_the_github_action_publishes_with_trusted_publishing(server, github_issuer, github_runner, terraform,
                                                             tmp_path):
    namespace = new_namespace(server)
    add_publisher(server, namespace, "github", github_issuer.issuer,
                  {"repository": "acme/infra", "workflow": "release.yml", "ref": "refs/tags/v*"},
                  ["module:network/generic"])
    github_runner.claims = {"repository": "acme/infra", "ref": "refs/tags/v2.1.0", "workflow": "release.yml"}
    workspace = module_dir(tmp_path)
    env = github_env(server, github_runner, tmp_path, GITHUB_REF="refs/tags/v2.1.0", GITHUB_REF_NAME="v2.1.0")
    outputs = run_github_action({"registry-url": server.url, "namespace": namespace, "name": "network",
                                 "system": "generic"}, env, workspace)
    assert f"published: {namespace}/network/generic/2.1.0" in outputs[-1]
    installs(terraform, server, namespace, "2.1.0")


def test_the_github_action_publishes_with_a_token(server, tmp_path):
    namespace = new_namespace(server)
    token = server.create_token("publish", namespace)
    workspace = module_dir(tmp_path)
    env = client_env(server, GITHUB_ACTIONS="true", GITHUB_REF_TYPE="branch", GITHUB_REF_NAME="main")
    outputs = run_github_action({"registry-url": server.url, "namespace": namespace, "name": "network",
                                 "system": "generic", "version": "0.1.0", "token": token}, env, workspace)
    assert f"published: {namespace}/network/generic/0.1.0" in outputs[-1]
    assert "trusted publishing" not in outputs[-1]


def test_the_gitlab_component_publishes_with_trusted_publishing(server, gitlab_issuer, terraform, tmp_path):
    namespace = new_namespace(server)
    add_publisher(server, namespace, "gitlab", gitlab_issuer.issuer, {"project_path": "acme/infra", "ref": "v*"},
                  ["module:network/*"])
    id_token = gitlab_issuer.sign(gitlab_claims(gitlab_issuer.issuer, ref="v3.0.0", aud=AUDIENCE))
    env = client_env(server, CI="true", GITLAB_CI="true", CI_COMMIT_TAG="v3.0.0", CI_PROJECT_PATH="acme/infra",
                     CI_JOB_ID="302", TFR_ID_TOKEN=id_token)
    outputs = run_gitlab_component({"registry_url": server.url, "namespace": namespace, "name": "network",
                                    "system": "generic"}, env, module_dir(tmp_path))
    assert f"published: {namespace}/network/generic/3.0.0" in outputs[-1]
    assert "trusted publishing (gitlab)" in outputs[-1]
    assert id_token not in "".join(outputs)
    installs(terraform, server, namespace, "3.0.0")


# --- tfr publish on Azure DevOps, and provider releases ------------------------------------------------


@pytest.fixture(scope="module")
def azure_issuer(oidc_mock: OIDCMock) -> Iterator[IDTokenProxy]:
    with IDTokenProxy(oidc_mock) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def azure_oidc(azure_issuer: IDTokenProxy) -> Iterator[AzureOidcRequestEndpoint]:
    with AzureOidcRequestEndpoint(azure_issuer) as endpoint:
        yield endpoint


def test_tfr_publish_provider_exchanges_the_azure_devops_token(server, azure_issuer, azure_oidc, signer, tmp_path):
    from tests.providers_kit import build_release

    namespace = new_namespace(server)
    server.register_key(namespace, signer.public_armor, tmp_path)
    add_publisher(server, namespace, "azure-devops", azure_issuer.issuer,
                  {"organization": "acme", "project": "infra", "service_connection": "tfregistry-release"},
                  ["provider:foo"])
    azure_oidc.connections["6c1e1a52-5c0b-4e5d-9f3a-1b2c3d4e5f60"] = "tfregistry-release"
    env = client_env(server, TF_BUILD="True", SYSTEM_OIDCREQUESTURI=azure_oidc.url,
                     SYSTEM_ACCESSTOKEN=AZURE_ACCESS_TOKEN,
                     TFR_AZURE_SERVICE_CONNECTION_ID="6c1e1a52-5c0b-4e5d-9f3a-1b2c3d4e5f60")
    dist = build_release(tmp_path / "dist", "foo", "1.0.0", key=signer).dist
    result = tfr(server, "publish", "provider", str(dist), "--namespace", namespace, "--url", server.url, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trusted publishing (azure-devops)" in result.stderr
    assert f"published {namespace}/foo/1.0.0" in result.stdout
    assert azure_oidc.requests[-1]["args"] == {"api-version": "7.1",
                                               "serviceConnectionId": "6c1e1a52-5c0b-4e5d-9f3a-1b2c3d4e5f60"}
    # the minted token may publish provider foo only, not another provider of the namespace
    bar = build_release(tmp_path / "dist-bar", "bar", "1.0.0", key=signer).dist
    refused = tfr(server, "publish", "provider", str(bar), "--namespace", namespace, "--url", server.url, env=env)
    assert refused.returncode == 1
    assert "may publish only provider:foo" in refused.stderr
