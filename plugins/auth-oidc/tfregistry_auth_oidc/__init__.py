"""tfregistry sign-in with any OpenID Connect identity provider.

:class:`~tfregistry_auth_oidc.provider.OIDCProvider` is meant to be subclassed by
provider-specific plugins (``tfregistry-auth-azuread`` does); :mod:`tfregistry_auth_oidc.testing`
starts a real mock identity provider for tests.
"""

from __future__ import annotations

from tfregistry_auth_oidc.mapping import MappingRule, claim_strings, grants_for, parse_mapping
from tfregistry_auth_oidc.provider import OIDCOptions, OIDCProvider

__version__ = "0.1.0"

__all__ = [
    "MappingRule",
    "OIDCOptions",
    "OIDCProvider",
    "__version__",
    "claim_strings",
    "grants_for",
    "parse_mapping",
]
