"""Hook implementations of tfregistry-scm-git."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_scm_git.provider import GitScm

#: Uses the SCM provider interface (plugin API 1.2) and its vendor API and ssh helpers (1.3).
TFR_PLUGIN_API = ">=1.3,<2"


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``git`` provider: any git URL, no vendor API."""
    register.add("git", lambda settings: GitScm(), description="any git repository (https or ssh), polled")
