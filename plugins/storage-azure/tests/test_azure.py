"""What is specific to Azure: block uploads, SAS URLs checked by Azurite, auth modes, diagnostics, outages."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import ssl
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import tfregistry_storage_azure.plugin as plugin
from tfregistry_storage_azure.backend import DOWNLOAD_CHUNK, AzureBlobStorage
from tfregistry_storage_azure.config import (
    AzureConfig,
    config_from_settings,
    parse_access_tier,
    parse_container,
    parse_prefix,
    parse_seconds,
    parse_size,
)
from tfregistry_storage_azure.testing import (
    ACCOUNT,
    AZURITE_VERSION,
    KEY,
    FakeEntraCredential,
    connection_string,
    free_port,
)

from tfregistry import StartupError
from tfregistry.interfaces import ObjectNotFound, StorageBackend, StorageError
from tfregistry.testing.conformance import StreamingReader, payload_sha256
from tfregistry.testing.plugin import BackendCollector, SettingsCollector

MiB = 1024 * 1024
WRONG_KEY = "A" * 86 + "=="


class FailingReader:
    """Yields ``good`` bytes, then raises, like a client that disconnects mid-upload."""

    def __init__(self, good: int) -> None:
        self._left = good

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            raise ConnectionResetError("client went away")
        n = min(n, self._left, 64 * 1024)
        self._left -= n
        return b"x" * n


def fetch(url: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes, Any]:
    """GET ``url`` with no credentials; (status, body, headers), also for 4xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def settings(**values: Any) -> dict[str, Any]:
    """``storage.azure.*`` settings as the core passes them: every declared key, defaults applied."""
    declarations = SettingsCollector()
    plugin.tfr_add_settings(settings=declarations)
    result = {}
    for key, decl in declarations.added.items():
        default = decl["default"]
        result[key] = None if default is None else decl["type"](default)
    result.update({f"storage.azure.{k}": v for k, v in values.items()})
    result["data_dir"] = "/nonexistent"
    return result


# --- uploads ---------------------------------------------------------------------------------


def test_large_streamed_put_is_staged_in_blocks_with_sha256_metadata(make_storage, service, container):
    storage = make_storage(block_size=1 * MiB, upload_concurrency=4)
    size = 20 * MiB + 123
    reader = StreamingReader(size, seed=7)
    stored = storage.put("providers/acme/big_1.0.0_linux_amd64.zip", reader, content_type="application/zip")
    assert (stored.size, stored.sha256) == (size, payload_sha256(size, seed=7))
    assert reader.unbounded_reads == 0
    blob = service.get_blob_client(container, "providers/acme/big_1.0.0_linux_amd64.zip")
    properties = blob.get_blob_properties()
    assert properties.size == size
    assert properties.metadata == {"sha256": stored.sha256}
    assert properties.content_settings.content_type == "application/zip"
    committed, uncommitted = blob.get_block_list("all")
    assert len(committed) == 21 and not uncommitted
    sha = hashlib.sha256()
    with storage.open("providers/acme/big_1.0.0_linux_amd64.zip") as fh:
        while chunk := fh.read(3 * MiB):
            sha.update(chunk)
    assert sha.hexdigest() == stored.sha256


def test_small_object_is_one_put_blob_with_metadata(make_storage, service, container):
    storage = make_storage()
    stored = storage.put("m/one.tar.gz", io.BytesIO(b"small"), content_type=None)
    blob = service.get_blob_client(container, "m/one.tar.gz")
    properties = blob.get_blob_properties()
    assert properties.metadata["sha256"] == stored.sha256 == hashlib.sha256(b"small").hexdigest()
    assert properties.content_settings.content_type == "application/octet-stream"
    assert blob.get_block_list("all") == ([], [])  # no blocks: a single Put Blob


