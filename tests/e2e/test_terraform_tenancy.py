"""Organizations on a multi-tenant registry (``tenancy = "multi"``) with the real Terraform CLI.

One server per database holds two organizations, ``blue`` and ``red``, each owning a
private namespace with one published module; alice is a publisher in blue, bob a viewer
in red.  Credentials reach Terraform as ``TF_TOKEN_<host>``, as in the other e2e modules.
Messages asserted on are the ones Terraform 1.15.5 prints.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import DATABASES, HttpResponse, RegistryServer, Terraform, TfResult, running_server, unique
from tfregistry.testing.plugin import build_module_archive

pytestmark = pytest.mark.e2e

NAME = "network"
SYSTEM = "generic"
VERSION = "1.0.0"


@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """This module's registry server: multi-tenant (overrides the conftest fixture, so ``terraform`` uses it)."""
    with running_server(request.param, tmp_path_factory.mktemp(f"tenancy-{request.param}"),
                        {"TFR_TENANCY": "multi"}) as srv:
        yield srv


@dataclass(frozen=True)
class Tenants:
    server: RegistryServer
    blue_ns: str
    red_ns: str
    alice: str
    bob: str


def owned_token(server: RegistryServer, *scopes: str, org: str | None = None, user: str | None = None,
                namespace: str | None = None, name: str = "e2e") -> tuple[int, str]:
    """``tfr token create`` for an organization (service token) or a user (personal token): (id, secret)."""
    args = ["token", "create", "--name", name]
    for scope in scopes:
        args += ["--scope", scope]
    if org:
        args += ["--org", org]
    if user:
        args += ["--user", user]
    if namespace:
        args += ["--namespace", namespace]
    lines = server.cli(*args).strip().splitlines()
    kind = "service" if org else "personal" if user else "site"
    m = re.match(rf"created {kind} token (\d+) ", lines[-2])
    assert m, f"unexpected `tfr token create` output: {lines}"
    return int(m.group(1)), lines[-1].strip()


def rotate(server: RegistryServer, token_id: int, grace: str | None = None) -> str:
    """``tfr token rotate ID [--grace G]``; returns the new secret."""
    lines = server.cli("token", "rotate", str(token_id), *(["--grace", grace] if grace else [])).strip().splitlines()
    old = f"works for {grace} more" if grace else "stopped working"
    assert lines[-2] == f"rotated token {token_id}; the old secret {old}", lines
    return lines[-1].strip()


def owner_archive(org: str) -> bytes:
    return build_module_archive(name=NAME, files={"owner.tf": f'output "owner" {{\n  value = "{org}"\n}}\n'})


def publish_form(server: RegistryServer, namespace: str, version: str, org: str, token: str) -> int:
    return server.publish(namespace, NAME, SYSTEM, version, owner_archive(org), token=token)


@pytest.fixture(scope="module")
def tenants(server: RegistryServer) -> Tenants:
    blue_ns, red_ns = unique("blue"), unique("red")
    alice, bob = "alice@example.test", "bob@example.test"
    for org in ("blue", "red"):
        server.cli("org", "create", org)
    for email in (alice, bob):
        server.cli("user", "create", email)
    assert server.cli("org", "member", "blue", alice, "--role", "publisher").strip() == f"{alice} is publisher in blue"
    assert server.cli("org", "member", "red", bob, "--role", "viewer").strip() == f"{bob} is viewer in red"
    for ns, org in ((blue_ns, "blue"), (red_ns, "red")):
        out = server.cli("namespace", ns, "--org", org, "--visibility", "private")
        assert out.strip() == f"namespace {ns}: visibility private, organization {org}"
    # blue's module with the site admin token, red's with red's own CI (service) token
    assert publish_form(server, blue_ns, VERSION, "blue", server.admin_token) == 201
    _, red_ci = owned_token(server, "modules:write", org="red", name="red-ci")
    assert publish_form(server, red_ns, VERSION, "red", red_ci) == 201
    return Tenants(server, blue_ns, red_ns, alice, bob)


