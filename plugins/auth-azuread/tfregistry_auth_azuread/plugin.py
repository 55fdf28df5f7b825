"""Hook implementations: the ``auth.azuread.*`` settings and the ``azuread`` sign-in provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfregistry_auth_oidc.mapping import parse_mapping
from tfregistry_auth_oidc.plugin import env_name, parse_issuer, positive_timeout, require_https, required, scope_list

from tfregistry import StartupError, hookimpl
from tfregistry_auth_azuread.provider import DEFAULT_AUTHORITY, GUID, MULTI_TENANT, AzureADOptions, AzureADProvider

#: The tfregistry plugin API versions this plugin works with (a PEP 440 range); the core refuses to
#: start with a plugin whose range excludes its ``tfregistry.PLUGIN_API`` (docs/hooks.md).
TFR_PLUGIN_API = ">=1.2,<2"

PREFIX = "auth.azuread"

#: (name, type, default, secret, help) for each ``auth.azuread.<name>`` setting.
SETTINGS: tuple[tuple[str, Any, Any, bool, str], ...] = (
    ("tenant", str, None, False,
     "Directory (tenant) id or verified domain of your tenant (required); organizations or common to accept "
     "several tenants, listed in allowed_tenants."),
    ("allowed_tenants", list, [], False,
     "Tenant ids (GUIDs) whose accounts may sign in; required when tenant is organizations or common."),
    ("client_id", str, None, False, "Application (client) id of the app registration (required)."),
    ("client_secret", str, None, True, "Client secret of the app registration."),
    ("authority", parse_issuer, DEFAULT_AUTHORITY, False,
     "Login host; https://login.microsoftonline.us (US Government) or https://login.partner.microsoftonline.cn "
     "(China) for sovereign clouds."),
    ("metadata_url", parse_issuer, None, False,
     "Discovery document URL, for sovereign clouds and tests; default "
     "{authority}/{tenant}/v2.0/.well-known/openid-configuration."),
    ("issuer", parse_issuer, None, False,
     "Expected ID token issuer, may contain {tenantid}; for sovereign clouds and tests. Default: the issuer "
     "named by the discovery document."),
    ("scopes", list, ["openid", "profile", "email"], False, "Scopes requested; openid is always added."),
    ("label", str, "Sign in with Microsoft", False, "Text of the sign-in button."),
    ("role_mapping", list, [], False,
     "APPROLE=ORGANIZATION:ROLE entries matched against the app roles (roles claim) of the person."),
    ("group_mapping", list, [], False,
     "GROUP_OBJECT_ID=ORGANIZATION:ROLE entries matched against the groups claim (group object ids)."),
    ("timeout", float, 10.0, False, "Seconds to wait for Entra ID's discovery, JWKS and token endpoints."),
)


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``auth.azuread.*``."""
    for name, type_, default, secret, help_ in SETTINGS:
        settings.add(f"{PREFIX}.{name}", type_, default=default, secret=secret, help=help_)


def make_azuread_provider(settings: Mapping[str, Any]) -> AzureADProvider:
    """Build the ``azuread`` provider from ``auth.azuread.*``; raise :class:`StartupError` naming a bad setting."""
    tenant = required(settings, f"{PREFIX}.tenant", "your Microsoft Entra tenant id (or organizations/common with "
                      "auth.azuread.allowed_tenants)", "azuread")
    if tenant.lower() == "consumers":
        raise StartupError(f"{PREFIX}.tenant: personal Microsoft accounts (consumers) are not supported; use a "
                           "tenant id, or organizations with auth.azuread.allowed_tenants")
    client_id = required(settings, f"{PREFIX}.client_id", "the application (client) id of the app registration",
                         "azuread")
    allowed = tuple(t.strip().lower() for t in settings.get(f"{PREFIX}.allowed_tenants") or () if t.strip())
    not_ids = [t for t in allowed if not GUID.match(t)]
    if not_ids:
        raise StartupError(f"{PREFIX}.allowed_tenants lists tenant ids (GUIDs such as "
                           f"72f988bf-86f1-41af-91ab-2d7cd011db47), not {', '.join(not_ids)}")
    if tenant.lower() in MULTI_TENANT and not allowed:
        raise StartupError(f"{PREFIX}.allowed_tenants ({env_name(f'{PREFIX}.allowed_tenants')}) is required when "
                           f"{PREFIX}.tenant is {tenant!r}: otherwise every Microsoft Entra organization could sign "
                           "in. List the tenant ids that may.")
    authority = str(settings.get(f"{PREFIX}.authority") or DEFAULT_AUTHORITY).rstrip("/")
    require_https(authority, f"{PREFIX}.authority")
    metadata_url = settings.get(f"{PREFIX}.metadata_url") or None
    if metadata_url:
        require_https(metadata_url, f"{PREFIX}.metadata_url")
    return AzureADProvider(AzureADOptions(
        tenant=tenant.lower() if tenant.lower() in MULTI_TENANT or GUID.match(tenant) else tenant,
        client_id=client_id,
        client_secret=settings.get(f"{PREFIX}.client_secret") or None,
        allowed_tenants=allowed,
        authority=authority,
        metadata_url=metadata_url,
        issuer=settings.get(f"{PREFIX}.issuer") or None,
        scopes=scope_list(settings.get(f"{PREFIX}.scopes") or ["openid", "profile", "email"]),
        label=str(settings.get(f"{PREFIX}.label") or "Sign in with Microsoft"),
        role_mapping=parse_mapping(settings.get(f"{PREFIX}.role_mapping") or (), f"{PREFIX}.role_mapping",
                                   left="APPROLE", example="Registry.Admin=platform:admin"),
        group_mapping=parse_mapping(settings.get(f"{PREFIX}.group_mapping") or (), f"{PREFIX}.group_mapping",
                                    left="GROUP_OBJECT_ID",
                                    example="4e0c8a4e-7f5d-4a4e-9a43-2f1b1c3d5e6f=platform:admin"),
        timeout=positive_timeout(settings, f"{PREFIX}.timeout"),
    ))


@hookimpl
def tfr_register_auth_providers(register: Any) -> None:
    """Offer the ``azuread`` sign-in provider."""
    register.add("azuread", make_azuread_provider, description="Microsoft Entra ID sign-in (auth.azuread.*)")
