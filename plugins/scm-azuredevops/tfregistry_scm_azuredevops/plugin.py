"""Hook implementations of tfregistry-scm-azuredevops."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_scm_azuredevops.provider import AzureDevOpsScm

#: Uses the SCM provider interface, added in plugin API 1.2.
TFR_PLUGIN_API = ">=1.2,<2"


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``azuredevops`` provider: Azure DevOps Services and Azure DevOps Server."""
    register.add("azuredevops", lambda settings: AzureDevOpsScm(), description="Azure DevOps Services and Server")
