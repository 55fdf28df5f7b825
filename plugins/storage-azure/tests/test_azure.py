"""Azure-specific behaviour: staged uploads, SAS enforcement by Azurite, diagnostics, outages, settings."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import tfregistry_storage_azure.plugin as plugin
from tfregistry_storage_azure.backend import UPLOAD_PREFIX, AzureOptions, AzureStorage

from tfregistry import StartupError
from tfregistry.interfaces import StorageError


def test_large_upload_is_staged_then_copied_with_metadata(make_storage):
    storage = make_storage()
    data = os.urandom(3 * 1024 * 1024 + 11)
    stored = storage.put("providers/big.zip", io.BytesIO(data), content_type="application/zip")
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    props = storage.container.get_blob_client("providers/big.zip").get_blob_properties()
    assert props.metadata["sha256"] == stored.sha256 and props.size == len(data)
    assert list(storage.container.list_blobs(name_starts_with=UPLOAD_PREFIX)) == []


def test_sas_urls_are_enforced_by_azurite(make_storage):
    storage = make_storage()
    storage.put("modules/m.tar.gz", io.BytesIO(b"archive"))
    url = storage.presigned_url("modules/m.tar.gz", expires_in=60, filename="m-1.0.0.tar.gz")
    assert urllib.parse.urlsplit(url).path.endswith(".tar.gz")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"archive"
        assert 'filename="m-1.0.0.tar.gz"' in response.headers["Content-Disposition"]
    tampered = url.replace("sp=r", "sp=rw")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(tampered)
    assert exc.value.code == 403
    expired = storage.presigned_url("modules/m.tar.gz", expires_in=-600)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(expired)
    assert exc.value.code == 403


def test_access_tier(make_storage):
    storage = make_storage(access_tier="Cool")
    storage.put("t.bin", io.BytesIO(b"cool"))
    assert storage.container.get_blob_client("t.bin").get_blob_properties().blob_tier == "Cool"


def test_check_names_a_missing_container(make_storage):
    assert make_storage(container="tfr-missing").check() == [
        "azure: container 'tfr-missing' does not exist (setting storage.azure.container)"]
    assert make_storage().check() == []


def test_wrong_key_is_reported(make_storage, make_connection_string):
    problems = make_storage(connection_string=make_connection_string("A" * 86 + "==")).check()
    assert problems and problems[0].startswith("azure:") and ("credentials" in problems[0] or "denied" in problems[0])


def test_outage_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cs = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + "A" * 86 + "==;"
          f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    storage = AzureStorage(AzureOptions(container="c", connection_string=cs, connect_timeout=1, read_timeout=1,
                                        max_attempts=1))
    start = time.monotonic()
    with pytest.raises(StorageError, match="azure: cannot store 'k' in container 'c'"):
        storage.put("k", io.BytesIO(b"x"))
    assert time.monotonic() - start < 15  # a bound, not a benchmark: it must not hang
    assert "cannot reach" in storage.check()[0]


def test_plugin_registers_and_validates_settings(make_connection_string, container):
    registered = {}

    class Register:
        def add(self, name, factory, description=""):
            registered[name] = factory

    plugin.tfr_register_storage_backends(Register())
    factory = registered["azure"]
    base = {f"storage.azure.{name}": default for name, _t, default, _s, _h in plugin.SETTINGS}
    with pytest.raises(StartupError, match=r"storage.azure.container \(TFR_STORAGE__AZURE__CONTAINER\)"):
        factory(base)
    with pytest.raises(StartupError, match="exactly one of"):
        factory({**base, "storage.azure.container": "c"})
    with pytest.raises(StartupError, match="account_url is required"):
        factory({**base, "storage.azure.container": "c", "storage.azure.account_key": "k"})
    with pytest.raises(StartupError, match="access_tier"):
        factory({**base, "storage.azure.container": "c", "storage.azure.connection_string": "x",
                 "storage.azure.access_tier": "Lukewarm"})
    storage = factory({**base, "storage.azure.container": container,
                       "storage.azure.connection_string": make_connection_string()})
    assert storage.check() == []
