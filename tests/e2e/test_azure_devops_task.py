"""The Azure DevOps extension (deploy/ci/azure-devops): its TypeScript task, compiled with tsc, run by
azure-pipelines-task-lib's MockTestRunner against a real ``tfr serve`` subprocess; and the ``.vsix`` that
``tfx extension create`` builds, with its manifest checked.

npm packages (typescript, @types/node, tfx-cli, azure-pipelines-task-lib) come from the npm registry into
``.cache/azure-devops-extension`` on first use, as Azurite and axe-core do.  The MockTestRunner normally
downloads the Node.js version the task's ``execution`` names from nodejs.org; the tests give it this
machine's Node.js 20 in the place it looks first (``$HOME/azure-pipelines-task-lib/_download``) instead.

Azure DevOps' side follows its documentation: the job's OIDC token comes from
``POST $(System.OidcRequestUri)?api-version=7.1&serviceConnectionId=ID`` with ``Authorization: Bearer
$(System.AccessToken)``, answering ``{"oidcToken": ...}``
(https://learn.microsoft.com/rest/api/azure/devops/distributedtask/oidctoken/create); service connections
reach tasks as ``ENDPOINT_URL_<id>`` and ``ENDPOINT_AUTH_PARAMETER_<id>_<KEY>`` (azure-pipelines-task-lib's
``getEndpointUrl``/``getEndpointAuthorizationParameter``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from tfregistry_auth_oidc.testing import IDTokenProxy, OIDCMock

from tests.e2e.conftest import DATABASES, RegistryServer, clean_environ, running_server, unique
from tests.trusted_publishing_kit import AZURE_ACCESS_TOKEN, AzureOidcRequestEndpoint
from tests.trusted_publishing_kit import module_dir as kit_module_dir
from tfregistry.testing.npm import npm_package

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "deploy" / "ci" / "azure-devops"
CACHE = ROOT / ".cache" / "azure-devops-extension"
ROLE = "to build and test the Azure DevOps extension"
TOOLS = {"typescript": "5", "@types/node": "20", "tfx-cli": "0.21"}
TASK_LIB = ("azure-pipelines-task-lib", "4.17")
#: The Node.js version MockTestRunner picks for a Node20 task (azure-pipelines-task-lib's mock-test.js).
MOCK_RUNNER_NODE20 = "v20.13.1"
CONNECTION_ID = "6c1e1a52-5c0b-4e5d-9f3a-1b2c3d4e5f60"
#: A tfregistry service connection's id (the agent names its variables after it).
REGISTRY_CONNECTION_ID = "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a"


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/ci/azure-devops copied, with the task library in the task's node_modules, compiled with tsc."""
    for package, version in TOOLS.items():
        npm_package(CACHE / "tools", package, version, label=package, role=ROLE)
    task_lib = npm_package(CACHE / "task", *TASK_LIB, label=TASK_LIB[0], role=ROLE)
    build = tmp_path_factory.mktemp("azure-devops") / "extension"
    shutil.copytree(SOURCE, build)
    shutil.copytree(task_lib.parent, build / "tfr-publish" / "node_modules")
    tsc = CACHE / "tools" / "node_modules" / "typescript" / "bin" / "tsc"
    result = subprocess.run(["node", str(tsc), "-p", str(build / "tfr-publish"), "--typeRoots",
                             str(CACHE / "tools" / "node_modules" / "@types")], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (build / "tfr-publish" / "index.js").exists()
    return build


@pytest.fixture(scope="module")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME where MockTestRunner finds "its" Node.js 20 already downloaded: this machine's node."""
    node = shutil.which("node")
    assert node, "Node.js is needed (installed by .ci/run)"
    home = tmp_path_factory.mktemp("node-home")
    download = home / "azure-pipelines-task-lib" / "_download" / "node20"
    bin_dir = download / f"node-{MOCK_RUNNER_NODE20}-linux-x64" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "node").symlink_to(node)
    Path(f"{download}.completed").write_text("")
    return home


@pytest.fixture(scope="module")
def azure_issuer() -> Iterator[IDTokenProxy]:
    with OIDCMock() as mock, IDTokenProxy(mock) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def oidc_endpoint(azure_issuer: IDTokenProxy) -> Iterator[AzureOidcRequestEndpoint]:
    with AzureOidcRequestEndpoint(azure_issuer) as endpoint:
        yield endpoint


@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    with running_server(request.param, tmp_path_factory.mktemp(f"azdo-{request.param}")) as srv:
        yield srv


