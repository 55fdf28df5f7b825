"""An in-memory storage backend: the smallest complete StorageBackend.

Objects live in a dict for the life of the process, so it suits tests and demos,
not a real site.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from tfregistry.interfaces import (
    CHUNK_SIZE,
    HashingReader,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StoredObject,
    validate_key,
)

__all__ = ["MemoryStorage"]


class MemoryStorage(StorageBackend):
    """Objects kept in a dict guarded by a lock; safe to share between threads."""

    name = "example-memory"
    supports_presigned_urls = False

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, datetime]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, fileobj: BinaryIO, *, content_type: str | None = None) -> StoredObject:
        """Read ``fileobj`` in chunks, then swap the whole object in at once."""
        validate_key(key)
        reader = HashingReader(fileobj)
        buffer = io.BytesIO()
        while chunk := reader.read(CHUNK_SIZE):
            buffer.write(chunk)
        with self._lock:
            self._objects[key] = (buffer.getvalue(), datetime.now(UTC))
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def open(self, key: str) -> BinaryIO:
        """A seekable in-memory stream over the stored bytes."""
        validate_key(key)
        with self._lock:
            stored = self._objects.get(key)
        if stored is None:
            raise ObjectNotFound(key)
        return io.BytesIO(stored[0])

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        validate_key(key)
        with self._lock:
            return key in self._objects

    def delete(self, key: str) -> None:
        """Forget ``key``; an absent key is fine."""
        validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The objects whose key starts with ``prefix``, from a snapshot taken at the call."""
        with self._lock:
            snapshot = [
                (k, len(data), when) for k, (data, when) in self._objects.items() if k.startswith(prefix)
            ]
        for key, size, when in sorted(snapshot):
            yield ObjectInfo(key=key, size=size, last_modified=when)

    def size(self, key: str) -> int | None:
        """Size of ``key``, or ``None`` if it is absent."""
        validate_key(key)
        with self._lock:
            stored = self._objects.get(key)
        return None if stored is None else len(stored[0])
