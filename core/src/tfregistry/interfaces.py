"""Interfaces that plugins implement.

A backend is a plain class behind one of these interfaces; hooks only
*register* backends (see :mod:`tfregistry.hookspecs`), the core then calls
their methods directly.  Each interface carries an ``api_version`` so the core
can adapt older plugins when an interface grows.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

__all__ = [
    "AuthProvider",
    "Delivery",
    "DeliveryError",
    "Event",
    "ExternalIdentity",
    "HashingReader",
    "LoginError",
    "Notifier",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "RequestContext",
    "StorageBackend",
    "StorageError",
    "StorageFull",
    "StoredObject",
    "read_full",
    "validate_key",
]

#: Read/write granularity used when streaming objects.
CHUNK_SIZE = 1024 * 1024

_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9._+@=-]+$")


class StorageError(Exception):
    """A storage backend failed (unreachable, denied, misconfigured)."""


class StorageFull(StorageError):
    """The backend has no space left (``ENOSPC``/``EDQUOT``, a quota); the web layer answers 507."""


class ObjectNotFound(StorageError, KeyError):
    """The requested key does not exist in the backend."""


class InvalidKey(StorageError, ValueError):
    """A key is not acceptable (empty, absolute, ``..``, odd characters)."""


@dataclass(frozen=True)
class StoredObject:
    """What :meth:`StorageBackend.put` returns: the key, byte count and SHA-256 (hex)."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectInfo:
    """One entry of :meth:`StorageBackend.list`."""

    key: str
    size: int
    last_modified: datetime


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise :class:`InvalidKey`.

    Keys are ``/``-separated relative paths made of ``[A-Za-z0-9._+@=-]``
    segments; ``.``/``..`` segments, empty segments and absolute paths are refused,
    so a key can be mapped onto a filesystem or an object store unchanged.
    """
    if not key or key.startswith("/") or len(key) > 1024:
        raise InvalidKey(f"invalid storage key {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _KEY_SEGMENT.match(segment):
            raise InvalidKey(f"invalid storage key {key!r}")
    return key


def read_full(reader: Any, n: int) -> bytes:
    """Read ``n`` bytes from ``reader``, looping over short reads; fewer only at the end of the stream.

    Sockets, pipes and other backends' download streams may return less than asked for
    even when more is coming; a backend that treats a short read as the end would store
    a truncated object.
    """
    data = reader.read(n)
    if len(data) >= n or not data:
        return data
    parts = [data]
    have = len(data)
    while have < n:
        more = reader.read(n - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


class HashingReader:
    """Wrap a binary stream; count bytes and SHA-256 them as they are read."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.size = 0
        self._sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.size += len(data)
        self._sha.update(data)
        return data

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class StorageBackend(ABC):
    """Where the registry keeps bytes: module archives, provider zips, checksums.

    One instance serves the whole application, from several threads at once.
    Implement the five abstract methods; the rest have working defaults.
    ``tfregistry.testing.conformance.StorageBackendContract`` checks an
    implementation against a real service.

    Capabilities are declared as class attributes, and the conformance suite
    skips what a backend does not claim:

    * ``supports_presigned_urls``: :meth:`presigned_url` returns a URL a client
      can GET without credentials.  Without it the core serves downloads through
      its own HMAC-signed ``/v1/files/...`` route, streaming from :meth:`open`.
    """

    #: Version of this interface the backend was written against.
    api_version: int = 1
    #: Registered name (``local``, ``s3``...); set by the plugin.
    name: str = ""
    supports_presigned_urls: bool = False

    @abstractmethod
    def put(self, key: str, fileobj: BinaryIO, *, content_type: str | None = None) -> StoredObject:
        """Store the bytes read from ``fileobj`` under ``key``, replacing any object there.

        Stream: never read the whole object into memory.  The write must be atomic
        from a reader's point of view (a reader sees the old object, or the whole
        new one, never a partial one).  Returns the stored size and SHA-256.
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open ``key`` for reading; raise :class:`ObjectNotFound` if it is absent.

        The caller closes the returned stream.  A seekable stream lets the core
        answer HTTP ``Range`` requests.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; deleting an absent key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in key order."""

    def presigned_url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        """Return a URL that fetches ``key`` without credentials for ``expires_in`` seconds.

        ``None`` (the default) means "not supported": the core then signs a URL to
        its own file route.  The URL's *path* must keep the key's extension
        (Terraform picks the archive format from it).
        """
        return None

    def size(self, key: str) -> int | None:
        """Size of ``key`` in bytes, or ``None`` when the backend cannot tell cheaply."""
        for info in self.list(key):
            if info.key == key:
                return info.size
        return None

    def check(self) -> list[str]:
        """Probe the backend: write, read back, list and delete a small object.

        Returns a list of human-readable problems; empty means healthy.  Run when
        the application starts (a problem stops start-up) and by ``tfr storage check``.
        """
        key = f"_tfr_probe/{uuid.uuid4().hex}.txt"
        payload = b"tfregistry storage probe\n"
        problems: list[str] = []
        try:
            with tempfile.SpooledTemporaryFile() as tmp:
                tmp.write(payload)
                tmp.seek(0)
                stored = self.put(key, tmp, content_type="text/plain")
            if stored.size != len(payload):
                problems.append(f"wrote {len(payload)} bytes but the backend reports {stored.size}")
        except Exception as exc:
            return [f"cannot write: {exc}"]
        try:
            with self.open(key) as fh:
                if fh.read() != payload:
                    problems.append("read back different bytes than were written")
        except Exception as exc:
            problems.append(f"can write but cannot read: {exc}")
        try:
            if not any(info.key == key for info in self.list("_tfr_probe/")):
                problems.append("can write but the object does not appear in a listing")
        except Exception as exc:
            problems.append(f"can write but cannot list: {exc}")
        if self.supports_presigned_urls:
            try:
                self.presigned_url(key, expires_in=60)
            except Exception as exc:
                problems.append(f"can write but cannot create presigned URLs: {exc}")
        try:
            self.delete(key)
        except Exception as exc:
            problems.append(f"can write but cannot delete: {exc}")
        return problems

    def remove_partial_writes(self, older_than: datetime, *, dry_run: bool = False) -> list[ObjectInfo]:
        """Remove (unless ``dry_run``) what interrupted :meth:`put` calls left behind, last written
        before ``older_than``: temporary files, unfinished multipart uploads.  ``tfr storage gc`` calls
        it after removing unreferenced objects; a process killed in the middle of a ``put`` leaves such
        leftovers, which :meth:`list` does not show.  Optional: the default finds nothing (a backend
        whose writes are atomic has nothing to remove).

        :returns: what was (or would be) removed; ``key`` may be a backend-specific name.
        """
        return []

    def close(self) -> None:  # noqa: B027 - optional, a no-op unless overridden
        """Release clients and connections; called by ``Registry.close()``."""