# --- helpers ---------------------------------------------------------------------------------


def source(t: Tenants, namespace: str) -> str:
    return f"{t.server.host}/{namespace}/{NAME}/{SYSTEM}"


def config(t: Tenants, namespace: str) -> str:
    return f'module "m" {{\n  source  = "{source(t, namespace)}"\n  version = "{VERSION}"\n}}\n'


def versions(t: Tenants, namespace: str, token: str) -> HttpResponse:
    return t.server.get(f"/v1/modules/{namespace}/{NAME}/{SYSTEM}/versions", token=token)


def assert_installs(t: Tenants, terraform: Terraform, namespace: str, token: str, owner: str) -> Path:
    work = terraform.workdir(config(t, namespace))
    result = terraform.init(work, token=token)
    assert result.rc == 0, str(result)
    assert f"Downloading {source(t, namespace)} {VERSION} for m..." in result.stdout, str(result)
    # the installed files are the organization's own module
    owner_tf = (work / ".terraform" / "modules" / "m" / "owner.tf").read_text()
    assert f'value = "{owner}"' in owner_tf
    return work


def assert_refused(terraform: Terraform, work: Path, token: str | None) -> TfResult:
    result = terraform.init(work, token=token)
    assert result.rc == 1, str(result)
    assert "Downloading" not in result.stdout, str(result)
    assert not (work / ".terraform" / "modules" / "m").exists()
    return result


def flat(text: str) -> str:
    """``text`` with Terraform's line wrapping undone (runs of whitespace become one space)."""
    return " ".join(text.split())


def file_gets(server: RegistryServer, namespace: str) -> list[str]:
    """Access-log lines of archive downloads (``/v1/files/``) for ``namespace``."""
    return [line for line in server.request_log() if "/v1/files/" in line and namespace in line]


# --- members and the organization's own tokens install -------------------------------------------


def test_member_personal_token_installs_own_organizations_module(tenants: Tenants, terraform: Terraform) -> None:
    _, token = owned_token(tenants.server, "modules:read", user=tenants.alice, name="alice-laptop")
    assert_installs(tenants, terraform, tenants.blue_ns, token, "blue")
    # alice has no role in red: its private namespace does not exist for her
    assert versions(tenants, tenants.red_ns, token).status == 404


def test_organization_service_token_installs_own_module(tenants: Tenants, terraform: Terraform) -> None:
    _, token = owned_token(tenants.server, "modules:read", org="blue", name="blue-ci")
    assert_installs(tenants, terraform, tenants.blue_ns, token, "blue")


# --- another organization's credentials: the namespace is invisible ---------------------------------


@pytest.mark.parametrize("credential", ["red-service", "bob-personal"])
def test_other_organizations_credentials_do_not_see_the_namespace(tenants: Tenants, terraform: Terraform,
                                                                   credential: str) -> None:
    if credential == "red-service":
        _, token = owned_token(tenants.server, "modules:read", org="red", name="red-reader")
    else:
        _, token = owned_token(tenants.server, "modules:read", user=tenants.bob, name="bob-laptop")
    # a working credential: it reads its own organization's module
    downloads_before = file_gets(tenants.server, tenants.blue_ns)
    own = versions(tenants, tenants.red_ns, token)
    assert own.status == 200, own
    assert [v["version"] for v in own.json()["modules"][0]["versions"]] == [VERSION]

    hidden = versions(tenants, tenants.blue_ns, token)
    ghost_ns = unique("ghost")
    missing = versions(tenants, ghost_ns, token)
    assert hidden.status == 404, hidden  # not 403: that would say the namespace exists
    assert missing.status == 404, missing
    for resp in (hidden, missing):
        body = resp.json()
        assert list(body) == ["errors"] and len(body["errors"]) == 1, body
        assert isinstance(body["errors"][0], str) and body["errors"][0].endswith(" not found"), body
        assert resp.headers["content-type"] == "application/json"
        assert "www-authenticate" not in resp.headers
    # not even the message tells them apart
    assert hidden.json()["errors"][0].replace(tenants.blue_ns, "NS") == missing.json()["errors"][0].replace(
        ghost_ns, "NS")

    # Terraform reports both alike: module not found
    refused = assert_refused(terraform, terraform.workdir(config(tenants, tenants.blue_ns)), token)
    absent = assert_refused(terraform, terraform.workdir(config(tenants, ghost_ns)), token)
    for result in (refused, absent):
        assert "Error: Module not found" in result.stderr, str(result)
        assert f"cannot be found in the module registry at {tenants.server.host}" in flat(result.stderr), str(result)
    assert flat(refused.stderr).replace(tenants.blue_ns, "NS") == flat(absent.stderr).replace(ghost_ns, "NS")
    # nor does the download endpoint hand out blue's archive location
    download = tenants.server.get(f"/v1/modules/{tenants.blue_ns}/{NAME}/{SYSTEM}/{VERSION}/download", token=token)
    assert download.status == 404 and "x-terraform-get" not in download.headers, download
    assert file_gets(tenants.server, tenants.blue_ns) == downloads_before


