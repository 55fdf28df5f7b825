"""The shared storage contract against a moto S3 server.

moto does not verify request signatures, so the presigned-URL case proves that the
URL works without credentials and keeps the key's extension, not that S3 would
reject a tampered one.
"""

from __future__ import annotations

import pytest

from tfregistry.testing.conformance import StorageBackendContract


class TestS3Contract(StorageBackendContract):
    @pytest.fixture
    def backend(self, make_storage):
        return make_storage()


class TestS3ContractWithPrefix(StorageBackendContract):
    @pytest.fixture
    def backend(self, make_storage):
        return make_storage(prefix="registry/")
