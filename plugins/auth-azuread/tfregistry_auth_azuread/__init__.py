"""tfregistry sign-in with Microsoft Entra ID (Azure AD), built on ``tfregistry-auth-oidc``."""

from __future__ import annotations

from tfregistry_auth_azuread.provider import AzureADOptions, AzureADProvider

__version__ = "0.1.0"

__all__ = ["AzureADOptions", "AzureADProvider", "__version__"]
