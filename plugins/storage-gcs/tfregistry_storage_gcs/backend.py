"""A storage backend on Google Cloud Storage, through google-cloud-storage."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, BinaryIO

import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from tfregistry.interfaces import (
    HashingReader,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StoredObject,
    validate_key,
)

__all__ = ["GcsOptions", "GcsStorage"]

#: Where large uploads land before a server-side rewrite puts them in place with their metadata.
UPLOAD_PREFIX = "_tfr_uploads/"


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
    timeout: int = 60


def _credentials(options: GcsOptions) -> Any:
    if options.credentials_file:
        return service_account.Credentials.from_service_account_file(options.credentials_file)
    if options.credentials_json:
        return service_account.Credentials.from_service_account_info(json.loads(options.credentials_json))
    return None  # Application Default Credentials (includes GKE workload identity)


class GcsStorage(StorageBackend):
    """Objects in one bucket (under an optional name prefix).

    Objects up to one chunk are written in one request carrying the SHA-256 metadata;
    larger ones stream as a resumable upload to a temporary name, then a server-side
    rewrite puts them in place with their metadata, so readers never see half an
    object.  Signed (V4) URLs need a credential that can sign (a service-account key);
    without one ``presigned_url`` returns ``None`` and the core streams downloads itself.
    """

    name = "gcs"

    def __init__(self, options: GcsOptions) -> None:
        self.options = options
        self.prefix = options.prefix.lstrip("/")
        try:
            credentials = _credentials(options)
            client_options = {"api_endpoint": options.endpoint} if options.endpoint else None
            project = options.project or ("tfregistry" if options.anonymous else None)
            api_credentials = AnonymousCredentials() if options.anonymous else credentials
            self.client = storage.Client(project=project, credentials=api_credentials, client_options=client_options)
        except (gexc.GoogleAPIError, ValueError, OSError, KeyError) as exc:
            raise StorageError(f"gcs: cannot set up credentials: {exc}") from exc
        except Exception as exc:  # google.auth.exceptions.DefaultCredentialsError and friends
            raise StorageError(f"gcs: cannot set up credentials: {exc}") from exc
        self.bucket = self.client.bucket(options.bucket)
        #: Only a credential that can sign (a service-account key) makes V4 signed URLs.
        self.signing_credentials = credentials if hasattr(credentials, "sign_bytes") else None
        self.supports_presigned_urls = self.signing_credentials is not None
        self.retry = Retry(deadline=options.timeout)

    def __repr__(self) -> str:
        return f"GcsStorage(bucket={self.options.bucket!r}, prefix={self.prefix!r})"

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str = "") -> Iterator[None]:
        where = f"{key!r} in bucket {self.options.bucket!r}" if key else f"bucket {self.options.bucket!r}"
        try:
            yield
        except StorageError:
            raise  # already ours (InvalidKey, ObjectNotFound...)
        except gexc.NotFound as exc:
            raise ObjectNotFound(f"gcs: {key!r} not found in bucket {self.options.bucket!r}") from exc
        except (gexc.GoogleAPIError, requests.RequestException, OSError, ValueError) as exc:
            raise StorageError(f"gcs: cannot {action} {where}: {exc}") from exc

    def put(self, key: str, fileobj: BinaryIO, *, content_type: str | None = None) -> StoredObject:
        name = self._name(key)
        reader = HashingReader(fileobj)
        first = reader.read(self.options.chunk_size)
        peek = reader.read(1) if len(first) == self.options.chunk_size else b""
        if not peek:
            blob = self.bucket.blob(name)
            blob.metadata = {"sha256": reader.sha256}
            with self._errors("store", key):
                blob.upload_from_string(first, content_type=content_type or "application/octet-stream",
                                        timeout=self.options.timeout, retry=self.retry)
            return StoredObject(key, reader.size, reader.sha256)
        temp = self.bucket.blob(f"{self.prefix}{UPLOAD_PREFIX}{uuid.uuid4().hex}", chunk_size=self.options.chunk_size)
        try:
            with self._errors("store", key):
                temp.upload_from_file(_Prefixed(first + peek, reader), rewind=False, timeout=self.options.timeout,
                                      content_type=content_type or "application/octet-stream")
            final = self.bucket.blob(name)
            final.metadata = {"sha256": reader.sha256}
            final.content_type = content_type or "application/octet-stream"
            with self._errors("store", key):
                token, _, _ = final.rewrite(temp, timeout=self.options.timeout, retry=self.retry)
                while token is not None:
                    token, _, _ = final.rewrite(temp, token=token, timeout=self.options.timeout, retry=self.retry)
                final.reload(timeout=self.options.timeout, retry=self.retry)
                if (final.metadata or {}).get("sha256") != reader.sha256:  # some servers ignore rewrite metadata
                    final.metadata = {"sha256": reader.sha256}
                    final.patch(timeout=self.options.timeout, retry=self.retry)
        finally:
            with contextlib.suppress(Exception):
                temp.delete(timeout=self.options.timeout)
        return StoredObject(key, reader.size, reader.sha256)

    def open(self, key: str) -> BinaryIO:
        blob = self.bucket.blob(self._name(key))
        with self._errors("read", key):
            blob.reload(timeout=self.options.timeout, retry=self.retry)  # open() itself is lazy: fail here
            return blob.open("rb", timeout=self.options.timeout, retry=self.retry)  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        with self._errors("look up", key):
            return self.bucket.blob(self._name(key)).exists(timeout=self.options.timeout, retry=self.retry)

    def size(self, key: str) -> int | None:
        blob = self.bucket.blob(self._name(key))
        with self._errors("look up", key):
            blob.reload(timeout=self.options.timeout, retry=self.retry)
        return blob.size

    def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound), self._errors("delete", key):
            self.bucket.blob(self._name(key)).delete(timeout=self.options.timeout, retry=self.retry)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._errors("list", prefix):
            blobs = self.client.list_blobs(self.bucket, prefix=self.prefix + prefix, timeout=self.options.timeout,
                                           retry=self.retry)
            for blob in sorted(blobs, key=lambda b: b.name):
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
        """The bucket first (missing, forbidden, unreachable), then the generic write/read probe."""
        try:
            if not self.bucket.exists(timeout=self.options.timeout, retry=self.retry):
                return [f"gcs: bucket {self.options.bucket!r} does not exist (setting storage.gcs.bucket)"]
        except gexc.Forbidden:
            return [f"gcs: access to bucket {self.options.bucket!r} is denied: the service account needs "
                    "roles/storage.objectAdmin on it"]
        except (gexc.GoogleAPIError, requests.RequestException, OSError) as exc:
            return [f"gcs: cannot reach bucket {self.options.bucket!r}: {exc}"]
        return [p if p.startswith("gcs:") else f"gcs: {p}" for p in super().check()]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


class _Prefixed:
    """Bytes already read, then the rest of a reader, with the ``tell()`` uploads need."""

    def __init__(self, head: bytes, rest: HashingReader) -> None:
        self._head = head
        self._rest = rest
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        if self._head:
            take = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(take):]
            if n < 0 or len(take) < n:
                take += self._rest.read(-1 if n < 0 else n - len(take))
        else:
            take = self._rest.read(n)
        self._pos += len(take)
        return take

    def tell(self) -> int:
        return self._pos
