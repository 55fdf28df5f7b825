"""OpenID Connect token verification shared by sign-in plugins and trusted publishing.

:class:`IssuerKeys` fetches an issuer's discovery document and JWKS, caches both, and verifies a
compact JWT's signature with joserfc (Authlib's JOSE library), downloading the JWKS again when a
token names a key id it does not hold (the issuer rotated its keys), at most every
:data:`JWKS_MIN_REFRESH` seconds.  Only asymmetric algorithms are accepted (:data:`SAFE_ALGORITHMS`):
``alg: none`` and HMAC with a shared secret never verify.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

__all__ = ["JWKS_MIN_REFRESH", "METADATA_TTL", "SAFE_ALGORITHMS", "DiscoveryError", "IssuerKeys", "fetch_json",
           "short_reason"]

#: Signature algorithms accepted (asymmetric only: no ``none``, no HMAC with a shared secret).
SAFE_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: Seconds the discovery document is cached.
METADATA_TTL = 3600
#: Minimum seconds between two JWKS downloads forced by an unknown key id.
JWKS_MIN_REFRESH = 30


class DiscoveryError(Exception):
    """The discovery document or the JWKS cannot be fetched or is unusable; the message says why."""


def short_reason(exc: Exception) -> str:
    """A few words on why a request failed (no URL parameters, no secrets)."""
    text = str(exc)
    for needle, reason in (("refused", "connection refused"), ("Name or service not known", "unknown host"),
                           ("nodename nor servname", "unknown host"), ("CERTIFICATE_VERIFY_FAILED",
                                                                         "TLS certificate not trusted")):
        if needle in text:
            return reason
    return exc.__class__.__name__


def fetch_json(url: str, what: str, *, timeout: float, hint: str, user_agent: str = "tfregistry") -> dict[str, Any]:
    """GET ``url`` and return its JSON object, or raise :class:`DiscoveryError` naming ``what`` and ``hint``
    (the setting or record an operator changes)."""
    try:
        response = requests.get(url, timeout=timeout, headers={"Accept": "application/json", "User-Agent": user_agent})
    except requests.Timeout:
        raise DiscoveryError(f"the {what} {url} did not answer within {timeout:g} seconds ({hint})") from None
    except requests.RequestException as exc:
        raise DiscoveryError(f"cannot fetch the {what} {url}: {short_reason(exc)} ({hint})") from None
    if response.status_code != 200:
        raise DiscoveryError(f"the {what} {url} answered HTTP {response.status_code} ({hint})")
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise DiscoveryError(f"the {what} {url} is not a JSON object ({hint})")
    return document


class IssuerKeys:
    """One issuer's discovery document and signing keys, cached; safe to share between threads.

    :param metadata_url: the discovery document's URL.
    :param validate: returns the problems of a freshly fetched discovery document (empty: usable);
        by default it must name a ``jwks_uri``.
    :param hint: what an operator changes when fetching fails (a setting name), used in messages.
    :param label: a prefix for the messages of fetch failures (the sign-in provider's name).
    """

    def __init__(self, metadata_url: str, *, timeout: float = 10.0, hint: str = "",
                 validate: Callable[[dict[str, Any]], list[str]] | None = None,
                 user_agent: str = "tfregistry", label: str = "") -> None:
        self.metadata_url = metadata_url
        self.label = f"{label}: " if label else ""
        self.timeout = timeout
        self.hint = hint or metadata_url
        self.validate = validate or _needs_jwks_uri
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    def fetch(self, url: str, what: str) -> dict[str, Any]:
        try:
            return fetch_json(url, what, timeout=self.timeout, hint=self.hint, user_agent=self.user_agent)
        except DiscoveryError as exc:
            raise DiscoveryError(f"{self.label}{exc}") from None

    def metadata(self, *, refresh: bool = False) -> dict[str, Any]:
        """The discovery document, cached for :data:`METADATA_TTL`; raises :class:`DiscoveryError`."""
        with self._lock:
            fresh = self._metadata is not None and time.monotonic() - self._metadata_at < METADATA_TTL
            if fresh and not refresh:
                return self._metadata  # type: ignore[return-value]
            document = self.fetch(self.metadata_url, "OpenID Connect discovery document")
            problems = self.validate(document)
            if problems:
                raise DiscoveryError("; ".join(problems))
            self._metadata, self._metadata_at = document, time.monotonic()
            return document

    def key_set(self, *, refresh: bool = False) -> KeySet:
        """The issuer's signing keys (its JWKS), cached; ``refresh`` re-downloads at most every 30 s."""
        metadata = self.metadata()
        with self._lock:
            if self._keys is not None and not (refresh and time.monotonic() - self._keys_at >= JWKS_MIN_REFRESH):
                return self._keys
            document = self.fetch(metadata["jwks_uri"], "JWKS")
            try:
                keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise DiscoveryError(f"{self.label}the JWKS {metadata['jwks_uri']} holds no usable key "
                                     f"({exc.__class__.__name__})") from None
            self._keys, self._keys_at = keys, time.monotonic()
            return keys

    def decode(self, token: str, algorithms: Iterable[str] = SAFE_ALGORITHMS) -> jwt.Token:
        """Verify ``token``'s signature with a published key and an allowed algorithm; return it (claims
        not yet checked).  An unknown key id fetches the JWKS again once (key rotation).  Raises joserfc's
        errors (``BadSignatureError``, ``InvalidKeyIdError``, ``UnsupportedAlgorithmError``...) or
        :class:`DiscoveryError`."""
        allowed = [alg for alg in algorithms if alg in SAFE_ALGORITHMS] or ["RS256"]
        try:
            return jwt.decode(token, self.key_set(), algorithms=allowed)
        except InvalidKeyIdError:
            return jwt.decode(token, self.key_set(refresh=True), algorithms=allowed)


def _needs_jwks_uri(metadata: dict[str, Any]) -> list[str]:
    uri = metadata.get("jwks_uri")
    return [] if isinstance(uri, str) and uri else ["the discovery document has no 'jwks_uri'"]
