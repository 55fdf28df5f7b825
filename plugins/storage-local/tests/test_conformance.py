"""The shared storage contract, run against a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfregistry.testing.conformance import StorageBackendContract
from tfregistry_storage_local.backend import LocalStorage


class TestLocalStorageContract(StorageBackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalStorage:
        return LocalStorage(tmp_path / "storage")
