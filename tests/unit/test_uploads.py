"""Uploads spooled to disk and hashed while they arrive (tfregistry.uploads)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from tfregistry.uploads import SpooledUpload, put_upload, spooled_digest
from tfregistry_storage_local.backend import LocalStorage


def test_digest_is_taken_while_writing_and_the_file_goes_on_close(tmp_path: Path) -> None:
    spool = SpooledUpload(str(tmp_path))
    for part in (b"provider ", b"bytes", b""):
        spool.write(part)
    spool.seek(0)
    assert spool.read() == b"provider bytes"
    assert spool.sha256 == hashlib.sha256(b"provider bytes").hexdigest()
    assert spooled_digest(spool) == (spool.path, spool.sha256)
    with open(spool.path, "rb") as again:  # readable by its path while open
        assert again.read() == b"provider bytes"
    assert os.listdir(tmp_path) == []  # unnamed (O_TMPFILE): a killed process leaves nothing behind
    spool.close()
    assert spooled_digest(spool) is None and os.listdir(tmp_path) == []


def test_a_write_after_a_seek_drops_the_digest(tmp_path: Path) -> None:
    spool = SpooledUpload(str(tmp_path))
    spool.write(b"abc")
    spool.seek(1)
    spool.write(b"X")
    assert spool.sha256 is None and spooled_digest(spool) is None
    spool.close()


def test_put_upload_uses_put_file_for_a_spool_and_put_for_anything_else(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    spool = SpooledUpload(storage.staging_directory())
    spool.write(b"spooled")
    spool.seek(3)  # where a reader left it: put_file stores the whole file anyway
    stored = put_upload(storage, "k/spooled", spool)
    assert os.stat(storage.root / "k" / "spooled").st_ino == os.stat(spool.path).st_ino  # linked, not copied
    spool.close()
    assert os.stat(storage.root / "k" / "spooled").st_nlink == 1
    memory = io.BytesIO(b"in memory")
    memory.seek(5)
    other = put_upload(storage, "k/memory", memory)
    assert (stored.sha256, other.sha256) == (hashlib.sha256(b"spooled").hexdigest(),
                                             hashlib.sha256(b"in memory").hexdigest())
    assert storage.open("k/memory").read() == b"in memory"


def test_a_spool_that_will_be_kept_is_written_back_as_it_grows(tmp_path: Path) -> None:
    """``write_back``: every WRITE_BACK_STEP bytes the kernel is asked to start writing (Linux); the bytes
    and the digest are those written, and a spool without it is never asked."""
    from tfregistry.uploads import WRITE_BACK_STEP

    part = os.urandom(1024 * 1024)
    parts = 2 * WRITE_BACK_STEP // len(part) + 3
    kept, temporary = SpooledUpload(str(tmp_path), write_back=True), SpooledUpload(str(tmp_path))
    for spool in (kept, temporary):
        for _ in range(parts):
            spool.write(part)
    assert kept.written_back == 2 * WRITE_BACK_STEP  # asked twice, for what had been written by then
    assert temporary.written_back is None
    for spool in (kept, temporary):
        assert spool.sha256 == hashlib.sha256(part * parts).hexdigest()
        with open(spool.path, "rb") as again:
            assert again.read() == part * parts
        spool.close()