@pytest.mark.parametrize("size", [100, 3 * 256 * 1024 + 5], ids=["one-put", "blocks"])
def test_interrupted_upload_leaves_no_object_and_keeps_the_old_one(make_storage, size):
    storage = make_storage()
    with pytest.raises(ConnectionResetError):
        storage.put("uploads/new.tar.gz", FailingReader(size))
    assert not storage.exists("uploads/new.tar.gz")
    storage.put("uploads/old.tar.gz", io.BytesIO(b"previous"))
    with pytest.raises(ConnectionResetError):
        storage.put("uploads/old.tar.gz", FailingReader(size))
    with storage.open("uploads/old.tar.gz") as fh:
        assert fh.read() == b"previous"
    assert [i.key for i in storage.list()] == ["uploads/old.tar.gz"]


def test_a_blob_is_invisible_until_its_block_list_is_committed(make_storage, service, container):
    storage = make_storage(block_size=64 * 1024, upload_concurrency=1)
    release = threading.Event()
    staged = threading.Event()

    class SlowReader:
        def __init__(self) -> None:
            self.inner = StreamingReader(10 * 64 * 1024)

        def read(self, n: int = -1) -> bytes:
            if self.inner.size - len(self.inner._buffer) > 5 * 64 * 1024 and not staged.is_set():
                staged.set()
                release.wait(10)
            return self.inner.read(n)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(storage.put, "atomic/object.bin", SlowReader())
        assert staged.wait(10)
        time.sleep(0.3)  # blocks are being staged now
        assert storage.exists("atomic/object.bin") is False
        assert list(storage.list("atomic/")) == []
        release.set()
        stored = future.result(timeout=30)
    assert storage.size("atomic/object.bin") == stored.size == 10 * 64 * 1024


def test_racing_uploads_from_two_processes(make_storage, container):
    """Two backends (as on two replicas) share no lock: same bytes both succeed; different bytes, one whole wins."""
    first, second = make_storage(block_size=64 * 1024), make_storage(block_size=64 * 1024)
    size = 40 * 64 * 1024

    def race(seeds: tuple[int, int]) -> list[Any]:
        barrier = threading.Barrier(2)

        def put(args: tuple[AzureBlobStorage, int]) -> Any:
            backend, seed = args
            barrier.wait(10)
            try:
                return backend.put("race/x.zip", StreamingReader(size, seed=seed))
            except StorageError as exc:
                return exc

        with ThreadPoolExecutor(2) as pool:
            return list(pool.map(put, [(first, seeds[0]), (second, seeds[1])]))

    for outcome in race((1, 1)):
        assert not isinstance(outcome, Exception), outcome
        assert outcome.sha256 == payload_sha256(size, seed=1)
    outcomes = race((2, 3))
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert winners
    for failure in (o for o in outcomes if isinstance(o, Exception)):
        assert "another upload to the same blob" in str(failure)
    with first.open("race/x.zip") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() in {w.sha256 for w in winners}


@pytest.mark.parametrize("tier", ["Cool", "Hot"])
def test_access_tier_is_set_on_single_and_block_uploads(make_storage, service, container, tier):
    storage = make_storage(access_tier=tier, block_size=64 * 1024)
    storage.put("tier/small.bin", io.BytesIO(b"s"))
    storage.put("tier/large.bin", StreamingReader(200 * 1024))
    for name in ("tier/small.bin", "tier/large.bin"):
        assert service.get_blob_client(container, name).get_blob_properties().blob_tier == tier


def test_key_prefix_is_applied_and_hidden(make_storage, service, container):
    outside = make_storage()
    outside.put("modules/elsewhere.tar.gz", io.BytesIO(b"not ours"))
    storage = make_storage(prefix="tenants/a/")
    storage.put("modules/x.tar.gz", io.BytesIO(b"ours"))
    names = sorted(b.name for b in service.get_container_client(container).list_blobs())
    assert names == ["modules/elsewhere.tar.gz", "tenants/a/modules/x.tar.gz"]
    assert [i.key for i in storage.list()] == ["modules/x.tar.gz"]
    assert storage.exists("modules/elsewhere.tar.gz") is False
    assert urlsplit(storage.presigned_url("modules/x.tar.gz", expires_in=60)).path.endswith(
        f"/{container}/tenants/a/modules/x.tar.gz"
    )


