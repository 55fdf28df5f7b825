"""Microsoft Entra ID (Azure AD) v2.0 sign-in: an :class:`~tfregistry_auth_oidc.OIDCProvider` with Entra's rules.

* People are keyed by tenant and object id (``tid/oid``), never by e-mail address or ``sub``.
* Issuer: the tenant's metadata issuer, ``https://login.microsoftonline.com/<tenant id>/v2.0``; the
  multi-tenant metadata (``organizations``, ``common``) names ``.../{tenantid}/v2.0``, which is
  filled in with the token's ``tid`` before comparing, and the ``tid`` must be in ``allowed_tenants``.
* Memberships from app roles (``roles`` claim) and groups (``groups`` claim, object ids).  When a
  person is in too many groups Entra leaves them out of the token (the *groups overage*); with a
  group mapping that is refused with a message, never treated as "no groups".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tfregistry_auth_oidc.mapping import MappingRule, claim_strings, grants_for, merge_grants
from tfregistry_auth_oidc.provider import OIDCOptions, OIDCProvider, display_name, public_claims

from tfregistry.interfaces import ExternalIdentity, LoginError

__all__ = ["DEFAULT_AUTHORITY", "MULTI_TENANT", "OVERAGE_MESSAGE", "AzureADOptions", "AzureADProvider"]

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
#: Tenant values that accept accounts of any organisation (then ``allowed_tenants`` is required).
MULTI_TENANT = ("organizations", "common")
#: The placeholder in the multi-tenant metadata's issuer.
TENANT_PLACEHOLDER = "{tenantid}"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)

OVERAGE_MESSAGE = (
    "Microsoft Entra ID did not list your groups in the sign-in token because you are a member of too many "
    "groups (the 'groups overage'), so this registry cannot tell which of its mapped groups you are in. "
    "Ask a registry administrator to map app roles instead (auth.azuread.role_mapping), or to set the app "
    "registration's groups claim to \"Groups assigned to the application\" and assign the mapped groups to "
    "the enterprise application."
)


@dataclass(frozen=True)
class AzureADOptions:
    """Validated configuration of an :class:`AzureADProvider` (built from ``auth.azuread.*``)."""

    #: A tenant id (GUID) or verified domain for one tenant; ``organizations`` or ``common`` for several.
    tenant: str
    client_id: str
    client_secret: str | None = None
    #: Lower-case tenant ids allowed to sign in (required for a multi-tenant ``tenant``).
    allowed_tenants: tuple[str, ...] = ()
    #: Login host, e.g. ``https://login.microsoftonline.us`` for Azure Government.
    authority: str = DEFAULT_AUTHORITY
    #: Discovery document URL; default ``{authority}/{tenant}/v2.0/.well-known/openid-configuration``.
    metadata_url: str | None = None
    #: Expected issuer, may contain ``{tenantid}``; default: the discovery document's ``issuer``.
    issuer: str | None = None
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    label: str = "Sign in with Microsoft"
    #: ``APPROLE=ORG:ROLE`` rules matched against the ``roles`` claim.
    role_mapping: tuple[MappingRule, ...] = ()
    #: ``GROUP_OBJECT_ID=ORG:ROLE`` rules matched (case-insensitively) against the ``groups`` claim.
    group_mapping: tuple[MappingRule, ...] = ()
    timeout: float = 10.0

    @property
    def multi_tenant(self) -> bool:
        return self.tenant.lower() in MULTI_TENANT


class AzureADProvider(OIDCProvider):
    """Sign-in with Microsoft Entra ID (v2.0 endpoints); everything else as :class:`OIDCProvider`."""

    name = "azuread"
    label = "Sign in with Microsoft"
    settings_prefix = "auth.azuread"
    metadata_setting = "auth.azuread.metadata_url"

    def __init__(self, options: AzureADOptions) -> None:
        self.azure = options
        authority = options.authority.rstrip("/")
        super().__init__(OIDCOptions(
            issuer=options.issuer or f"{authority}/{options.tenant}/v2.0",
            client_id=options.client_id,
            client_secret=options.client_secret,
            scopes=options.scopes,
            label=options.label,
            groups_claim="groups",
            group_mapping=options.group_mapping,
            timeout=options.timeout,
            metadata_url=options.metadata_url or f"{authority}/{options.tenant}/v2.0/.well-known/openid-configuration",
        ))

    def validate_metadata(self, metadata: dict[str, Any]) -> list[str]:
        """The endpoints must be there; the issuer is not compared with a setting.

        A tenant given by domain name has its id (not the name) in the issuer, and the multi-tenant
        issuer is a ``{tenantid}`` template; :meth:`expected_issuer` handles both per token.
        """
        return self._endpoint_problems(metadata)

    def expected_issuer(self, claims: dict[str, Any]) -> str:
        """The issuer template (``auth.azuread.issuer`` or the metadata's) with ``{tenantid}`` filled in.

        Multi-tenant: with the token's ``tid`` (so a token of tenant A must say it was issued by
        tenant A).  Single tenant: with the configured tenant, so a token of any other tenant fails.
        """
        template = self.azure.issuer or str(self.metadata()["issuer"])
        if TENANT_PLACEHOLDER not in template:
            return template
        if self.azure.multi_tenant:
            tid = claims.get("tid")
            if not isinstance(tid, str) or not tid:
                raise LoginError("the ID token has no 'tid' (tenant id) claim; sign-in refused")
            return template.replace(TENANT_PLACEHOLDER, tid)
        return template.replace(TENANT_PLACEHOLDER, self.azure.tenant)

    def identity_from_claims(self, claims: dict[str, Any]) -> ExternalIdentity:
        """Tenant policy, ``tid/oid`` subject, e-mail (``email`` else ``preferred_username``), mapped grants."""
        tid, oid = claims.get("tid"), claims.get("oid")
        missing = [name for name, value in (("tid", tid), ("oid", oid)) if not isinstance(value, str) or not value]
        if missing:
            raise LoginError(f"the ID token lacks the {' and '.join(repr(m) for m in missing)} claim"
                             f"{'s' if len(missing) > 1 else ''} (is the 'profile' scope requested?); "
                             "sign-in refused")
        tid, oid = str(tid), str(oid)
        self.check_tenant(tid)
        email = next((v for v in (claims.get("email"), claims.get("preferred_username"))
                      if isinstance(v, str) and v), None)
        return ExternalIdentity(provider=self.name, subject=f"{tid}/{oid}", email=email,
                                name=display_name(claims), grants=self.grants(claims), claims=public_claims(claims))

    def check_tenant(self, tid: str) -> None:
        """Refuse a tenant outside ``allowed_tenants``, or another tenant than a single configured tenant id."""
        tenant = tid.lower()
        allowed = self.azure.allowed_tenants
        single = self.azure.tenant.lower()
        if allowed and tenant not in allowed:
            raise LoginError(f"accounts of the Microsoft Entra tenant {tid} may not sign in to this registry; "
                             "ask a registry administrator to add the tenant to auth.azuread.allowed_tenants")
        if not self.azure.multi_tenant and GUID.match(single) and tenant != single:
            raise LoginError(f"accounts of the Microsoft Entra tenant {tid} may not sign in to this registry "
                             f"(it accepts only tenant {single})")

    def grants(self, claims: dict[str, Any]) -> list[tuple[str, str]] | None:
        """Grants from app roles and groups; ``None`` when neither mapping is configured."""
        roles_rules, group_rules = self.azure.role_mapping, self.azure.group_mapping
        if not roles_rules and not group_rules:
            return None
        from_roles = grants_for(claim_strings(claims, "roles"), roles_rules) if roles_rules else []
        from_groups: list[tuple[str, str]] = []
        if group_rules:
            if "groups" not in claims and self.groups_overage(claims):
                raise LoginError(OVERAGE_MESSAGE)
            from_groups = grants_for(claim_strings(claims, "groups"), group_rules, ignore_case=True)
        return merge_grants(from_roles, from_groups)

    @staticmethod
    def groups_overage(claims: dict[str, Any]) -> bool:
        """Whether Entra left the groups out of the token (``_claim_names`` points at them, or ``hasgroups``)."""
        names = claims.get("_claim_names")
        return (isinstance(names, dict) and "groups" in names) or claims.get("hasgroups") in (True, "true")
