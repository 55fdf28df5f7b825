"""Hook implementations of tfregistry-scm-gitlab."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_scm_gitlab.provider import GitLabScm

#: Uses the SCM provider interface, added in plugin API 1.2.
TFR_PLUGIN_API = ">=1.2,<2"


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``gitlab`` provider: gitlab.com and GitLab self-managed."""
    register.add("gitlab", lambda settings: GitLabScm(), description="GitLab (gitlab.com and self-managed)")