# --- a personal token is never wider than its user ------------------------------------------------


def test_personal_write_token_of_a_viewer_cannot_publish(tenants: Tenants) -> None:
    # Even the operator's CLI refuses a personal token wider than the user's roles.
    refused = subprocess.run([sys.executable, "-m", "tfregistry", "token", "create", "--name", "bob-write",
                              "--scope", "modules:write", "--user", tenants.bob], env=tenants.server.env,
                             capture_output=True, text=True, check=False, timeout=60)
    assert refused.returncode != 0 and "cannot grant scopes you do not hold: modules:write" in refused.stderr, refused
    _, bob_read = owned_token(tenants.server, "modules:read", user=tenants.bob, name="bob-read")
    me = tenants.server.get("/api/v1/me", token=bob_read)
    assert me.status == 200, me
    assert me.json()["kind"] == "personal"
    assert me.json()["organizations"] == [{"name": "red", "scopes": ["modules:read"]}], me.json()
    status = publish_form(tenants.server, tenants.red_ns, "1.1.0", "red", bob_read)
    assert status == 403, f"a viewer's personal token published to its own organization: {status}"
    # in blue, where bob has no role at all, the namespace does not even exist for him
    assert publish_form(tenants.server, tenants.blue_ns, "1.1.0", "bob", bob_read) == 404
    # nothing was published; bob still reads red's module with the same token (viewer)
    own = versions(tenants, tenants.red_ns, bob_read)
    assert own.status == 200, own
    assert [v["version"] for v in own.json()["modules"][0]["versions"]] == [VERSION]

    # the same kind of token of a publisher does publish: the 403 is bob's role, not the token kind
    _, alice_write = owned_token(tenants.server, "modules:write", user=tenants.alice, name="alice-write")
    assert publish_form(tenants.server, tenants.blue_ns, "0.9.0", "blue", alice_write) == 201


# --- rotation ----------------------------------------------------------------------------


def test_rotation_with_grace_then_without(tenants: Tenants, terraform: Terraform) -> None:
    token_id, first = owned_token(tenants.server, "modules:read", org="blue", name="blue-rotated")

    second = rotate(tenants.server, token_id, grace="1h")
    assert second != first
    # during the grace period both secrets install the module
    assert_installs(tenants, terraform, tenants.blue_ns, first, "blue")
    assert_installs(tenants, terraform, tenants.blue_ns, second, "blue")

    third = rotate(tenants.server, token_id)  # no grace: the previous secret stops at once
    assert len({first, second, third}) == 3
    result = assert_refused(terraform, terraform.workdir(config(tenants, tenants.blue_ns)), second)
    assert "error looking up module versions: 401" in result.stderr, str(result)
    for stale in (first, second):
        resp = versions(tenants, tenants.blue_ns, stale)
        assert resp.status == 401, resp
        assert resp.headers["www-authenticate"] == 'Bearer realm="tfregistry"'
    assert_installs(tenants, terraform, tenants.blue_ns, third, "blue")
