"""Azure backend: throughput and client memory streaming 500 MB into Azurite. Prints only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.benchmarks._streaming import MiB, measure_put


def test_azure_streams_500mb_with_flat_memory():
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
        measure_put(storage, "azure (Azurite)", f"block size {storage.options.block_size // MiB} MiB")
