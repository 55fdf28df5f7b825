"""S3 backend: throughput and client memory while streaming 500 MB into a moto server.

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
import uuid
from pathlib import Path

import boto3

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


def test_s3_streams_500mb_with_flat_memory():
    from tfregistry_storage_s3.backend import S3Options, S3Storage

    port = _free_port()
    # moto in its own process, so this process's peak RSS is the client's alone
    moto = str(Path(sys.executable).parent / "moto_server")
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                     aws_secret_access_key="y").create_bucket(Bucket=bucket)
        storage = S3Storage(S3Options(bucket=bucket, endpoint_url=endpoint, region="us-east-1", path_style=True,
                                      access_key_id="x", secret_access_key="y"))
        source = Generated(SIZE)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        stored = storage.put("bench/provider.zip", source)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert stored.size == SIZE and stored.sha256 == source.sha.hexdigest()
        print(f"\n[bench] s3 (moto server): put {SIZE // MiB} MiB in {elapsed:.1f} s = "
              f"{SIZE / MiB / elapsed:.0f} MiB/s; client peak RSS {before:.0f} -> {after:.0f} MiB "
              f"(part size {storage.options.part_size // MiB} MiB)")
    finally:
        server.terminate()
        server.wait(timeout=20)
