"""Hook implementations: the ``auth.oidc.*`` settings and the ``oidc`` sign-in provider."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from authlib.common.security import is_secure_transport

from tfregistry import StartupError, hookimpl
from tfregistry_auth_oidc.mapping import parse_mapping
from tfregistry_auth_oidc.provider import OIDCOptions, OIDCProvider

#: The tfregistry plugin API versions this plugin works with (a PEP 440 range); the core refuses to
#: start with a plugin whose range excludes its ``tfregistry.PLUGIN_API`` (docs/hooks.md).
TFR_PLUGIN_API = ">=1.2,<2"

PREFIX = "auth.oidc"


def parse_issuer(value: Any) -> str:
    """An absolute ``http(s)`` URL without query or fragment (a settings converter; raises ``ValueError``)."""
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an absolute https URL such as https://login.example.com/realms/acme")
    return text


#: (name, type, default, secret, help) for each ``auth.oidc.<name>`` setting.
SETTINGS: tuple[tuple[str, Any, Any, bool, str], ...] = (
    ("issuer", parse_issuer, None, False,
     "Issuer URL of the identity provider (required); discovery is {issuer}/.well-known/openid-configuration."),
    ("client_id", str, None, False, "Client id of the registry's application at the identity provider (required)."),
    ("client_secret", str, None, True,
     "Client secret (confidential clients); leave unset for a public client, which then relies on PKCE alone."),
    ("scopes", list, ["openid", "profile", "email"], False,
     "Scopes requested; openid is always added. Add the scope that releases the groups claim if your provider "
     "needs one."),
    ("label", str, "Sign in with OpenID Connect", False, "Text of the sign-in button."),
    ("groups_claim", str, "groups", False, "ID token claim holding the person's groups (for group_mapping)."),
    ("group_mapping", list, [], False,
     "GROUP=ORGANIZATION:ROLE entries; when set, memberships follow the groups at every sign-in. Empty: "
     "memberships are managed in the registry only."),
    ("allowed_domains", list, [], False,
     "E-mail domains allowed to sign in (the email claim must be present and not unverified). Empty: anyone the "
     "identity provider lets through."),
    ("timeout", float, 10.0, False, "Seconds to wait for the identity provider's discovery, JWKS and token endpoints."),
)


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``auth.oidc.*``."""
    for name, type_, default, secret, help_ in SETTINGS:
        settings.add(f"{PREFIX}.{name}", type_, default=default, secret=secret, help=help_)


def env_name(key: str) -> str:
    """The environment variable that sets ``key`` (``auth.oidc.issuer`` -> ``TFR_AUTH__OIDC__ISSUER``)."""
    return "TFR_" + key.upper().replace(".", "__")


def required(settings: Mapping[str, Any], key: str, purpose: str, provider: str) -> str:
    """The non-empty value of ``key``, or a :class:`StartupError` naming the key, its variable and the provider."""
    value = settings.get(key)
    if value is None or not str(value).strip():
        raise StartupError(f"{key} ({env_name(key)}) is required for the {provider!r} sign-in: {purpose}")
    return str(value).strip()


def require_https(url: str, key: str) -> None:
    """Refuse a plain-http identity provider URL, except on a loopback address (tests, local development)."""
    if not is_secure_transport(url):
        raise StartupError(f"{key} must be an https URL ({url} is plain http, allowed only for localhost)")


def scope_list(values: Iterable[str]) -> tuple[str, ...]:
    """Scopes from a list setting whose items may also be space-separated; ``openid`` first, each once."""
    scopes = ["openid"]
    for item in values or ():
        for scope in str(item).split():
            if scope not in scopes:
                scopes.append(scope)
    return tuple(scopes)


def positive_timeout(settings: Mapping[str, Any], key: str) -> float:
    value = settings.get(key)
    timeout = 10.0 if value is None else float(value)
    if timeout <= 0:
        raise StartupError(f"{key} ({env_name(key)}) must be a positive number of seconds")
    return timeout


def make_oidc_provider(settings: Mapping[str, Any]) -> OIDCProvider:
    """Build the ``oidc`` provider from ``auth.oidc.*``; raise :class:`StartupError` naming a bad setting."""
    issuer = required(settings, f"{PREFIX}.issuer", "the issuer URL of your OpenID Connect provider, e.g. "
                      "https://login.example.com/realms/acme", "oidc")
    require_https(issuer, f"{PREFIX}.issuer")
    client_id = required(settings, f"{PREFIX}.client_id", "the client id of the registry's application at the "
                         "identity provider", "oidc")
    domains = tuple(d.strip().lstrip("@").lower() for d in settings.get(f"{PREFIX}.allowed_domains") or ()
                    if d.strip())
    groups_claim = str(settings.get(f"{PREFIX}.groups_claim") or "groups").strip()
    return OIDCProvider(OIDCOptions(
        issuer=issuer,
        client_id=client_id,
        client_secret=settings.get(f"{PREFIX}.client_secret") or None,
        scopes=scope_list(settings.get(f"{PREFIX}.scopes") or ["openid", "profile", "email"]),
        label=str(settings.get(f"{PREFIX}.label") or "Sign in with OpenID Connect"),
        groups_claim=groups_claim,
        group_mapping=parse_mapping(settings.get(f"{PREFIX}.group_mapping") or (), f"{PREFIX}.group_mapping"),
        allowed_domains=domains,
        timeout=positive_timeout(settings, f"{PREFIX}.timeout"),
    ))


@hookimpl
def tfr_register_auth_providers(register: Any) -> None:
    """Offer the ``oidc`` sign-in provider."""
    register.add("oidc", make_oidc_provider, description="OpenID Connect sign-in (auth.oidc.*)")
