"""Hook implementations of tfregistry-scm-github."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_scm_github.provider import GitHubScm

#: Uses the SCM provider interface (plugin API 1.2) and its vendor API and ssh helpers (1.3).
TFR_PLUGIN_API = ">=1.3,<2"


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``scm.github.oauth_client_id`` and ``scm.github.oauth_client_secret``."""
    settings.add("scm.github.oauth_client_id", str, default="",
                 help="Client ID of the GitHub OAuth app (or GitHub App) for oauth connections; empty: oauth "
                      "connections are refused. One app per registry: github.com, or the one GitHub Enterprise "
                      "Server the app is registered on. Its callback URL is PUBLIC_URL/api/v1/scm/oauth/callback")
    settings.add("scm.github.oauth_client_secret", str, default="", secret=True,
                 help="Client secret of that OAuth app")


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``github`` provider: github.com and GitHub Enterprise Server."""
    register.add("github", lambda settings: GitHubScm(
        oauth_client_id=settings.get("scm.github.oauth_client_id") or "",
        oauth_client_secret=settings.get("scm.github.oauth_client_secret") or ""),
        description="GitHub and GitHub Enterprise Server")
