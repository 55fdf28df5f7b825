"""Module analysis through the publish API, the Module Registry Protocol and ``tfr modules reanalyze``."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.conftest import REDIS_URL, bearer, post_module
from tests.unit.test_analysis import FIXTURE_NAMES, FIXTURES, pack_fixture
from tfregistry import analysis as analysis_mod
from tfregistry import jobs as jobs_mod
from tfregistry.cli import Context, cli
from tfregistry.models import ModuleVersion
from tfregistry.services import modules as svc
from tfregistry.services.audit import CLI_ACTOR


def expected(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "expected.json").read_text())


def stored_analysis(registry: Any, version: str = "1.0.0") -> Any:
    with registry.db.session() as session:
        return session.scalars(sa.select(ModuleVersion.analysis).where(ModuleVersion.version == version)).one()


def test_published_module_is_documented_with_public_registry_fields(client, publish, admin_token):
    archive = pack_fixture("submodules_examples")
    assert publish(name="network", system="aws", version="1.2.0", archive=archive).status_code == 201
    want = expected("submodules_examples")
    for url in ("/v1/modules/acme/network/aws/1.2.0", "/v1/modules/acme/network/aws"):
        body = client.get(url, headers=bearer(admin_token)).get_json()
        root = body["root"]
        assert root["name"] == "network" and root["path"] == "" and root["empty"] is False
        assert root["readme"] == ""  # the fixture has no root README
        for field in ("inputs", "outputs", "dependencies", "provider_dependencies", "resources"):
            assert root[field] == want["root"][field], field
        assert root["inputs"][0] == {"name": "cidr", "type": "string", "description": "", "default": None,
                                     "required": True, "sensitive": False, "nullable": True, "ephemeral": False,
                                     "validations": 0}
        assert [s["path"] for s in body["submodules"]] == [
            "modules/dns", "modules/network", "modules/network/modules/subnets"]
        assert body["submodules"] == want["submodules"]
        assert [e["path"] for e in body["examples"]] == ["examples/complete", "examples/minimal"]
        assert body["examples"][0]["dependencies"] == [{"name": "example", "source": "../..", "version": ""}]
        assert body["providers"] == ["aws"]
        assert body["source"] == "" and body["published_at"] and body["versions"] == ["1.2.0"]
        assert body["analysis_problems"] == []
    versions = client.get("/v1/modules/acme/network/aws/versions", headers=bearer(admin_token)).get_json()
    assert versions["modules"][0]["versions"][0]["version"] == "1.2.0"


def test_providers_lists_the_system_then_required_providers(client, publish, admin_token):
    assert publish(name="multi", system="aws", archive=pack_fixture("required_providers")).status_code == 201
    body = client.get("/v1/modules/acme/multi/aws/1.0.0", headers=bearer(admin_token)).get_json()
    assert body["providers"] == ["aws", "random", "cloudflare", "legacy", "mycorp", "tls"]
    assert body["root"]["required_version"] == "< 2.0.0, >= 1.5.0"
    assert body["root"]["provider_dependencies"][0] == {
        "name": "aws", "namespace": "hashicorp", "source": "hashicorp/aws", "version": ">= 5.0, < 6.0"}


def test_unreadable_hcl_publishes_and_the_api_says_where(client, publish, admin_token):
    r = publish(name="broken", archive=pack_fixture("syntax_error"))
    assert r.status_code == 201
    body = client.get("/v1/modules/acme/broken/aws/1.0.0", headers=bearer(admin_token)).get_json()
    assert body["analysis_problems"] == expected("syntax_error")["problems"]
    assert body["analysis_problems"][1]["path"] == "broken.tf" and body["analysis_problems"][1]["line"] == 7
    assert [i["name"] for i in body["root"]["inputs"]] == ["kept"]
    # and it installs like any other version
    download = client.get("/v1/modules/acme/broken/aws/1.0.0/download",
                          headers={**bearer(admin_token), "User-Agent": "Terraform/1.9.8"})
    assert download.status_code == 204 and download.headers["X-Terraform-Get"]


class CountingReads(io.BytesIO):
    """An upload that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_a_publish_reads_the_archive_once_to_check_and_document_it_and_once_to_store_it(registry):
    data = pack_fixture("submodules_examples")
    archive = CountingReads(data)
    with registry.db.session() as session:
        result = svc.publish_module(session, registry.storage, CLI_ACTOR, namespace="acme", name="network",
                                    system="aws", version="1.0.0", archive=archive,
                                    limits=svc.archive_limits(registry.settings))
        assert result.created
    assert archive.bytes_read == 2 * len(data)
    analysis = stored_analysis(registry)
    want = expected("submodules_examples")
    assert analysis["root"]["inputs"] == want["root"]["inputs"] and analysis["submodules"] == want["submodules"]
    assert analysis["problems"] == []


