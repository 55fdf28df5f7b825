"""GCS-specific behaviour against gcp-storage-emulator: resumable uploads with metadata,
signed URLs, credentials, diagnostics, outages, settings.

The emulator does not verify V4 signatures (nor credentials at all): the signed-URL tests
prove the URL is well formed, fetchable without credentials and keeps the key's extension,
not that Google would reject a tampered one.  Rejected credentials are shown with a local
OAuth token endpoint that answers ``invalid_grant``, as Google does for a deleted key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import tfregistry_storage_gcs.plugin as plugin
from google.api_core import exceptions as gexc
from tfregistry_storage_gcs.backend import UPLOAD_PREFIX, GcsOptions, GcsStorage, _BoundedRetry

from tfregistry import StartupError
from tfregistry.interfaces import ObjectNotFound, StorageError
from tfregistry.testing.plugin import BackendCollector, declared_settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _upload_names(storage: GcsStorage) -> list[str]:
    return [b.name for b in storage.client.list_blobs(storage.bucket, prefix=storage.prefix + UPLOAD_PREFIX)]


# -- writes -------------------------------------------------------------------------------------------------------


def test_resumable_upload_round_trips_with_sha256_metadata(make_storage):
    storage = make_storage()  # 256 KiB chunks
    data = os.urandom(20 * 1024 * 1024 + 17)
    stored = storage.put("providers/big.zip", io.BytesIO(data), content_type="application/zip")
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    blob = storage.bucket.get_blob("providers/big.zip")
    assert blob.metadata["sha256"] == stored.sha256 and blob.content_type == "application/zip"
    assert blob.size == len(data)
    with storage.open("providers/big.zip") as fh:
        assert fh.seekable()
        assert hashlib.sha256(fh.read()).hexdigest() == stored.sha256
    assert _upload_names(storage) == []  # the temporary upload is gone


def test_small_object_carries_metadata(make_storage):
    storage = make_storage()
    stored = storage.put("m.tar.gz", io.BytesIO(b"small"))
    assert storage.bucket.get_blob("m.tar.gz").metadata["sha256"] == stored.sha256


def test_failed_upload_leaves_nothing_behind(make_storage):
    """A source that breaks mid-upload: no object at the key, no temporary object, a StorageError."""
    storage = make_storage()

    class Breaks(io.RawIOBase):
        sent = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            if self.sent >= 1024 * 1024:
                raise OSError("client went away")
            self.sent += n
            return b"x" * n

    with pytest.raises(StorageError, match="gcs: cannot store 'half.zip' in bucket .*client went away"):
        storage.put("half.zip", Breaks())
    assert not storage.exists("half.zip")
    assert _upload_names(storage) == []


def test_put_into_a_missing_bucket_names_the_setting(make_storage):
    with pytest.raises(StorageError, match=r"bucket does not exist \(setting storage.gcs.bucket\)"):
        make_storage(bucket="tfr-no-such-bucket").put("a.zip", io.BytesIO(b"x"))


# -- signed URLs and credentials ----------------------------------------------------------------------------------


def test_signed_url_with_a_service_account_key(make_storage, service_account_json):
    storage = make_storage(credentials_json=service_account_json, project="tfregistry-test")
    assert storage.supports_presigned_urls
    storage.put("modules/x/1.0.0/m.tar.gz", io.BytesIO(b"archive"))
    url = storage.presigned_url("modules/x/1.0.0/m.tar.gz", expires_in=60, filename="x-1.0.0.tar.gz")
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    assert parts.path.endswith("/modules/x/1.0.0/m.tar.gz")
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"] and query["X-Goog-Expires"] == ["60"]
    assert query["response-content-disposition"] == ['attachment; filename="x-1.0.0.tar.gz"']
    with urllib.request.urlopen(url) as response:  # no credentials
        assert response.read() == b"archive"


def test_key_file_signs_too(make_storage, service_account_json, tmp_path):
    key = tmp_path / "sa.json"
    key.write_text(service_account_json)
    storage = make_storage(credentials_file=str(key))
    assert storage.supports_presigned_urls and storage.account == "registry@tfregistry-test.iam.gserviceaccount.com"
    storage.put("p.zip", io.BytesIO(b"zip"))
    with urllib.request.urlopen(storage.presigned_url("p.zip", expires_in=60)) as response:
        assert response.read() == b"zip"


def test_without_a_signing_credential_the_core_serves_downloads(make_storage):
    storage = make_storage()
    assert not storage.supports_presigned_urls
    storage.put("a.zip", io.BytesIO(b"x"))
    assert storage.presigned_url("a.zip", expires_in=60) is None


def test_application_default_credentials_sign_when_they_are_a_key(service_account_json, tmp_path, monkeypatch):
    """ADC pointing at a key file (GOOGLE_APPLICATION_CREDENTIALS) can sign; signing needs no network."""
    key = tmp_path / "adc.json"
    key.write_text(service_account_json)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    storage = GcsStorage(GcsOptions(bucket="b"))
    assert storage.credential_source == "Application Default Credentials"
    assert storage.client.project == "tfregistry-test"
    url = storage.presigned_url("v/1.0.0/p.zip", expires_in=300)
    assert urllib.parse.urlsplit(url).path == "/b/v/1.0.0/p.zip"


def test_no_credentials_at_all_names_the_settings(monkeypatch):
    """Where google.auth finds nothing (no key, no gcloud login, not on GCE/GKE), say which settings to set."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def nothing(**kwargs):
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", nothing)  # deterministic even on a GCE/GKE CI runner
    with pytest.raises(StorageError, match="gcs: no credentials: set storage.gcs.credentials_file or "
                                           "storage.gcs.credentials_json, or provide Application Default"):
        GcsStorage(GcsOptions(bucket="b"))