def run_task(extension: Path, node_home: Path, server: RegistryServer, workdir: Path, inputs: dict[str, str],
             variables: dict[str, str]) -> dict[str, Any]:
    """The task under MockTestRunner, as an agent runs it (inputs, variables, endpoints in the environment)."""
    env = clean_environ()
    env.update({"HOME": str(node_home), "NODE_PATH": str(extension / "tfr-publish" / "node_modules"),
                "NODE_EXTRA_CA_CERTS": str(server.bundle), "TFR_TEST_INPUTS": json.dumps(inputs),
                "AGENT_TEMPDIRECTORY": str(workdir), **variables})
    result = subprocess.run(["node", str(extension / "tests" / "run.js")], env=env, cwd=workdir, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def module_dir(tmp_path: Path) -> Path:
    return kit_module_dir(tmp_path, "published from Azure Pipelines")


def test_the_task_publishes_with_a_registry_service_connection(extension, node_home, server, tmp_path):
    namespace = unique("azdo")
    token = server.create_token("publish", namespace)
    result = run_task(extension, node_home, server, tmp_path, {
        "authentication": "token", "registryConnection": REGISTRY_CONNECTION_ID, "namespace": namespace,
        "name": "network", "system": "generic", "path": str(module_dir(tmp_path))}, {
        f"ENDPOINT_URL_{REGISTRY_CONNECTION_ID}": server.url,
        f"ENDPOINT_AUTH_PARAMETER_{REGISTRY_CONNECTION_ID}_APITOKEN": token,
        "BUILD_SOURCEBRANCH": "refs/tags/v1.4.0"})
    assert result["succeeded"], result
    assert f"published: {namespace}/network/generic/1.4.0" in result["stdout"]
    # the agent masks secrets in ##vso commands (task-lib's debug lines, setsecret); the task prints none itself
    assert all(line.startswith("##vso[") for line in result["stdout"].splitlines() if token in line)
    listed = server.get(f"/v1/modules/{namespace}/network/generic/versions", token=server.admin_token).json()
    assert [v["version"] for v in listed["modules"][0]["versions"]] == ["1.4.0"]


def test_the_task_publishes_with_workload_identity_federation(extension, node_home, server, azure_issuer,
                                                              oidc_endpoint, tmp_path):
    namespace = unique("azdo")
    server.cli("namespace", namespace)
    response = server.request("POST", f"/api/v1/namespaces/{namespace}/trusted-publishers", token=server.admin_token,
                              body=json.dumps({"platform": "azure-devops", "issuer": azure_issuer.issuer,
                                               "conditions": {"organization": "acme", "project": "infra",
                                                              "service_connection": "tfregistry-release"},
                                               "packages": ["module:network/generic"]}).encode(),
                              headers={"Content-Type": "application/json"})
    assert response.status == 201, response.body
    oidc_endpoint.connections[CONNECTION_ID] = "tfregistry-release"
    variables = {"SYSTEM_OIDCREQUESTURI": oidc_endpoint.url, "SYSTEM_ACCESSTOKEN": AZURE_ACCESS_TOKEN}
    inputs = {"authentication": "oidc", "registryUrl": server.url, "federatedConnection": CONNECTION_ID,
              "namespace": namespace, "name": "network", "system": "generic", "version": "2.0.0",
              "path": str(module_dir(tmp_path))}
    result = run_task(extension, node_home, server, tmp_path, inputs, variables)
    assert result["succeeded"], result
    assert "trusted publishing: publish token for" in result["stdout"]
    assert f"published: {namespace}/network/generic/2.0.0" in result["stdout"]
    assert oidc_endpoint.requests[-1]["args"] == {"api-version": "7.1", "serviceConnectionId": CONNECTION_ID}

    # another service connection of the same project is not trusted: the task fails with the reason
    oidc_endpoint.connections["11111111-2222-3333-4444-555555555555"] = "someone-else"
    (tmp_path / "second").mkdir()
    refused = run_task(extension, node_home, server, tmp_path / "second",
                       {**inputs, "federatedConnection": "11111111-2222-3333-4444-555555555555", "version": "2.0.1"},
                       variables)
    assert not refused["succeeded"]
    assert any("service_connection: 'someone-else' does not match 'tfregistry-release'" in issue
               for issue in refused["errorIssues"]), refused


def test_tfx_builds_the_vsix_and_its_manifest_names_the_task(extension, tmp_path):
    tfx = CACHE / "tools" / "node_modules" / "tfx-cli" / "_build" / "tfx-cli.js"
    output = tmp_path / "tfregistry-publish.vsix"
    result = subprocess.run(["node", str(tfx), "extension", "create", "--manifest-globs", "vss-extension.json",
                             "--output-path", str(output), "--no-prompt"], cwd=extension, capture_output=True,
                            text=True, timeout=300, check=False, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(output) as vsix:
        names = set(vsix.namelist())
        manifest = ElementTree.fromstring(vsix.read("extension.vsixmanifest"))
        task = json.loads(vsix.read("tfr-publish/task.json"))
        extension_json = json.loads(vsix.read("extension.vsomanifest"))
    ns = {"v": "http://schemas.microsoft.com/developer/vsx-schema/2011"}
    identity = manifest.find("v:Metadata/v:Identity", ns)
    assert identity is not None
    assert (identity.get("Id"), identity.get("Publisher"), identity.get("Version")) == (
        "tfregistry-publish", "tfregistry", "0.1.0")
    assert "tfr-publish/index.js" in names
    assert "tfr-publish/node_modules/azure-pipelines-task-lib/task.js" in names
    assert not any(name.startswith("tfr-publish/node_modules/typescript/") for name in names)
    assert task["name"] == "TfrPublish" and task["execution"]["Node20_1"]["target"] == "index.js"
    assert {i["name"] for i in task["inputs"]} >= {"authentication", "registryConnection", "federatedConnection",
                                                   "namespace", "name", "system", "version", "path"}
    contributions = {c["id"]: c for c in extension_json["contributions"]}
    assert contributions["tfr-publish-task"]["type"] == "ms.vss-distributed-task.task"
    assert contributions["tfregistry-service-endpoint"]["properties"]["name"] == "tfregistry"