def test_listing_follows_pages_in_key_order(make_storage):
    storage = make_storage()
    storage.list_page_size = 2
    keys = [f"p/{name}" for name in ("e.txt", "a.txt", "c/d.txt", "b-1.txt", "b.txt", "B.txt")]
    for key in keys:
        storage.put(key, io.BytesIO(key.encode()))
    infos = list(storage.list("p/"))
    assert [i.key for i in infos] == sorted(keys)
    assert all(i.last_modified.tzinfo is not None for i in infos)


def test_blobs_with_names_that_are_not_keys_are_not_listed(make_storage, service, container):
    service.get_blob_client(container, "odd name.txt").upload_blob(b"x")
    service.get_blob_client(container, "dir/").upload_blob(b"")
    storage = make_storage()
    storage.put("ok.txt", io.BytesIO(b"ok"))
    assert [i.key for i in storage.list()] == ["ok.txt"]


# --- reads -----------------------------------------------------------------------------------------


def test_open_is_seekable_across_download_chunks(make_storage):
    storage = make_storage(block_size=4 * MiB)
    data = StreamingReader(DOWNLOAD_CHUNK + MiB + 3, seed=5).read(DOWNLOAD_CHUNK + MiB + 3)
    storage.put("seek/object.bin", io.BytesIO(data))
    with storage.open("seek/object.bin") as fh:
        assert fh.seekable() and fh.size == len(data)
        assert fh.read(10) == data[:10]
        fh.seek(DOWNLOAD_CHUNK - 5)
        assert fh.read(10) == data[DOWNLOAD_CHUNK - 5 : DOWNLOAD_CHUNK + 5]
        assert fh.seek(-4, io.SEEK_END) == len(data) - 4
        assert fh.read() == data[-4:]
        assert fh.read(5) == b""
        fh.seek(3)
        assert fh.tell() == 3
        assert fh.read() == data[3:]
    assert fh.closed
    with pytest.raises(ValueError):
        fh.read(1)


def test_reading_a_blob_replaced_meanwhile_fails_instead_of_mixing_versions(make_storage):
    storage = make_storage()
    storage.put("swap/object.bin", io.BytesIO(b"a" * 1000))
    with storage.open("swap/object.bin") as fh:
        assert fh.read(10) == b"a" * 10
        storage.put("swap/object.bin", io.BytesIO(b"b" * 1000))
        fh.seek(500)
        with pytest.raises(StorageError, match="replaced while being read"):
            fh.read(10)


def test_missing_container_is_an_error_not_a_missing_object(make_storage):
    storage = make_storage(container="tfr-no-such-container")
    for call in (
        lambda: storage.exists("a.txt"),
        lambda: storage.size("a.txt"),
        lambda: storage.open("a.txt"),
        lambda: storage.delete("a.txt"),
        lambda: list(storage.list()),
        lambda: storage.put("a.txt", io.BytesIO(b"x")),
    ):
        with pytest.raises(StorageError, match="container 'tfr-no-such-container' does not exist") as exc:
            call()
        assert not isinstance(exc.value, ObjectNotFound)


# --- SAS download URLs ------------------------------------------------------------------------------


def test_presigned_url_is_fetchable_and_names_the_file(make_storage):
    storage = make_storage()
    key = "modules/acme/vpc/aws/1.0.0/0123abcd/acme-vpc-aws-1.0.0.tar.gz"
    storage.put(key, io.BytesIO(b"archive"))
    url = storage.presigned_url(key, expires_in=60, filename='acme-vpc-aws-1.0.0.tar.gz"; x=1')
    parts = urlsplit(url)
    assert parts.path.endswith(".tar.gz")
    query = parse_qs(parts.query)
    assert query["sp"] == ["r"] and query["sr"] == ["b"] and "sig" in query
    status, body, headers = fetch(url)
    assert (status, body) == (200, b"archive")
    assert headers["Content-Disposition"] == 'attachment; filename="acme-vpc-aws-1.0.0.tar.gz___x=1"'


