"""Hook implementations of tfregistry-scm-azuredevops."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_scm_azuredevops.provider import ENTRA_AUTHORITY, AzureDevOpsScm

#: Uses the SCM provider interface (plugin API 1.2) and its vendor API and ssh helpers (1.3).
TFR_PLUGIN_API = ">=1.3,<2"


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare the Microsoft Entra ID OAuth client of ``oauth`` connections (``scm.azuredevops.oauth_*``)."""
    settings.add("scm.azuredevops.oauth_client_id", str, default="",
                 help="Application (client) ID of the Microsoft Entra ID app registration for oauth connections to "
                      "Azure DevOps Services (API permission Azure DevOps user_impersonation); empty: oauth "
                      "connections are refused. Its redirect URI is PUBLIC_URL/api/v1/scm/oauth/callback")
    settings.add("scm.azuredevops.oauth_client_secret", str, default="", secret=True,
                 help="Client secret of that app registration")
    settings.add("scm.azuredevops.oauth_tenant", str, default="organizations",
                 help="Entra ID tenant of the authorization endpoints: a tenant id or domain, organizations or common")
    settings.add("scm.azuredevops.oauth_authority", str, default=ENTRA_AUTHORITY,
                 help="Microsoft identity platform authority (another for a national cloud)")


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``azuredevops`` provider: Azure DevOps Services and Azure DevOps Server."""
    register.add("azuredevops", lambda settings: AzureDevOpsScm(
        oauth_client_id=settings.get("scm.azuredevops.oauth_client_id") or "",
        oauth_client_secret=settings.get("scm.azuredevops.oauth_client_secret") or "",
        oauth_tenant=settings.get("scm.azuredevops.oauth_tenant") or "organizations",
        oauth_authority=settings.get("scm.azuredevops.oauth_authority") or ENTRA_AUTHORITY),
        description="Azure DevOps Services and Server")
