"""The shared storage contract against Azurite (which, unlike moto, verifies SAS signatures and expiry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tfregistry.testing.conformance import StorageBackendContract


class TestAzureContract(StorageBackendContract):
    """A fresh container per test, authenticated with Azurite's account-key connection string."""

    @pytest.fixture
    def backend(self, make_storage: Callable[..., Any]) -> Any:
        return make_storage()


class TestAzureContractWithPrefixAndBlocks(StorageBackendContract):
    """A key prefix, and blocks small enough that the 1 MiB+ round trips are staged uploads."""

    @pytest.fixture
    def backend(self, make_storage: Callable[..., Any]) -> Any:
        return make_storage(prefix="registry/", block_size=64 * 1024, upload_concurrency=3)
