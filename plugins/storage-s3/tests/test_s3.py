"""S3-specific behaviour: multipart, metadata, encryption, credentials, diagnostics, outages."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
import time
import urllib.request

import boto3
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
    """A SigV4 presigned URL fetches the object without credentials, under the key's extension.

    moto does not verify signatures, so this proves the URL is fetchable and well formed, not
    that S3 would refuse a tampered or expired one (test_config.py checks the signing parameters).
    """
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


def caller_arn(storage: S3Storage, endpoint: str) -> str:
    """Who moto's STS says the storage's current credentials belong to."""
    frozen = storage.client._request_signer._credentials.get_frozen_credentials()
    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=frozen.access_key,
                       aws_secret_access_key=frozen.secret_key, aws_session_token=frozen.token)
    return sts.get_caller_identity()["Arn"]


def test_assume_role_through_sts(make_storage, moto_endpoint):
    storage = make_storage(role_arn="arn:aws:iam::123456789012:role/registry", external_id="ext-1",
                           role_session_name="registry-prod")
    credentials = storage.client._request_signer._credentials
    assert credentials.method == "assume-role" and credentials.access_key != "testing" and credentials.token
    assert caller_arn(storage, moto_endpoint) == "arn:aws:sts::123456789012:assumed-role/registry/registry-prod"
    storage.put("x.txt", io.BytesIO(b"via assumed role"))
    assert storage.exists("x.txt")
    url = storage.presigned_url("x.txt", expires_in=60)
    assert "X-Amz-Security-Token=" in url  # temporary credentials travel with the URL
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"via assumed role"


def test_web_identity_through_sts(make_storage, moto_endpoint, tmp_path, monkeypatch):
    """No base credentials at all: AssumeRoleWithWebIdentity is an unsigned call."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZWdpc3RyeSJ9.c2ln")
    storage = make_storage(access_key_id=None, secret_access_key=None, role_session_name="github-ci",
                           role_arn="arn:aws:iam::123456789012:role/registry", web_identity_token_file=str(token))
    credentials = storage.client._request_signer._credentials
    assert credentials.method == "assume-role-with-web-identity" and credentials.token
    assert caller_arn(storage, moto_endpoint) == "arn:aws:sts::123456789012:assumed-role/registry/github-ci"
    storage.put("y.txt", io.BytesIO(b"via web identity"))
    assert storage.exists("y.txt")


def test_kms_key_id_is_applied(make_storage, moto_endpoint, s3_client, bucket):
    kms = boto3.client("kms", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    key_id = kms.create_key(Description="registry")["KeyMetadata"]["KeyId"]
    storage = make_storage(sse="aws:kms", kms_key_id=key_id)
    storage.put("small.txt", io.BytesIO(b"secret"))
    storage.put("large.bin", io.BytesIO(os.urandom(11 * MiB)))
    for key in ("small.txt", "large.bin"):
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_id)


class ShortReads(io.RawIOBase):
    """Returns at most 1 MiB per read, as a socket or a pipe may."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self.data.read(min(n, MiB) if n is not None and n > 0 else n)


@pytest.mark.parametrize("size", [3 * MiB, 12 * MiB + 1])
def test_short_reads_still_store_every_byte(make_storage, s3_client, bucket, size):
    data = os.urandom(size)
    stored = make_storage().put("providers/short.zip", ShortReads(data))
    assert (stored.size, stored.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert s3_client.get_object(Bucket=bucket, Key="providers/short.zip")["Body"].read() == data


def test_a_failure_after_the_upload_leaves_nothing_behind(make_storage, s3_client, bucket, monkeypatch):
    storage = make_storage()
    storage.put("providers/p.zip", io.BytesIO(b"the old object"))

    def copy_fails(*args, **kwargs):
        raise ConnectionResetError("the copy was cut off")

    monkeypatch.setattr(storage.client, "copy", copy_fails)
    with pytest.raises(StorageError, match="cannot store 'providers/p.zip'"):
        storage.put("providers/p.zip", io.BytesIO(os.urandom(11 * MiB)))
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["providers/p.zip"]
    with storage.open("providers/p.zip") as fh:
        assert fh.read() == b"the old object"


def test_max_attempts_counts_the_first_attempt():
    """Each connection is accepted and dropped at once, a retryable failure: count how often the client comes."""
    connections = 0
    stop = threading.Event()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.2)
        port = server.getsockname()[1]

        def serve() -> None:
            nonlocal connections
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                connections += 1
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        storage = S3Storage(S3Options(bucket="bbb", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
                                      path_style=True, access_key_id="x", secret_access_key="y", max_attempts=2))
        with pytest.raises(StorageError):
            storage.size("k")
        stop.set()
        thread.join()
    assert connections == 2


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
    with pytest.raises(StartupError, match="between 5 MiB"):
        factory(settings(bucket="b", part_size=1024))
    with pytest.raises(StartupError, match="go together"):
        factory(settings(bucket="b", access_key_id="x"))
    storage = factory(settings(bucket=bucket, endpoint_url=moto_endpoint, region="us-east-1", path_style=True,
                               access_key_id="testing", secret_access_key="testing"))
    assert storage.check() == []
