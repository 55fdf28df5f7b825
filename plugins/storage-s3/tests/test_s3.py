"""S3-specific behaviour: multipart, metadata, encryption, credentials, diagnostics, outages."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import urllib.request

import pytest
import tfregistry_storage_s3.plugin as plugin
from tfregistry_storage_s3.backend import UPLOAD_PREFIX, S3Options, S3Storage

from tfregistry import StartupError
from tfregistry.interfaces import StorageError

MiB = 1024 * 1024


def test_multipart_upload_round_trips_with_sha256_metadata(make_storage, s3_client, bucket):
    storage = make_storage()
    data = os.urandom(12 * MiB)  # three 5 MiB parts
    stored = storage.put("providers/big.zip", io.BytesIO(data), content_type="application/zip")
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    head = s3_client.head_object(Bucket=bucket, Key="providers/big.zip")
    assert head["Metadata"]["sha256"] == stored.sha256 and head["ContentType"] == "application/zip"
    with storage.open("providers/big.zip") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == stored.sha256
    leftovers = s3_client.list_objects_v2(Bucket=bucket, Prefix=UPLOAD_PREFIX).get("KeyCount", 0)
    assert leftovers == 0


def test_small_object_is_one_put_with_metadata(make_storage, s3_client, bucket):
    stored = make_storage().put("modules/x.tar.gz", io.BytesIO(b"small"))
    assert s3_client.head_object(Bucket=bucket, Key="modules/x.tar.gz")["Metadata"]["sha256"] == stored.sha256


class Exploding(io.RawIOBase):
    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError("the upload was cut off")
        take = min(n if n > 0 else self.left, self.left)
        self.left -= take
        return b"x" * take


def test_failed_upload_leaves_no_object_and_no_multipart_upload(make_storage, s3_client, bucket):
    storage = make_storage()
    with pytest.raises(OSError):
        storage.put("providers/broken.zip", Exploding(11 * MiB))
    assert not storage.exists("providers/broken.zip")
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert list(storage.list("")) == []


@pytest.mark.parametrize("sse", ["AES256", "aws:kms"])
def test_server_side_encryption(make_storage, s3_client, bucket, sse):
    storage = make_storage(sse=sse)
    storage.put("a.txt", io.BytesIO(b"secret"))
    storage.put("b.bin", io.BytesIO(os.urandom(11 * MiB)))
    for key in ("a.txt", "b.bin"):
        assert s3_client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == sse


def test_presigned_url_has_the_extension_and_filename(make_storage):
    storage = make_storage()
    storage.put("modules/acme/x/1.0.0/m.tar.gz", io.BytesIO(b"archive"))
    url = storage.presigned_url("modules/acme/x/1.0.0/m.tar.gz", expires_in=60, filename="acme-x-1.0.0.tar.gz")
    assert "X-Amz-Signature=" in url and urllib.parse.urlsplit(url).path.endswith(".tar.gz")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"archive"
        assert 'filename="acme-x-1.0.0.tar.gz"' in response.headers["Content-Disposition"]


def test_check_names_a_missing_bucket(make_storage):
    problems = make_storage(bucket="tfr-does-not-exist").check()
    assert problems == ["s3: bucket 'tfr-does-not-exist' does not exist (setting storage.s3.bucket)"]


def test_check_is_clean_for_a_good_bucket(make_storage):
    assert make_storage().check() == []


def test_outage_fails_fast_with_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens here
    storage = S3Storage(S3Options(bucket="b", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
                                  path_style=True, access_key_id="x", secret_access_key="y", connect_timeout=1,
                                  read_timeout=1, max_attempts=1))
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"s3: cannot store 'k' in bucket 'b'"):
        storage.put("k", io.BytesIO(b"x"))
    with pytest.raises(StorageError, match="cannot read"):
        storage.open("k")
    assert time.monotonic() - start < 10  # a bound, not a benchmark: it must not hang
    assert "cannot reach" in storage.check()[0]


def test_assume_role_through_sts(make_storage):
    storage = make_storage(role_arn="arn:aws:iam::123456789012:role/registry", external_id="ext-1")
    credentials = storage.client._request_signer._credentials.get_frozen_credentials()
    assert credentials.access_key != "testing" and credentials.token  # temporary credentials from moto's STS
    storage.put("x.txt", io.BytesIO(b"via assumed role"))
    assert storage.exists("x.txt")


def test_web_identity_through_sts(make_storage, tmp_path):
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZWdpc3RyeSJ9.c2ln")
    storage = make_storage(access_key_id=None, secret_access_key=None,
                           role_arn="arn:aws:iam::123456789012:role/registry", web_identity_token_file=str(token))
    credentials = storage.client._request_signer._credentials.get_frozen_credentials()
    assert credentials.token
    storage.put("y.txt", io.BytesIO(b"via web identity"))
    assert storage.exists("y.txt")


class FakeRegister:
    def __init__(self) -> None:
        self.backends: dict = {}

    def add(self, name, factory, description=""):
        self.backends[name] = factory


def settings(**overrides):
    values = {f"storage.s3.{name}": default for name, _t, default, _s, _h in plugin.SETTINGS}
    values.update({f"storage.s3.{k}": v for k, v in overrides.items()})
    return values


def test_plugin_registers_and_validates_settings(moto_endpoint, bucket):
    register = FakeRegister()
    plugin.tfr_register_storage_backends(register)
    factory = register.backends["s3"]
    with pytest.raises(StartupError, match=r"storage.s3.bucket \(TFR_STORAGE__S3__BUCKET\) is required"):
        factory(settings())
    with pytest.raises(StartupError, match="sse"):
        factory(settings(bucket="b", sse="rot13"))
    with pytest.raises(StartupError, match="at least 5 MiB"):
        factory(settings(bucket="b", part_size=1024))
    with pytest.raises(StartupError, match="go together"):
        factory(settings(bucket="b", access_key_id="x"))
    storage = factory(settings(bucket=bucket, endpoint_url=moto_endpoint, region="us-east-1", path_style=True,
                               access_key_id="testing", secret_access_key="testing"))
    assert storage.check() == []
