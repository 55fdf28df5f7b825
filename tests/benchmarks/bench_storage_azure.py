"""Azure backend: throughput and client memory while streaming 500 MB into Azurite.

Prints figures; never fails on time.
"""

from __future__ import annotations

import hashlib
import io
import resource
import socket
import time
from pathlib import Path

MiB = 1024 * 1024
SIZE = 500 * MiB


class Generated(io.RawIOBase):
    """500 MB of deterministic bytes produced on the fly, never held in memory."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = hashlib.sha256(b"seed").digest() * (MiB // 32)
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = (self.block * (n // len(self.block) + 1))[:n]
        self.left -= n
        self.sha.update(out)
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_azure_streams_500mb_with_flat_memory():
    import importlib.util

    from azure.storage.blob import BlobServiceClient
    from tfregistry_storage_azure.backend import AzureOptions, AzureStorage

    spec = importlib.util.spec_from_file_location(
        "azurite_kit", Path(__file__).resolve().parents[2] / "plugins" / "storage-azure" / "tests" / "conftest.py")
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    with kit.running_azurite() as port:  # Azurite runs in its own (node) process
        connection = (f"DefaultEndpointsProtocol=http;AccountName={kit.ACCOUNT};AccountKey={kit.KEY};"
                      f"BlobEndpoint=http://127.0.0.1:{port}/{kit.ACCOUNT};")
        BlobServiceClient.from_connection_string(connection).create_container("bench")
        storage = AzureStorage(AzureOptions(container="bench", connection_string=connection))
        source = Generated(SIZE)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        stored = storage.put("bench/provider.zip", source)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert stored.size == SIZE and stored.sha256 == source.sha.hexdigest()
        print(f"\n[bench] azure (Azurite): put {SIZE // MiB} MiB in {elapsed:.1f} s = "
              f"{SIZE / MiB / elapsed:.0f} MiB/s; client peak RSS {before:.0f} -> {after:.0f} MiB "
              f"(block size {storage.options.block_size // MiB} MiB)")
