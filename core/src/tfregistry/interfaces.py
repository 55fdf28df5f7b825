"""Interfaces that plugins implement.

A backend is a plain class behind one of these interfaces; hooks only
*register* backends (see :mod:`tfregistry.hookspecs`), the core then calls
their methods directly.  Each interface carries an ``api_version`` so the core
can adapt older plugins when an interface grows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import subprocess
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
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
    # SCM publishing (since plugin API 1.2)
    "OAuthEndpoints",
    "ScmCredentials",
    "ScmError",
    "ScmNotSupported",
    "ScmProvider",
    "ScmRepository",
    "ScmTag",
    "WebhookEvent",
    "WebhookRejected",
    "WebhookRequest",
    "WEBHOOK_EVENT_KINDS",
    "ZERO_SHA",
    "fetch_git_tree",
    "git_environment",
    "ref_update_event",
    "run_git",
    # helpers for vendor APIs (since plugin API 1.3)
    "ScmHttpError",
    "api_error_message",
    "api_request",
    "check_hmac_sha256",
    "link_header_pages",
    "missing_is_fine",
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

    def staging_directory(self) -> str | None:
        """A local directory where the core may spool uploads it will store with :meth:`put_file`
        (a backend that can adopt a file there without copying it names one; it must ignore files
        named ``.upload~<32 hex>.tmp`` in :meth:`list` and may remove stale ones in
        :meth:`remove_partial_writes`).  ``None`` (the default): the system's temporary directory.
        Since plugin API 1.3."""
        return None

    def put_file(self, key: str, path: str, *, sha256: str | None = None,
                 content_type: str | None = None) -> StoredObject:
        """Store the local file ``path`` under ``key``, like :meth:`put` (atomic, replaces).

        The core calls it with an upload it spooled (in :meth:`staging_directory` when there is one)
        and whose SHA-256 it computed while receiving it (``sha256``); the core removes the file
        afterwards and never writes to it again, so a backend may hard-link it into place instead of
        copying.  The default opens the file and calls :meth:`put`.  Since plugin API 1.3.
        """
        with open(path, "rb") as fh:
            return self.put(key, fh, content_type=content_type)

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
    #: The request id (the ``X-Request-Id`` a trusted proxy sent when well formed, else a new one),
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


# --- OpenID Connect token verification, shared with sign-in plugins (tfregistry.oidc) ----------------

from tfregistry.oidc import SAFE_ALGORITHMS, DiscoveryError, IssuerKeys, short_reason  # noqa: E402

__all__ += ["SAFE_ALGORITHMS", "DiscoveryError", "IssuerKeys", "short_reason"]


# --- Source control (SCM publishing) -----------------------------------------------------
#
# Registered through ``tfr_register_scm_providers``; since plugin API 1.2.  The core owns
# connections (encrypted secrets, OAuth refresh), links, the webhook endpoint, delivery
# de-duplication and the publish job; a provider only talks to its system.

#: The all-zero object id git and the SCM systems use for "no commit" (a created or deleted ref).
ZERO_SHA = "0" * 40


class ScmError(Exception):
    """The source-control system refused or failed a call (unreachable, 401/403, unknown
    repository).  The message is shown to the operator: make it actionable, never include secrets."""


class ScmNotSupported(ScmError):
    """The provider does not offer this operation (plain git has no webhooks, no repository list)."""


class ScmRefRefused(ScmError):
    """Branch mode: the branch does not exist, or the commit is not on it (the caller's mistake)."""


class WebhookRejected(Exception):
    """An incoming webhook request is not authentic (missing, wrong, tampered or stale signature).

    The core answers 401, queues nothing and records the delivery with this message as its
    outcome, so the message must say what was wrong without echoing the secret or signature.
    """


class ScmHttpError(ScmError):
    """A vendor API answered an error status (``status``), raised by :func:`api_request`."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def api_error_message(response: Any) -> str:
    """The error text a vendor API put in its JSON answer (``message``, ``error``, or the first
    ``errors[].message``, the shapes GitHub, GitLab, Azure DevOps and Bitbucket use); ``""`` if none."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    return str(body.get("message") or body.get("error") or first.get("message") or "")


def api_request(system: str, method: str, url: str, *, timeout: float, shown_path: str | None = None,
                error_from: int = 400, **kwargs: Any) -> Any:
    """``requests.request(method, url, timeout=timeout, **kwargs)`` with the errors every SCM plugin
    raises: :class:`ScmError` "SYSTEM unreachable: ..." when there is no answer, and
    :class:`ScmHttpError` "SYSTEM answered STATUS to METHOD PATH: message" for a status from
    ``error_from`` up (``shown_path``: the path to name, default the URL without its query).
    Never puts headers (credentials) in a message."""
    import requests

    try:
        response = requests.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise ScmError(f"{system} unreachable: {type(exc).__name__}") from None
    if response.status_code >= error_from:
        message = api_error_message(response)
        raise ScmHttpError(f"{system} answered {response.status_code} to {method} {shown_path or url.split('?')[0]}"
                           + (f": {message}" if message else ""), response.status_code)
    return response


@contextmanager
def missing_is_fine() -> Iterator[None]:
    """Around a delete: a 404 (:class:`ScmHttpError`) means the thing is gone already, not an error."""
    try:
        yield
    except ScmHttpError as exc:
        if exc.status != 404:
            raise


def link_header_pages(get: Any, url: str, max_pages: int) -> list[Any]:
    """The items of every page of a list that pages by the ``Link: <...>; rel="next"`` header (GitHub,
    GitLab): ``get(url)`` returns a ``requests`` response whose JSON body is a list; at most
    ``max_pages`` pages are read."""
    items: list[Any] = []
    next_url: str | None = url
    for _ in range(max_pages):
        if next_url is None:
            break
        response = get(next_url)
        items.extend(response.json())
        next_url = response.links.get("next", {}).get("url")
    return items


def check_hmac_sha256(request: WebhookRequest, header: str, secret: str) -> None:
    """Raise :class:`WebhookRejected` unless ``header`` is ``sha256=`` and the hex HMAC-SHA256 of the
    raw body with ``secret`` (GitHub's ``X-Hub-Signature-256``, Bitbucket's ``X-Hub-Signature``),
    compared in constant time."""
    sent = request.header(header)
    if not sent:
        raise WebhookRejected(f"{header} header missing")
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(sent.strip().encode(), expected.encode()):
        raise WebhookRejected(f"{header} does not match the body and the link's secret")


@dataclass(frozen=True)
class ScmCredentials:
    """How a connection authenticates, as the core hands it to a provider (decrypted, refreshed).

    ``method`` is one of the provider's :attr:`ScmProvider.auth_methods`: ``token`` (personal,
    project or group access token, app password), ``ssh_key`` (a deploy key, for plain git) or
    ``none`` (public repositories), ``oauth`` (an OAuth 2.0 access token from the
    authorization-code flow, in ``token``; the core refreshes it before it expires, so a provider
    uses it exactly like a ``token``).
    """

    method: str
    #: The API (or, for plain git, host) base URL: GitHub Enterprise Server, GitLab self-managed,
    #: Azure DevOps Server, Bitbucket Data Center; ``None`` for the vendor's public service.
    base_url: str | None = None
    #: A user name, where the system needs one beside the token (HTTP Basic for git, say).
    username: str | None = None
    #: The access token (``token`` and ``oauth``).  Never log it.
    token: str | None = field(default=None, repr=False)
    #: A private key in OpenSSH format (``ssh_key``).  Never log it.
    ssh_private_key: str | None = field(default=None, repr=False)
    #: When an OAuth access token expires (the core refreshes it before then), else ``None``.
    expires_at: datetime | None = None
    #: The ssh server's host keys in ``known_hosts`` format (``ssh_key``; what ``ssh-keyscan HOST``
    #: prints): git over ssh accepts only these keys.
    ssh_known_hosts: str | None = None

    def git_ssh(self) -> dict[str, str | None]:
        """Keyword arguments for :func:`git_environment` and :func:`fetch_git_tree`: the deploy key and
        the pinned host keys of an ``ssh_key`` connection, nothing for other methods."""
        if self.method != "ssh_key":
            return {}
        return {"ssh_private_key": self.ssh_private_key, "ssh_known_hosts": self.ssh_known_hosts}


@dataclass(frozen=True)
class OAuthEndpoints:
    """Where the OAuth 2.0 authorization-code flow of a system happens (see
    :meth:`ScmProvider.oauth_endpoints`).  The core runs the flow through Authlib."""

    authorize_url: str
    token_url: str
    #: The scopes to ask for (space-joined in the request).
    scopes: tuple[str, ...] = ()
    #: The OAuth client (application) registered with the system, from the provider's settings.
    client_id: str = ""
    #: Its secret.  Never log it.
    client_secret: str = field(default="", repr=False)
    #: Send a PKCE ``code_challenge`` (S256) with the authorization request.
    pkce: bool = True
    #: Extra parameters of the authorization request (``prompt``...).
    authorize_params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ScmRepository:
    """One repository a connection can reach."""

    #: The provider's stable identifier of the repository, used in every other call and stored in
    #: links: ``owner/name`` on GitHub, the project path on GitLab, the URL itself for plain git.
    id: str
    #: A human-readable name (``acme/terraform-aws-network``).
    name: str
    #: The URL ``git clone`` works with (https, or ssh for a deploy key).
    clone_url: str
    #: The repository's web page, shown as the provenance link and the registry API's ``source``;
    #: ``None`` when there is none (plain git), the core then shows ``clone_url``.
    web_url: str | None = None
    default_branch: str | None = None


@dataclass(frozen=True)
class ScmTag:
    """A tag and the commit it points at (annotated tags peeled to their commit)."""

    name: str
    commit_sha: str


@dataclass(frozen=True)
class WebhookRequest:
    """An incoming webhook request, as the core hands it to a provider."""

    #: Header names lower-cased.
    headers: Mapping[str, str]
    #: The raw body, byte for byte (signatures are computed over it).
    body: bytes
    #: When the core received it (UTC), for timestamp windows.
    received_at: datetime

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or ``None``."""
        return self.headers.get(name.lower())


#: :attr:`WebhookEvent.kind` values.
WEBHOOK_EVENT_KINDS = ("tag_created", "tag_deleted", "tag_moved", "push")


@dataclass(frozen=True)
class WebhookEvent:
    """What a delivery means, as :meth:`ScmProvider.parse_webhook` reports it.

    * ``tag_created``: ``tag`` now points at ``sha``.
    * ``tag_moved``: an existing tag was updated from ``before_sha`` to ``sha`` (GitHub
      ``created: false`` with a non-zero ``before``, GitLab ``before`` not zero, Bitbucket
      ``UPDATE`` on a tag, Azure DevOps non-zero ``oldObjectId``).  The core never republishes.
    * ``tag_deleted``: ``tag`` is gone (``sha`` is ``None``); the core keeps the version.
    * ``push``: a branch moved to ``sha`` (used by branch mode; ``tag`` is ``None``).

    For an annotated tag, ``sha`` may be the tag object's id rather than its commit's (GitHub's
    ``after`` is): the core resolves the tag (:meth:`ScmProvider.resolve_tag`) before it compares.
    """

    kind: str
    #: :attr:`ScmRepository.id` of the repository the delivery is about.
    repository: str
    tag: str | None = None
    sha: str | None = None
    before_sha: str | None = None
    #: The system's delivery id (``X-GitHub-Delivery``...), the same as :meth:`ScmProvider.delivery_id`.
    delivery_id: str | None = None
    #: The branch name for ``push`` events, else ``None``.
    branch: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in WEBHOOK_EVENT_KINDS:
            raise ValueError(f"WebhookEvent.kind must be one of {WEBHOOK_EVENT_KINDS}, not {self.kind!r}")


@contextmanager
def git_environment(*, http_headers: Mapping[str, str] | None = None, ssh_private_key: str | None = None,
                    ssh_known_hosts: str | None = None,
                    allowed_protocols: str = "https:http:ssh:git") -> Iterator[dict[str, str]]:
    """Environment for running ``git`` against a remote without leaking credentials.

    No prompts, no system or user configuration, only ``allowed_protocols`` (``GIT_ALLOW_PROTOCOL``);
    ``http_headers`` reach git through ``GIT_CONFIG_*`` variables (never the command line) and an SSH
    key through a private temporary file, removed when the block ends.  With a key, ssh accepts only
    the host keys in ``ssh_known_hosts`` (``StrictHostKeyChecking yes``): a key without them is an
    :class:`ScmError`, since accepting whatever key a server shows would hand the deploy key's access
    (and the code published) to anyone in the network path.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": allowed_protocols, "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull, "GCM_INTERACTIVE": "never"})
    config = [("core.symlinks", "true"), ("advice.detachedHead", "false")]
    config += [("http.extraHeader", f"{name}: {value}") for name, value in (http_headers or {}).items()]
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    with tempfile.TemporaryDirectory(prefix="tfr-git-env-") as tmp:
        if ssh_private_key is not None:
            if not (ssh_known_hosts or "").strip():
                raise ScmError("git over ssh needs the server's host keys (ssh_known_hosts, as ssh-keyscan prints)")
            key_path, hosts_path = Path(tmp) / "key", Path(tmp) / "known_hosts"
            key_path.touch(mode=0o600)
            key_path.write_text(ssh_private_key if ssh_private_key.endswith("\n") else ssh_private_key + "\n")
            hosts_path.write_text(str(ssh_known_hosts).strip() + "\n")
            env["GIT_SSH_COMMAND"] = (f"ssh -i {key_path} -o IdentitiesOnly=yes -o BatchMode=yes "
                                      f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={hosts_path} "
                                      "-o GlobalKnownHostsFile=/dev/null -F /dev/null")
        yield env