def test_a_large_module_spooled_while_it_arrives_is_checked_documented_and_stored_whole(client, admin_token):
    """Past the in-memory threshold the archive is spooled and hashed as it arrives; the publish takes that
    hash (not a second pass) and the one read that checks the archive also documents it."""
    import hashlib
    import random

    from tfregistry.testing.plugin import build_module_archive
    from tfregistry.uploads import SPOOL_IN_MEMORY_BELOW

    payload = random.Random(7).randbytes(SPOOL_IN_MEMORY_BELOW + 200 * 1024)
    data = build_module_archive("big", {"payload.bin": payload})
    assert len(data) > SPOOL_IN_MEMORY_BELOW
    r = post_module(client, admin_token, name="big", archive=data)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["sha256"] == hashlib.sha256(data).hexdigest()
    body = client.get("/v1/modules/acme/big/aws/1.0.0", headers=bearer(admin_token)).get_json()
    assert [v["name"] for v in body["root"]["inputs"]] == ["name"] and body["root"]["readme"].startswith("# big")
    location = urlsplit(client.get("/v1/modules/acme/big/aws/1.0.0/download",
                                   headers=bearer(admin_token)).headers["X-Terraform-Get"])
    archive = client.get(location.path + "?" + location.query)
    assert archive.status_code == 200 and archive.data == data


def test_an_unexpected_analysis_failure_does_not_stop_a_publish(registry, caplog, monkeypatch):
    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("device went away")

    monkeypatch.setattr(analysis_mod, "_load", fail)
    archive = io.BytesIO(pack_fixture("basic"))
    with caplog.at_level(logging.ERROR, logger="tfregistry.services.modules"), registry.db.session() as session:
        result = svc.publish_module(session, registry.storage, CLI_ACTOR, namespace="acme", name="flaky",
                                    system="aws", version="1.0.0", archive=archive,
                                    limits=svc.archive_limits(registry.settings))
        assert result.created
    analysis = stored_analysis(registry)
    assert analysis["problems"] == [
        {"path": "", "line": None, "column": None, "message": "analysis failed: OSError: device went away"}]
    assert analysis["root"]["inputs"] == [] and analysis["root"]["path"] == ""
    assert "analysis of module acme/flaky/aws/1.0.0 failed" in caplog.text
    assert registry.storage.exists(result.version.storage_key)


@pytest.fixture
def tfr(tmp_path: Path, database_url: str, app: Any):
    """Run ``tfr`` on the ``app`` fixture's data dir and database (``redis=True``: with the test Redis)."""

    def invoke(*args: str, redis: bool = False) -> Any:
        env = {"TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url,
               "TFR_PLUGINS": "tfregistry-storage-local", "TFR_JOBS__SCHEDULER_IN_PROCESS": "false"}
        if redis:
            env["TFR_REDIS_URL"] = REDIS_URL
        return CliRunner(env=env).invoke(cli, list(args), obj=Context(None), catch_exceptions=False)

    return invoke


def forget_analyses(registry: Any) -> None:
    """Make every version look published before analysis existed."""
    with registry.db.session() as session:
        session.execute(sa.update(ModuleVersion).values(analysis=sa.null()))  # SQL NULL, as after migration 0007
        session.commit()


