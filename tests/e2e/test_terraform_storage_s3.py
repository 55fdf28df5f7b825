"""Terraform installs a module and a provider whose bytes live in S3 (a moto server), via presigned URLs."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest

from tests.e2e.conftest import RegistryServer, Terraform, running_server, unique
from tests.providers_kit import build_release
from tfregistry.testing.plugin import build_module_archive

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def s3_server(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    bucket = f"tfr-e2e-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    env = {
        "TFR_STORAGE__BACKEND": "s3",
        "TFR_STORAGE__S3__BUCKET": bucket,
        "TFR_STORAGE__S3__ENDPOINT_URL": moto_endpoint,
        "TFR_STORAGE__S3__REGION": "us-east-1",
        "TFR_STORAGE__S3__PATH_STYLE": "true",
        "TFR_STORAGE__S3__ACCESS_KEY_ID": "testing",
        "TFR_STORAGE__S3__SECRET_ACCESS_KEY": "testing",
        "TFR_STORAGE__S3__PREFIX": "registry/",
    }
    with running_server("sqlite", tmp_path_factory.mktemp("s3-server"), env) as srv:
        yield srv


def test_module_and_provider_install_from_s3_presigned_urls(
    s3_server: RegistryServer, moto_endpoint: str, tmp_path: Path
) -> None:
    server = s3_server
    terraform = Terraform(server, tmp_path)
    ns = unique("s3")
    archive = build_module_archive(files={"main.tf": 'output "where" { value = "from s3" }\n'})
    assert server.publish(ns, "net", "aws", "1.0.0", archive) == 201
    server.cli("gpg", "create-key", "--namespace", ns)
    release = build_release(tmp_path / "dist", "foo", "1.0.0", platforms=("linux_amd64",))
    env = {**server.env, "SSL_CERT_FILE": str(server.bundle)}
    published = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfregistry",
            "publish",
            "provider",
            str(release.dist),
            "--namespace",
            ns,
            "--url",
            server.url,
            "--token",
            server.admin_token,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert published.returncode == 0, published.stdout + published.stderr

    location = server.get(
        f"/v1/modules/{ns}/net/aws/1.0.0/download", token=server.admin_token, headers={"User-Agent": "Terraform/1.15.5"}
    ).headers["x-terraform-get"]
    assert location.startswith(moto_endpoint) and "X-Amz-Signature=" in location
    assert urlsplit(location).path.endswith(".tar.gz")
    package = json.loads(
        server.get(f"/v1/providers/{ns}/foo/1.0.0/download/linux/amd64", token=server.admin_token).body
    )
    assert package["download_url"].startswith(moto_endpoint) and urlsplit(package["download_url"]).path.endswith(".zip")

    config = (
        f'module "m" {{\n  source  = "{server.host}/{ns}/net/aws"\n  version = "1.0.0"\n}}\n'
        f'output "where" {{ value = module.m.where }}\n'
        f'terraform {{\n  required_providers {{\n    foo = {{ source = "{server.host}/{ns}/foo" }}\n  }}\n}}\n'
    )
    work = terraform.workdir(config)
    result = terraform.init(work, token=server.admin_token)
    assert result.rc == 0, str(result)
    assert f"Installed {server.host}/{ns}/foo v1.0.0 (self-signed" in result.stdout, str(result)
    assert (work / ".terraform" / "modules" / "m" / "main.tf").read_text().startswith('output "where"')
    assert not [line for line in server.request_log() if "/v1/files/" in line], "bytes must come from S3"
