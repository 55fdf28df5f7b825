"""A storage backend that keeps objects as files under one directory."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from tfregistry.interfaces import (
    CHUNK_SIZE,
    HashingReader,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageFull,
    StoredObject,
    validate_key,
)

__all__ = ["LocalStorage"]

#: Names :meth:`LocalStorage._create_temp` gives temporary files (never a valid key segment).
_TEMP_NAME = re.compile(r"^\..*~[0-9a-f]{32}\.tmp$")

#: Attempts to create a temporary file when a concurrent delete prunes its directory meanwhile.
_CREATE_ATTEMPTS = 5


def _link(source: str, target: str) -> None:
    """Hard-link ``source`` as ``target`` following a final symbolic link, so ``/proc/self/fd/N`` of an
    unnamed (``O_TMPFILE``) file links the file itself: ``linkat(AT_SYMLINK_FOLLOW)``, which ``os.link``
    uses only when given a directory descriptor."""
    parent = os.open(os.path.dirname(source) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(os.path.basename(source), target, src_dir_fd=parent, follow_symlinks=True)
    finally:
        os.close(parent)


def _is_key_segment(name: str) -> bool:
    try:
        validate_key(name)
    except InvalidKey:
        return False
    return True


@contextlib.contextmanager
def _storage_errors(action: str, key: str) -> Iterator[None]:
    """Turn a filesystem error into a :class:`StorageError` naming the key."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"local storage: cannot {action} {key!r}: {exc.strerror} ({exc.filename or ''})"
                              ) from exc
        raise StorageError(f"local storage: cannot {action} {key!r}: {exc}") from exc


