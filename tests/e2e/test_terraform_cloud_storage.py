"""Terraform installs a module and a provider from S3 (moto), GCS (emulator) and Azure (Azurite) signed URLs."""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest

from tests.e2e.conftest import Terraform, running_server, unique
from tests.providers_kit import build_release
from tfregistry.testing.plugin import build_module_archive

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_backend() -> Iterator[tuple[dict[str, str], str]]:
    """A moto server with a bucket: the registry's settings and the endpoint downloads must come from."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"tfr-e2e-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    try:
        yield (
            {
                "TFR_STORAGE__BACKEND": "s3",
                "TFR_STORAGE__S3__BUCKET": bucket,
                "TFR_STORAGE__S3__ENDPOINT_URL": endpoint,
                "TFR_STORAGE__S3__REGION": "us-east-1",
                "TFR_STORAGE__S3__PATH_STYLE": "true",
                "TFR_STORAGE__S3__ACCESS_KEY_ID": "testing",
                "TFR_STORAGE__S3__SECRET_ACCESS_KEY": "testing",
                "TFR_STORAGE__S3__PREFIX": "registry/",
            },
            endpoint,
        )
    finally:
        server.stop()


@contextlib.contextmanager
def gcs_backend() -> Iterator[tuple[dict[str, str], str]]:
    """gcp-storage-emulator with a bucket, and a throw-away service-account key that signs V4 URLs."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="registry")
    server.start()
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    key = {
        "type": "service_account",
        "project_id": "e2e",
        "private_key_id": "k",
        "private_key": pem,
        "client_email": "registry@e2e.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    endpoint = f"http://127.0.0.1:{port}"
    try:
        yield (
            {
                "TFR_STORAGE__BACKEND": "gcs",
                "TFR_STORAGE__GCS__BUCKET": "registry",
                "TFR_STORAGE__GCS__ENDPOINT": endpoint,
                "TFR_STORAGE__GCS__ANONYMOUS": "true",
                "TFR_STORAGE__GCS__PROJECT": "e2e",
                "TFR_STORAGE__GCS__CREDENTIALS_JSON": json.dumps(key),
            },
            endpoint,
        )
    finally:
        server.stop()


@contextlib.contextmanager
def azure_backend() -> Iterator[tuple[dict[str, str], str]]:
    """Azurite (from npm, see plugins/storage-azure/tests/conftest.py) with a container."""
    import importlib.util

    from azure.storage.blob import BlobServiceClient

    spec = importlib.util.spec_from_file_location(
        "azurite_kit", Path(__file__).resolve().parents[2] / "plugins" / "storage-azure" / "tests" / "conftest.py"
    )
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    with kit.running_azurite() as port:
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={kit.ACCOUNT};AccountKey={kit.KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{kit.ACCOUNT};"
        )
        BlobServiceClient.from_connection_string(connection).create_container("registry")
        yield (
            {
                "TFR_STORAGE__BACKEND": "azure",
                "TFR_STORAGE__AZURE__CONTAINER": "registry",
                "TFR_STORAGE__AZURE__CONNECTION_STRING": connection,
            },
            f"http://127.0.0.1:{port}/",
        )


BACKENDS = {"s3": s3_backend, "gcs": gcs_backend, "azure": azure_backend}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def cloud_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A registry server whose storage is the backend's emulator, and the endpoint bytes must come from."""
    root = tmp_path_factory.mktemp(f"{request.param}-server")
    with BACKENDS[request.param]() as (env, endpoint), running_server("sqlite", root, env) as srv:
        yield srv, endpoint


def test_module_and_provider_install_from_presigned_urls(cloud_server, tmp_path: Path) -> None:
    server, endpoint = cloud_server
    terraform = Terraform(server, tmp_path)
    ns = unique("cloud")
    archive = build_module_archive(files={"main.tf": 'output "where" { value = "from s3" }\n'})
    assert server.publish(ns, "net", "aws", "1.0.0", archive) == 201
    server.cli("gpg", "create-key", "--namespace", ns)
    release = build_release(tmp_path / "dist", "foo", "1.0.0", platforms=("linux_amd64",))
    server.publish_provider(release.dist, ns)

    location = server.get(
        f"/v1/modules/{ns}/net/aws/1.0.0/download", token=server.admin_token, headers={"User-Agent": "Terraform/1.15.5"}
    ).headers["x-terraform-get"]
    assert location.startswith(endpoint) and any(
        mark in location for mark in ("X-Amz-Signature=", "X-Goog-Signature=", "sig=")
    )
    assert urlsplit(location).path.endswith(".tar.gz")
    package = json.loads(
        server.get(f"/v1/providers/{ns}/foo/1.0.0/download/linux/amd64", token=server.admin_token).body
    )
    assert package["download_url"].startswith(endpoint) and urlsplit(package["download_url"]).path.endswith(".zip")

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
    assert not [line for line in server.request_log() if "/v1/files/" in line], "bytes must come from the bucket"
