"""`tfr storage migrate --to s3`: copy, verify, switch; safe to re-run after an interruption."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
import tfregistry_storage_s3.plugin as s3_plugin
from click.testing import CliRunner
from tfregistry_storage_s3.backend import S3Options, S3Storage

from tests.conftest import bearer, new_token, post_module
from tfregistry.cli import Context, cli
from tfregistry.models import AuditEntry


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(moto_endpoint: str) -> dict[str, str]:
    bucket = f"tfr-migrate-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="t",
                 aws_secret_access_key="t").create_bucket(Bucket=bucket)
    return {"storage.s3.bucket": bucket, "storage.s3.endpoint_url": moto_endpoint, "storage.s3.region": "us-east-1",
            "storage.s3.path_style": True, "storage.s3.access_key_id": "t", "storage.s3.secret_access_key": "t"}


def env_of(settings: dict[str, Any]) -> dict[str, str]:
    return {"TFR_" + key.upper().replace(".", "__"): str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in settings.items()}


def test_migrate_local_to_s3_then_serve_from_s3(app_factory, s3_settings, tmp_path, database_url, monkeypatch):
    base = {**s3_settings}
    app = app_factory(base, plugins=(s3_plugin,))
    client, token = app.test_client(), new_token(app, "admin")
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        assert post_module(client, token, version=version, archive=None,
                           description=version).status_code == 201
    local_keys = sorted(info.key for info in app.extensions["tfregistry"].storage.list("modules/"))
    assert len(local_keys) == 3

    env = {"TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url,
           "TFR_PLUGINS": "tfregistry-storage-local,tfregistry-storage-s3", **env_of(s3_settings)}
    runner = CliRunner(env=env)

    # an interruption half-way: the second object fails to upload, nothing is switched
    real_put = S3Storage.put
    calls = {"n": 0}

    def flaky_put(self, key, fileobj, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # 1: the target's check() probe, 2: the first object, 3: the second
            raise OSError("network dropped")
        return real_put(self, key, fileobj, **kwargs)

    monkeypatch.setattr(S3Storage, "put", flaky_put)
    with pytest.raises(OSError):
        runner.invoke(cli, ["storage", "migrate", "--to", "s3"], obj=Context(None), catch_exceptions=False)
    monkeypatch.undo()
    assert app_factory(base, plugins=(s3_plugin,)).extensions["tfregistry"].storage.name == "local"

    result = runner.invoke(cli, ["storage", "migrate", "--to", "s3"], obj=Context(None), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 already there" in result.output and "the active storage backend is now 's3'" in result.output
    again = runner.invoke(cli, ["storage", "migrate", "--to", "s3"], obj=Context(None))
    assert again.exit_code == 1 and "already the active storage backend" in again.output

    target = S3Storage(S3Options(bucket=s3_settings["storage.s3.bucket"], region="us-east-1", path_style=True,
                                 endpoint_url=s3_settings["storage.s3.endpoint_url"], access_key_id="t",
                                 secret_access_key="t"))
    s3_keys = sorted(info.key for info in target.list("modules/"))
    assert s3_keys == local_keys

    migrated = app_factory(base, plugins=(s3_plugin,))
    assert migrated.extensions["tfregistry"].storage.name == "s3"
    location = migrated.test_client().get("/v1/modules/acme/network/aws/1.1.0/download",
                                          headers=bearer(token)).headers["X-Terraform-Get"]
    assert location.startswith(s3_settings["storage.s3.endpoint_url"])
    with migrated.extensions["tfregistry"].db.session() as session:
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "storage.migrate")).one()
    assert entry.details["copied"] == len(local_keys) - 1 and entry.details["skipped"] == 1
