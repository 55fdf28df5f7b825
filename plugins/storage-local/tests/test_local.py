"""Behaviour specific to keeping objects as files."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from tfregistry import StartupError
from tfregistry.interfaces import CHUNK_SIZE, ObjectNotFound, StorageError
from tfregistry.testing.plugin import BackendCollector, SettingsCollector
from tfregistry_storage_local import plugin
from tfregistry_storage_local.backend import LocalStorage


class FailingReader:
    """Yields ``good`` bytes in small reads, then raises, like a client that disconnects."""

    def __init__(self, good: int) -> None:
        self._left = good

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            raise ConnectionResetError("client went away")
        n = min(n, self._left, 64 * 1024)
        self._left -= n
        return b"x" * n


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def test_objects_are_plain_files_under_the_root(storage: LocalStorage) -> None:
    storage.put("modules/acme/vpc/aws/1.0.0.tar.gz", io.BytesIO(b"archive"))
    assert (storage.root / "modules/acme/vpc/aws/1.0.0.tar.gz").read_bytes() == b"archive"
    assert all_files(storage.root) == ["modules/acme/vpc/aws/1.0.0.tar.gz"]


def test_root_is_created_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    backend = LocalStorage("relative/dir")
    assert backend.root == tmp_path / "relative/dir"
    assert backend.root.is_dir()


def test_failing_reader_leaves_no_object_and_no_temp_file(storage: LocalStorage) -> None:
    with pytest.raises(ConnectionResetError):
        storage.put("uploads/new.tar.gz", FailingReader(2 * CHUNK_SIZE + 10))
    assert not storage.exists("uploads/new.tar.gz")
    assert all_files(storage.root) == []
    assert list(storage.list()) == []


def test_failing_reader_keeps_the_previous_object(storage: LocalStorage) -> None:
    storage.put("uploads/old.tar.gz", io.BytesIO(b"previous"))
    with pytest.raises(ConnectionResetError):
        storage.put("uploads/old.tar.gz", FailingReader(100))
    with storage.open("uploads/old.tar.gz") as fh:
        assert fh.read() == b"previous"
    assert all_files(storage.root) == ["uploads/old.tar.gz"]


def test_temp_files_are_never_listed(storage: LocalStorage) -> None:
    storage.put("a/b.txt", io.BytesIO(b"b"))
    (storage.root / "a" / ".b.txt~0123456789abcdef0123456789abcdef.tmp").write_bytes(b"partial")
    (storage.root / "a" / "not a key.txt").write_bytes(b"stray")
    assert [i.key for i in storage.list()] == ["a/b.txt"]


def test_open_returns_a_seekable_file(storage: LocalStorage) -> None:
    storage.put("f.bin", io.BytesIO(b"0123456789"))
    with storage.open("f.bin") as fh:
        assert fh.seekable()
        fh.seek(-3, os.SEEK_END)
        assert fh.read() == b"789"


def test_directory_is_not_an_object(storage: LocalStorage) -> None:
    storage.put("dir/file.txt", io.BytesIO(b"x"))
    assert storage.exists("dir") is False
    assert storage.size("dir") is None
    with pytest.raises(ObjectNotFound):
        storage.open("dir")
    storage.delete("dir")
    assert storage.exists("dir/file.txt")
    with pytest.raises(StorageError):
        storage.put("dir", io.BytesIO(b"over a directory"))
    assert all_files(storage.root) == ["dir/file.txt"]


def test_delete_prunes_empty_directories_but_not_the_root(storage: LocalStorage) -> None:
    storage.put("a/b/c/d.txt", io.BytesIO(b"d"))
    storage.put("a/keep.txt", io.BytesIO(b"k"))
    storage.delete("a/b/c/d.txt")
    assert not (storage.root / "a" / "b").exists()
    assert (storage.root / "a" / "keep.txt").is_file()
    storage.delete("a/keep.txt")
    assert storage.root.is_dir()
    assert list(storage.root.iterdir()) == []


def test_put_survives_concurrent_pruning(storage: LocalStorage) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            while not stop.is_set():
                storage.put("shared/dir/churn.txt", io.BytesIO(b"c"))
                storage.delete("shared/dir/churn.txt")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for i in range(200):
            storage.put(f"shared/dir/object-{i}.txt", io.BytesIO(b"o"))
            storage.delete(f"shared/dir/object-{i}.txt")
    finally:
        stop.set()
        thread.join()
    assert errors == []


# --- plugin module ----------------------------------------------------------------------


def test_plugin_declares_its_setting() -> None:
    declarations = SettingsCollector()
    plugin.tfr_add_settings(settings=declarations)
    assert declarations.added["storage.local.path"]["type"] is Path
    assert declarations.added["storage.local.path"]["default"] is None
    assert declarations.added["storage.local.path"]["help"]


def test_plugin_registers_local_backend_with_default_path(tmp_path: Path) -> None:
    register = BackendCollector()
    plugin.tfr_register_storage_backends(register=register)
    factory, description = register.added["local"]
    assert description
    backend = factory({"storage.local.path": None, "data_dir": tmp_path / "data"})
    assert isinstance(backend, LocalStorage)
    assert backend.name == "local"
    assert backend.root == tmp_path / "data" / "storage"
    assert backend.root.is_dir()
    assert backend.check() == []


def test_plugin_uses_configured_path(tmp_path: Path) -> None:
    factory = plugin.make_local_storage
    backend = factory({"storage.local.path": tmp_path / "elsewhere", "data_dir": tmp_path / "data"})
    assert backend.root == tmp_path / "elsewhere"
    assert not (tmp_path / "data").exists()


def test_plugin_reports_an_unusable_path(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StartupError, match="storage.local.path"):
        plugin.make_local_storage({"storage.local.path": tmp_path / "a-file" / "sub", "data_dir": tmp_path})


def test_plugin_is_a_valid_pluggy_plugin() -> None:
    import pluggy

    from tfregistry import hookspecs

    pm = pluggy.PluginManager("tfregistry")
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    pm.check_pending()
    register = BackendCollector()
    pm.hook.tfr_register_storage_backends(register=register)
    assert list(register.added) == ["local"]


def test_temporary_files_of_a_killed_put_are_removed_once_old(storage: LocalStorage) -> None:
    """A process killed inside ``put`` leaves ``.name~hex.tmp``, which ``list`` hides; gc removes it."""
    from datetime import UTC, datetime, timedelta

    storage.put("modules/a/kept.tar.gz", io.BytesIO(b"kept"))
    directory = storage.root / "modules" / "b" / "1.0.0"
    directory.mkdir(parents=True)
    leftover = directory / ".x.tar.gz~0123456789abcdef0123456789abcdef.tmp"
    leftover.write_bytes(b"half")
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(leftover, (old, old))
    assert [info.key for info in storage.list("modules/")] == ["modules/a/kept.tar.gz"]

    assert storage.remove_partial_writes(datetime.now(UTC) - timedelta(hours=3)) == []  # too young: a put going on
    found = storage.remove_partial_writes(datetime.now(UTC) - timedelta(hours=1), dry_run=True)
    assert [(info.key, info.size) for info in found] == [(
        "modules/b/1.0.0/.x.tar.gz~0123456789abcdef0123456789abcdef.tmp", 4)]
    assert leftover.exists()
    assert len(storage.remove_partial_writes(datetime.now(UTC) - timedelta(hours=1))) == 1
    assert not leftover.exists() and not (storage.root / "modules" / "b").exists()  # emptied directories pruned
    assert storage.open("modules/a/kept.tar.gz").read() == b"kept"


def test_put_file_links_a_spooled_upload_without_copying(storage: LocalStorage) -> None:
    """An upload spooled in the root (as the core names it) is fsynced and linked into place: one
    write of the bytes in all."""
    import hashlib

    spool = Path(storage.staging_directory()) / ".upload~0123456789abcdef0123456789abcdef.tmp"
    spool.write_bytes(b"z" * (2 * CHUNK_SIZE))
    digest = hashlib.sha256(spool.read_bytes()).hexdigest()
    stored = storage.put_file("providers/x/1.0.0/pkg.zip", str(spool), sha256=digest)
    target = storage.root / "providers" / "x" / "1.0.0" / "pkg.zip"
    assert os.stat(target).st_ino == os.stat(spool).st_ino  # the same file, not a copy
    spool.unlink()  # what the core does next
    assert os.stat(target).st_nlink == 1 and target.read_bytes() == b"z" * (2 * CHUNK_SIZE)
    assert (stored.size, stored.sha256) == (2 * CHUNK_SIZE, digest)
    assert all_files(storage.root) == ["providers/x/1.0.0/pkg.zip"]


def test_put_file_copies_a_file_without_a_digest(storage: LocalStorage, tmp_path: Path) -> None:
    source = tmp_path / "elsewhere.bin"
    source.write_bytes(b"abc")
    stored = storage.put_file("a/one.bin", str(source))
    assert stored.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # computed
    assert os.stat(source).st_nlink == 1  # a copy
    assert storage.open("a/one.bin").read() == b"abc"


def test_stale_spooled_uploads_are_hidden_and_collected(storage: LocalStorage) -> None:
    from datetime import UTC, datetime, timedelta

    leftover = storage.root / ".upload~0123456789abcdef0123456789abcdef.tmp"
    leftover.write_bytes(b"half an upload")
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(leftover, (old, old))
    assert list(storage.list("")) == []
    assert [i.key for i in storage.remove_partial_writes(datetime.now(UTC) - timedelta(hours=1))] == [leftover.name]
    assert not leftover.exists()