def test_azurite_refuses_tampered_and_expired_sas_urls(make_storage):
    storage = make_storage()
    storage.put("modules/m.tar.gz", io.BytesIO(b"archive"))
    storage.put("modules/other.tar.gz", io.BytesIO(b"other"))
    url = storage.presigned_url("modules/m.tar.gz", expires_in=60)
    assert fetch(url)[0] == 200
    tampered_sig = re.sub(r"sig=[^&]+", "sig=" + "A" * 43 + "%3D", url)
    assert tampered_sig != url and fetch(tampered_sig)[0] == 403
    assert fetch(url.replace("sp=r", "sp=rw"))[0] == 403
    assert fetch(url.replace("/modules/m.tar.gz?", "/modules/other.tar.gz?"))[0] == 403
    expiring = storage.presigned_url("modules/m.tar.gz", expires_in=1)
    assert fetch(expiring)[0] == 200
    time.sleep(2.1)
    assert fetch(expiring)[0] == 403


def test_sas_lifetime_setting_overrides_the_core_ttl(make_storage):
    storage = make_storage(sas_lifetime=3600.0)
    storage.put("l/x.tar.gz", io.BytesIO(b"x"))
    expiry = parse_qs(urlsplit(storage.presigned_url("l/x.tar.gz", expires_in=60)).query)["se"][0]
    remaining = datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(minutes=55) < remaining <= timedelta(hours=1)


def test_account_key_with_account_url(make_storage, azurite):
    storage = make_storage(
        auth="account_key",
        connection_string="",
        account_url=f"http://127.0.0.1:{azurite}/{ACCOUNT}",
        account_name=ACCOUNT,
        account_key=KEY,
    )
    storage.put("k/x.tar.gz", io.BytesIO(b"by key"))
    assert fetch(storage.presigned_url("k/x.tar.gz", expires_in=60))[1] == b"by key"
    assert storage.check() == []


# --- SAS-token authentication: works, but cannot sign download URLs ---------------------------------


@pytest.fixture
def container_sas(container: str) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        ACCOUNT,
        container,
        account_key=KEY,
        permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


def test_sas_token_auth_stores_but_cannot_presign(make_storage, azurite, container_sas):
    storage = make_storage(
        auth="sas_token", connection_string="", account_url=f"http://127.0.0.1:{azurite}/{ACCOUNT}",
        account_name=ACCOUNT, sas_token=container_sas,
    )  # fmt: skip
    stored = storage.put("s/x.tar.gz", io.BytesIO(b"via sas"))
    assert storage.size("s/x.tar.gz") == stored.size
    assert [i.key for i in storage.list()] == ["s/x.tar.gz"]
    with pytest.raises(StorageError, match=r"account key or a token credential.*presigned_urls = false"):
        storage.presigned_url("s/x.tar.gz", expires_in=60)
    problems = storage.check()
    assert len(problems) == 1
    assert problems[0].startswith("can write but cannot create presigned URLs: azure: cannot create SAS")
    assert list(storage.list("_tfr_probe/")) == []


def test_sas_token_auth_without_presigned_urls_is_healthy(make_storage, azurite, container_sas):
    storage = make_storage(
        auth="sas_token", connection_string="", account_url=f"http://127.0.0.1:{azurite}/{ACCOUNT}",
        account_name=ACCOUNT, sas_token=container_sas, presigned_urls=False,
    )  # fmt: skip
    storage.put("s/x.tar.gz", io.BytesIO(b"via sas"))
    assert storage.supports_presigned_urls is False
    assert storage.presigned_url("s/x.tar.gz", expires_in=60) is None
    assert storage.check() == []


def test_connection_string_with_a_sas_cannot_presign_either(make_storage, azurite, container_sas):
    cs = f"BlobEndpoint=http://127.0.0.1:{azurite}/{ACCOUNT};SharedAccessSignature={container_sas}"
    storage = make_storage(connection_string=cs)
    storage.put("s/x.tar.gz", io.BytesIO(b"x"))
    with pytest.raises(StorageError, match="cannot create SAS download URLs"):
        storage.presigned_url("s/x.tar.gz", expires_in=60)


