"""Azurite (the Azure Storage emulator, from npm) as a real server on 127.0.0.1 for the plugin's tests.

The fixture uses ``azurite-blob`` from PATH or from ``<repo>/.cache/azurite``, and installs
it there with npm when it is missing; without node and npm the tests fail with a message.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tfregistry_storage_azure.backend import AzureOptions, AzureStorage

AZURITE_VERSION = "3.35.0"
CACHE = Path(__file__).resolve().parents[3] / ".cache" / "azurite"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary() -> str:
    found = shutil.which("azurite-blob") or (CACHE / "node_modules" / ".bin" / "azurite-blob")
    if Path(found).exists():
        return str(found)
    if not shutil.which("npm"):
        pytest.fail("Azurite is needed for the Azure tests and npm is not installed (apt-get install nodejs npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE),
                             f"azurite@{AZURITE_VERSION}"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"npm install azurite@{AZURITE_VERSION} failed:\n{result.stderr[-2000:]}")
    return str(CACHE / "node_modules" / ".bin" / "azurite-blob")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection_string(port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")


@contextlib.contextmanager
def running_azurite() -> Iterator[int]:
    """Start Azurite (in memory, no telemetry) and yield its port."""
    port = _free_port()
    proc = subprocess.Popen([azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                             "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"Azurite exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("Azurite did not start within 30 s")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def azurite_port() -> Iterator[int]:
    with running_azurite() as port:
        yield port


@pytest.fixture
def make_connection_string(azurite_port: int) -> Callable[[str], str]:
    """``make_connection_string(key)``: Azurite's connection string with any account key (KEY is the right one)."""
    return lambda key=KEY: (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
                            f"BlobEndpoint=http://127.0.0.1:{azurite_port}/{ACCOUNT};")


@pytest.fixture
def container(azurite_port: int) -> str:
    from azure.storage.blob import BlobServiceClient

    name = f"tfr-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(connection_string(azurite_port)).create_container(name)
    return name


@pytest.fixture
def make_storage(azurite_port: int, container: str) -> Callable[..., AzureStorage]:
    def make(**overrides) -> AzureStorage:
        options = {"container": container, "connection_string": connection_string(azurite_port),
                   "block_size": 1024 * 1024, **overrides}
        return AzureStorage(AzureOptions(**options))

    return make