def run_git(env: Mapping[str, str], *args: str, timeout: float = 300.0) -> str:
    """Run ``git args...`` with ``env`` (from :func:`git_environment`); its standard output.

    :raises ScmError: git failed or timed out; the message carries git's error output with user
        information removed from URLs.
    """
    try:
        done = subprocess.run(["git", *args], env=dict(env), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ScmError(f"git {args[0]} timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        message = re.sub(r"://[^/@\s]*@", "://", done.stderr.strip())
        raise ScmError(f"git {args[0]} failed: {message}")
    return done.stdout


def ref_update_event(repository: str, ref: str, before: str | None, after: str | None, *,
                     delivery_id: str | None = None) -> WebhookEvent | None:
    """The :class:`WebhookEvent` for one updated ref (``refs/tags/v1.0.0`` or ``refs/heads/main``) that moved
    from ``before`` to ``after`` (:data:`ZERO_SHA` or empty for "none"), as most systems report a push:
    a tag from nothing is ``tag_created``, to nothing ``tag_deleted``, otherwise ``tag_moved``; a branch is
    ``push``.  ``None`` for other refs (notes, pull-request refs)."""
    before, after = before or ZERO_SHA, after or ZERO_SHA
    if ref.startswith("refs/heads/"):
        return WebhookEvent("push", repository, branch=ref.removeprefix("refs/heads/"), sha=after, before_sha=before,
                            delivery_id=delivery_id)
    if not ref.startswith("refs/tags/"):
        return None
    tag = ref.removeprefix("refs/tags/")
    if after.strip("0") == "":
        return WebhookEvent("tag_deleted", repository, tag=tag, before_sha=before, delivery_id=delivery_id)
    if before.strip("0") == "":
        return WebhookEvent("tag_created", repository, tag=tag, sha=after, delivery_id=delivery_id)
    return WebhookEvent("tag_moved", repository, tag=tag, sha=after, before_sha=before, delivery_id=delivery_id)


@contextmanager
def _bare_clone(clone_url: str, dest: Path, *, http_headers: Mapping[str, str] | None, ssh_private_key: str | None,
                ssh_known_hosts: str | None, allowed_protocols: str,
                timeout: float) -> Iterator[tuple[dict[str, str], str]]:
    """Check that ``dest`` is empty (creating it), then clone ``clone_url`` bare, without tags, into a
    temporary directory; yields the git environment and the clone's path (removed afterwards)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ScmError(f"{dest} is not empty")
    with git_environment(http_headers=http_headers, ssh_private_key=ssh_private_key,
                         ssh_known_hosts=ssh_known_hosts, allowed_protocols=allowed_protocols) as env, \
            tempfile.TemporaryDirectory(prefix="tfr-git-") as tmp:
        repo = str(Path(tmp) / "repo.git")
        run_git(env, "clone", "--quiet", "--bare", "--no-tags", "--", clone_url, repo, timeout=timeout)
        yield env, repo


def fetch_git_tree(
    clone_url: str,
    commit_sha: str,
    dest: Path,
    *,
    http_headers: Mapping[str, str] | None = None,
    ssh_private_key: str | None = None,
    ssh_known_hosts: str | None = None,
    allowed_protocols: str = "https:http:ssh:git",
    timeout: float = 300.0,
) -> None:
    """Write the files of commit ``commit_sha`` of the repository at ``clone_url`` into ``dest``.

    Runs the real ``git`` command: a clone without checkout into a temporary directory, then a
    checkout of exactly that commit into ``dest`` (an empty or absent directory), without ``.git``.
    Symbolic links stay links, so the core's archive rules can refuse one that points outside the tree.
    Credentials never appear on a command line (see :func:`git_environment`).

    :raises ScmError: git failed, or the commit is not in the repository; the message carries git's
        own error output with the URL's user information removed.
    """
    if not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit_sha):
        raise ScmError(f"not a full commit SHA: {commit_sha!r}")
    with _bare_clone(clone_url, dest, http_headers=http_headers, ssh_private_key=ssh_private_key,
                     ssh_known_hosts=ssh_known_hosts, allowed_protocols=allowed_protocols,
                     timeout=timeout) as (env, repo):
        try:
            run_git(env, "--git-dir", repo, "cat-file", "-e", f"{commit_sha}^{{commit}}")
        except ScmError:
            # Not reachable from the branches: fetch tags too (a tag on an orphan commit).
            run_git(env, "--git-dir", repo, "fetch", "--quiet", "--tags", "origin", timeout=timeout)
            try:
                run_git(env, "--git-dir", repo, "cat-file", "-e", f"{commit_sha}^{{commit}}")
            except ScmError:
                raise ScmError(f"commit {commit_sha} is not in {clone_url}") from None
        run_git(env, "--git-dir", repo, "--work-tree", str(dest), "checkout", "--force", commit_sha, "--", ".")


def fetch_git_branch_tree(
    clone_url: str,
    branch: str,
    commit_sha: str | None,
    dest: Path,
    *,
    http_headers: Mapping[str, str] | None = None,
    ssh_private_key: str | None = None,
    ssh_known_hosts: str | None = None,
    allowed_protocols: str = "https:http:ssh:git",
    timeout: float = 300.0,
) -> str:
    """Write the files of a commit of ``branch`` into ``dest`` and return that commit's SHA (branch mode).

    ``commit_sha`` ``None`` means the branch head; otherwise it must be a full SHA of a commit reachable
    from the branch head (``git merge-base --is-ancestor``), checked with the real ``git``.

    :raises ScmRefRefused: no such branch, or the commit is not on it.
    :raises ScmError: git failed.
    """
    if commit_sha is not None and not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit_sha):
        raise ScmRefRefused(f"not a full commit SHA: {commit_sha!r}")
    if not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", branch) or branch.startswith(("-", "/")) or ".." in branch:
        raise ScmRefRefused(f"not a branch name: {branch!r}")
    with _bare_clone(clone_url, dest, http_headers=http_headers, ssh_private_key=ssh_private_key,
                     ssh_known_hosts=ssh_known_hosts, allowed_protocols=allowed_protocols,
                     timeout=timeout) as (env, repo):
        try:
            head = run_git(env, "--git-dir", repo, "rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}").strip()
        except ScmError:
            raise ScmRefRefused(f"branch {branch!r} does not exist in the repository") from None
        commit = commit_sha or head
        try:
            run_git(env, "--git-dir", repo, "merge-base", "--is-ancestor", commit, head)
        except ScmError:
            raise ScmRefRefused(f"commit {commit} is not on branch {branch!r}") from None
        run_git(env, "--git-dir", repo, "--work-tree", str(dest), "checkout", "--force", commit, "--", ".")
        return commit


class ScmProvider(ABC):
    """A source-control system the registry publishes modules from (GitHub, GitLab, plain git...).

    Registered through ``tfr_register_scm_providers``: ``register.add(name, factory)`` where
    ``factory(settings)`` returns an instance.  One instance serves every connection of that kind,
    from several threads: keep no per-connection state; every call receives the connection's
    :class:`ScmCredentials`.  Calls run in web requests and jobs; raise :class:`ScmError` on failure.

    Implement :meth:`list_tags` and :meth:`clone_url`; the rest have working defaults or raise
    :class:`ScmNotSupported`.  A system with webhooks also implements :meth:`create_webhook`,
    :meth:`delete_webhook`, :meth:`verify_webhook`, :meth:`delivery_id` and :meth:`parse_webhook`.
    """

    #: Version of this interface the provider was written against.
    api_version: int = 1
    #: Registered name (``github``, ``git``...), stored with each connection.
    name: str = ""
    #: Shown to people (``GitHub``).
    label: str = ""
    #: The :attr:`ScmCredentials.method` values this provider accepts.
    auth_methods: tuple[str, ...] = ("token",)
    #: Whether the system sends webhooks (without them the core only polls, see ``scm.reconcile_interval``).
    supports_webhooks: bool = False
    #: Request headers that carry secrets (lower case), removed before a delivery is logged; the core
    #: always removes ``authorization`` and ``cookie`` as well.
    secret_headers: tuple[str, ...] = ()

    def oauth_endpoints(self, base_url: str | None) -> OAuthEndpoints | None:
        """The OAuth 2.0 endpoints for ``base_url`` (``None``: the public service), or ``None``
        when the provider offers no OAuth (the default) or no OAuth client is configured for it.
        A provider returning endpoints lists ``oauth`` in :attr:`auth_methods`; one that offers no OAuth
        for that kind of server (an on-premises edition) may raise :class:`ScmNotSupported` with the
        reason, which the core answers as a 400."""
        return None

    def check_credentials(self, credentials: ScmCredentials) -> str:
        """Check that ``credentials`` work; return who they act as (an account name) for display.

        The default returns ``""`` without checking; raise :class:`ScmError` when they are refused.
        """
        return ""

    def list_repositories(self, credentials: ScmCredentials) -> list[ScmRepository]:
        """The repositories the connection can read (for the link wizard).

        Raise :class:`ScmNotSupported` (the default) when the system cannot list them; the operator
        then names the repository (:meth:`get_repository`).
        """
        raise ScmNotSupported(f"{self.label or self.name} cannot list repositories; name one")

    def get_repository(self, credentials: ScmCredentials, repository: str) -> ScmRepository:
        """One repository by :attr:`ScmRepository.id`; the default searches :meth:`list_repositories`."""
        for repo in self.list_repositories(credentials):
            if repo.id == repository:
                return repo
        raise ScmError(f"repository {repository!r} not found or not readable with this connection")

    @abstractmethod
    def list_tags(self, credentials: ScmCredentials, repository: str) -> list[ScmTag]:
        """Every tag of ``repository`` with the commit it points at (annotated tags peeled)."""

    def resolve_tag(self, credentials: ScmCredentials, repository: str, tag: str) -> str | None:
        """The commit SHA ``tag`` points at now, or ``None`` if there is no such tag.

        The default searches :meth:`list_tags`; override it with a cheaper call where there is one.
        """
        for t in self.list_tags(credentials, repository):
            if t.name == tag:
                return t.commit_sha
        return None

    @abstractmethod
    def clone_url(self, credentials: ScmCredentials, repository: str) -> str:
        """The URL :meth:`fetch_tree` clones ``repository`` from (without credentials in it)."""

    def git_http_headers(self, credentials: ScmCredentials) -> dict[str, str]:
        """HTTP headers git sends when cloning over https (``Authorization: Basic ...``).

        The default sends HTTP Basic with :attr:`ScmCredentials.username` (or ``x-access-token``)
        and the token when there is a token, else nothing.
        """
        if not credentials.token:
            return {}
        user = credentials.username or "x-access-token"
        pair = base64.b64encode(f"{user}:{credentials.token}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def fetch_tree(self, credentials: ScmCredentials, repository: str, commit_sha: str, dest: Path) -> None:
        """Write the files of exactly ``commit_sha`` into the empty directory ``dest``.

        The default clones :meth:`clone_url` with the real ``git`` (:func:`fetch_git_tree`), sending
        :meth:`git_http_headers` or the deploy key.  A replacement must produce the same tree (keep
        symbolic links as links) and must not trust a tarball that is not pinned to the commit.
        """
        fetch_git_tree(self.clone_url(credentials, repository), commit_sha, dest,
                       http_headers=self.git_http_headers(credentials), **credentials.git_ssh())

    def fetch_branch_tree(self, credentials: ScmCredentials, repository: str, branch: str, commit_sha: str | None,
                          dest: Path) -> str:
        """Branch mode: write the files of ``commit_sha`` (``None``: the head) of ``branch`` into the empty
        directory ``dest`` and return the commit's SHA; raise :class:`ScmRefRefused` when there is no
        such branch or the commit is not on it.  The default uses the real ``git``
        (:func:`fetch_git_branch_tree`) like :meth:`fetch_tree`."""
        return fetch_git_branch_tree(
            self.clone_url(credentials, repository), branch, commit_sha, dest,
            http_headers=self.git_http_headers(credentials), **credentials.git_ssh())

    def create_webhook(self, credentials: ScmCredentials, repository: str, url: str, secret: str) -> str:
        """Create a webhook on ``repository`` that POSTs tag (and push) events to ``url``, signed or
        authenticated with ``secret``; return the system's id of the hook (for :meth:`delete_webhook`)."""
        raise ScmNotSupported(f"{self.label or self.name} has no webhooks; the registry polls it instead")

    def delete_webhook(self, credentials: ScmCredentials, repository: str, hook_id: str) -> None:
        """Delete the webhook :meth:`create_webhook` made; a hook already gone is not an error."""
        raise ScmNotSupported(f"{self.label or self.name} has no webhooks")

    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        """Check that ``request`` was sent by the system with ``secret`` (HMAC over the raw body,
        a secret header, Basic auth; a timestamp window where the scheme has one, measured from
        ``request.received_at``).  Compare in constant time (:func:`hmac.compare_digest`).

        :raises WebhookRejected: the signature is missing, wrong, over a different body or stale.
            The default rejects everything: a provider without verification accepts no webhook.
        """
        raise WebhookRejected(f"{self.label or self.name} does not accept webhooks")

    def delivery_id(self, request: WebhookRequest) -> str | None:
        """The system's unique id of this delivery (``X-GitHub-Delivery``, ``webhook-id``...), which
        the core uses to ignore a repeat within 24 hours; ``None`` when there is none."""
        return None

    def parse_webhook(self, request: WebhookRequest) -> list[WebhookEvent]:
        """What a verified delivery means: an empty list for anything that is not about tags or
        branches (a ping, an issue comment).  Raise :class:`ValueError` for a body that cannot be read."""
        return []

    def check(self) -> list[str]:
        """Problems an operator should fix (``git`` missing...); empty when fine."""
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