def test_reanalyze_fills_versions_published_before_analysis(tfr, publish, registry, client, admin_token):
    assert publish(name="basic", archive=pack_fixture("basic")).status_code == 201
    assert publish(name="heredocs", archive=pack_fixture("heredocs")).status_code == 201
    forget_analyses(registry)
    assert client.get("/v1/modules/acme/basic/aws/1.0.0", headers=bearer(admin_token)).get_json()["root"][
        "inputs"] == []

    result = tfr("modules", "reanalyze")
    assert result.exit_code == 0, result.output
    assert "2 module version(s) queued for analysis in 1 job(s)" in result.output
    assert "2 module version(s) analysed" in result.output
    with registry.db.session() as session:
        analyses = {mv.module.name: mv.analysis for mv in session.scalars(sa.select(ModuleVersion))}
    assert analyses == {"basic": expected("basic"), "heredocs": expected("heredocs")}
    body = client.get("/v1/modules/acme/basic/aws/1.0.0", headers=bearer(admin_token)).get_json()
    assert [i["name"] for i in body["root"]["inputs"]] == ["name", "versioning", "retention_days"]

    # nothing left without an analysis; --all and an address pick analysed versions again
    assert "0 module version(s) queued" in tfr("modules", "reanalyze").output
    assert "2 module version(s) queued" in tfr("modules", "reanalyze", "--all").output
    assert "1 module version(s) queued" in tfr("modules", "reanalyze", "acme/basic/aws").output
    assert "1 module version(s) analysed" in tfr("modules", "reanalyze", "acme/basic/aws/1.0.0").output


def test_reanalyze_refuses_bad_addresses(tfr, publish):
    assert publish().status_code == 201
    bad = tfr("modules", "reanalyze", "acme/network")
    assert bad.exit_code == 1 and "namespace/name/system[/version]" in bad.output
    missing = tfr("modules", "reanalyze", "acme/network/aws/9.9.9")
    assert missing.exit_code == 1 and "has no version 9.9.9" in missing.output


def test_reanalyze_with_redis_queues_jobs_for_workers(app_factory, redis_db, tmp_path, database_url):
    app = app_factory({"redis_url": REDIS_URL, "jobs.retries": 0})
    registry = app.extensions["tfregistry"]
    client = app.test_client()
    from tests.conftest import new_token

    assert post_module(client, new_token(app, "admin"), archive=pack_fixture("json_syntax")).status_code == 201
    forget_analyses(registry)
    env = {"TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url, "TFR_REDIS_URL": REDIS_URL,
           "TFR_PLUGINS": "tfregistry-storage-local"}
    result = CliRunner(env=env).invoke(cli, ["modules", "reanalyze"], obj=Context(None), catch_exceptions=False)
    assert result.exit_code == 0 and result.output.strip() == "1 module version(s) queued for analysis in 1 job(s)"
    assert stored_analysis(registry) is None  # queued, not run: that is the workers' job
    jobs_mod.run_worker(registry, ["default"], burst=True)
    assert stored_analysis(registry) == expected("json_syntax")


@pytest.fixture
def no_subprocesses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way of starting a program fails (and is recorded)."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            attempts.append(name)
            raise PermissionError(f"{name} is forbidden in this test")

        return fail

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("subprocess.Popen"))
    for name in ("system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve", "execvp",
                 "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
                 "spawnl", "spawnle", "spawnlp", "spawnlpe"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    return attempts


def test_every_fixture_publishes_and_is_documented_without_any_subprocess(client, admin_token, no_subprocesses):
    with pytest.raises(PermissionError):  # the guard is in force
        subprocess.run(["true"], check=False)
    no_subprocesses.clear()
    for name in FIXTURE_NAMES:
        module = name.replace("_", "-")
        r = post_module(client, admin_token, name=module, archive=pack_fixture(name))
        assert r.status_code == 201, (name, r.get_json())
        body = client.get(f"/v1/modules/acme/{module}/aws/1.0.0", headers=bearer(admin_token)).get_json()
        want = expected(name)
        readme = FIXTURES / name / "README.md"
        root = {**want["root"], "name": module, "readme": readme.read_text() if readme.exists() else ""}
        assert body["root"] == root, name
        assert body["submodules"] == want["submodules"] and body["examples"] == want["examples"], name
        assert body["analysis_problems"] == want["problems"], name
    assert no_subprocesses == []
