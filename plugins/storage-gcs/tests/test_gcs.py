"""GCS-specific behaviour: resumable uploads with metadata, signed URLs, diagnostics, outages, settings."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import urllib.parse
import urllib.request

import pytest
import tfregistry_storage_gcs.plugin as plugin
from tfregistry_storage_gcs.backend import UPLOAD_PREFIX, GcsOptions, GcsStorage

from tfregistry import StartupError
from tfregistry.interfaces import StorageError


def test_resumable_upload_round_trips_with_sha256_metadata(make_storage):
    storage = make_storage()
    data = os.urandom(3 * 1024 * 1024 + 17)  # several 256 KiB chunks
    stored = storage.put("providers/big.zip", io.BytesIO(data), content_type="application/zip")
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    blob = storage.bucket.get_blob("providers/big.zip")
    assert blob.metadata["sha256"] == stored.sha256 and blob.content_type == "application/zip"
    with storage.open("providers/big.zip") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == stored.sha256
    assert [b.name for b in storage.client.list_blobs(storage.bucket, prefix=UPLOAD_PREFIX)] == []


def test_small_object_carries_metadata(make_storage):
    storage = make_storage()
    stored = storage.put("m.tar.gz", io.BytesIO(b"small"))
    assert storage.bucket.get_blob("m.tar.gz").metadata["sha256"] == stored.sha256


def test_signed_url_with_a_service_account_key(make_storage, service_account_json):
    storage = make_storage(credentials_json=service_account_json, project="tfregistry-test")
    assert storage.supports_presigned_urls
    storage.put("modules/x/1.0.0/m.tar.gz", io.BytesIO(b"archive"))
    url = storage.presigned_url("modules/x/1.0.0/m.tar.gz", expires_in=60, filename="x-1.0.0.tar.gz")
    parts = urllib.parse.urlsplit(url)
    assert "X-Goog-Signature" in parts.query and parts.path.endswith(".tar.gz")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"archive"


def test_without_a_signing_credential_the_core_serves_downloads(make_storage):
    storage = make_storage()
    assert not storage.supports_presigned_urls
    storage.put("a.zip", io.BytesIO(b"x"))
    assert storage.presigned_url("a.zip", expires_in=60) is None


def test_check_names_a_missing_bucket(make_storage):
    assert make_storage(bucket="tfr-missing-bucket").check() == [
        "gcs: bucket 'tfr-missing-bucket' does not exist (setting storage.gcs.bucket)"]
    assert make_storage().check() == []


def test_outage_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = GcsStorage(GcsOptions(bucket="b", endpoint=f"http://127.0.0.1:{port}", anonymous=True, timeout=2))
    start = time.monotonic()
    with pytest.raises(StorageError, match="gcs: cannot store 'k' in bucket 'b'"):
        storage.put("k", io.BytesIO(b"x"))
    assert time.monotonic() - start < 15  # a bound, not a benchmark: it must not hang
    assert "cannot reach" in storage.check()[0]


def test_plugin_registers_and_validates_settings(gcs_endpoint, bucket):
    registered = {}

    class Register:
        def add(self, name, factory, description=""):
            registered[name] = factory

    plugin.tfr_register_storage_backends(Register())
    values = {f"storage.gcs.{name}": default for name, _t, default, _s, _h in plugin.SETTINGS}
    with pytest.raises(StartupError, match=r"storage.gcs.bucket \(TFR_STORAGE__GCS__BUCKET\) is required"):
        registered["gcs"](values)
    with pytest.raises(StartupError, match="multiple of 256 KiB"):
        registered["gcs"]({**values, "storage.gcs.bucket": "b", "storage.gcs.chunk_size": 1000})
    storage = registered["gcs"]({**values, "storage.gcs.bucket": bucket, "storage.gcs.endpoint": gcs_endpoint,
                                 "storage.gcs.anonymous": True})
    assert storage.check() == []
