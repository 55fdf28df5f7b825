"""Hook implementations of tfregistry-scm-bitbucket-dc."""

from __future__ import annotations

from typing import Any

from tfregistry import hookimpl
from tfregistry_scm_bitbucket_dc.provider import BitbucketDataCenterScm

#: Uses the SCM provider interface (plugin API 1.2) and its vendor API and ssh helpers (1.3).
TFR_PLUGIN_API = ">=1.3,<2"


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``bitbucket-dc`` provider: Bitbucket Data Center (and Server)."""
    register.add("bitbucket-dc", lambda settings: BitbucketDataCenterScm(), description="Bitbucket Data Center")
