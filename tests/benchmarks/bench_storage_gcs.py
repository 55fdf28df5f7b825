"""GCS backend: throughput and client memory while streaming 500 MB into gcp-storage-emulator.

Prints figures; never fails on time.
"""

from __future__ import annotations

import hashlib
import io
import resource
import socket
import subprocess
import sys
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


def test_gcs_streams_500mb_with_flat_memory():
    from tfregistry_storage_gcs.backend import GcsOptions, GcsStorage

    port = _free_port()
    # the emulator in its own process, so this process's peak RSS is the client's alone
    emulator = str(Path(sys.executable).parent / "gcp-storage-emulator")
    server = subprocess.Popen([emulator, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                               "--default-bucket", "bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        storage = GcsStorage(GcsOptions(bucket="bench", endpoint=f"http://127.0.0.1:{port}", anonymous=True))
        source = Generated(SIZE)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        stored = storage.put("bench/provider.zip", source)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert stored.size == SIZE and stored.sha256 == source.sha.hexdigest()
        print(f"\n[bench] gcs (emulator): put {SIZE // MiB} MiB in {elapsed:.1f} s = "
              f"{SIZE / MiB / elapsed:.0f} MiB/s; client peak RSS {before:.0f} -> {after:.0f} MiB "
              f"(chunk size {storage.options.chunk_size // MiB} MiB)")
    finally:
        server.terminate()
        server.wait(timeout=20)
