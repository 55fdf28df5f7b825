"""A storage backend on Azure Blob Storage, through azure-storage-blob."""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO
from urllib.parse import quote

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    StandardBlobTier,
    generate_blob_sas,
)

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

__all__ = ["AzureOptions", "AzureStorage"]

#: Where large uploads are staged before a server-side copy puts them in place.
UPLOAD_PREFIX = "_tfr_uploads/"


@dataclass(frozen=True)
class AzureOptions:
    """The ``storage.azure.*`` settings."""

    container: str
    prefix: str = ""
    connection_string: str | None = None
    account_url: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    use_default_credential: bool = False
    access_tier: str | None = None
    block_size: int = 8 * 1024 * 1024
    connect_timeout: int = 5
    read_timeout: int = 60
    max_attempts: int = 3


class _Download:
    """A blob download as a plain readable stream."""

    def __init__(self, downloader: Any) -> None:
        self._downloader = downloader

    def read(self, n: int = -1) -> bytes:
        return self._downloader.read(n if n is not None and n >= 0 else -1)

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def __enter__(self) -> _Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AzureStorage(StorageBackend):
    """Blobs in one container (under an optional name prefix).

    Objects up to one block are one Put Blob carrying the SHA-256 metadata.  Larger ones
    stage blocks of ``block_size`` on a temporary blob as the stream is read, commit it,
    and copy it into place server-side, so readers never see half an object and
    concurrent writers of one name do not destroy each other's uncommitted blocks.
    Downloads use a SAS URL: an account-key SAS with key or connection-string authentication, a user-delegation SAS with
    ``DefaultAzureCredential``; with SAS-token authentication there is nothing to sign
    with, so the core serves downloads itself.
    """

    name = "azure"

    def __init__(self, options: AzureOptions) -> None:
        self.options = options
        self.prefix = options.prefix.lstrip("/")
        common = {"connection_timeout": options.connect_timeout, "read_timeout": options.read_timeout,
                  "retry_total": max(0, options.max_attempts - 1)}
        try:
            if options.connection_string:
                self.service = BlobServiceClient.from_connection_string(options.connection_string, **common)
            else:
                credential: Any
                if options.account_key:
                    credential = options.account_key
                elif options.sas_token:
                    credential = options.sas_token
                else:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                self.service = BlobServiceClient(options.account_url or "", credential=credential, **common)
        except (AzureError, ValueError) as exc:
            raise StorageError(f"azure: cannot set up the client: {exc}") from exc
        self.container = self.service.get_container_client(options.container)
        self.account_name = self.service.account_name
        self._account_key = getattr(self.service.credential, "account_key", None)
        self.supports_presigned_urls = bool(self._account_key) or options.use_default_credential
        self.tier = StandardBlobTier(options.access_tier) if options.access_tier else None

    def __repr__(self) -> str:
        return f"AzureStorage(container={self.options.container!r}, prefix={self.prefix!r})"

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str = "") -> Iterator[None]:
        where = f"{key!r} in container {self.options.container!r}" if key else f"container {self.options.container!r}"
        try:
            yield
        except StorageError:
            raise  # already ours (InvalidKey, ObjectNotFound...)
        except ResourceNotFoundError as exc:
            raise ObjectNotFound(f"azure: {key!r} not found in container {self.options.container!r}") from exc
        except (AzureError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
            raise StorageError(f"azure: cannot {action} {where}: {reason}") from exc

    def put(self, key: str, fileobj: BinaryIO, *, content_type: str | None = None) -> StoredObject:
        final = self.container.get_blob_client(self._name(key))
        reader = HashingReader(fileobj)
        settings = ContentSettings(content_type=content_type or "application/octet-stream")
        first = read_full(reader, self.options.block_size)
        peek = read_full(reader, 1) if len(first) == self.options.block_size else b""
        if not peek:  # one Put Blob: atomic, and concurrent writers simply replace each other
            with self._errors("store", key):
                final.upload_blob(first, overwrite=True, metadata={"sha256": reader.sha256},
                                  content_settings=settings, standard_blob_tier=self.tier)
            return StoredObject(key, reader.size, reader.sha256)
        # Larger: stage blocks on a private temporary blob (committing a block list discards other
        # writers' uncommitted blocks of the same name), then copy it into place server-side.
        temp = self.container.get_blob_client(f"{self.prefix}{UPLOAD_PREFIX}{uuid.uuid4().hex}")
        try:
            with self._errors("store", key):
                blocks: list[BlobBlock] = []
                chunk = first + peek
                while chunk:
                    block_id = base64.b64encode(uuid.uuid4().bytes).decode()
                    temp.stage_block(block_id, chunk, length=len(chunk))
                    blocks.append(BlobBlock(block_id=block_id))
                    chunk = read_full(reader, self.options.block_size)
                temp.commit_block_list(blocks, metadata={"sha256": reader.sha256}, content_settings=settings)
                source = self._sas_url(temp.blob_name, 3600) or temp.url
                final.start_copy_from_url(source, metadata={"sha256": reader.sha256},
                                          standard_blob_tier=self.tier)
                self._wait_for_copy(final)
        finally:
            with contextlib.suppress(Exception):
                temp.delete_blob()
        return StoredObject(key, reader.size, reader.sha256)

    def _wait_for_copy(self, blob: Any) -> None:
        deadline = time.monotonic() + self.options.read_timeout * 10
        while True:
            copy = blob.get_blob_properties().copy
            if copy.status in (None, "success"):
                return
            if copy.status in ("failed", "aborted"):
                raise StorageError(f"azure: the server-side copy into {blob.blob_name!r} {copy.status}: "
                                   f"{copy.status_description}")
            if time.monotonic() > deadline:
                raise StorageError(f"azure: the server-side copy into {blob.blob_name!r} did not finish in time")
            time.sleep(0.2)

    def open(self, key: str) -> BinaryIO:
        with self._errors("read", key):
            return _Download(self.container.get_blob_client(self._name(key)).download_blob())  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        with self._errors("look up", key):
            return bool(self.container.get_blob_client(self._name(key)).exists())

    def size(self, key: str) -> int | None:
        with self._errors("look up", key):
            return int(self.container.get_blob_client(self._name(key)).get_blob_properties().size)

    def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound), self._errors("delete", key):
            self.container.get_blob_client(self._name(key)).delete_blob(delete_snapshots="include")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._errors("list", prefix):
            for blob in self.container.list_blobs(name_starts_with=self.prefix + prefix):
                if blob.name[len(self.prefix):].startswith(UPLOAD_PREFIX):
                    continue
                modified: datetime = blob.last_modified
                modified = modified.astimezone(UTC) if modified.tzinfo else modified.replace(tzinfo=UTC)
                yield ObjectInfo(blob.name[len(self.prefix):], int(blob.size), modified)

    def _sas_url(self, name: str, expires_in: int, filename: str | None = None) -> str | None:
        """A read-only SAS URL for blob ``name`` (None when the credential cannot sign)."""
        if not self.supports_presigned_urls:
            return None
        now = datetime.now(UTC)
        expiry = now + timedelta(seconds=expires_in)
        kwargs: dict[str, Any] = {"account_name": self.account_name, "container_name": self.options.container,
                                  "blob_name": name, "permission": BlobSasPermissions(read=True),
                                  "expiry": expiry, "start": now - timedelta(minutes=5)}
        if filename:
            kwargs["content_disposition"] = f'attachment; filename="{filename}"'
        if self._account_key:
            sas = generate_blob_sas(account_key=self._account_key, **kwargs)
        else:
            delegation = self.service.get_user_delegation_key(now - timedelta(minutes=5), expiry)
            sas = generate_blob_sas(user_delegation_key=delegation, **kwargs)
        return f"{self.container.url}/{quote(name)}?{sas}"

    def presigned_url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        name = self._name(key)
        with self._errors("sign a download URL for", key):
            return self._sas_url(name, expires_in, filename)

    def check(self) -> list[str]:
        """The container first (missing, forbidden, unreachable), then the generic write/read probe."""
        try:
            if not self.container.exists():
                return [f"azure: container {self.options.container!r} does not exist (setting storage.azure.container)"]
        except ClientAuthenticationError:
            return ["azure: the storage account rejected the credentials (check storage.azure.* credentials)"]
        except HttpResponseError as exc:
            if exc.status_code == 403:
                return [f"azure: access to container {self.options.container!r} is denied: the identity needs the "
                        "'Storage Blob Data Contributor' role on it"]
            return [f"azure: cannot reach container {self.options.container!r}: {exc.reason or exc}"]
        except (AzureError, OSError) as exc:
            return [f"azure: cannot reach container {self.options.container!r}: {str(exc).splitlines()[0]}"]
        return [p if p.startswith("azure:") else f"azure: {p}" for p in super().check()]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.service.close()
