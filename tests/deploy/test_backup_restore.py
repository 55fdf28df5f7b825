"""The backup and restore procedure of docs/deployment.md, on PostgreSQL and S3 (moto server): publish a
module and a provider, install them with the real Terraform CLI, back up (``pg_dump`` plus a copy of every
object in the bucket), restore into a fresh database and a fresh bucket on another S3 endpoint, start a new
server on them, and install the same things again with Terraform."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import create_postgres_database
from tests.e2e.conftest import STARTUP_TIMEOUT, RegistryServer, Terraform, _free_port, clean_environ, unique
from tests.e2e.test_terraform_cloud_storage import s3_backend
from tests.providers_kit import build_release
from tfregistry.testing.plugin import build_module_archive

pytestmark = pytest.mark.e2e

#: Kept with the backup like the configuration: it derives the key that encrypts the provider signing keys.
SECRET_KEY = "backup-restore-test-secret-key-0123456789"


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as a libpq connection string for pg_dump/pg_restore."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _s3(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _start(root: Path, env: dict[str, str]) -> RegistryServer:
    root.mkdir(parents=True, exist_ok=True)
    server = RegistryServer(database="postgresql", port=_free_port(), data_dir=root / "data", env=env,
                            log_out=root / "server.out", log_err=root / "server.err")
    server.start()
    if not server.wait_until_ready():
        server.stop()
        pytest.fail(f"the registry did not come up within {STARTUP_TIMEOUT:.0f} s\n{server.output()}")
    return server


def _install(server: RegistryServer, tmp_path: Path, ns: str, token: str, name: str) -> Path:
    config = (
        f'module "m" {{\n  source  = "{server.host}/{ns}/net/aws"\n  version = "1.0.0"\n}}\n'
        f'terraform {{\n  required_providers {{\n    foo = {{ source = "{server.host}/{ns}/foo" }}\n  }}\n}}\n'
    )
    terraform = Terraform(server, tmp_path / name)
    work = terraform.workdir(config)
    result = terraform.init(work, token=token)
    assert result.rc == 0, str(result)
    assert f"Installed {server.host}/{ns}/foo v1.0.0" in result.stdout, str(result)
    assert (work / ".terraform" / "modules" / "m" / "main.tf").read_text() == 'output "x" { value = 1 }\n'
    return work


def test_backup_and_restore_into_a_fresh_database_and_bucket(tmp_path: Path) -> None:
    ns = unique("backup")
    source_url, drop_source = create_postgres_database("tfr_backup")
    target_url, drop_target = create_postgres_database("tfr_restore")
    try:
        with s3_backend() as (source_env, source_endpoint), s3_backend() as (target_env, target_endpoint):
            base = {**clean_environ(), "PYTHONUNBUFFERED": "1", "TFR_SECRET_KEY": SECRET_KEY}
            # --- the running site
            env = {**base, **source_env, "TFR_DATABASE_URL": source_url, "TFR_DATA_DIR": str(tmp_path / "a" / "data")}
            server = _start(tmp_path / "a", env)
            try:
                token = server.read_admin_token()
                server.admin_token = token
                archive = build_module_archive(files={"main.tf": 'output "x" { value = 1 }\n'})
                assert server.publish(ns, "net", "aws", "1.0.0", archive) == 201
                server.cli("gpg", "create-key", "--namespace", ns)
                release = build_release(tmp_path / "dist", "foo", "1.0.0", platforms=("linux_amd64",))
                server.publish_provider(release.dist, ns)
                _install(server, tmp_path, ns, token, "before")

                # --- backup: the database first, then every object of the bucket
                dump = tmp_path / "registry.dump"
                subprocess.run(["pg_dump", "--format=custom", "--file", str(dump), _libpq(source_url)],
                               check=True, capture_output=True, timeout=120)
                copy = tmp_path / "objects"
                source_bucket = source_env["TFR_STORAGE__S3__BUCKET"]
                s3 = _s3(source_endpoint)
                keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source_bucket)
                        for o in page.get("Contents", [])]
                assert keys, "the site stored nothing in its bucket"
                for key in keys:
                    (copy / key).parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(source_bucket, key, str(copy / key))
            finally:
                server.stop()

            # --- restore into an empty database and an empty bucket elsewhere
            restored = subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname",
                                       _libpq(target_url), str(dump)], capture_output=True, text=True, timeout=120)
            assert restored.returncode == 0, restored.stderr
            target_bucket = target_env["TFR_STORAGE__S3__BUCKET"]
            s3 = _s3(target_endpoint)
            for path in copy.rglob("*"):
                if path.is_file():
                    s3.upload_file(str(path), target_bucket, os.fspath(path.relative_to(copy)))

            env = {**base, **target_env, "TFR_DATABASE_URL": target_url, "TFR_DATA_DIR": str(tmp_path / "b" / "data")}
            server = _start(tmp_path / "b", env)
            try:
                assert "created an admin token" not in server.log_out.read_text(), "the restored site looked empty"
                work = _install(server, tmp_path, ns, token, "after")  # the old token still works
                assert not [line for line in server.request_log() if "/v1/files/" in line]
                assert (work / ".terraform.lock.hcl").exists()
            finally:
                server.stop()
    finally:
        drop_source()
        drop_target()
