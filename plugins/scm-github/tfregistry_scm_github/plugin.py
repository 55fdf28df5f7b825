"""Hook implementations of tfregistry-scm-github."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_scm_github.provider import GitHubScm

#: Uses the SCM provider interface, added in plugin API 1.2.
TFR_PLUGIN_API = ">=1.2,<2"


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``github`` provider: github.com and GitHub Enterprise Server."""
    register.add("github", lambda settings: GitHubScm(), description="GitHub and GitHub Enterprise Server")
