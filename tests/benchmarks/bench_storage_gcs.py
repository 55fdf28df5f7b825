"""GCS backend: throughput and client memory streaming 500 MB into gcp-storage-emulator. Prints only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.benchmarks._streaming import MiB, free_port, measure_put, wait_for_port


def test_gcs_streams_500mb_with_flat_memory():
    from tfregistry_storage_gcs.backend import GcsOptions, GcsStorage

    port = free_port()
    # the emulator in its own process, so this process's peak RSS is the client's alone
    emulator = str(Path(sys.executable).parent / "gcp-storage-emulator")
    server = subprocess.Popen([emulator, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                               "--default-bucket", "bench"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        storage = GcsStorage(GcsOptions(bucket="bench", endpoint=f"http://127.0.0.1:{port}", anonymous=True))
        measure_put(storage, "gcs (emulator)", f"chunk size {storage.options.chunk_size // MiB} MiB")
    finally:
        server.terminate()
        server.wait(timeout=20)