def test_expired_sas_token_is_reported(make_storage, azurite, container):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    expired = generate_container_sas(
        ACCOUNT, container, account_key=KEY, permission=ContainerSasPermissions(read=True, write=True, list=True),
        expiry=datetime.now(UTC) - timedelta(minutes=1),
    )  # fmt: skip
    storage = make_storage(
        auth="sas_token", connection_string="", account_url=f"http://127.0.0.1:{azurite}/{ACCOUNT}",
        account_name=ACCOUNT, sas_token=expired, presigned_urls=False,
    )  # fmt: skip
    problems = storage.check()
    assert len(problems) == 1 and "storage.azure.sas_token" in problems[0], problems


# --- token credential (DefaultAzureCredential's kind) and user-delegation SAS -----------------------


@pytest.fixture
def token_storage(azurite_https: tuple[int, Path]) -> Iterator[tuple[AzureBlobStorage, FakeEntraCredential, Path]]:
    from azure.storage.blob import BlobServiceClient

    port, ca = azurite_https
    url = f"https://127.0.0.1:{port}/{ACCOUNT}"
    credential = FakeEntraCredential()
    container = f"tok-{time.monotonic_ns()}"
    with BlobServiceClient(url, credential=credential, connection_verify=str(ca)) as admin:
        admin.create_container(container)
    config = AzureConfig(container=container, auth="identity", account_url=url, account_name=ACCOUNT, retries=1)
    storage = AzureBlobStorage.from_config(config, credential=credential, connection_verify=str(ca))
    yield storage, credential, ca
    storage.close()


def test_token_credential_reads_and_writes(token_storage):
    storage, credential, _ = token_storage
    stored = storage.put("t/x.tar.gz", StreamingReader(300 * 1024, seed=3))
    assert storage.size("t/x.tar.gz") == stored.size
    with storage.open("t/x.tar.gz") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == stored.sha256
    assert [i.key for i in storage.list()] == ["t/x.tar.gz"]
    assert credential.requests >= 1
    storage.delete("t/x.tar.gz")
    assert storage.exists("t/x.tar.gz") is False


def test_user_delegation_sas(token_storage):
    storage, _, ca = token_storage
    storage.put("t/m.tar.gz", io.BytesIO(b"delegated"))
    calls = []
    original = storage._service.get_user_delegation_key

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    storage._service.get_user_delegation_key = counting  # type: ignore[method-assign]
    url = storage.presigned_url("t/m.tar.gz", expires_in=300, filename="m.tar.gz")
    again = storage.presigned_url("t/m.tar.gz", expires_in=600)
    assert len(calls) == 1, "the user-delegation key is cached"
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.path.endswith("/t/m.tar.gz")
    query = parse_qs(parts.query)
    assert query["skoid"] == [FakeEntraCredential.OID] and query["sktid"] == [FakeEntraCredential.TID]
    assert query["spr"] == ["https"] and query["sp"] == ["r"]
    context = ssl.create_default_context(cafile=str(ca))
    assert fetch(url.replace("sp=r", "sp=rw"), context)[0] == 403
    with pytest.raises(StorageError, match="at most 7 days"):
        storage.presigned_url("t/m.tar.gz", expires_in=8 * 86400)
    status, body, _ = fetch(again, context)
    # Azurite before 3.37 checks user-delegation SAS with an older string-to-sign than the SDK uses
    assert (status, body) == (200, b"delegated"), f"Azurite {AZURITE_VERSION}"
    assert storage.check() == []


# --- diagnostics -----------------------------------------------------------------------------------------


def test_check_names_a_missing_container(make_storage):
    problems = make_storage(container="tfr-missing").check()
    assert len(problems) == 1
    assert "container 'tfr-missing' in storage account 'devstoreaccount1' does not exist" in problems[0]
    assert "storage.azure.container" in problems[0]


def test_check_reports_a_wrong_key(make_storage, azurite):
    problems = make_storage(connection_string=connection_string(azurite, WRONG_KEY)).check()
    assert len(problems) == 1
    assert "refused the credentials" in problems[0] and "storage.azure.connection_string" in problems[0]


def test_check_is_healthy_and_cleans_up(make_storage, service, container):
    storage = make_storage(prefix="r/")
    assert storage.check() == []
    assert list(service.get_container_client(container).list_blobs()) == []


# --- outages: fail fast, as StorageError ------------------------------------------------------------------


