"""A gcp-storage-emulator server (a real HTTP server on 127.0.0.1) for the plugin's tests."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tfregistry_storage_gcs.backend import GcsOptions, GcsStorage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    try:
        server.start()
    except Exception as exc:
        pytest.fail(f"the GCS emulator did not start: {exc}")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def service_account_json() -> str:
    """A throw-away service-account key: enough to sign V4 URLs locally (the emulator does not check them)."""
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "tfregistry-test", "private_key_id": "k1",
                       "private_key": pem, "client_email": "registry@tfregistry-test.iam.gserviceaccount.com",
                       "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"})


@pytest.fixture
def bucket(gcs_endpoint: str) -> str:
    name = f"tfr-{uuid.uuid4().hex[:12]}"
    admin = GcsStorage(GcsOptions(bucket=name, endpoint=gcs_endpoint, anonymous=True))
    admin.client.create_bucket(name)
    return name


@pytest.fixture
def make_storage(gcs_endpoint: str, bucket: str) -> Callable[..., GcsStorage]:
    def make(**overrides) -> GcsStorage:
        options = {"bucket": bucket, "endpoint": gcs_endpoint, "anonymous": True, "chunk_size": 256 * 1024,
                   "read_timeout": 10, **overrides}
        return GcsStorage(GcsOptions(**options))

    return make
