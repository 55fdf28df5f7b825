"""The shared storage contract against gcp-storage-emulator.

The emulator does not verify V4 signatures, so the signed-URL variant proves the URL
works without credentials and keeps the key's extension, not that GCS would reject a
tampered one.
"""

from __future__ import annotations

import pytest

from tfregistry.testing.conformance import StorageBackendContract


class TestGcsAnonymousContract(StorageBackendContract):
    """No signing credential: downloads go through the core's own signed route."""

    @pytest.fixture
    def backend(self, make_storage):
        return make_storage()


class TestGcsSignedUrlContract(StorageBackendContract):
    """A service-account key: V4 signed URLs, plus a name prefix."""

    @pytest.fixture
    def backend(self, make_storage, service_account_json):
        return make_storage(credentials_json=service_account_json, project="tfregistry-test", prefix="registry/")
