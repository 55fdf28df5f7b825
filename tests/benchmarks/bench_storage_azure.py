"""Azure backend: throughput and client memory streaming 500 MB into Azurite. Prints only, never fails on time.

Run with ``pytest -s -o python_files='bench_*.py' tests/benchmarks/bench_storage_azure.py``.
Azurite comes from ``<repo>/.cache/azurite`` (installed there with npm when missing).
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks._streaming import SIZE, Generated, MiB, measure_put

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "azurite"


def test_azure_streams_500mb_with_flat_memory():
    from azure.storage.blob import BlobServiceClient
    from tfregistry_storage_azure.backend import AzureBlobStorage
    from tfregistry_storage_azure.config import AzureConfig
    from tfregistry_storage_azure.testing import connection_string, running_azurite

    with running_azurite(CACHE) as port:  # Azurite runs in its own (node) process, in memory
        connection = connection_string(port)
        admin = BlobServiceClient.from_connection_string(connection)
        admin.create_container("bench")
        # The production defaults: 4 MiB blocks, 4 in flight.
        config = AzureConfig(container="bench", auth="connection_string", connection_string=connection)
        storage = AzureBlobStorage.from_config(config)
        try:
            measure_put(
                storage,
                "azure (Azurite)",
                f"block size {storage.block_size // MiB} MiB, {storage.upload_concurrency} blocks in flight",
            )
            expected = Generated(SIZE)  # the same bytes again, for the SHA-256 the blob's metadata must hold
            while expected.read(8 * MiB):
                pass
            properties = admin.get_blob_client("bench", "bench/provider.zip").get_blob_properties()
            assert properties.size == SIZE
            assert properties.metadata["sha256"] == expected.sha.hexdigest()
        finally:
            storage.close()
            admin.close()
