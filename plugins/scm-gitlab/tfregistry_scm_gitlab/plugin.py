"""Hook implementations of tfregistry-scm-gitlab."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_scm_gitlab.provider import GitLabScm

#: Uses the SCM provider interface (plugin API 1.2) and its vendor API and ssh helpers (1.3).
TFR_PLUGIN_API = ">=1.3,<2"


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``scm.gitlab.oauth_client_id`` and ``scm.gitlab.oauth_client_secret``."""
    settings.add("scm.gitlab.oauth_client_id", str, default="",
                 help="Application ID of the GitLab OAuth application (scopes api and read_repository) for oauth "
                      "connections; empty: oauth connections are refused. One application per registry: gitlab.com, "
                      "or the one self-managed instance it is registered on. Its redirect URI is "
                      "PUBLIC_URL/api/v1/scm/oauth/callback")
    settings.add("scm.gitlab.oauth_client_secret", str, default="", secret=True,
                 help="Secret of that OAuth application")


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``gitlab`` provider: gitlab.com and GitLab self-managed."""
    register.add("gitlab", lambda settings: GitLabScm(
        oauth_client_id=settings.get("scm.gitlab.oauth_client_id") or "",
        oauth_client_secret=settings.get("scm.gitlab.oauth_client_secret") or ""),
        description="GitLab (gitlab.com and self-managed)")
