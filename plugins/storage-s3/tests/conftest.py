"""A moto S3 server (a real HTTP server on 127.0.0.1) for the plugin's tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from tfregistry_storage_s3.backend import S3Options, S3Storage

CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The endpoint URL of a moto server started for this test session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except Exception as exc:
        pytest.fail(f"the moto S3 server did not start: {exc}")
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_client(moto_endpoint: str):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(signature_version="s3v4"))


@pytest.fixture
def bucket(s3_client) -> str:
    name = f"tfr-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def make_storage(moto_endpoint: str, bucket: str) -> Callable[..., S3Storage]:
    def make(**overrides) -> S3Storage:
        options = {"bucket": bucket, "endpoint_url": moto_endpoint, "region": "us-east-1", "path_style": True,
                   "part_size": 5 * 1024 * 1024, **CREDENTIALS, **overrides}
        return S3Storage(S3Options(**options))

    return make
