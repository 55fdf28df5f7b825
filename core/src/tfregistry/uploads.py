"""Uploads spooled to disk and hashed while they arrive, so that large publishes pass over their bytes
once: received, hashed and written together, then adopted by the storage backend
(:meth:`~tfregistry.interfaces.StorageBackend.put_file`) rather than copied and hashed again."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import os
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

from tfregistry.interfaces import StorageBackend, StorageFull, StoredObject

#: Requests up to this size keep their uploaded files in memory (Werkzeug's default threshold).
SPOOL_IN_MEMORY_BELOW = 500 * 1024
#: A spool that will be kept asks the kernel to start writing it to disk every this many bytes.
WRITE_BACK_STEP = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _find_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range(2)`` (not in Python's ``os``), or ``None`` elsewhere."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError, TypeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_sync_file_range = _find_sync_file_range()


class SpooledUpload(io.FileIO):
    """An uploaded file spooled to disk, hashed (SHA-256) as the multipart parser writes it.

    Created in the storage backend's :meth:`~tfregistry.interfaces.StorageBackend.staging_directory`
    (or the temporary directory), unnamed where Linux allows (``O_TMPFILE``: a killed process leaves
    nothing), else as ``.upload~<hex>.tmp``, so a backend can adopt it with
    :meth:`~tfregistry.interfaces.StorageBackend.put_file` instead of copying it: together with
    :attr:`sha256` the bytes are received, hashed and written once.  The file is removed when closed
    (Werkzeug closes uploads at the end of the request).

    ``write_back``: the file will be kept (adopted by the backend, which fsyncs it), so on Linux the
    kernel is asked to start writing it to disk every :data:`WRITE_BACK_STEP` bytes
    (``sync_file_range``).  A machine with plenty of memory otherwise keeps a whole upload dirty in
    the page cache until that ``fsync``, which then waits for all of it after the upload: with the
    writes started early, the disk works while the rest of the upload arrives.
    """

    def __init__(self, directory: str | None, *, write_back: bool = False) -> None:
        directory = directory or tempfile.gettempdir()
        try:  # unnamed (Linux O_TMPFILE): nothing is left behind if the process dies mid-upload
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o666)
            path, self._named = f"/proc/self/fd/{fd}", False
        except (AttributeError, OSError):  # no O_TMPFILE here: a hidden name, collected by `tfr storage gc`
            path = os.path.join(directory, f".upload~{uuid.uuid4().hex}.tmp")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            self._named = True
        super().__init__(fd, "r+b", closefd=True)
        #: Where the file can be opened (or hard-linked, ``os.link`` following the link) while it is open.
        self.path = path
        self._sha: Any = hashlib.sha256()
        self._appending = True
        self._written = 0
        #: Bytes from the start that the kernel was asked to write to disk, or ``None`` (not asked).
        self.written_back: int | None = 0 if write_back and _sync_file_range is not None else None

    def write(self, data: Any) -> int:
        try:
            n = super().write(data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # answered 507, like a full storage backend
                raise StorageFull(f"no space left to receive the upload ({exc.strerror})") from exc
            raise
        if self._appending:
            self._sha.update(memoryview(data)[:n or 0])
            self._written += n or 0
            if self.written_back is not None and self._written - self.written_back >= WRITE_BACK_STEP:
                self._write_back()
        else:
            self._sha = None  # written after a seek: the digest no longer describes the file
        return n or 0

    def _write_back(self) -> None:
        """Start writing what was appended since the last call to disk, without waiting for it."""
        assert _sync_file_range is not None and self.written_back is not None
        if _sync_file_range(self.fileno(), self.written_back, self._written - self.written_back,
                            _SYNC_FILE_RANGE_WRITE) == 0:
            self.written_back = self._written
        else:
            self.written_back = None  # not supported here (the file system refused): stop asking

    def seek(self, pos: int, whence: int = 0) -> int:
        self._appending = False
        return super().seek(pos, whence)

    @property
    def sha256(self) -> str | None:
        """The SHA-256 of everything written, if it was written front to back only, else ``None``."""
        return self._sha.hexdigest() if self._sha is not None else None

    def close(self) -> None:
        super().close()
        if self._named:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def spooled_digest(fileobj: Any) -> tuple[str, str] | None:
    """``(path, sha256)`` of an upload :class:`SpooledUpload` received whole, else ``None``."""
    if isinstance(fileobj, SpooledUpload) and not fileobj.closed and fileobj.sha256 is not None:
        return fileobj.path, fileobj.sha256
    return None


def put_upload(storage: StorageBackend, key: str, fileobj: Any, *, content_type: str | None = None) -> StoredObject:
    """Store an uploaded file under ``key``: a :class:`SpooledUpload` received whole through
    :meth:`~tfregistry.interfaces.StorageBackend.put_file` with the digest taken while it arrived,
    anything else (an in-memory upload, a file from disk) through ``put`` from its start."""
    spooled = spooled_digest(fileobj)
    if spooled is not None:
        return storage.put_file(key, spooled[0], sha256=spooled[1], content_type=content_type)
    fileobj.seek(0)
    return storage.put(key, fileobj, content_type=content_type)
