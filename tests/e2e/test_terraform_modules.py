"""The Module Registry Protocol with the real Terraform CLI against a real server subprocess.

Every test uses its own namespace, so the server shared by the module's tests does
not couple them.  Messages asserted on are the ones Terraform 1.15.5 prints.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.e2e.conftest import RegistryServer, Terraform, TfResult, unique
from tfregistry.testing.plugin import build_module_archive

pytestmark = pytest.mark.e2e

SYSTEM = "generic"
TERRAFORM_UA = {"User-Agent": "Terraform/1.15.5"}


def versioned_archive(version: str) -> bytes:
    """A module whose outputs say which version was downloaded, with a child module in ``modules/child``."""
    return build_module_archive(name="e2e", files={
        "version.tf": f'output "version" {{\n  value = "{version}"\n}}\n',
        "modules/child/main.tf": f'output "child" {{\n  value = "child of {version}"\n}}\n',
    })


def publish_versions(server: RegistryServer, namespace: str, name: str, *versions: str) -> dict[str, bytes]:
    archives = {v: versioned_archive(v) for v in versions}
    for version, archive in archives.items():
        status = server.publish(namespace, name, SYSTEM, version, archive)
        assert status == 201, f"publishing {namespace}/{name}/{SYSTEM} {version} answered {status}"
    return archives


def module_config(source: str, version: str | None, outputs: dict[str, str], key: str = "m") -> str:
    """``main.tf`` with one module call and root outputs forwarding ``outputs`` (root name → module output)."""
    lines = [f'module "{key}" {{', f'  source  = "{source}"']
    if version is not None:
        lines.append(f'  version = "{version}"')
    lines.append("}")
    for root_name, module_output in outputs.items():
        lines.append(f'output "{root_name}" {{\n  value = module.{key}.{module_output}\n}}')
    return "\n".join(lines) + "\n"


def installed(workdir: Path) -> dict[str, dict[str, Any]]:
    """``.terraform/modules/modules.json`` by module key (the root entry, key "", left out)."""
    data = json.loads((workdir / ".terraform" / "modules" / "modules.json").read_text())
    return {m["Key"]: m for m in data["Modules"] if m["Key"]}


def apply_outputs(result: TfResult) -> dict[str, str]:
    """``name = "value"`` lines after ``Outputs:`` in ``terraform apply`` output."""
    assert "Outputs:" in result.stdout, str(result)
    section = result.stdout.split("Outputs:", 1)[1]
    return dict(re.findall(r'^(\w+) = "(.*)"$', section, re.M))


def flat(text: str) -> str:
    """``text`` with Terraform's line wrapping undone (runs of whitespace become one space)."""
    return " ".join(text.split())


def assert_ok(result: TfResult) -> None:
    assert result.rc == 0, str(result)


def file_requests(server: RegistryServer, namespace: str) -> list[tuple[str, str, int]]:
    """(method, path?query, status) of the server's ``/v1/files/`` requests for ``namespace``."""
    pattern = re.compile(r'"(GET|HEAD) (/v1/files/\S*' + re.escape(namespace) + r'\S*) HTTP/1\.1" (\d{3})')
    return [(m.group(1), m.group(2), int(m.group(3)))
            for m in (pattern.search(line) for line in server.request_log()) if m]


