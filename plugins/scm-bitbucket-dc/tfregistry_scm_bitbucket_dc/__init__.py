"""tfregistry SCM publishing from Bitbucket Data Center."""

from __future__ import annotations

from tfregistry_scm_bitbucket_dc.provider import BitbucketDataCenterScm

__version__ = "0.1.0"

__all__ = ["BitbucketDataCenterScm", "__version__"]
