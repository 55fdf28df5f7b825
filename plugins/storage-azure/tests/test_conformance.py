"""The shared storage contract against Azurite (which, unlike moto, does verify SAS signatures)."""

from __future__ import annotations

import pytest

from tfregistry.testing.conformance import StorageBackendContract


class TestAzureContract(StorageBackendContract):
    @pytest.fixture
    def backend(self, make_storage):
        return make_storage()


class TestAzureContractWithPrefix(StorageBackendContract):
    @pytest.fixture
    def backend(self, make_storage):
        return make_storage(prefix="registry/")
