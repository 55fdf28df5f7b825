"""Fixtures: Azurite (from ``tfregistry_storage_azure.testing``) and backends on fresh containers.

Azurite is installed on first use into ``<repo>/.cache/azurite`` (git-ignored) with npm.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tfregistry_storage_azure import testing as kit
from tfregistry_storage_azure.testing import ACCOUNT, KEY, connection_string, make_self_signed_cert

__all__ = ["ACCOUNT", "CACHE", "KEY", "running_azurite"]

CACHE = Path(__file__).resolve().parents[3] / ".cache" / "azurite"


def running_azurite(**options: Any) -> contextlib.AbstractContextManager[int]:
    """Start Azurite from the repo's cache (see ``tfregistry_storage_azure.testing.running_azurite``).

    Other test suites load this file for it (the e2e tests): keep the name and ``ACCOUNT``/``KEY``.
    """
    return kit.running_azurite(CACHE, **options)



@pytest.fixture(scope="session")
def azurite_cache() -> Path:
    """Where Azurite is installed (npm ``--prefix``)."""
    return CACHE


@pytest.fixture(scope="session")
def azurite() -> Iterator[int]:
    """Port of an Azurite blob service (HTTP, account key and SAS) for the whole session."""
    with running_azurite() as port:
        yield port


@pytest.fixture(scope="session")
def azurite_https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """``(port, CA file)`` of an HTTPS Azurite that also accepts bearer tokens (``--oauth basic``)."""
    cert, key = make_self_signed_cert(tmp_path_factory.mktemp("azurite-tls"))
    with running_azurite(cert=cert, key=key, oauth=True) as port:
        yield port, cert


@pytest.fixture
def service(azurite: int) -> Iterator[Any]:
    """A plain SDK client on Azurite, to arrange and inspect what the backend did."""
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(connection_string(azurite))
    yield client
    client.close()


@pytest.fixture
def container(service: Any) -> str:
    """A fresh, empty container."""
    name = f"tfr-{uuid.uuid4().hex[:16]}"
    service.create_container(name)
    return name


@pytest.fixture
def make_storage(azurite: int, container: str) -> Iterator[Callable[..., Any]]:
    """``make_storage(**config)``: an ``AzureBlobStorage`` on the fresh container, by connection string.

    Keyword arguments override :class:`AzureConfig` fields; small blocks keep the tests quick.
    """
    from tfregistry_storage_azure.backend import AzureBlobStorage
    from tfregistry_storage_azure.config import AzureConfig

    made: list[Any] = []

    def make(*, credential: Any = None, client_options: dict[str, Any] | None = None, **fields: Any) -> Any:
        values: dict[str, Any] = {
            "container": container,
            "auth": "connection_string",
            "connection_string": connection_string(azurite),
            "block_size": 256 * 1024,
            "retries": 1,
            **fields,
        }
        backend = AzureBlobStorage.from_config(AzureConfig(**values), credential=credential, **(client_options or {}))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