# --- Interactive sign-in -------------------------------------------------------------


@dataclass(frozen=True)
class RequestContext:
    """The HTTP request a policy hook is called for (``tfr_permission_allowed``'s ``context``).

    Hooks receive ``None`` instead when there is no HTTP request: a ``tfr`` command, a
    background job, a check made while the application starts.
    """

    #: The client's address, after trusted-proxy handling: with ``proxy.trusted`` set and the
    #: direct peer in it, the first address of ``X-Forwarded-For`` (walking back from the nearest
    #: hop) that is not a trusted proxy; otherwise the direct peer.  ``None`` if the server gave none.
    client_address: str | None
    #: The request id (the ``X-Request-Id`` a client or proxy sent when well formed, else a new one),
    #: as echoed in the response header and written to the audit log.
    request_id: str | None
    #: The HTTP method, upper case (``GET``, ``POST``...).
    method: str
    #: The path inside the application (``/v1/modules/acme/network/aws/versions``), without the
    #: ``X-Forwarded-Prefix`` a proxy may mount the registry under, and without the query string.
    path: str

    @property
    def client_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """:attr:`client_address` parsed, for ``ip in ipaddress.ip_network(...)`` tests; ``None`` if
        there is none or it is not an IP address (a Unix socket peer, say)."""
        try:
            return ipaddress.ip_address(self.client_address or "")
        except ValueError:
            return None


class LoginError(Exception):
    """A sign-in failed or was refused.  The message is shown to the person, so make it actionable
    (which claim was missing, which tenant is not allowed) and never include secrets or tokens."""


@dataclass
class ExternalIdentity:
    """Who an identity provider says signed in, as an :class:`AuthProvider` reports it.

    The core provisions a user on first sign-in (keyed by ``provider`` + ``subject``),
    updates ``email``/``name`` on later ones and, when ``grants`` is not ``None``,
    makes the user's provider-managed memberships equal to ``grants``.
    """

    #: The auth provider's registered name (``oidc``, ``azuread``).
    provider: str
    #: A stable, never re-assigned id of the person at the provider (``sub``; ``tid/oid`` for Entra ID).
    subject: str
    email: str | None = None
    name: str | None = None
    #: ``(organization, role template)`` pairs derived from claims by the provider's mapping
    #: settings; ``None`` when the provider does not manage memberships.
    grants: list[tuple[str, str]] | None = None
    #: The validated claims, for audit and debugging (never tokens).
    claims: dict[str, Any] = field(default_factory=dict)


