"""Sign-in with an OpenID Connect identity provider: authorization code flow with PKCE (S256) and a nonce.

Authlib does the OAuth 2.0 client work (authorization URL with the PKCE challenge, the code
exchange with client authentication); joserfc, Authlib's JOSE library, verifies the ID token's
signature against the provider's JWKS and checks its claims (issuer, audience, expiry, nonce).

:class:`OIDCProvider` is written to be subclassed: a provider-specific plugin overrides
:meth:`OIDCProvider.expected_issuer`, :meth:`OIDCProvider.validate_metadata` and
:meth:`OIDCProvider.identity_from_claims` (see ``tfregistry-auth-azuread``).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import flask
import requests
from authlib.common.security import is_secure_transport
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingAlgorithmError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet

from tfregistry.interfaces import (
    SAFE_ALGORITHMS,
    AuthProvider,
    DiscoveryError,
    ExternalIdentity,
    IssuerKeys,
    LoginError,
    short_reason,
)
from tfregistry_auth_oidc.mapping import MappingRule, claim_strings, grants_for

__all__ = ["DiscoveryError", "OIDCOptions", "OIDCProvider"]

log = logging.getLogger(__name__)

#: Seconds a started sign-in may take before its callback is refused.
LOGIN_LIFETIME = 600
#: Sign-ins kept per browser session (several tabs may sign in at once).
MAX_PENDING = 5
#: Claims not worth keeping in :attr:`ExternalIdentity.claims` (one-time values of this sign-in).
VOLATILE_CLAIMS = ("nonce", "at_hash", "c_hash")


@dataclass(frozen=True)
class OIDCOptions:
    """Validated configuration of an :class:`OIDCProvider` (built from ``auth.oidc.*`` by the plugin)."""

    #: The issuer identifier, e.g. ``https://login.example.com/realms/acme``.
    issuer: str
    client_id: str
    #: ``None`` for a public client (PKCE only, no client authentication).
    client_secret: str | None = None
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    label: str = "Sign in with OpenID Connect"
    #: The claim holding the person's groups.
    groups_claim: str = "groups"
    #: Empty: the provider does not manage memberships (grants are ``None``).
    group_mapping: tuple[MappingRule, ...] = ()
    #: Lower-case e-mail domains allowed to sign in; empty allows everyone the provider vouches for.
    allowed_domains: tuple[str, ...] = ()
    #: Seconds to wait for the provider's discovery, JWKS and token endpoints.
    timeout: float = 10.0
    #: Discovery document URL; default ``{issuer}/.well-known/openid-configuration``.
    metadata_url: str | None = None
    #: Clock skew tolerated when checking ``exp``/``iat``/``nbf``, in seconds.
    leeway: int = 60


class OIDCProvider(AuthProvider):
    """An :class:`~tfregistry.interfaces.AuthProvider` for any OpenID Connect identity provider.

    One instance serves every request, from several threads: the discovery document and the
    JWKS are cached (under a lock); everything about one sign-in lives in :data:`flask.session`.
    """

    name = "oidc"
    label = "Sign in with OpenID Connect"
    #: Prefix of this provider's settings, used in messages (``auth.oidc.issuer``).
    settings_prefix = "auth.oidc"
    #: The setting an operator changes when discovery fails.
    metadata_setting = "auth.oidc.issuer"

    def __init__(self, options: OIDCOptions) -> None:
        self.options = options
        self.label = options.label
        self._lock = threading.Lock()
        self._issuer_keys: IssuerKeys | None = None

    # --- discovery ------------------------------------------------------------------

    @property
    def metadata_url(self) -> str:
        """Where the discovery document is fetched from."""
        return self.options.metadata_url or self.options.issuer.rstrip("/") + "/.well-known/openid-configuration"

    @property
    def session_key(self) -> str:
        """The :data:`flask.session` key holding this provider's sign-ins in progress."""
        return f"_tfr_auth_{self.name}"

    def validate_metadata(self, metadata: dict[str, Any]) -> list[str]:
        """Problems with a freshly fetched discovery document; empty when it is usable.

        Checks the endpoints this flow needs and, as OpenID Connect Discovery requires, that the
        document's ``issuer`` is the configured issuer (a trailing ``/`` aside).
        """
        problems = self._endpoint_problems(metadata)
        issuer = metadata.get("issuer")
        if isinstance(issuer, str) and issuer.rstrip("/") != self.options.issuer.rstrip("/"):
            problems.append(f"{self.name}: the discovery document {self.metadata_url} names the issuer {issuer!r}, "
                            f"not {self.options.issuer!r} (setting {self.settings_prefix}.issuer must be exactly "
                            "the provider's issuer)")
        return problems

    def _endpoint_problems(self, metadata: dict[str, Any]) -> list[str]:
        problems = []
        for field in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = metadata.get(field)
            if not isinstance(value, str) or not value:
                problems.append(f"{self.name}: the discovery document {self.metadata_url} has no {field!r}")
            elif field != "issuer" and not is_secure_transport(value):
                problems.append(f"{self.name}: the discovery document's {field} {value} is not an https URL")
        return problems

    @property
    def issuer_keys(self) -> IssuerKeys:
        """The discovery document and JWKS cache (:class:`tfregistry.oidc.IssuerKeys`), made on first use."""
        with self._lock:
            if self._issuer_keys is None:
                self._issuer_keys = IssuerKeys(self.metadata_url, timeout=self.options.timeout,
                                               hint=f"setting {self.metadata_setting}", validate=self.validate_metadata,
                                               user_agent="tfregistry-auth-oidc", label=self.name)
            return self._issuer_keys

    def metadata(self, *, refresh: bool = False) -> dict[str, Any]:
        """The provider's discovery document, cached for an hour; raises :class:`DiscoveryError`."""
        return self.issuer_keys.metadata(refresh=refresh)

    def key_set(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (its JWKS), cached; ``refresh`` re-downloads at most every 30 s."""
        return self.issuer_keys.key_set(refresh=refresh)

    def _metadata_for_login(self) -> dict[str, Any]:
        try:
            return self.metadata()
        except DiscoveryError as exc:
            log.warning("%s", exc)
            raise LoginError("the identity provider cannot be reached right now; try again later, and tell a "
                             "registry administrator if it persists") from None

    # --- the flow ---------------------------------------------------------------------

    def authorize_params(self) -> dict[str, str]:
        """Extra parameters for the authorization request (none here; ``prompt``, ``domain_hint``... in subclasses)."""
        return {}

    def _client(self, metadata: dict[str, Any], redirect_uri: str) -> OAuth2Session:
        secret = self.options.client_secret or None
        supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if not secret:
            method = "none"
        elif "client_secret_basic" in supported or "client_secret_post" not in supported:
            method = "client_secret_basic"
        else:
            method = "client_secret_post"
        return OAuth2Session(
            client_id=self.options.client_id,
            client_secret=secret,
            token_endpoint_auth_method=method,
            scope=" ".join(self.options.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        )

    def begin_login(self, redirect_uri: str) -> Any:
        """Redirect to the provider's authorization endpoint with a fresh state, nonce and PKCE challenge.

        The state, nonce and code verifier are kept in :data:`flask.session` until the callback.
        Raises :class:`LoginError` when the provider's discovery document cannot be fetched.
        """
        metadata = self._metadata_for_login()
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        with self._client(metadata, redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce,
                **self.authorize_params(),
            )
        now = int(time.time())
        pending = {s: p for s, p in dict(flask.session.get(self.session_key) or {}).items()
                   if isinstance(p, dict) and now - int(p.get("at", 0)) < LOGIN_LIFETIME}
        for old in sorted(pending, key=lambda s: pending[s]["at"])[: max(0, len(pending) - MAX_PENDING + 1)]:
            del pending[old]
        pending[state] = {"nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri, "at": now}
        flask.session[self.session_key] = pending
        return flask.redirect(url, code=302)

    def _take_pending(self, state: str | None) -> tuple[dict[str, Any] | None, bool]:
        """Remove ``state``'s sign-in from the session (one use only); return it and whether others were pending."""
        pending = dict(flask.session.get(self.session_key) or {})
        entry = pending.pop(state, None) if state else None
        if pending:
            flask.session[self.session_key] = pending
        else:
            flask.session.pop(self.session_key, None)
        return (entry if isinstance(entry, dict) else None), bool(pending)

    def finish_login(self, redirect_uri: str) -> ExternalIdentity:
        """Check the callback, exchange the code (with the PKCE verifier), validate the ID token, apply policy."""
        args = flask.request.args
        state = args.get("state")
        entry, others = self._take_pending(state)
        if args.get("error"):
            raise LoginError(_idp_error_message(args.get("error", ""), args.get("error_description")))
        if not state:
            raise LoginError("the sign-in response has no state parameter; start the sign-in again")
        if entry is None:
            if others:
                raise LoginError("this sign-in response does not belong to the sign-in started in this browser "
                                 "(state mismatch); start the sign-in again")
            raise LoginError("no sign-in is in progress in this browser: this sign-in response was already used, "
                             "or the sign-in was started elsewhere or cookies are blocked; start the sign-in again")
        if time.time() - int(entry.get("at", 0)) >= LOGIN_LIFETIME:
            raise LoginError(f"the sign-in took longer than {LOGIN_LIFETIME // 60} minutes; start it again")
        if entry.get("redirect_uri") != redirect_uri:
            raise LoginError("the sign-in returned to a different address than it started from; start it again")
        code = args.get("code")
        if not code:
            raise LoginError("the identity provider's response has no authorization code; start the sign-in again")
        metadata = self._metadata_for_login()
        token = self._exchange_code(metadata, code, entry["verifier"], redirect_uri)
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise LoginError("the identity provider returned no ID token (is the 'openid' scope allowed for this "
                             "client?); ask a registry administrator")
        claims = self.validate_id_token(id_token, nonce=entry["nonce"])
        return self.identity_from_claims(claims)

    def _exchange_code(self, metadata: dict[str, Any], code: str, verifier: str, redirect_uri: str
                       ) -> dict[str, Any]:
        endpoint = metadata["token_endpoint"]
        try:
            with self._client(metadata, redirect_uri) as client:
                return dict(client.fetch_token(endpoint, grant_type="authorization_code", code=code,
                                               code_verifier=verifier, redirect_uri=redirect_uri,
                                               timeout=self.options.timeout))
        except OAuthError as exc:
            detail = f"{exc.error}: {exc.description}" if getattr(exc, "description", None) else exc.error
            raise LoginError(f"the identity provider refused to complete the sign-in ({detail}); "
                             "start the sign-in again") from None
        except requests.RequestException as exc:
            log.warning("%s: token endpoint %s failed: %s", self.name, endpoint, exc)
            raise LoginError(f"the identity provider's token endpoint cannot be reached ({short_reason(exc)}); "
                             "try again later") from None
        except ValueError:
            raise LoginError("the identity provider's token endpoint gave an unexpected answer; "
                             "ask a registry administrator") from None

    # --- the ID token -------------------------------------------------------------------

    def algorithms(self, metadata: dict[str, Any]) -> list[str]:
        """Signature algorithms accepted for ID tokens: the provider's, restricted to :data:`SAFE_ALGORITHMS`."""
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        allowed = [alg for alg in offered if alg in SAFE_ALGORITHMS]
        return allowed or ["RS256"]

    def _decode(self, id_token: str, algorithms: list[str]) -> jwt.Token:
        return self.issuer_keys.decode(id_token, algorithms)

    def validate_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Verify the ID token's signature (JWKS) and claims; return its claims or raise :class:`LoginError`.

        Checked: signature with an allowed algorithm and a published key, ``iss`` (see
        :meth:`expected_issuer`), ``aud`` contains the client id (and ``azp`` is the client id when
        present or when there are several audiences), ``exp``/``iat``/``nbf`` with
        :attr:`OIDCOptions.leeway`, ``sub`` present, and ``nonce`` equal to this sign-in's.
        """
        metadata = self._metadata_for_login()
        algorithms = self.algorithms(metadata)
        try:
            token = self._decode(id_token, algorithms)
        except DiscoveryError as exc:
            log.warning("%s", exc)
            raise LoginError("the identity provider's signing keys cannot be fetched right now; try again later"
                             ) from None
        except BadSignatureError:
            raise LoginError("the ID token's signature does not verify with the identity provider's published "
                             "keys (a forged or altered token); sign-in refused") from None
        except InvalidKeyIdError:
            raise LoginError("the ID token is signed with a key the identity provider does not publish; "
                             "sign-in refused") from None
        except (UnsupportedAlgorithmError, MissingAlgorithmError):
            raise LoginError(f"the ID token is signed with an algorithm that is not accepted "
                             f"(accepted: {', '.join(algorithms)}); sign-in refused") from None
        except (JoseError, ValueError, TypeError):
            raise LoginError("the identity provider returned a malformed ID token; sign-in refused") from None
        claims = dict(token.claims)
        expected_issuer = self.expected_issuer(claims)
        client_id = self.options.client_id
        registry = jwt.JWTClaimsRegistry(
            leeway=self.options.leeway,
            iss={"essential": True, "value": expected_issuer},
            sub={"essential": True},
            aud={"essential": True, "values": [client_id]},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise LoginError("the ID token has expired (check that the registry's clock is right); "
                             "start the sign-in again") from None
        except MissingClaimError as exc:
            names = ", ".join(repr(n) for n in exc.claim.split(","))
            raise LoginError(f"the ID token lacks the required claim {names}; sign-in refused") from None
        except InvalidClaimError as exc:
            raise LoginError(self._invalid_claim_message(exc.claim, claims, expected_issuer)) from None
        except JoseError:
            raise LoginError("the ID token's claims are not valid; sign-in refused") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (azp is not None or len(audiences) > 1) and azp != client_id:
            raise LoginError("the ID token was issued to another application (its 'azp' claim is not this "
                             "registry's client id); sign-in refused")
        return claims

    def _invalid_claim_message(self, claim: str, claims: dict[str, Any], expected_issuer: str) -> str:
        if claim == "iss":
            return (f"the ID token was issued by {claims.get('iss')!r}, but this registry trusts only "
                    f"{expected_issuer!r}; sign-in refused")
        if claim == "aud":
            return (f"the ID token was issued for another application (audience {claims.get('aud')!r}, expected "
                    f"the client id {self.options.client_id!r}); sign-in refused")
        if claim == "nonce":
            return ("the ID token's nonce does not match this sign-in (a replayed or mixed-up response); "
                    "start the sign-in again")
        if claim in ("iat", "nbf"):
            return ("the ID token is not valid yet (check that the registry's and the identity provider's "
                    "clocks agree); start the sign-in again")
        return f"the ID token's {claim!r} claim is not valid; sign-in refused"

    def expected_issuer(self, claims: dict[str, Any]) -> str:
        """The ``iss`` the ID token must carry: the discovery document's issuer.

        ``claims`` (signature already verified, not yet checked) lets a subclass derive it from the
        token, as Entra ID's multi-tenant ``{tenantid}`` issuer requires.
        """
        return str(self.metadata()["issuer"])

    # --- policy -------------------------------------------------------------------------

    def identity_from_claims(self, claims: dict[str, Any]) -> ExternalIdentity:
        """Apply ``allowed_domains`` and ``group_mapping`` to validated claims and build the identity."""
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        self.check_domain(email, claims)
        grants = None
        if self.options.group_mapping:
            groups = claim_strings(claims, self.options.groups_claim)
            if self.options.groups_claim not in claims:
                log.info("%s: the ID token of %s has no %r claim; no mapped memberships",
                         self.name, claims["sub"], self.options.groups_claim)
            grants = grants_for(groups, self.options.group_mapping)
        return ExternalIdentity(provider=self.name, subject=str(claims["sub"]), email=email,
                                name=display_name(claims), grants=grants, claims=public_claims(claims))

    def check_domain(self, email: str | None, claims: dict[str, Any]) -> None:
        """Refuse addresses outside ``allowed_domains`` (when set) and addresses the provider says are unverified."""
        allowed = self.options.allowed_domains
        if not allowed:
            return
        if not email or "@" not in email:
            raise LoginError("this registry accepts only accounts of certain e-mail domains, but the identity "
                             "provider did not send an e-mail address; ask a registry administrator (the "
                             "'email' scope may be missing)")
        verified = claims.get("email_verified")
        if verified is False or (isinstance(verified, str) and verified.lower() == "false"):
            raise LoginError(f"your e-mail address {email} is not verified at the identity provider; verify it "
                             "there and sign in again")
        domain = email.rpartition("@")[2].lower()
        if domain not in allowed:
            raise LoginError(f"accounts of {domain} may not sign in to this registry "
                             f"(allowed: {', '.join(allowed)})")

    # --- diagnostics --------------------------------------------------------------------

    def check(self) -> list[str]:
        """Fetch the discovery document and the JWKS now; report what is wrong (empty when fine)."""
        try:
            self.metadata(refresh=True)
        except DiscoveryError as exc:
            return str(exc).split("; ")
        try:
            self.key_set(refresh=True)
        except DiscoveryError as exc:
            return [str(exc)]
        return []


def display_name(claims: dict[str, Any]) -> str | None:
    """``name``, else ``given_name family_name``, else ``preferred_username``."""
    name = claims.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [claims.get(k) for k in ("given_name", "family_name")]
    joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    if joined:
        return joined
    username = claims.get("preferred_username")
    return username if isinstance(username, str) and username else None


def public_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims worth keeping for audit: all but this sign-in's one-time values."""
    return {k: v for k, v in claims.items() if k not in VOLATILE_CLAIMS}


def _idp_error_message(error: str, description: str | None) -> str:
    detail = f"{error}: {description}" if description else error
    if error == "access_denied":
        return f"the sign-in was cancelled or refused at the identity provider ({detail})"
    return f"the identity provider reported an error ({detail}); start the sign-in again"
