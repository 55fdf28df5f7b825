"""Mirroring providers from an upstream registry (a second registry server), verified, then installed by Terraform."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import RegistryServer, Terraform, running_server, unique
from tests.providers_kit import build_release

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def downstream(upstream: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    # the downstream registry trusts the upstream's CA, as a site would trust the public registry's
    with running_server("sqlite", tmp_path_factory.mktemp("downstream"),
                        {"SSL_CERT_FILE": str(upstream.bundle), "TFR_JOBS__BACKOFF_SECONDS": "0",
                         "TFR_JOBS__RETRIES": "0", "TFR_JOBS__MIRROR_TICK_SECONDS": "1",
                         "TFR_MIRROR__PULL_THROUGH": "true",
                         "TFR_MIRROR__UPSTREAMS": f"pull.example.test={upstream.url},down.example.test=https://127.0.0.1:9"})\
            as srv:
        yield srv


def api(server: RegistryServer, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    response = server.request(method, path, token=server.admin_token,
                              body=json.dumps(body).encode() if body is not None else None,
                              headers={"Content-Type": "application/json"} if body is not None else None)
    return response.status, json.loads(response.body) if response.body else None


def sync_and_wait(server: RegistryServer, mirror_id: int, runs_before: int) -> dict:
    status, started = api(server, "POST", f"/api/v1/mirrors/{mirror_id}/sync")
    assert status == 202, started
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, runs = api(server, "GET", f"/api/v1/mirrors/{mirror_id}/status")
        if len(runs) > runs_before and runs[0]["finished_at"]:
            return runs[0]
        time.sleep(0.2)
    pytest.fail(f"the sync did not finish\n{server.output()}")


def test_sync_verify_and_install_through_both_protocols(upstream, downstream, signer, tmp_path):
    ns = unique("hashi")
    upstream.register_key(ns, signer.public_armor, tmp_path)
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        upstream.publish_provider(build_release(tmp_path / version, "foo", version, key=signer).dist, ns)
    read_token = upstream.create_token("read")

    status, config = api(downstream, "POST", "/api/v1/mirrors", {
        "upstream_host": "upstream.example.test", "upstream_url": upstream.url, "upstream_token": read_token,
        "namespace": ns, "type": "foo", "version_constraint": "~> 1.0", "platforms": ["linux_amd64"]})
    assert status == 201, config
    assert config["has_token"] is True and "upstream_token" not in config

    run = sync_and_wait(downstream, config["id"], 0)
    assert run["status"] == "succeeded", run
    assert (run["versions"], run["packages"], run["errors"]) == (2, 2, [])
    assert run["bytes"] > 0 and run["duration_seconds"] is not None
    again = sync_and_wait(downstream, config["id"], 1)
    assert (again["status"], again["packages"], again["skipped"]) == ("succeeded", 0, 2)

    terraform = Terraform(downstream, tmp_path / "tf")
    own = f"{downstream.host}/{ns}/foo"
    work = terraform.workdir(f'terraform {{\n  required_providers {{\n    foo = {{ source = "{own}", '
                             f'version = ">= 1.0" }}\n  }}\n}}\n')
    result = terraform.init(work, token=downstream.admin_token)
    assert result.rc == 0, str(result)
    # 2.0.0 was not mirrored (constraint ~> 1.0), so the newest the downstream offers is 1.1.0
    assert f"Installed {own} v1.1.0 (self-signed, key ID {signer.key_id})" in result.stdout, str(result)

    cli_config = tmp_path / "mirror.tfrc"
    cli_config.write_text(f'provider_installation {{\n  network_mirror {{\n    url = "{downstream.url}/v1/providers/"'
                          f'\n  }}\n}}\n')
    origin = f"upstream.example.test/{ns}/foo"
    work = terraform.workdir(f'terraform {{\n  required_providers {{\n    foo = {{ source = "{origin}", '
                             f'version = "1.0.0" }}\n  }}\n}}\n')
    result = terraform.init(work, token=downstream.admin_token, cli_config=cli_config)
    assert result.rc == 0, str(result)
    assert f"Installed {origin} v1.0.0 (verified checksum)" in result.stdout, str(result)


def test_tampered_upstream_package_is_refused_and_reported(upstream, downstream, signer, tmp_path):
    ns = unique("evil")
    upstream.register_key(ns, signer.public_armor, tmp_path)
    release = build_release(tmp_path / "d", "foo", "1.0.0", platforms=("linux_amd64",), key=signer)
    upstream.publish_provider(release.dist, ns)
    (zip_path,) = (upstream.data_dir / "storage" / "providers" / ns).rglob("*_linux_amd64.zip")
    zip_path.write_bytes(zip_path.read_bytes() + b"tampered")
    status, config = api(downstream, "POST", "/api/v1/mirrors", {
        "upstream_host": "upstream.example.test", "upstream_url": upstream.url,
        "upstream_token": upstream.create_token("read"), "namespace": ns, "type": "foo"})
    assert status == 201
    run = sync_and_wait(downstream, config["id"], 0)
    assert run["status"] == "failed" and run["packages"] == 0
    assert "does not match the signed SHA256SUMS" in run["errors"][0]
    assert not list((downstream.data_dir / "storage").rglob(f"*{ns}*"))
    assert downstream.get(f"/v1/providers/{ns}/foo/versions", token=downstream.admin_token).status == 404


def test_untrusted_upstream_key_is_refused(upstream, downstream, signer, tmp_path):
    ns = unique("trust")
    upstream.register_key(ns, signer.public_armor, tmp_path)
    release = build_release(tmp_path / "d", "foo", "1.0.0", platforms=("linux_amd64",), key=signer)
    upstream.publish_provider(release.dist, ns)
    status, config = api(downstream, "POST", "/api/v1/mirrors", {
        "upstream_host": "upstream.example.test", "upstream_url": upstream.url,
        "upstream_token": upstream.create_token("read"), "namespace": ns, "type": "foo",
        "trusted_fingerprints": ["0" * 40]})
    assert status == 201
    run = sync_and_wait(downstream, config["id"], 0)
    assert run["status"] == "failed" and "no upstream key is trusted" in run["errors"][0]


def test_scheduled_sync_runs_without_being_asked(upstream, downstream, signer, tmp_path):
    ns = unique("sched")
    upstream.register_key(ns, signer.public_armor, tmp_path)
    release = build_release(tmp_path / "d", "foo", "0.9.0", platforms=("linux_amd64",), key=signer)
    upstream.publish_provider(release.dist, ns)
    status, config = api(downstream, "POST", "/api/v1/mirrors", {
        "upstream_host": "upstream.example.test", "upstream_url": upstream.url,
        "upstream_token": upstream.create_token("read"), "namespace": ns, "type": "foo", "latest": 1,
        "interval_seconds": 3600})
    assert status == 201
    deadline = time.monotonic() + 30
    runs: list = []
    while time.monotonic() < deadline and not (runs and runs[0]["finished_at"]):
        time.sleep(0.3)
        _, runs = api(downstream, "GET", f"/api/v1/mirrors/{config['id']}/status")
    assert runs and runs[0]["status"] == "succeeded" and runs[0]["packages"] == 1, runs
    assert downstream.get(f"/v1/providers/{ns}/foo/versions", token=downstream.admin_token).status == 200


def test_pull_through_installs_a_provider_never_synced_and_serves_it_locally_afterwards(upstream, downstream, signer,
                                                                                      tmp_path):
    ns = unique("pull")
    upstream.register_key(ns, signer.public_armor, tmp_path)
    release = build_release(tmp_path / "d", "foo", "1.0.0", key=signer)
    upstream.publish_provider(release.dist, ns)
    upstream.set_visibility(ns, "public")  # pull-through fetches public providers without a token

    terraform = Terraform(downstream, tmp_path / "tf")
    cli_config = tmp_path / "mirror.tfrc"
    cli_config.write_text(f'provider_installation {{\n  network_mirror {{\n    url = "{downstream.url}/v1/providers/"'
                          f'\n  }}\n}}\n')
    origin = f"pull.example.test/{ns}/foo"
    config = (f'terraform {{\n  required_providers {{\n    foo = {{ source = "{origin}", version = "1.0.0" }}\n'
              "  }\n}\n")
    result = terraform.init(terraform.workdir(config), token=downstream.admin_token, cli_config=cli_config)
    assert result.rc == 0, str(result)
    assert f"Installed {origin} v1.0.0 (verified checksum)" in result.stdout, str(result)
    stored = [p for p in (downstream.data_dir / "storage" / "mirror").rglob("*_linux_amd64.zip") if ns in str(p)]
    assert len(stored) == 1, "the package was stored locally"

    upstream_requests = len([line for line in upstream.request_log() if ns in line])
    again = terraform.init(terraform.workdir(config), token=downstream.admin_token, cli_config=cli_config)
    assert again.rc == 0, str(again)
    assert len([line for line in upstream.request_log() if ns in line]) == upstream_requests, \
        "the second install must not reach the upstream"
    _, stats = api(downstream, "GET", "/api/v1/mirrors/pull-through")
    assert stats["pull.example.test"]["misses"] >= 2 and stats["pull.example.test"]["hits"] >= 1
    assert stats["pull.example.test"]["bytes_saved"] > 0


def test_unreachable_upstream_gives_a_clear_error(downstream):
    response = downstream.get("/v1/providers/down.example.test/acme/foo/index.json", token=downstream.admin_token)
    assert response.status == 502
    assert "the upstream registry down.example.test is unavailable" in json.loads(response.body)["errors"][0]
    _, stats = api(downstream, "GET", "/api/v1/mirrors/pull-through")
    assert stats["down.example.test"]["last_error"]
    not_allowed = downstream.get("/v1/providers/elsewhere.example.test/acme/foo/index.json",
                                 token=downstream.admin_token)
    assert not_allowed.status == 404