def tamper_signature(path_and_query: str) -> str:
    path, _, query = path_and_query.partition("?")
    params = dict(parse_qsl(query))
    sig = params["signature"]
    params["signature"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    return path + "?" + urlencode(params)


# --- version selection, download, apply ------------------------------------------------


def test_init_installs_highest_matching_version_and_apply_uses_its_content(
        server: RegistryServer, terraform: Terraform) -> None:
    ns = unique("sel")
    publish_versions(server, ns, "hello", "1.0.0", "1.1.0", "1.2.0", "1.3.0-beta1", "2.0.0")
    token = server.create_token("read", namespace=ns)
    source = f"{server.host}/{ns}/hello/{SYSTEM}"
    work = terraform.workdir(module_config(source, "~> 1.1", {"module_version": "version", "name": "name"}))

    result = terraform.init(work, token=token)
    assert_ok(result)
    assert f"Downloading {source} 1.2.0 for m..." in result.stdout, str(result)
    assert "- m in .terraform/modules/m" in result.stdout, str(result)
    entry = installed(work)["m"]
    assert entry == {"Key": "m", "Source": source, "Version": "1.2.0", "Dir": ".terraform/modules/m"}

    # Terraform fetched the archive through a signed /v1/files/ URL (HEAD first, then GET).
    fetched = file_requests(server, ns)
    assert [(method, status) for method, _, status in fetched] == [("HEAD", 200), ("GET", 200)], fetched
    assert all(f"/{ns}-hello-{SYSTEM}-1.2.0.tar.gz?" in path for _, path, _ in fetched), fetched

    applied = terraform.apply(work)  # everything is local now: no token needed
    assert_ok(applied)
    assert apply_outputs(applied) == {"module_version": "1.2.0", "name": "e2e"}


def test_second_init_is_stable_and_upgrade_moves_to_newer_version(
        server: RegistryServer, terraform: Terraform) -> None:
    ns = unique("stable")
    publish_versions(server, ns, "hello", "1.0.0", "1.1.0")
    token = server.create_token("read", namespace=ns)
    source = f"{server.host}/{ns}/hello/{SYSTEM}"
    work = terraform.workdir(module_config(source, "~> 1.0", {"module_version": "version"}))

    first = terraform.init(work, token=token)
    assert_ok(first)
    assert f"Downloading {source} 1.1.0 for m..." in first.stdout, str(first)
    version_tf = work / ".terraform" / "modules" / "m" / "version.tf"
    stamp = version_tf.stat().st_mtime_ns

    # A newer matching version appears; a plain init keeps what modules.json records.
    publish_versions(server, ns, "hello", "1.2.0")
    requests_before = len(server.request_log())
    second = terraform.init(work, token=token)
    assert_ok(second)
    assert "Downloading" not in second.output, str(second)
    assert "Initializing modules..." in second.stdout
    assert installed(work)["m"]["Version"] == "1.1.0"
    assert version_tf.stat().st_mtime_ns == stamp
    # Terraform 1.15 does not even ask the registry: the recorded version still satisfies "~> 1.0".
    assert server.request_log()[requests_before:] == []
    details = server.get(f"/v1/modules/{ns}/hello/{SYSTEM}/1.1.0", token=token)
    assert details.status == 200 and details.json()["downloads"] == 1, details
    assert len([1 for m, _, _ in file_requests(server, ns) if m == "GET"]) == 1

    upgraded = terraform.init(work, "-upgrade", token=token)
    assert_ok(upgraded)
    assert f"Downloading {source} 1.2.0 for m..." in upgraded.stdout, str(upgraded)
    assert installed(work)["m"]["Version"] == "1.2.0"
    applied = terraform.apply(work)
    assert_ok(applied)
    assert apply_outputs(applied) == {"module_version": "1.2.0"}


def test_submodule_source_installs_the_subdirectory(server: RegistryServer, terraform: Terraform) -> None:
    ns = unique("sub")
    publish_versions(server, ns, "hello", "1.0.0", "1.1.0")
    token = server.create_token("read", namespace=ns)
    source = f"{server.host}/{ns}/hello/{SYSTEM}//modules/child"
    work = terraform.workdir(module_config(source, "1.0.0", {"child": "child"}, key="c"))

    result = terraform.init(work, token=token)
    assert_ok(result)
    # Terraform downloads the whole package and points the module at the subdirectory.
    assert f"Downloading {server.host}/{ns}/hello/{SYSTEM} 1.0.0 for c..." in result.stdout, str(result)
    assert "- c in .terraform/modules/c/modules/child" in result.stdout, str(result)
    entry = installed(work)["c"]
    assert entry == {"Key": "c", "Source": source, "Version": "1.0.0", "Dir": ".terraform/modules/c/modules/child"}
    assert sorted(p.name for p in (work / entry["Dir"]).iterdir()) == ["main.tf"]

    applied = terraform.apply(work)
    assert_ok(applied)
    assert apply_outputs(applied) == {"child": "child of 1.0.0"}


# --- authentication and namespace visibility ---------------------------------------------


@pytest.mark.parametrize("visibility", ["inherit", "private"])
@pytest.mark.parametrize("scope", ["read", "publish", "admin"])
def test_private_namespace_installs_with_token(server: RegistryServer, terraform: Terraform, visibility: str,
                                               scope: str) -> None:
    ns = unique("priv")
    publish_versions(server, ns, "hello", "1.0.0")
    if visibility != "inherit":
        server.set_visibility(ns, visibility)
    token = server.admin_token if scope == "admin" else server.create_token(scope, namespace=ns)
    source = f"{server.host}/{ns}/hello/{SYSTEM}"
    work = terraform.workdir(module_config(source, "1.0.0", {"module_version": "version"}))

    result = terraform.init(work, token=token)
    assert_ok(result)
    assert f"Downloading {source} 1.0.0 for m..." in result.stdout, str(result)
    assert installed(work)["m"]["Version"] == "1.0.0"


@pytest.mark.parametrize("credential", ["none", "unknown", "malformed", "revoked", "expired", "other-namespace"])
def test_private_namespace_refuses_bad_credentials(server: RegistryServer, terraform: Terraform,
                                                   credential: str) -> None:
    ns = unique("deny")
    publish_versions(server, ns, "hello", "1.0.0")
    source = f"{server.host}/{ns}/hello/{SYSTEM}"
    config = module_config(source, "1.0.0", {"module_version": "version"})
    status = "401"
    token: str | None
    if credential == "none":
        token = None
    elif credential == "unknown":
        token = "tfr_" + "A" * 43  # well-formed, never issued
    elif credential == "malformed":
        token = "not-a-registry-token"
    elif credential == "revoked":
        token_id, token = server.create_token_with_id("read", namespace=ns)
        assert_ok(terraform.init(terraform.workdir(config), token=token))  # it worked before the revocation
        server.revoke_token(token_id)
    elif credential == "expired":
        token = server.create_token("read", namespace=ns, expires="1s")
        time.sleep(1.2)  # the token was created before the CLI returned
    else:
        other = unique("other")
        server.set_visibility(other, "private")
        token = server.create_token("read", namespace=other)
        status = "403"  # a valid token, but not for this namespace

    work = terraform.workdir(config)
    result = terraform.init(work, token=token)
    assert result.rc == 1, str(result)
    assert "Error accessing remote module registry" in result.stderr, str(result)
    assert f"error looking up module versions: {status}" in result.stderr, str(result)
    assert "Downloading" not in result.stdout
    assert not (work / ".terraform" / "modules" / "m").exists()
    # Only the successful init before the revocation fetched the archive.
    expected = [("HEAD", 200), ("GET", 200)] if credential == "revoked" else []
    assert [(method, code) for method, _, code in file_requests(server, ns)] == expected


def test_public_namespace_installs_without_token(server: RegistryServer, terraform: Terraform) -> None:
    ns = unique("pub")
    publish_versions(server, ns, "hello", "1.0.0", "1.1.0")
    source = f"{server.host}/{ns}/hello/{SYSTEM}"
    config = module_config(source, "~> 1.0", {"module_version": "version"})

    before = terraform.init(terraform.workdir(config))  # anonymous reads are off by default
    assert before.rc == 1 and "error looking up module versions: 401" in before.stderr, str(before)

    server.set_visibility(ns, "public")
    work = terraform.workdir(config)
    result = terraform.init(work)
    assert_ok(result)
    assert f"Downloading {source} 1.1.0 for m..." in result.stdout, str(result)
    assert installed(work)["m"]["Version"] == "1.1.0"
    applied = terraform.apply(work)
    assert_ok(applied)
    assert apply_outputs(applied) == {"module_version": "1.1.0"}


def test_namespace_token_does_not_lose_access_to_public_namespace(server: RegistryServer,
                                                                  terraform: Terraform) -> None:
    ns, own = unique("pub"), unique("team")
    publish_versions(server, ns, "hello", "1.0.0")
    server.set_visibility(ns, "public")
    token = server.create_token("read", namespace=own)
    source = f"{server.host}/{ns}/hello/{SYSTEM}"
    work = terraform.workdir(module_config(source, "1.0.0", {"module_version": "version"}))

    assert_ok(terraform.init(terraform.workdir(module_config(source, "1.0.0", {}))))  # anonymous: fine
    result = terraform.init(work, token=token)
    assert_ok(result)
    assert installed(work)["m"]["Version"] == "1.0.0"


# --- failures Terraform reports ------------------------------------------------------


def test_unresolvable_version_constraint(server: RegistryServer, terraform: Terraform) -> None:
    ns = unique("nover")
    publish_versions(server, ns, "hello", "1.0.0", "2.0.0")
    source = f"{server.host}/{ns}/hello/{SYSTEM}"
    work = terraform.workdir(module_config(source, "~> 9.0", {}))

    result = terraform.init(work, token=server.admin_token)
    assert result.rc == 1, str(result)
    assert "Error: Unresolvable module version constraint" in result.stderr, str(result)
    assert (f'There is no available version of module "{source}" (main.tf:1) which matches the given version '
            "constraint. The newest available version is 2.0.0.") in flat(result.stderr), str(result)
    assert "Downloading" not in result.stdout


def test_unknown_module_is_not_found(server: RegistryServer, terraform: Terraform) -> None:
    ns = unique("none")
    publish_versions(server, ns, "hello", "1.0.0")
    source = f"{server.host}/{ns}/absent/{SYSTEM}"
    work = terraform.workdir(module_config(source, "1.0.0", {}))

    result = terraform.init(work, token=server.admin_token)
    assert result.rc == 1, str(result)
    assert "Error: Module not found" in result.stderr, str(result)
    assert f"cannot be found in the module registry at {server.host}" in flat(result.stderr), str(result)


# --- the signed archive URL --------------------------------------------------------------


def test_archive_url_is_public_but_signed(server: RegistryServer, terraform: Terraform) -> None:
    ns = unique("dl")
    archive = publish_versions(server, ns, "hello", "1.0.0")["1.0.0"]
    token = server.create_token("read", namespace=ns)
    source = f"{server.host}/{ns}/hello/{SYSTEM}"

    # The location the download endpoint hands to Terraform.
    resp = server.get(f"/v1/modules/{ns}/hello/{SYSTEM}/1.0.0/download", token=token, headers=TERRAFORM_UA)
    assert resp.status == 204, resp
    assert resp.body == b""
    location = urlsplit(resp.headers["x-terraform-get"])
    assert (location.scheme, location.netloc) == ("https", server.host)
    assert location.path.endswith(".tar.gz")
    assert {"expires", "signature"} <= dict(parse_qsl(location.query)).keys()
    assert server.get(f"/v1/modules/{ns}/hello/{SYSTEM}/1.0.0/download", headers=TERRAFORM_UA).status == 401

    # The location Terraform actually fetched, from the server's request log.
    work = terraform.workdir(module_config(source, "1.0.0", {}))
    assert_ok(terraform.init(work, token=token))
    fetched = [path for method, path, status in file_requests(server, ns) if method == "GET" and status == 200]
    assert len(fetched) == 1 and urlsplit(fetched[0]).path == location.path, fetched

    for url in (location.path + "?" + location.query, fetched[0]):
        plain = server.get(url)  # no token: the signature is the credential
        assert plain.status == 200, plain
        assert plain.body == archive
        assert plain.headers["content-type"] == "application/octet-stream"
        assert "content-encoding" not in plain.headers
        head = server.request("HEAD", url)
        assert head.status == 200 and head.headers["accept-ranges"] == "bytes"

        forged = server.get(tamper_signature(url))
        assert forged.status == 403, forged
        assert "invalid or has expired" in forged.json()["errors"][0]
        assert server.get(urlsplit(url).path).status == 403  # no signature at all