class LocalStorage(StorageBackend):
    """Objects stored as files under ``root``; the key is the relative path.

    Writes go to a temporary file in the target directory, are fsynced, then
    renamed over the target with :func:`os.replace`, so readers see the old file
    or the whole new one.  Temporary names contain ``~``, which no key may
    contain, so they never show up in :meth:`list`.  There are no presigned URLs:
    the core serves downloads itself.
    """

    name = "local"
    supports_presigned_urls = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> str:
        validate_key(key)
        return os.path.join(self.root, *key.split("/"))

    def _create_temp(self, directory: str, name: str) -> tuple[str, BinaryIO]:
        last_error: OSError | None = None
        for _ in range(_CREATE_ATTEMPTS):
            # Truncated so that a long key segment still leaves room in a 255-byte file name.
            tmp_path = os.path.join(directory, f".{name[:100]}~{uuid.uuid4().hex}.tmp")
            try:
                os.makedirs(directory, exist_ok=True)
                return tmp_path, open(tmp_path, "xb")
            except (FileNotFoundError, FileExistsError) as exc:
                # A concurrent delete() pruned the directory while makedirs or open ran.
                last_error = exc
        assert last_error is not None
        raise last_error

    def put(self, key: str, fileobj: BinaryIO, *, content_type: str | None = None) -> StoredObject:
        """Stream ``fileobj`` into ``key`` atomically; ``content_type`` is not kept."""
        path = self._path(key)
        directory, name = os.path.split(path)
        reader = HashingReader(fileobj)
        with _storage_errors("write", key):
            tmp_path, fh = self._create_temp(directory, name)
        try:
            with fh:
                while chunk := reader.read(CHUNK_SIZE):
                    with _storage_errors("write", key):
                        fh.write(chunk)
                with _storage_errors("write", key):
                    fh.flush()
                    os.fsync(fh.fileno())
            with _storage_errors("write", key):
                os.replace(tmp_path, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
            raise
        self._fsync_directory(directory)
        return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

    def staging_directory(self) -> str:
        """The root itself: a spooled upload (unnamed, or ``.upload~<hex>.tmp`` where the system has no
        ``O_TMPFILE``: never a key, cleaned by :meth:`remove_partial_writes` if its process dies) is on
        the same filesystem, so :meth:`put_file` links it into place instead of copying it."""
        return str(self.root)

    def put_file(self, key: str, path: str, *, sha256: str | None = None,
                 content_type: str | None = None) -> StoredObject:
        """Store the file ``path``: with its ``sha256`` known (the core's spooled upload, which it never
        writes again) and on this filesystem, it is fsynced and hard-linked into place (atomically,
        through a temporary name and :func:`os.replace`; ``/proc/self/fd/N`` of an unnamed file works
        too); otherwise it is copied (and hashed) like :meth:`put`."""
        target = self._path(key)
        directory, name = os.path.split(target)
        with _storage_errors("write", key):
            st = os.stat(path)
        if sha256 is None or st.st_dev != os.stat(self.root).st_dev:
            return super().put_file(key, path, sha256=sha256, content_type=content_type)
        tmp_path = None
        try:
            with _storage_errors("write", key):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                for _ in range(_CREATE_ATTEMPTS):
                    tmp_path = os.path.join(directory, f".{name[:100]}~{uuid.uuid4().hex}.tmp")
                    try:
                        os.makedirs(directory, exist_ok=True)
                        _link(path, tmp_path)
                        break
                    except FileNotFoundError:  # a concurrent delete() pruned the directory
                        tmp_path = None
                else:
                    raise FileNotFoundError(errno.ENOENT, "directory removed while linking", directory)
                os.replace(tmp_path, target)
                tmp_path = None
        except StorageError as exc:
            if isinstance(exc.__cause__, OSError) and exc.__cause__.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK,
                                                                              errno.ENOTSUP):
                return super().put_file(key, path, sha256=sha256, content_type=content_type)  # no hard links here
            raise
        finally:
            if tmp_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_path)
        self._fsync_directory(directory)
        return StoredObject(key=key, size=st.st_size, sha256=sha256)

    def remove_partial_writes(self, older_than: datetime, *, dry_run: bool = False) -> list[ObjectInfo]:
        """Remove temporary files of :meth:`put` calls that never finished (the process was killed)."""
        found = []
        root = str(self.root)
        for directory, _dirs, files in os.walk(root):
            for name in files:
                if not _TEMP_NAME.match(name):
                    continue
                path = os.path.join(directory, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
                if modified >= older_than:
                    continue  # a put in progress
                found.append(ObjectInfo(key=os.path.relpath(path, root).replace(os.sep, "/"), size=st.st_size,
                                        last_modified=modified))
                if not dry_run:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    self._prune(directory)
        return found

    def _prune(self, directory: str) -> None:
        """Remove ``directory`` and its parents up to the root while they are empty."""
        root = str(self.root)
        while directory != root and directory.startswith(root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                break
            directory = os.path.dirname(directory)

    @staticmethod
    def _fsync_directory(directory: str) -> None:
        """Make the rename durable (best effort: not every platform can open a directory)."""
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def open(self, key: str) -> BinaryIO:
        """Open the file for ``key`` (a real, seekable file object)."""
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"local storage: cannot read {key!r}: {exc}") from exc

    def exists(self, key: str) -> bool:
        """Whether a regular file is stored for ``key``."""
        return os.path.isfile(self._path(key))

    def size(self, key: str) -> int | None:
        """The file's size, or ``None`` if there is no object under ``key``."""
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def delete(self, key: str) -> None:
        """Remove ``key``, then prune the directories it leaves empty (best effort)."""
        path = self._path(key)
        if os.path.isdir(path):
            return
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"local storage: cannot delete {key!r}: {exc}") from exc
        self._prune(os.path.dirname(path))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the objects whose key starts with ``prefix``, in key order, as the tree is walked."""
        directory_part, _, name_prefix = prefix.rpartition("/")
        if directory_part:
            # Every key under "x/y/" starts with valid segments; anything else matches nothing.
            try:
                validate_key(directory_part)
            except InvalidKey:
                return
            start = os.path.join(self.root, *directory_part.split("/"))
            key_base = directory_part + "/"
        else:
            start, key_base = str(self.root), ""
        # One iterator of sorted entries per open directory; a directory sorts as "name/"
        # so that the walk yields keys in plain string order ("a-1" < "a.txt" < "a/x").
        stack = [(key_base, iter(self._entries(start, name_prefix)))]
        while stack:
            base, entries = stack[-1]
            item = next(entries, None)
            if item is None:
                stack.pop()
                continue
            sort_name, entry, is_dir = item
            if is_dir:
                stack.append((base + sort_name, iter(self._entries(entry.path))))
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield ObjectInfo(
                    key=base + entry.name,
                    size=st.st_size,
                    last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
                )

    @staticmethod
    def _entries(directory: str, name_prefix: str = "") -> list[tuple[str, os.DirEntry[str], bool]]:
        found = []
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if not entry.name.startswith(name_prefix) or not _is_key_segment(entry.name):
                        continue
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    found.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found.sort(key=lambda item: item[0])
        return found