def test_unreachable_endpoint_fails_fast(make_storage):
    port = free_port()  # nothing listens there
    storage = make_storage(connection_string=connection_string(port), retries=1, connect_timeout=1.0)
    calls: list[Callable[[], Any]] = [
        lambda: storage.put("k/x.tar.gz", io.BytesIO(b"x")),
        lambda: storage.put("k/big.zip", StreamingReader(MiB)),
        lambda: storage.open("k/x.tar.gz"),
        lambda: storage.exists("k/x.tar.gz"),
        lambda: list(storage.list("k/")),
        lambda: storage.delete("k/x.tar.gz"),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(StorageError, match=rf"azure: cannot .*cannot connect to http://127.0.0.1:{port}") as exc:
            call()
        assert not isinstance(exc.value, ObjectNotFound)
        assert time.monotonic() - start < 5, "an unreachable endpoint must fail within seconds"
    problems = storage.check()
    assert len(problems) == 1 and "cannot connect" in problems[0] and "storage.azure" in problems[0]
    with_defaults = make_storage(connection_string=connection_string(port), retries=AzureConfig.retries)
    start = time.monotonic()
    with pytest.raises(StorageError, match="cannot connect"):
        with_defaults.put("k/x.tar.gz", io.BytesIO(b"x"))
    assert time.monotonic() - start < 5, "three retries with the default backoff take under two seconds"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_hung_endpoint_fails_after_the_read_timeout(make_storage, silent_server):
    storage = make_storage(connection_string=connection_string(silent_server), retries=0, read_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(StorageError, match="read_timeout"):
        storage.exists("k/x.tar.gz")
    assert time.monotonic() - start < 5


def test_stopped_emulator_gives_storage_errors(azurite_cache):
    from azure.storage.blob import BlobServiceClient
    from tfregistry_storage_azure.testing import running_azurite

    with running_azurite(azurite_cache) as port:
        BlobServiceClient.from_connection_string(connection_string(port)).create_container("down")
        config = AzureConfig(container="down", auth="connection_string", connection_string=connection_string(port),
                             retries=1, connect_timeout=1.0)  # fmt: skip
        storage = AzureBlobStorage.from_config(config)
        storage.put("d/x.tar.gz", io.BytesIO(b"x"))
    start = time.monotonic()
    with pytest.raises(StorageError, match="cannot connect"):
        storage.open("d/x.tar.gz")
    assert time.monotonic() - start < 5
    storage.close()


def test_a_failed_azurite_install_says_what_to_set(tmp_path, monkeypatch):
    """npm sent to a registry nobody listens on, with no npm cache to fall back on: the failure names the
    variables that steer npm (proxies, CAs, registry), lists which are set, and shows npm's own output."""
    import shutil

    from tfregistry_storage_azure.testing import install_azurite

    npm = shutil.which("npm")
    assert npm, "the Azure storage tests need npm (apt-get install nodejs npm)"
    port = free_port()
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(pytest.fail.Exception) as failed:
        install_azurite(npm, tmp_path / "azurite", timeout=300)
    message = str(failed.value)
    assert message.startswith("Installing Azurite, the Azure Storage emulator the Azure storage tests run against, "
                              f"failed: `{npm} install --no-audit --no-fund --prefix {tmp_path / 'azurite'} "
                              f"azurite@{AZURITE_VERSION}` exited with ")
    assert f"Likely cause: npm could not reach http://127.0.0.1:{port}/: behind a proxy, set HTTPS_PROXY" in message
    for name in ("HTTPS_PROXY", "NO_PROXY", "NODE_EXTRA_CA_CERTS", "npm_config_cafile", "npm_config_registry"):
        assert name in message
    set_now = message.split("Set now: ", 1)[1].splitlines()[0]
    assert "npm_config_registry" in set_now and "npm_config_fetch_retries" in set_now
    assert "ECONNREFUSED" in message.split("npm's output (last 3000 characters):\n", 1)[1]


def test_an_untrusted_certificate_is_diagnosed_as_a_missing_ca():
    from tfregistry_storage_azure.testing import install_failure_message

    npm_output = ("npm error code SELF_SIGNED_CERT_IN_CHAIN\nnpm error errno SELF_SIGNED_CERT_IN_CHAIN\n"
                  "npm error request to https://registry.npmjs.org/azurite failed, reason: self-signed certificate "
                  "in certificate chain\n")
    message = install_failure_message(["npm", "install", "--prefix", "/c", "azurite@1"], "exited with 1", npm_output)
    assert ("Likely cause: npm does not trust the TLS certificate it was shown (a TLS-intercepting proxy?): point "
            "NODE_EXTRA_CA_CERTS or npm_config_cafile at a PEM file with that proxy's CA.") in message
    assert message.endswith(npm_output)


# --- plugin and settings -------------------------------------------------------------------------------------


def test_plugin_declares_its_settings():
    declarations = SettingsCollector()
    plugin.tfr_add_settings(settings=declarations)
    assert all(key.startswith("storage.azure.") and decl["help"] for key, decl in declarations.added.items())
    secrets = {key for key, decl in declarations.added.items() if decl.get("secret")}
    assert secrets == {"storage.azure.connection_string", "storage.azure.account_key", "storage.azure.sas_token"}
    assert declarations.added["storage.azure.auth"]["choices"] == (
        "auto", "connection_string", "account_key", "sas_token", "identity",
    )  # fmt: skip
    assert "storage.azure.container" in declarations.added


def test_plugin_registers_the_backend_and_builds_it_from_settings(azurite, container):
    register = BackendCollector()
    plugin.tfr_register_storage_backends(register=register)
    factory, description = register.added["azure"]
    assert description
    backend = factory(settings(container=container, connection_string=connection_string(azurite)))
    try:
        assert isinstance(backend, StorageBackend) and backend.name == "azure"
        assert backend.supports_presigned_urls is True
        assert backend.check() == []
    finally:
        backend.close()


def test_plugin_module_does_not_import_the_sdk():
    import subprocess

    code = (
        "import sys, tfregistry_storage_azure.plugin as p; "
        "p.tfr_add_settings(settings=type('S', (), {'add': lambda *a, **k: None})()); "
        "sys.exit(1 if [m for m in sys.modules if m.startswith('azure')] else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], env=_child_env()).returncode == 0


def _child_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def test_plugin_is_a_valid_pluggy_plugin():
    import pluggy

    from tfregistry import hookspecs

    pm = pluggy.PluginManager("tfregistry")
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    pm.check_pending()
    register = BackendCollector()
    pm.hook.tfr_register_storage_backends(register=register)
    assert list(register.added) == ["azure"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, r"storage.azure.container \(TFR_STORAGE__AZURE__CONTAINER\) is required when storage.backend = "),
        (
            {"container": "c12", "connection_string": "x", "account_key": "k"},
            r"storage.azure.connection_string \(TFR_STORAGE__AZURE__CONNECTION_STRING\) and "
            r"storage.azure.account_key .* are both set; set only one",
        ),
        (
            {"container": "c12", "auth": "account_key"},
            r"storage.azure.account_key \(TFR_STORAGE__AZURE__ACCOUNT_KEY\) is required when storage.azure.auth",
        ),
        ({"container": "c12", "account_key": KEY}, r"storage.azure.account_name .* or storage.azure.account_url"),
        ({"container": "c12"}, r"account_url .* is required when storage.azure.auth = \"identity\" \(chosen because"),
        (
            {"container": "c12", "auth": "identity", "account_url": "http://127.0.0.1:1/acct"},
            r"must be https:// when authenticating with DefaultAzureCredential",
        ),
        ({"container": "c12", "account_key": KEY, "account_url": "ftp://x"}, "not a blob endpoint URL"),
        ({"container": "c12", "connection_string": "x", "sas_lifetime": 8 * 86400.0}, "at most 7 days"),
        ({"container": "c12", "connection_string": "x", "retries": 11}, "between 0 and 10"),
        ({"container": "c12", "connection_string": "x", "upload_concurrency": 0}, "between 1 and 32"),
        ({"container": "c12", "auth": "bogus"}, "is not one of"),
    ],
)
def test_settings_are_validated(values, message):
    with pytest.raises(StartupError, match=message):
        config_from_settings(settings(**values))


def test_auth_selection():
    assert config_from_settings(settings(container="c12", connection_string="cs")).auth == "connection_string"
    by_key = config_from_settings(settings(container="c12", account_key=KEY, account_name="acct"))
    assert (by_key.auth, by_key.account_url) == ("account_key", "https://acct.blob.core.windows.net")
    by_sas = config_from_settings(settings(container="c12", sas_token="?sv=x&sig=y", account_name="acct"))
    assert (by_sas.auth, by_sas.sas_token) == ("sas_token", "sv=x&sig=y")
    identity = config_from_settings(settings(container="c12", account_url="https://acct.blob.core.windows.net"))
    assert (identity.auth, identity.account_name, identity.auto_selected) == ("identity", "acct", True)
    explicit = config_from_settings(
        settings(container="c12", auth="account_key", account_key=KEY, sas_token="sv=x", account_name="a")
    )
    assert (explicit.auth, explicit.sas_token) == ("account_key", "")
    emulator = config_from_settings(settings(container="c12", account_key=KEY, account_url="http://127.0.0.1:1/dev1"))
    assert emulator.account_name == "dev1"
    assert "sv=x" not in repr(by_sas) and KEY not in repr(by_key)


def test_setting_converters():
    assert parse_size("4MiB") == 4 * MiB and parse_size(65536) == 65536 and parse_size("8MB") == 8_000_000
    for bad in ("1KiB", "1GiB", "lots", True):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert parse_seconds("90s") == 90 and parse_seconds(2.5) == 2.5 and parse_seconds("7d") == 7 * 86400
    for bad in (0, "-1", "soon"):
        with pytest.raises(ValueError):
            parse_seconds(bad)
    assert parse_access_tier("cool") == "Cool" and parse_access_tier("") == ""
    with pytest.raises(ValueError, match="rehydrated"):
        parse_access_tier("Archive")
    with pytest.raises(ValueError, match="not an access tier"):
        parse_access_tier("Lukewarm")
    assert parse_container("terraform-registry") == "terraform-registry"
    for bad in ("ab", "Upper", "a--b", "-ab", "a_b", "x" * 64):
        with pytest.raises(ValueError):
            parse_container(bad)
    assert parse_prefix("/registry/") == "registry/" and parse_prefix("") == ""
    with pytest.raises(ValueError):
        parse_prefix("a/../b")


def test_identity_without_azure_identity_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    config = config_from_settings(settings(container="c12", account_name="acct"))
    with pytest.raises(StartupError, match=r"azure-identity .* pip install 'tfregistry-storage-azure\[identity\]'"):
        AzureBlobStorage.from_config(config)


def test_identity_uses_default_azure_credential(monkeypatch):
    made: list[dict[str, Any]] = []

    class DefaultAzureCredential:
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            self.closed = False

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no request is made while building the backend")

        def close(self) -> None:
            self.closed = True

    fake_module = types.SimpleNamespace(DefaultAzureCredential=DefaultAzureCredential)
    monkeypatch.setitem(sys.modules, "azure.identity", fake_module)
    config = config_from_settings(
        settings(container="c12", auth="identity", account_name="acct", managed_identity_client_id="client-1")
    )
    backend = AzureBlobStorage.from_config(config)
    assert made == [{"managed_identity_client_id": "client-1"}]
    assert backend.endpoint == "https://acct.blob.core.windows.net" and backend.supports_presigned_urls
    credential = backend._owned_credential
    backend.close()
    assert credential.closed


def test_malformed_account_key_stops_start_up():
    with pytest.raises(StartupError, match="storage.azure.account_key: not a storage account key"):
        AzureBlobStorage.from_config(
            AzureConfig(container="c12", auth="account_key", account_url="https://a.blob.core.windows.net",
                        account_name="a", account_key="not base64!")  # fmt: skip
        )
    with pytest.raises(StartupError, match="storage.azure.connection_string"):
        AzureBlobStorage.from_config(AzureConfig(container="c12", auth="connection_string", connection_string="junk"))
