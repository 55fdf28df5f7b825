"""tfregistry SCM publishing from Azure DevOps Services and Azure DevOps Server."""

from __future__ import annotations

from tfregistry_scm_azuredevops.provider import AzureDevOpsScm

__version__ = "0.1.0"

__all__ = ["AzureDevOpsScm", "__version__"]
