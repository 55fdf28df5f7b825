"""A storage backend on Google Cloud Storage, through google-cloud-storage."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, BinaryIO

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Signing
from google.cloud import storage
from google.cloud.storage import exceptions as storage_exceptions
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from tfregistry.interfaces import (
    HashingReader,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StoredObject,
    read_full,
    validate_key,
)

__all__ = ["GcsOptions", "GcsStorage"]

#: Where large uploads land before a server-side rewrite puts them in place with their metadata.
UPLOAD_PREFIX = "_tfr_uploads/"
#: Bytes fetched per ranged GET while a download streams through the registry.
READ_CHUNK_SIZE = 4 * 1024 * 1024
#: The role the docs ask for; named in permission errors.
ROLE_HINT = "grant the registry's account roles/storage.objectAdmin on the bucket"

#: What the vendor libraries raise for a failed call (anything else is a bug, not an outage).
VENDOR_ERRORS: tuple[type[BaseException], ...] = (
    gexc.GoogleAPIError,
    auth_exceptions.GoogleAuthError,
    storage_exceptions.InvalidResponse,
    storage_exceptions.DataCorruption,
    requests.RequestException,
    OSError,
    ValueError,  # google-cloud-storage's resumable upload state errors
)


@dataclass(frozen=True)
class GcsOptions:
    """The ``storage.gcs.*`` settings."""

    bucket: str
    prefix: str = ""
    project: str | None = None
    credentials_file: str | None = None
    credentials_json: str | None = None
    endpoint: str | None = None
    anonymous: bool = False
    chunk_size: int = 16 * 1024 * 1024
    connect_timeout: int = 5
    read_timeout: int = 60
    max_attempts: int = 3


class _BoundedRetry(Retry):
    """google-cloud-storage's retry rule, capped at ``max_attempts`` attempts per request.

    api_core's ``Retry`` only bounds time; each call here gets a fresh count, so a
    closed port fails after a few quick attempts instead of retrying for a minute.
    """

    def __init__(self, *args: Any, max_attempts: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_attempts = max_attempts

    def __call__(self, func: Callable[..., Any], on_error: Callable[[Exception], Any] | None = None) -> Any:
        base = self._predicate

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            retries_left = [self.max_attempts - 1]

            def predicate(exc: Exception) -> bool:
                if retries_left[0] > 0 and base(exc):
                    retries_left[0] -= 1
                    return True
                return False

            fresh = Retry(predicate=predicate, initial=self._initial, maximum=self._maximum,
                          multiplier=self._multiplier, timeout=self._timeout)
            return fresh(func, on_error)(*args, **kwargs)

        return call


def _load_credentials(options: GcsOptions) -> tuple[Any, str | None, str]:
    """The credentials for API calls, their project, and the setting that supplied them."""
    if options.credentials_file:
        setting = "storage.gcs.credentials_file"
        try:
            credentials = service_account.Credentials.from_service_account_file(options.credentials_file)
        except (OSError, ValueError, KeyError) as exc:
            raise StorageError(f"gcs: {setting} ({options.credentials_file}) is not a readable "
                               f"service-account key: {exc}") from exc
        return credentials, credentials.project_id, setting
    if options.credentials_json:
        setting = "storage.gcs.credentials_json"
        try:
            credentials = service_account.Credentials.from_service_account_info(json.loads(options.credentials_json))
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"gcs: {setting} is not a service-account key (JSON text): {exc}") from exc
        return credentials, credentials.project_id, setting
    if options.anonymous:
        return None, None, "storage.gcs.anonymous"
    setting = "Application Default Credentials"
    try:
        credentials, project = google.auth.default(scopes=storage.Client.SCOPE)
    except auth_exceptions.GoogleAuthError as exc:
        raise StorageError(
            "gcs: no credentials: set storage.gcs.credentials_file or storage.gcs.credentials_json, or provide "
            "Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity on GKE, the "
            f"GCE metadata server, gcloud auth application-default login): {exc}") from exc
    return credentials, project, setting


class GcsStorage(StorageBackend):
    """Objects in one bucket (under an optional name prefix).

    Objects up to one chunk are written in one request carrying the SHA-256 metadata;
    larger ones stream as a resumable upload to a temporary name, then a server-side
    rewrite puts them in place with their metadata, so readers never see half an
    object.  V4 signed URLs need a credential that can sign (a service-account key,
    given in the settings or as Application Default Credentials); without one
    ``presigned_url`` returns ``None`` and the core streams downloads itself.
    """

    name = "gcs"

    def __init__(self, options: GcsOptions) -> None:
        self.options = options
        self.prefix = options.prefix.lstrip("/")
        self.timeout = (options.connect_timeout, options.read_timeout)
        self.retry = _BoundedRetry(predicate=DEFAULT_RETRY._predicate, initial=0.5, maximum=4.0, multiplier=2.0,
                                   timeout=options.read_timeout, max_attempts=options.max_attempts)
        credentials, key_project, self.credential_source = _load_credentials(options)
        project = options.project or key_project or ("tfregistry" if options.anonymous else None)
        try:
            self.client = storage.Client(
                project=project,
                credentials=AnonymousCredentials() if options.anonymous else credentials,
                client_options={"api_endpoint": options.endpoint} if options.endpoint else None,
            )
        except VENDOR_ERRORS as exc:
            raise StorageError(f"gcs: cannot create the client ({self.credential_source}): {exc}") from exc
        self.bucket = self.client.bucket(options.bucket)
        #: A credential that can sign (a service-account key) makes V4 signed URLs; IAM signBlob is not used.
        self.signing_credentials = credentials if isinstance(credentials, Signing) else None
        self.supports_presigned_urls = self.signing_credentials is not None
        self.account = getattr(credentials, "service_account_email", None)

    def __repr__(self) -> str:
        return f"GcsStorage(bucket={self.options.bucket!r}, prefix={self.prefix!r})"

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str = "", *, missing_is_object: bool = False) -> Iterator[None]:
        """Turn what the vendor libraries raise into :class:`StorageError` naming bucket and key."""
        bucket = self.options.bucket
        where = f"{key!r} in bucket {bucket!r}" if key else f"bucket {bucket!r}"
        try:
            yield
        except StorageError:
            raise  # already ours (InvalidKey, ObjectNotFound...)
        except gexc.NotFound as exc:
            if missing_is_object and "bucket" not in str(exc.message).lower():
                raise ObjectNotFound(f"gcs: {key!r} not found in bucket {bucket!r}") from exc
            raise StorageError(f"gcs: cannot {action} {where}: the bucket does not exist "
                               "(setting storage.gcs.bucket)") from exc
        except gexc.Forbidden as exc:
            raise StorageError(f"gcs: cannot {action} {where}: permission denied ({exc.message}); "
                               f"{ROLE_HINT}") from exc
        except (gexc.Unauthorized, auth_exceptions.RefreshError) as exc:
            raise StorageError(f"gcs: cannot {action} {where}: the credentials were rejected ({exc}); "
                               f"check {self.credential_source}") from exc
        except VENDOR_ERRORS as exc:
            raise StorageError(f"gcs: cannot {action} {where}: {exc}") from exc

    def put(self, key: str, fileobj: BinaryIO, *, content_type: str | None = None) -> StoredObject:
        name = self._name(key)
        content_type = content_type or "application/octet-stream"
        reader = HashingReader(fileobj)
        first = read_full(reader, self.options.chunk_size)
        peek = read_full(reader, 1) if len(first) == self.options.chunk_size else b""
        if not peek:  # fits one request: metadata and bytes together
            blob = self.bucket.blob(name)
            blob.metadata = {"sha256": reader.sha256}
            with self._errors("store", key):
                blob.upload_from_string(first, content_type=content_type, timeout=self.timeout, retry=self.retry)
            return StoredObject(key, reader.size, reader.sha256)
        source = _Prefixed([first, peek], reader)
        del first  # the upload holds at most one chunk: keep no other reference to it
        temp = self.bucket.blob(f"{self.prefix}{UPLOAD_PREFIX}{uuid.uuid4().hex}", chunk_size=self.options.chunk_size)
        try:
            with self._errors("store", key):
                temp.upload_from_file(source, rewind=False, content_type=content_type, timeout=self.timeout,
                                      retry=self.retry)
                final = self.bucket.blob(name)
                final.metadata = {"sha256": reader.sha256}
                final.content_type = content_type
                token, _, _ = final.rewrite(temp, timeout=self.timeout, retry=self.retry)
                while token is not None:
                    token, _, _ = final.rewrite(temp, token=token, timeout=self.timeout, retry=self.retry)
                final.reload(timeout=self.timeout, retry=self.retry)
                if (final.metadata or {}).get("sha256") != reader.sha256:  # some servers ignore rewrite metadata
                    final.metadata = {"sha256": reader.sha256}
                    final.patch(timeout=self.timeout, retry=self.retry)
        finally:
            with contextlib.suppress(Exception):
                temp.delete(timeout=self.timeout, retry=None)
        return StoredObject(key, reader.size, reader.sha256)

    def open(self, key: str) -> BinaryIO:
        blob = self.bucket.blob(self._name(key))
        with self._errors("read", key, missing_is_object=True):
            # reload() fails now for a missing object and pins the generation, so an
            # overwrite during the download fails the read instead of mixing two objects
            blob.reload(timeout=self.timeout, retry=self.retry)
            inner = blob.open("rb", chunk_size=READ_CHUNK_SIZE, timeout=self.timeout, retry=self.retry)
        return _Reader(inner, self, key)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        with self._errors("look up", key):
            return self.bucket.blob(self._name(key)).exists(timeout=self.timeout, retry=self.retry)

    def size(self, key: str) -> int | None:
        blob = self.bucket.blob(self._name(key))
        with self._errors("look up", key, missing_is_object=True):
            blob.reload(timeout=self.timeout, retry=self.retry)
        return blob.size

    def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound), self._errors("delete", key, missing_is_object=True):
            self.bucket.blob(self._name(key)).delete(timeout=self.timeout, retry=self.retry)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # GCS lists names in lexicographic (UTF-8 byte = code point) order, page after page,
        # and stripping one fixed prefix keeps that order: stream, never collect.
        with self._errors("list", prefix):
            blobs = self.client.list_blobs(self.bucket, prefix=self.prefix + prefix, timeout=self.timeout,
                                           retry=self.retry)
            for blob in blobs:
                key = blob.name[len(self.prefix):]
                if key.startswith(UPLOAD_PREFIX):
                    continue
                updated = blob.updated
                yield ObjectInfo(key, int(blob.size or 0), updated.astimezone(UTC) if updated.tzinfo
                                 else updated.replace(tzinfo=UTC))

    def presigned_url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        if not self.supports_presigned_urls:
            return None
        kwargs: dict[str, Any] = {"version": "v4", "expiration": timedelta(seconds=expires_in), "method": "GET",
                                  "credentials": self.signing_credentials}
        if filename:
            kwargs["response_disposition"] = f'attachment; filename="{filename}"'
        if self.options.endpoint:
            kwargs["api_access_endpoint"] = self.options.endpoint
        with self._errors("sign a download URL for", key):
            return self.bucket.blob(self._name(key)).generate_signed_url(**kwargs)

    def check(self) -> list[str]:
        """The bucket and credentials first (one object listing), then the generic write/read probe.

        The first call lists at most one object: that needs only ``storage.objects.list``,
        which ``roles/storage.objectAdmin`` grants (``storage.buckets.get`` it does not).
        """
        bucket = self.options.bucket
        try:
            next(iter(self.client.list_blobs(self.bucket, max_results=1, timeout=self.timeout, retry=self.retry)),
                 None)
        except gexc.NotFound:
            return [f"gcs: bucket {bucket!r} does not exist (setting storage.gcs.bucket)"]
        except gexc.Forbidden as exc:
            who = self.account or "the registry's account"
            return [f"gcs: {who} may not list objects in bucket {bucket!r} ({exc.message}); {ROLE_HINT}"]
        except (gexc.Unauthorized, auth_exceptions.RefreshError) as exc:
            return [f"gcs: the credentials were rejected ({exc}); check {self.credential_source}"]
        except VENDOR_ERRORS as exc:
            return [f"gcs: cannot reach bucket {bucket!r}: {exc}"]
        return [p if p.startswith("gcs:") else f"gcs: {p}" for p in super().check()]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


class _Reader(io.IOBase):
    """A download stream (seekable: ranged GETs) whose failures are :class:`StorageError`."""

    def __init__(self, inner: io.BufferedIOBase, storage: GcsStorage, key: str) -> None:
        super().__init__()
        self._inner = inner
        self._storage = storage
        self._key = key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with self._storage._errors("read", self._key, missing_is_object=True):
            return self._inner.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._storage._errors("read", self._key, missing_is_object=True):
            return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._inner.close()
        super().close()


class _Prefixed:
    """Chunks already read, then the rest of a reader, with the ``tell()`` uploads need.

    A read that asks for exactly the first chunk gets that very object back: no copy.
    """

    def __init__(self, heads: list[bytes], rest: HashingReader) -> None:
        self._heads = [head for head in heads if head]
        self._rest = rest
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        while self._heads and n != 0:
            head = self._heads[0]
            if n < 0 or len(head) <= n:
                parts.append(self._heads.pop(0))
                n = n if n < 0 else n - len(head)
            else:
                parts.append(head[:n])
                self._heads[0] = head[n:]
                n = 0
        if n != 0:  # a short read would end a resumable upload early: fill the chunk
            parts.append(read_full(self._rest, n) if n > 0 else self._rest.read(n))
        take = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos += len(take)
        return take

    def tell(self) -> int:
        return self._pos
