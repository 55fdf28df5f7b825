"""The Provider Registry Protocol and the Network Mirror Protocol with the real Terraform CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import OWN_PROVIDER_HOST, RegistryServer, Terraform, unique
from tests.providers_kit import build_release, h1_of_zip, provider_zip

pytestmark = pytest.mark.e2e


def provider_config(source: str, constraint: str) -> str:
    return (
        f'terraform {{\n  required_providers {{\n    foo = {{\n      source  = "{source}"\n'
        f'      version = "{constraint}"\n    }}\n  }}\n}}\n'
    )


def lock_entry(workdir: Path, address: str) -> tuple[str, list[str]]:
    """(version, hashes) of one provider in .terraform.lock.hcl."""
    text = (workdir / ".terraform.lock.hcl").read_text()
    block = re.search(rf'provider "{re.escape(address)}" {{(.*?)\n}}', text, re.S)
    assert block, text
    version = re.search(r'version\s+=\s+"([^"]+)"', block.group(1)).group(1)
    return version, re.findall(r'"((?:h1|zh):[^"]+)"', block.group(1))


def test_install_with_registered_key_lock_file_and_reinstall(server, terraform: Terraform, signer, tmp_path):
    ns = unique("prov")
    server.register_key(ns, signer.public_armor, tmp_path)
    releases = {v: build_release(tmp_path / v, "foo", v, key=signer) for v in ("1.0.0", "1.1.0", "2.0.0")}
    for release in releases.values():
        assert "published" in server.publish_provider(release.dist, ns)

    address = f"{server.host}/{ns}/foo"
    work = terraform.workdir(provider_config(address, "~> 1.0"))
    result = terraform.init(work, token=server.admin_token)
    assert result.rc == 0, str(result)
    assert f"Installed {address} v1.1.0 (self-signed, key ID {signer.key_id})" in result.stdout, str(result)

    version, hashes = lock_entry(work, address)
    release = releases["1.1.0"]
    linux = release.zips[release.zip_name("linux_amd64")]
    darwin = release.zips[release.zip_name("darwin_arm64")]
    assert version == "1.1.0"
    import hashlib

    assert f"zh:{hashlib.sha256(linux).hexdigest()}" in hashes
    assert f"zh:{hashlib.sha256(darwin).hexdigest()}" in hashes  # every SHA256SUMS line, because it was signed
    assert h1_of_zip(linux) in hashes

    shutil.rmtree(work / ".terraform")
    again = terraform.init(work, token=server.admin_token)
    assert again.rc == 0, str(again)
    assert "Using previously-installed" in again.stdout or "Installed" in again.stdout

    locked = terraform(
        work, "providers lock", "-platform=linux_amd64", "-platform=darwin_arm64", token=server.admin_token
    )
    assert locked.rc == 0, str(locked)
    _, hashes = lock_entry(work, address)
    assert h1_of_zip(linux) in hashes and h1_of_zip(darwin) in hashes


def test_install_with_registry_managed_key(server, terraform: Terraform, tmp_path):
    ns = unique("managed")
    server.cli("gpg", "create-key", "--namespace", ns)
    key_id = next(line.split("\t")[2] for line in server.cli("gpg", "list").splitlines() if f"\t{ns}\t" in line)
    release = build_release(tmp_path / "dist", "foo", "0.3.0", platforms=("linux_amd64",), protocols=["6.0"])
    assert "published" in server.publish_provider(release.dist, ns)
    address = f"{server.host}/{ns}/foo"
    work = terraform.workdir(provider_config(address, ">= 0.1"))
    result = terraform.init(work, token=server.admin_token)
    assert result.rc == 0, str(result)
    assert f"Installed {address} v0.3.0 (self-signed, key ID {key_id})" in result.stdout, str(result)


def _storage_file(server: RegistryServer, suffix: str, ns: str) -> Path:
    matches = [p for p in (server.data_dir / "storage" / "providers" / ns).rglob(f"*{suffix}")]
    assert len(matches) == 1, matches
    return matches[0]


@pytest.mark.parametrize("damage", ["tampered-zip", "wrong-signature", "unknown-key"])
def test_terraform_refuses_what_was_not_signed(server, terraform: Terraform, signer, other_signer, tmp_path, damage):
    ns = unique("bad")
    server.register_key(ns, signer.public_armor, tmp_path)
    release = build_release(tmp_path / "dist", "foo", "1.0.0", platforms=("linux_amd64",), key=signer)
    server.publish_provider(release.dist, ns)
    if damage == "tampered-zip":
        path = _storage_file(server, "_linux_amd64.zip", ns)
        path.write_bytes(path.read_bytes() + b"\0")
        expected = "checksum"
    elif damage == "wrong-signature":
        _storage_file(server, "_SHA256SUMS.sig", ns).write_bytes(other_signer.sign(release.sums))
        expected = "signature"
    else:  # the key offered to Terraform is not the one that signed
        key_id = next(line.split("\t")[0] for line in server.cli("gpg", "list").splitlines() if f"\t{ns}\t" in line)
        server.cli("gpg", "revoke", key_id)
        server.register_key(ns, other_signer.public_armor, tmp_path)
        expected = "unknown issuer"
    work = terraform.workdir(provider_config(f"{server.host}/{ns}/foo", "1.0.0"))
    result = terraform.init(work, token=server.admin_token)
    assert result.rc == 1, str(result)
    assert expected in result.stderr.lower() or expected in result.stderr, str(result)
    assert "Installed" not in result.stdout


def mirror_config(server: RegistryServer, path: Path) -> Path:
    path.write_text(
        f'provider_installation {{\n  network_mirror {{\n    url = "{server.url}/v1/providers/"\n  }}\n}}\n'
    )
    return path


def test_install_own_provider_through_the_network_mirror(server, terraform: Terraform, signer, tmp_path):
    ns = unique("mir")
    server.register_key(ns, signer.public_armor, tmp_path)
    release = build_release(tmp_path / "dist", "foo", "1.2.0", platforms=("linux_amd64",), key=signer)
    server.publish_provider(release.dist, ns)
    work = terraform.workdir(provider_config(f"{OWN_PROVIDER_HOST}/{ns}/foo", "~> 1.0"))
    result = terraform.init(work, token=server.admin_token, cli_config=mirror_config(server, tmp_path / "cli.tfrc"))
    assert result.rc == 0, str(result)
    assert f"Installed {OWN_PROVIDER_HOST}/{ns}/foo v1.2.0 (verified checksum)" in result.stdout, str(result)
    _, hashes = lock_entry(work, f"{OWN_PROVIDER_HOST}/{ns}/foo")
    assert hashes == [h1_of_zip(release.zips[release.zip_name("linux_amd64")])]


def test_air_gapped_import_then_install_through_the_mirror(server, terraform: Terraform, signer, tmp_path):
    # 1. On the "connected" side: `terraform providers mirror` fetches from a registry (this one) ...
    ns = unique("gap")
    server.register_key(ns, signer.public_armor, tmp_path)
    release = build_release(tmp_path / "dist", "foo", "3.1.0", key=signer)
    server.publish_provider(release.dist, ns)
    source = terraform.workdir(provider_config(f"{server.host}/{ns}/foo", "3.1.0"))
    mirrored = tmp_path / "mirror"
    result = terraform(
        source,
        "providers mirror",
        "-platform=linux_amd64",
        "-platform=darwin_arm64",
        str(mirrored),
        token=server.admin_token,
    )
    assert result.rc == 0, str(result)
    # ... and we carry the folder across as if it came from another registry, upstream.example.test
    upstream = "upstream.example.test"
    (mirrored / server.host).rename(mirrored / upstream)
    index = json.loads((mirrored / upstream / ns / "foo" / "3.1.0.json").read_text())
    assert set(index["archives"]) == {"linux_amd64", "darwin_arm64"}

    # 2. On the air-gapped side: import, verifying hashes; a re-run is a no-op.
    out = server.cli("mirror", "import", str(mirrored))
    assert "2 package(s) imported" in out
    assert "0 package(s) imported" in server.cli("mirror", "import", str(mirrored))

    # 3. Terraform installs it through the network mirror under its origin host.
    work = terraform.workdir(provider_config(f"{upstream}/{ns}/foo", "3.1.0"))
    result = terraform.init(work, token=server.admin_token, cli_config=mirror_config(server, tmp_path / "cli.tfrc"))
    assert result.rc == 0, str(result)
    assert f"Installed {upstream}/{ns}/foo v3.1.0 (verified checksum)" in result.stdout, str(result)


def test_mirror_import_refuses_a_tampered_archive(server, tmp_path):
    ns = unique("tamper")
    folder = tmp_path / "m" / "upstream.example.test" / ns / "foo"
    folder.mkdir(parents=True)
    release = build_release(tmp_path / "dist", "foo", "1.0.0", platforms=("linux_amd64",))
    name = release.zip_name("linux_amd64")
    good = release.zips[name]
    (folder / name).write_bytes(provider_zip("foo", "1.0.0", "linux_amd64", extra={"backdoor.sh": b"#!/bin/sh\n"}))
    (folder / "index.json").write_text(json.dumps({"versions": {"1.0.0": {}}}))
    (folder / "1.0.0.json").write_text(
        json.dumps({"archives": {"linux_amd64": {"url": name, "hashes": [h1_of_zip(good)]}}})
    )
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tfregistry", "mirror", "import", str(tmp_path / "m")],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "linux_amd64" in result.stderr and "matches none of its listed hashes" in result.stderr
    assert not list((server.data_dir / "storage").rglob(f"*{ns}*"))