@pytest.mark.parametrize(("text", "match"), [
    ("not json", "storage.gcs.credentials_json is not a service-account key"),
    ('{"type": "service_account"}', "storage.gcs.credentials_json is not a service-account key.*client_email"),
])
def test_malformed_key_names_the_setting(text, match):
    with pytest.raises(StorageError, match=match):
        GcsStorage(GcsOptions(bucket="b", credentials_json=text))


def test_missing_key_file_names_the_setting(tmp_path):
    with pytest.raises(StorageError, match=r"storage.gcs.credentials_file \(.*missing.json\) is not a readable"):
        GcsStorage(GcsOptions(bucket="b", credentials_file=str(tmp_path / "missing.json")))


@pytest.fixture
def rejecting_token_uri() -> Iterator[str]:
    """An OAuth token endpoint that refuses every key, as Google does for a deleted or disabled one."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_rejected_credentials_are_reported(make_storage, service_account_json, rejecting_token_uri):
    key = {**json.loads(service_account_json), "token_uri": rejecting_token_uri}
    storage = make_storage(anonymous=False, credentials_json=json.dumps(key))  # API calls now need a token
    [problem] = storage.check()
    assert problem.startswith("gcs: the credentials were rejected (") and "invalid_grant" in problem
    assert problem.endswith("check storage.gcs.credentials_json")
    with pytest.raises(StorageError, match="gcs: cannot store 'a.zip' .*credentials were rejected"):
        storage.put("a.zip", io.BytesIO(b"x"))


# -- diagnostics and outages ---------------------------------------------------------------------------------------


def test_check_names_a_missing_bucket(make_storage):
    assert make_storage(bucket="tfr-missing-bucket").check() == [
        "gcs: bucket 'tfr-missing-bucket' does not exist (setting storage.gcs.bucket)"]
    assert make_storage().check() == []


def test_open_and_size_of_a_missing_object(make_storage):
    storage = make_storage()
    with pytest.raises(ObjectNotFound):
        storage.open("nope.zip")
    with pytest.raises(ObjectNotFound):
        storage.size("nope.zip")


def test_outage_fails_fast_with_default_timeouts():
    """A closed port with the default settings (5 s connect, 3 attempts): seconds, not minutes."""
    storage = GcsStorage(GcsOptions(bucket="b", endpoint=f"http://127.0.0.1:{_closed_port()}", anonymous=True))
    calls = {
        "store": lambda: storage.put("k.zip", io.BytesIO(b"x")),
        "look up": lambda: storage.exists("k.zip"),
        "read": lambda: storage.open("k.zip"),
        "list": lambda: list(storage.list("")),
    }
    for action, call in calls.items():
        start = time.monotonic()
        with pytest.raises(StorageError, match=f"gcs: cannot {action} .*bucket 'b'.*Connection refused"):
            call()
        assert time.monotonic() - start < 10, action  # a bound, not a benchmark: it must not hang
    start = time.monotonic()
    [problem] = storage.check()
    assert problem.startswith("gcs: cannot reach bucket 'b': ") and time.monotonic() - start < 10


def test_outage_during_a_download_raises_storage_error():
    from gcp_storage_emulator.server import create_server

    port = _closed_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        storage = GcsStorage(GcsOptions(bucket="outage", endpoint=f"http://127.0.0.1:{port}", anonymous=True,
                                        chunk_size=256 * 1024))
        storage.client.create_bucket("outage")
        storage.put("big.zip", io.BytesIO(b"z" * (6 * 1024 * 1024)))  # more than one read chunk (4 MiB)
        reader = storage.open("big.zip")
        assert reader.read(10) == b"z" * 10
    finally:
        server.stop()
    start = time.monotonic()
    with pytest.raises(StorageError, match="gcs: cannot read 'big.zip' in bucket 'outage'"):
        reader.read()
    assert time.monotonic() - start < 10
    reader.close()


def test_retries_are_bounded_per_request():
    calls = []

    def flaky():
        calls.append(1)
        raise gexc.ServiceUnavailable("try later")

    retry = _BoundedRetry(predicate=lambda exc: isinstance(exc, gexc.ServiceUnavailable), initial=0.01,
                          maximum=0.02, timeout=30, max_attempts=3)
    wrapped = retry(flaky)
    for expected in (3, 6):  # each call gets its own count
        with pytest.raises(gexc.ServiceUnavailable):
            wrapped()
        assert len(calls) == expected


# -- the plugin -----------------------------------------------------------------------------------------------------


def test_plugin_registers_and_validates_settings(gcs_endpoint, bucket):
    declared = declared_settings(plugin)
    assert declared["storage.gcs.credentials_json"]["secret"] is True
    assert declared["storage.gcs.connect_timeout"]["default"] == 5

    register = BackendCollector()
    plugin.tfr_register_storage_backends(register)
    registered = {name: factory for name, (factory, _) in register.added.items()}
    values = {f"storage.gcs.{name}": default for name, _t, default, _s, _h in plugin.SETTINGS}
    with pytest.raises(StartupError, match=r"storage.gcs.bucket \(TFR_STORAGE__GCS__BUCKET\) is required"):
        registered["gcs"](values)
    with pytest.raises(StartupError, match="multiple of 256 KiB"):
        registered["gcs"]({**values, "storage.gcs.bucket": "b", "storage.gcs.chunk_size": 1000})
    with pytest.raises(StartupError, match=r"storage.gcs.max_attempts \(TFR_STORAGE__GCS__MAX_ATTEMPTS\)"):
        registered["gcs"]({**values, "storage.gcs.bucket": "b", "storage.gcs.max_attempts": 0})
    with pytest.raises(StartupError, match="credentials_file or storage.gcs.credentials_json, not both"):
        registered["gcs"]({**values, "storage.gcs.bucket": "b", "storage.gcs.credentials_file": "k.json",
                           "storage.gcs.credentials_json": "{}"})
    storage = registered["gcs"]({**values, "storage.gcs.bucket": bucket, "storage.gcs.endpoint": gcs_endpoint,
                                 "storage.gcs.anonymous": True})
    assert storage.timeout == (5, 60) and storage.check() == []


def test_plugin_module_does_not_import_the_sdk():
    code = ("import sys, tfregistry_storage_gcs.plugin; "
            "print(any(m.startswith(('google.cloud', 'google.auth')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_tfr_storage_check_with_a_key_from_a_file_reference(gcs_endpoint, bucket, service_account_json, tmp_path):
    """End to end through the real settings: credentials_json = {"$file" = ...}, masked, and the probe passes."""
    key = tmp_path / "sa.json"
    key.write_text(service_account_json)
    config = tmp_path / "tfr.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[storage]\nbackend = "gcs"\n[storage.gcs]\n'
                      f'bucket = "{bucket}"\nendpoint = "{gcs_endpoint}"\nanonymous = true\n'
                      f'credentials_json = {{ "$file" = "{key}" }}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFR_")}
    tfr = [sys.executable, "-m", "tfregistry", "--config", str(config)]
    shown = subprocess.run([*tfr, "config", "show"], capture_output=True, text=True, env=env, timeout=60)
    assert "storage.gcs.credentials_json = ********" in shown.stdout, shown.stderr
    checked = subprocess.run([*tfr, "storage", "check"], capture_output=True, text=True, env=env, timeout=60)
    assert checked.returncode == 0 and "storage backend 'gcs': OK" in checked.stdout, checked.stderr
    missing = subprocess.run([*tfr, "storage", "check"], capture_output=True, text=True, timeout=60,
                             env={**env, "TFR_STORAGE__GCS__BUCKET": "tfr-not-there"})
    assert missing.returncode == 1
    assert "gcs: bucket 'tfr-not-there' does not exist (setting storage.gcs.bucket)" in missing.stderr
