"""A storage backend on Azure Blob Storage, through ``azure-storage-blob``.

Imported lazily by :mod:`tfregistry_storage_azure.plugin` (only when the
``azure`` backend is selected), so the SDK is not loaded by every ``tfr`` command.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import random
import re
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

import requests
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    ExponentialRetry,
    StandardBlobTier,
    UserDelegationKey,
    generate_blob_sas,
)

from tfregistry import StartupError
from tfregistry.interfaces import (
    CHUNK_SIZE,
    HashingReader,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StoredObject,
    validate_key,
)
from tfregistry_storage_azure.config import MAX_SAS_LIFETIME, AzureConfig

__all__ = ["AzureBlobStorage"]

#: Size of one ranged GET when reading a blob (what a reader holds in memory).
DOWNLOAD_CHUNK = 4 * 1024 * 1024
#: A block blob has at most 50,000 committed blocks.
MAX_BLOCKS = 50_000
#: What ``check()`` writes, reads back, presigns, fetches and deletes.
PROBE_PREFIX = "_tfr_probe/"
PROBE_PAYLOAD = b"tfregistry storage probe\n"
#: Settings that hold each kind of credential, for error messages.
_CREDENTIAL_SETTING = {
    "connection_string": "storage.azure.connection_string",
    "account_key": "storage.azure.account_key",
    "sas_token": "storage.azure.sas_token",
    "identity": "the identity of DefaultAzureCredential (storage.azure.auth = identity)",
    "token": "the token credential",
}
_AUTH_FAILED = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "InvalidAuthenticationInfo",
    "NoAuthenticationInformation",
}
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\"\)]*")


def _code(exc: BaseException) -> str:
    """The storage error code of an SDK exception (``BlobNotFound``...), or ``""``."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _read_block(reader: HashingReader, size: int) -> bytes:
    """Read exactly ``size`` bytes, or fewer at the end of the stream, in bounded reads."""
    parts: list[bytes] = []
    have = 0
    while have < size:
        data = reader.read(min(size - have, CHUNK_SIZE))
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def _content_disposition(filename: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._+@=-]", "_", filename)[:200] or "download"
    return f'attachment; filename="{safe}"'


class _QuickRetry(ExponentialRetry):
    """Retries after 0.25 s, 0.5 s, 1 s... (at most 4 s, with jitter), not the SDK's 15 s, 18 s, 24 s.

    An outage must surface within seconds: the core answers 503 and the client retries.
    """

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        """Seconds to wait before retry number ``settings["count"]`` (1 for the first)."""
        base = min(4.0, 0.25 * 2 ** max(0, settings["count"] - 1))
        return base * random.uniform(0.5, 1.0)


