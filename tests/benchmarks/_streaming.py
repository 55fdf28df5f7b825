"""Shared pieces of the storage benchmarks: generated data, a port wait, and the measurement itself."""

from __future__ import annotations

import hashlib
import io
import resource
import socket
import time
from typing import Any

MiB = 1024 * 1024
SIZE = 500 * MiB


class Generated(io.RawIOBase):
    """``size`` bytes of deterministic data produced on the fly, never held in memory."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def peak_rss_mib(reset: bool = False) -> float:
    """This process's peak RSS; ``reset`` first clears the high-water mark (Linux), so runs don't mask each other."""
    if reset:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_put(storage: Any, label: str, detail: str) -> None:
    """Stream SIZE bytes into ``storage``, check size and SHA-256, print MiB/s and client peak RSS."""
    source = Generated(SIZE)
    before = peak_rss_mib(reset=True)
    start = time.perf_counter()
    stored = storage.put("bench/provider.zip", source)
    elapsed = time.perf_counter() - start
    after = peak_rss_mib()
    assert stored.size == SIZE and stored.sha256 == source.sha.hexdigest()
    print(f"\n[bench] {label}: put {SIZE // MiB} MiB in {elapsed:.1f} s = {SIZE / MiB / elapsed:.0f} MiB/s; "
          f"client peak RSS {before:.0f} -> {after:.0f} MiB ({detail})")