class AuthProvider(ABC):
    """An interactive sign-in method (OpenID Connect, Entra ID...).

    Registered through ``tfr_register_auth_providers``; ``factory(settings)`` builds it.
    The core owns the routes: ``GET /auth/login/<name>`` calls :meth:`begin_login`,
    the identity provider redirects back to ``/auth/callback/<name>`` where the core
    calls :meth:`finish_login`, provisions the user and opens a browser session (which
    ``terraform login`` and the web UI then use).  Both methods run inside a Flask
    request; they may keep state (OAuth ``state``, nonce, PKCE verifier) in
    :data:`flask.session`, which is signed, HTTP-only and expires with the sign-in.
    """

    api_version = 1
    #: Registered name, used in URLs (``/auth/login/<name>``).
    name: str = ""
    #: Text of the sign-in button (``Sign in with Contoso``).
    label: str = ""

    @abstractmethod
    def begin_login(self, redirect_uri: str) -> Any:
        """Return a Flask response redirecting the browser to the identity provider.

        :param redirect_uri: the absolute callback URL to send as ``redirect_uri``.
        """

    @abstractmethod
    def finish_login(self, redirect_uri: str) -> ExternalIdentity:
        """Complete the sign-in from the callback request (``flask.request``): check ``state``,
        exchange the code (with the PKCE verifier), validate the ID token (signature via JWKS,
        issuer, audience, expiry, nonce) and apply the provider's policy (allowed domains or
        tenants).  Raise :class:`LoginError` with a clear message on any failure.

        :param redirect_uri: the same callback URL given to :meth:`begin_login`.
        """

    def check(self) -> list[str]:
        """Problems an operator should fix (issuer unreachable...), for ``tfr auth check``; empty when fine."""
        return []


# --- notifications ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something that happened in the registry (see :mod:`tfregistry.events` for the vocabulary).

    ``organization`` and ``namespace`` are names (``None`` for site-wide events), ``actor`` who caused it
    (a user's e-mail, ``token:ID``, ``scheduler``...), ``request_id`` the HTTP request it came from.
    """

    id: str
    type: str
    time: datetime
    organization: str | None
    namespace: str | None
    actor: str
    request_id: str | None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON (the shape documented in docs/events.md, and what webhooks carry)."""
        return {"id": self.id, "type": self.type, "time": self.time.isoformat(), "organization": self.organization,
                "namespace": self.namespace, "actor": self.actor, "request_id": self.request_id,
                "data": self.data}

    def subject(self) -> str:
        """One line saying what happened, for mail subjects and chat messages."""
        d = self.data
        if self.type.startswith("module."):
            what = f"module {d['namespace']}/{d['name']}/{d['system']} {d['version']}"
        elif self.type.startswith("provider."):
            what = f"provider {d['namespace']}/{d['type']} {d['version']}"
        elif self.type.startswith("mirror."):
            what = f"mirror of {d['upstream_host']}/{d['namespace']}/{d['type']}"
        elif self.type == "token.expiring":
            what = f"token {d['name']!r} expires in {d['days']} day(s), at {d['expires_at']}"
        elif self.type == "gpg_key.expiring":
            what = f"signing key {d['key_id']} of {self.namespace} expires in {d['days']} day(s), at {d['expires_at']}"
        elif self.type == "job.failed":
            what = f"job {d['job']} on queue {d['queue']}"
        elif self.type == "user.disabled":
            what = f"user {d['email'] or d['name']}"
        elif self.type == "scm.tag_moved":
            what = f"tag {d['tag']} of {d['repository']}"
        else:
            what = str(d.get("message", ""))
        return f"[{self.type}] {what}"

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Event:
        return cls(value["id"], value["type"], datetime.fromisoformat(value["time"]), value.get("organization"),
                   value.get("namespace"), value["actor"], value.get("request_id"), dict(value.get("data") or {}))


@dataclass(frozen=True)
class Delivery:
    """One attempt at telling one subscription about one event.

    ``id`` stays the same across retries, restarts and redeliveries of the same (event, subscription),
    so receivers can deduplicate (it is the Standard Webhooks ``webhook-id``); ``attempt`` counts from 1.
    ``target`` is the subscription's target settings with secrets decrypted: never log it.
    ``site_url`` is the registry's ``public_url`` (or ``None``), for links.
    """

    id: str
    attempt: int
    event: Event
    target: dict[str, Any]
    site_url: str | None = None


class DeliveryError(Exception):
    """A notification could not be delivered; it is retried (the message goes to the delivery log, so
    it must not contain secrets).  ``permanent=True``: retrying cannot help (a 4xx answer other than
    408/429), the delivery goes to the dead-letter list at once."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Notifier(ABC):
    """A notification channel (e-mail, a webhook...), offered by ``tfr_register_notifiers``.

    A subscription names a notifier and gives it *target settings* (a URL, addresses...).  The core
    stores target settings as JSON and encrypts the fields listed in :attr:`secret_fields` at rest;
    they are never shown again through the API or the CLI.
    """

    api_version = 1
    #: Target setting names whose values are secrets (encrypted at rest, masked when shown).
    secret_fields: tuple[str, ...] = ()

    @abstractmethod
    def validate(self, target: dict[str, Any]) -> dict[str, Any]:
        """Check a subscription's target settings; return them normalised, or raise ``ValueError`` with a
        message for the person who wrote them (never echoing a secret)."""

    @abstractmethod
    def send(self, delivery: Delivery) -> None:
        """Deliver one event; return on success, raise :class:`DeliveryError` on failure.  Called from a
        background job; must time out rather than hang (a few seconds per network step)."""