class _KeyLocks:
    """One lock per key in use, so puts to one key run one at a time (and puts to others in parallel)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class _BlobReader(io.RawIOBase):
    """A blob as a readable, seekable binary stream.

    Reads come from a streaming download that fetches ``DOWNLOAD_CHUNK`` bytes at a
    time; seeking starts a new ranged download at the new position.  Every request
    is pinned to the ETag of the first one, so a blob replaced while it is being
    read gives a :class:`StorageError`, never a mix of two versions.
    """

    def __init__(self, backend: AzureBlobStorage, key: str, blob: BlobClient, downloader: Any) -> None:
        super().__init__()
        self._backend = backend
        self._key = key
        self._blob = blob
        self._downloader: Any = downloader
        self._pos = 0
        #: Size of the blob in bytes.
        self.size = int(downloader.size)
        self._etag = downloader.properties.etag

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if target != self._pos:
            self._downloader = None
            self._pos = target
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        if size is None or size < 0:
            parts = []
            while chunk := self.read(DOWNLOAD_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if size == 0 or self._pos >= self.size:
            return b""
        with self._backend._errors("read", self._key):
            if self._downloader is None:
                self._downloader = self._blob.download_blob(
                    offset=self._pos,
                    etag=self._etag,
                    match_condition=MatchConditions.IfNotModified,
                    max_concurrency=1,
                )
            data = self._downloader.read(min(size, self.size - self._pos))
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._downloader = None
        super().close()


class AzureBlobStorage(StorageBackend):
    """Objects as block blobs in one container, under an optional name prefix.

    * ``put`` reads the stream in blocks of ``block_size``.  An object of one block
      is a single Put Blob; a larger one is staged block by block (up to
      ``upload_concurrency`` blocks in flight) and committed with Put Block List.
      The blob appears only on that commit, whole, with its ``sha256`` metadata;
      an interrupted upload leaves only uncommitted blocks, which Azure discards.
    * Downloads are SAS URLs: an account-key SAS with key or connection-string
      authentication, a user-delegation SAS with a token credential.  With a SAS
      token as the credential there is nothing to sign with: ``presigned_url``
      raises a :class:`StorageError` saying so, unless presigned URLs are turned
      off (``storage.azure.presigned_urls = false``), in which case it returns
      ``None`` and the core serves downloads itself.
    """

    name = "azure"
    supports_presigned_urls = True

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        auth: str,
        prefix: str = "",
        block_size: int = 4 * 1024 * 1024,
        upload_concurrency: int = 4,
        access_tier: str = "",
        presigned_urls: bool = True,
        sas_lifetime: float | None = None,
        fetch_timeout: float = 65.0,
        verify: Any = True,
        owned_credential: Any = None,
    ) -> None:
        self._service = service
        self._container = service.get_container_client(container)
        self.container = container
        self.account_name: str = service.account_name or ""
        self.auth = auth
        self.prefix = prefix
        self.block_size = block_size
        self.upload_concurrency = upload_concurrency
        self.access_tier = StandardBlobTier(access_tier) if access_tier else None
        self.sas_lifetime = sas_lifetime
        self.list_page_size: int | None = None
        self._fetch_timeout = fetch_timeout
        self._ssl_context = self._make_ssl_context(verify)
        self._owned_credential = owned_credential
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_key_expiry = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()
        self._key_locks = _KeyLocks()
        parts = urlsplit(service.url)
        #: The blob endpoint, without any query (a SAS token) or trailing slash.
        self.endpoint = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self._https = parts.scheme == "https"
        self._account_key: str | None = None
        self._sign_with: str | None = None  # "key", "user_delegation" or None
        credential = service.credential
        if auth in ("identity", "token"):
            self._sign_with = "user_delegation"
        elif getattr(credential, "account_key", None):
            self._account_key = credential.account_key
            self._sign_with = "key"
        elif getattr(credential, "named_key", None):
            self.account_name, self._account_key = credential.named_key
            self._sign_with = "key"
        self.supports_presigned_urls = presigned_urls

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: AzureConfig, *, credential: Any = None, **client_options: Any) -> AzureBlobStorage:
        """Build the SDK client for ``config`` and the backend around it.

        ``credential`` replaces the one ``config.auth`` would create (any
        ``azure.core`` token credential, for instance); ``client_options`` go to
        ``BlobServiceClient`` (``connection_verify="ca.pem"``...).
        """
        verify = client_options.pop("connection_verify", True)
        options: dict[str, Any] = {
            "transport": cls._transport(config, verify),
            "retry_policy": _QuickRetry(
                retry_total=config.retries,
                retry_connect=config.retries,
                retry_read=config.retries,
                retry_status=config.retries,
            ),
            "max_single_get_size": DOWNLOAD_CHUNK,
            "max_chunk_get_size": DOWNLOAD_CHUNK,
            "max_single_put_size": config.block_size,
            "max_block_size": config.block_size,
            **client_options,
        }
        owned = None
        auth = config.auth
        try:
            if auth == "connection_string":
                service = BlobServiceClient.from_connection_string(
                    config.connection_string, credential=credential, **options
                )
                key = getattr(service.credential, "account_key", None)
                if key:
                    cls._check_key(key, "storage.azure.connection_string (AccountKey=)")
            else:
                if credential is None:
                    if auth == "account_key":
                        cls._check_key(config.account_key, "storage.azure.account_key")
                        credential = AzureNamedKeyCredential(config.account_name, config.account_key)
                    elif auth == "sas_token":
                        credential = AzureSasCredential(config.sas_token)
                    else:
                        credential = owned = cls._default_credential(config)
                elif hasattr(credential, "get_token"):
                    auth = "token"
                service = BlobServiceClient(config.account_url, credential=credential, **options)
        except (ValueError, TypeError) as exc:
            setting = "storage.azure.connection_string" if auth == "connection_string" else "storage.azure.account_url"
            raise StartupError(f"{setting}: cannot set up the Azure client: {_first_line(str(exc))}") from None
        if auth != "connection_string" and config.account_name:
            service.account_name = config.account_name
        return cls(
            service,
            config.container,
            auth=auth,
            prefix=config.prefix,
            block_size=config.block_size,
            upload_concurrency=config.upload_concurrency,
            access_tier=config.access_tier,
            presigned_urls=config.presigned_urls,
            sas_lifetime=config.sas_lifetime,
            fetch_timeout=config.connect_timeout + config.read_timeout,
            verify=verify,
            owned_credential=owned,
        )

    @staticmethod
    def _transport(config: AzureConfig, verify: Any = True) -> RequestsTransport:
        """HTTP transport with the configured timeouts and a connection pool sized for parallel uploads."""
        session = requests.Session()
        pool = max(16, 4 * config.upload_concurrency)
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return RequestsTransport(
            session=session,
            session_owner=True,
            connection_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            connection_verify=verify,
        )

    @staticmethod
    def _check_key(key: str, setting: str) -> None:
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise StartupError(f"{setting}: not a storage account key (a base64 string such as 'Eby8...==')") from None

    @staticmethod
    def _default_credential(config: AzureConfig) -> Any:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise StartupError(
                'storage.azure.auth = "identity" (DefaultAzureCredential: managed identity, workload identity...) '
                "needs the azure-identity package, which is not installed: "
                "pip install 'tfregistry-storage-azure[identity]'"
                + (
                    " (storage.azure.auth = \"auto\" chose it because none of storage.azure.connection_string, "
                    "account_key or sas_token is set)"
                    if config.auto_selected
                    else ""
                )
            ) from None
        kwargs = {}
        if config.managed_identity_client_id:
            kwargs["managed_identity_client_id"] = config.managed_identity_client_id
        return DefaultAzureCredential(**kwargs)

    @staticmethod
    def _make_ssl_context(verify: Any) -> ssl.SSLContext | None:
        if verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if isinstance(verify, str):
            return ssl.create_default_context(cafile=verify)
        return None

    def __repr__(self) -> str:
        return f"AzureBlobStorage(endpoint={self.endpoint!r}, container={self.container!r}, prefix={self.prefix!r})"

    # --- errors ------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """``container 'c' in storage account 'a'``, for messages."""
        return f"container {self.container!r} in storage account {self.account_name!r}"

    def explain(self, exc: AzureError) -> str:
        """A short, actionable reason for an SDK exception."""
        code = _code(exc)
        setting = _CREDENTIAL_SETTING.get(self.auth, "the credentials")
        if isinstance(exc, ServiceRequestError):
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text:
                why = text.split("certificate verify failed:")[-1].split("(")[0].strip()
                return (
                    f"the TLS certificate of {self.endpoint} is not trusted ({why}); "
                    "check storage.azure.account_url, or add the CA to the system trust store"
                )
            detail = _ERRNO.search(text)
            reason = detail.group(0).strip() if detail else _first_line(text)[:300]
            return (
                f"cannot connect to {self.endpoint} ({reason}); check storage.azure.account_url or the "
                "connection string, and the network (timeout: storage.azure.connect_timeout)"
            )
        if isinstance(exc, ServiceResponseError):
            return (
                f"no complete answer from {self.endpoint} ({_first_line(str(exc))}); "
                "timeout: storage.azure.read_timeout"
            )
        if isinstance(exc, ClientAuthenticationError) and getattr(exc, "response", None) is None:
            # From azure-identity: no token could be had at all.
            return f"cannot get an access token from DefaultAzureCredential: {_first_line(exc.message)}"
        status = getattr(exc, "status_code", None)
        if code == "ContainerNotFound":
            return (
                f"the container {self.container!r} does not exist in storage account {self.account_name!r}; "
                "create it, or fix storage.azure.container"
            )
        if code in _AUTH_FAILED or (status == 401):
            hint = {
                "sas_token": "the SAS token may be expired, malformed, or for another account or container",
                "identity": "the token was refused",
                "token": "the token was refused",
            }.get(self.auth, "wrong account key?")
            return (
                f"the storage account refused the credentials ({code or status}): {hint}; check {setting} "
                "(or the account's firewall / network rules)"
            )
        if code == "AuthorizationPermissionMismatch" or code == "AuthorizationResourceTypeMismatch" or status == 403:
            if self.auth == "sas_token":
                need = "the SAS token lacks a permission: it needs read, add, create, write, delete, list (sp=racwdl)"
            elif self.auth in ("identity", "token"):
                need = (
                    "the identity lacks a role: grant it 'Storage Blob Data Contributor' on the container "
                    "(and 'Storage Blob Delegator' on the account, for download URLs)"
                )
            else:
                need = "the request is not allowed (account firewall, network rules, or a disabled shared key?)"
            return f"permission denied ({code or status}): {need}"
        if isinstance(exc, HttpResponseError):
            return f"{code or f'HTTP {status}'}: {_first_line(exc.message)}"
        return _first_line(str(exc)) or type(exc).__name__

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn SDK exceptions into :class:`StorageError` (:class:`ObjectNotFound` for a missing blob)."""
        try:
            yield
        except ResourceModifiedError as exc:
            raise StorageError(
                f"azure: cannot {action} {key} in {self.where}: it was replaced while being read ({_code(exc)})"
            ) from exc
        except ResourceNotFoundError as exc:
            if _code(exc) in ("BlobNotFound", "") and action in ("read", "look up"):
                raise ObjectNotFound(key) from None
            raise StorageError(f"azure: cannot {action} {key} in {self.where}: {self.explain(exc)}") from exc
        except AzureError as exc:
            raise StorageError(f"azure: cannot {action} {key} in {self.where}: {self.explain(exc)}") from exc

    # --- keys --------------------------------------------------------------------------

    def _blob(self, key: str) -> BlobClient:
        validate_key(key)
        return self._container.get_blob_client(self.prefix + key)

    # --- StorageBackend ----------------------------------------------------------------

    def put(self, key: str, fileobj: BinaryIO, *, content_type: str | None = None) -> StoredObject:
        """Stream ``fileobj`` into blob ``key`` in blocks; it appears whole on commit, with ``sha256`` metadata.

        Puts to one key from this process run one after the other: a commit (or a
        single Put Blob) discards the blocks other uploads have staged on the same
        blob.  Between processes, the upload that loses such a race still succeeds
        when the blob that won holds the same bytes (same SHA-256 and size, as with
        the core's content-addressed keys); otherwise it fails with a
        :class:`StorageError` and leaves the winner's whole object in place.
        """
        blob = self._blob(key)
        with self._key_locks.hold(key):
            return self._put(key, blob, HashingReader(fileobj), content_type)

    def _put(self, key: str, blob: BlobClient, reader: HashingReader, content_type: str | None) -> StoredObject:
        content = ContentSettings(content_type=content_type or "application/octet-stream")
        first = _read_block(reader, self.block_size)
        second = _read_block(reader, self.block_size) if len(first) == self.block_size else b""
        if not second:
            with self._errors("store", key):
                blob.upload_blob(
                    first,
                    length=len(first),
                    overwrite=True,
                    metadata={"sha256": reader.sha256},
                    content_settings=content,
                    standard_blob_tier=self.access_tier,
                    validate_content=True,
                    max_concurrency=1,
                )
            return StoredObject(key=key, size=reader.size, sha256=reader.sha256)

        head = [first, second]
        del first, second  # only the generator holds them, so a staged block can be freed

        def blocks() -> Iterator[bytes]:
            while head:
                yield head.pop(0)
            while block := _read_block(reader, self.block_size):
                yield block

        block_ids = self._stage_blocks(blob, key, blocks())
        stored = StoredObject(key=key, size=reader.size, sha256=reader.sha256)
        with self._errors("store", key):
            try:
                blob.commit_block_list(
                    [BlobBlock(block_id=block_id) for block_id in block_ids],
                    metadata={"sha256": stored.sha256},
                    content_settings=content,
                    standard_blob_tier=self.access_tier,
                )
            except HttpResponseError as exc:
                if _code(exc) != "InvalidBlockList":
                    raise
                # Another process committed this blob meanwhile, discarding our staged blocks.
                if self._holds(blob, stored):
                    return stored
                raise StorageError(
                    f"azure: cannot store {key} in {self.where}: another upload to the same blob committed "
                    "different bytes while this one was in progress (which discards its staged blocks); "
                    "the other upload's object is in place, retry to replace it"
                ) from exc
        return stored

    @staticmethod
    def _holds(blob: BlobClient, stored: StoredObject) -> bool:
        """Whether ``blob`` now holds exactly the bytes of ``stored`` (by its metadata and size)."""
        try:
            properties = blob.get_blob_properties()
        except AzureError:
            return False
        return properties.size == stored.size and (properties.metadata or {}).get("sha256") == stored.sha256

    def _stage_blocks(self, blob: BlobClient, key: str, blocks: Iterator[bytes]) -> list[str]:
        """Stage ``blocks`` with at most ``upload_concurrency`` in flight; return their ids in order."""
        upload_id = uuid.uuid4().hex
        block_ids: list[str] = []
        pending: deque[Future[Any]] = deque()
        with (
            self._errors("store", key),
            ThreadPoolExecutor(self.upload_concurrency, thread_name_prefix="tfr-azure-upload") as pool,
        ):
            try:
                for index, data in enumerate(blocks):
                    if index >= MAX_BLOCKS:
                        raise StorageError(
                            f"azure: cannot store {key} in {self.where}: larger than {MAX_BLOCKS} blocks of "
                            f"{self.block_size} bytes; raise storage.azure.block_size"
                        )
                    # Same length for every id of every upload: Azure requires it per blob.
                    block_id = f"{upload_id}-{index:06d}"
                    block_ids.append(block_id)
                    while len(pending) >= self.upload_concurrency:
                        pending.popleft().result()
                    pending.append(
                        pool.submit(blob.stage_block, block_id, data, length=len(data), validate_content=True)
                    )
                    del data
                while pending:
                    pending.popleft().result()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return block_ids

    def open(self, key: str) -> BinaryIO:
        """A seekable stream over blob ``key``, read in ranged GETs; :class:`ObjectNotFound` if absent."""
        blob = self._blob(key)
        with self._errors("read", key):
            downloader = blob.download_blob(max_concurrency=1)
        return _BlobReader(self, key, blob, downloader)  # type: ignore[return-value]

    def _properties(self, key: str) -> Any:
        blob = self._blob(key)
        with self._errors("look up", key):
            return blob.get_blob_properties()

    def exists(self, key: str) -> bool:
        """Whether blob ``key`` exists (a missing container is an error, not ``False``)."""
        try:
            self._properties(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int | None:
        """The blob's size, or ``None`` when it does not exist."""
        try:
            return int(self._properties(key).size)
        except ObjectNotFound:
            return None

    def delete(self, key: str) -> None:
        """Delete blob ``key`` and its snapshots; an absent blob is not an error."""
        blob = self._blob(key)
        with self._errors("delete", key):
            try:
                blob.delete_blob(delete_snapshots="include")
            except ResourceNotFoundError as exc:
                if _code(exc) not in ("BlobNotFound", ""):
                    raise

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Blobs whose key starts with ``prefix``, in key order (the service lists by name), page by page."""
        start = len(self.prefix)
        with self._errors("list", repr(prefix)):
            blobs = self._container.list_blobs(
                name_starts_with=(self.prefix + prefix) or None, results_per_page=self.list_page_size
            )
            for blob in blobs:
                key = blob.name[start:]
                try:
                    validate_key(key)
                except InvalidKey:
                    continue  # not written by tfregistry (a folder marker, an odd name)
                modified: datetime = blob.last_modified
                if modified.tzinfo is None:
                    modified = modified.replace(tzinfo=UTC)
                yield ObjectInfo(key=key, size=int(blob.size), last_modified=modified)

    # --- download URLs -----------------------------------------------------------------

    def presigned_url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        """A read-only SAS URL for ``key``, valid for ``storage.azure.sas_lifetime`` or ``expires_in`` seconds.

        The URL is the blob's own URL (so its path ends with the key's extension)
        plus the SAS query; ``filename`` becomes the response's Content-Disposition.
        Returns ``None`` when presigned URLs are turned off; raises
        :class:`StorageError` when the credential cannot sign (a SAS token).
        """
        blob = self._blob(key)
        if not self.supports_presigned_urls:
            return None
        if self._sign_with is None:
            raise StorageError(
                "azure: cannot create SAS download URLs: the backend authenticates with a SAS token "
                f"({_CREDENTIAL_SETTING.get(self.auth, 'a SAS token')}), and a SAS can only be signed with an "
                "account key or a token credential; use storage.azure.account_key, a connection string with "
                "AccountKey=, or storage.azure.auth = identity, or set storage.azure.presigned_urls = false "
                "to serve downloads through the registry"
            )
        lifetime = self.sas_lifetime or expires_in
        now = datetime.now(UTC)
        expiry = now + timedelta(seconds=lifetime)
        sas_args: dict[str, Any] = {
            "account_name": self.account_name,
            "container_name": self.container,
            "blob_name": blob.blob_name,
            "permission": BlobSasPermissions(read=True),
            "expiry": expiry,
        }
        if self._https:
            sas_args["protocol"] = "https"
        if filename:
            sas_args["content_disposition"] = _content_disposition(filename)
        with self._errors("sign a download URL for", key):
            if self._sign_with == "key":
                sas = generate_blob_sas(account_key=self._account_key, **sas_args)
            else:
                if lifetime > MAX_SAS_LIFETIME:
                    raise StorageError(
                        f"azure: cannot sign a download URL for {key}: a user-delegation SAS is valid for at "
                        f"most 7 days, not {lifetime:.0f} s (storage.azure.sas_lifetime / downloads.url_ttl)"
                    )
                sas = generate_blob_sas(user_delegation_key=self._user_delegation_key(expiry), **sas_args)
        return f"{blob.url}?{sas}"

    def _user_delegation_key(self, expiry: datetime) -> UserDelegationKey:
        """A cached user-delegation key valid until at least ``expiry`` (fetched for a day or more)."""
        with self._lock:
            if self._delegation_key is None or self._delegation_key_expiry < expiry + timedelta(minutes=5):
                now = datetime.now(UTC)
                key_expiry = min(max(expiry + timedelta(hours=1), now + timedelta(days=1)), now + timedelta(days=7))
                self._delegation_key = self._service.get_user_delegation_key(
                    key_start_time=now - timedelta(minutes=15), key_expiry_time=key_expiry
                )
                self._delegation_key_expiry = key_expiry
            return self._delegation_key

    # --- health ------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Probe the container: exists and is reachable, write, read, list, presign and fetch, delete.

        Each problem names the container, the account and the setting to fix.
        """
        try:
            self._container.get_container_properties()
        except ResourceNotFoundError:
            return [
                f"azure: the {self.where} does not exist ({self.endpoint}); create it "
                f"(az storage container create --account-name {self.account_name} --name {self.container}) "
                "or fix storage.azure.container"
            ]
        except HttpResponseError as exc:
            # A SAS scoped to the container may not read container properties: the probe will tell.
            if not (self.auth == "sas_token" and exc.status_code == 403 and _code(exc) not in _AUTH_FAILED):
                return [f"azure: cannot access the {self.where}: {self.explain(exc)}"]
        except AzureError as exc:
            return [f"azure: cannot access the {self.where}: {self.explain(exc)}"]
        return self._probe()

    def _probe(self) -> list[str]:
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}.txt"
        problems: list[str] = []
        try:
            stored = self.put(key, io.BytesIO(PROBE_PAYLOAD), content_type="text/plain")
            if stored.size != len(PROBE_PAYLOAD):
                problems.append(f"azure: wrote {len(PROBE_PAYLOAD)} bytes but the backend reports {stored.size}")
        except StorageError as exc:
            return [f"cannot write: {exc}"]
        try:
            with self.open(key) as fh:
                if fh.read() != PROBE_PAYLOAD:
                    problems.append(f"azure: read back different bytes than were written to the {self.where}")
        except StorageError as exc:
            problems.append(f"can write but cannot read: {exc}")
        try:
            if not any(info.key == key for info in self.list(PROBE_PREFIX)):
                problems.append(f"azure: can write but the object does not appear in a listing of the {self.where}")
        except StorageError as exc:
            problems.append(f"can write but cannot list: {exc}")
        if self.supports_presigned_urls:
            problems.extend(self._probe_presigned_url(key))
        try:
            self.delete(key)
        except StorageError as exc:
            problems.append(f"can write but cannot delete: {exc}")
        return problems

    def _probe_presigned_url(self, key: str) -> list[str]:
        try:
            url = self.presigned_url(key, expires_in=300)
        except StorageError as exc:
            return [f"can write but cannot create presigned URLs: {exc}"]
        assert url is not None
        try:
            with urllib.request.urlopen(url, timeout=self._fetch_timeout, context=self._ssl_context) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.headers.get("x-ms-error-code") or exc.reason
            return [
                f"azure: can write but SAS download URLs are refused (HTTP {exc.code} {detail}) by the {self.where}; "
                + (
                    "the identity needs the 'Storage Blob Delegator' role (or Contributor) to sign user-delegation SAS"
                    if self._sign_with == "user_delegation"
                    else "check that shared-key (SAS) access is allowed on the account"
                )
                + ", or set storage.azure.presigned_urls = false"
            ]
        except (OSError, ValueError) as exc:
            return [f"azure: can write but cannot fetch a SAS download URL from {self.endpoint}: {exc}"]
        if body != PROBE_PAYLOAD:
            return ["azure: a SAS download URL returned different bytes than were written"]
        return []

    def close(self) -> None:
        """Close the HTTP session (and the credential, if the backend created it)."""
        with contextlib.suppress(Exception):
            self._service.close()
        if self._owned_credential is not None:
            with contextlib.suppress(Exception):
                self._owned_credential.close()
