"""Claim-to-membership mapping: ``"GROUP=ORGANIZATION:ROLE"`` rules and the grants they produce."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tfregistry import StartupError
from tfregistry.interfaces import LoginError

__all__ = ["MappingRule", "claim_strings", "grants_for", "parse_mapping"]


@dataclass(frozen=True)
class MappingRule:
    """``match=organization:role``: whoever carries ``match`` in a claim gets ``role`` in ``organization``."""

    match: str
    organization: str
    role: str


def parse_mapping(entries: Iterable[str], setting: str, *, left: str = "GROUP",
                  example: str = "platform-admins=platform:admin") -> tuple[MappingRule, ...]:
    """Parse ``"GROUP=ORGANIZATION:ROLE"`` entries; raise :class:`StartupError` naming ``setting`` on a bad one.

    The *last* ``=`` separates the claim value from the target, so group names that contain ``=``
    (LDAP distinguished names such as ``cn=admins,ou=groups``) work; in the comma-separated form
    of a list setting such names need a TOML array instead.

    :param entries: the setting's value (a list of strings).
    :param setting: the setting's name, for the error message (``auth.oidc.group_mapping``).
    :param left: what the left-hand side is called in the error message (``GROUP``, ``APPROLE``).
    :param example: a valid entry, quoted in the error message.
    """
    rules: list[MappingRule] = []
    for entry in entries:
        text = str(entry).strip()
        match, eq, target = text.rpartition("=")
        organization, colon, role = target.partition(":")
        match, organization, role = match.strip(), organization.strip(), role.strip()
        if not (eq and colon and match and organization and role) or " " in organization + role:
            raise StartupError(
                f"{setting}: {text!r} is not of the form {left}=ORGANIZATION:ROLE (for example {example})"
            )
        rules.append(MappingRule(match, organization, role))
    return tuple(rules)


def claim_strings(claims: Mapping[str, Any], name: str) -> list[str]:
    """The values of a multi-valued claim: absent is empty, a single string is one value.

    Raises :class:`LoginError` when the claim holds something else (a number, an object).
    """
    value = claims.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise LoginError(f"the identity provider sent a {name!r} claim that is not a list of strings; "
                     "ask a registry administrator to check the claim configuration")


def grants_for(values: Iterable[str], rules: Iterable[MappingRule], *, ignore_case: bool = False
               ) -> list[tuple[str, str]]:
    """``(organization, role)`` pairs of the rules whose ``match`` is among ``values``, in rule order, once each.

    :param ignore_case: compare case-insensitively (for GUIDs such as Entra ID group object ids).
    """
    have = {v.lower() for v in values} if ignore_case else set(values)
    grants: list[tuple[str, str]] = []
    for rule in rules:
        if (rule.match.lower() if ignore_case else rule.match) in have:
            pair = (rule.organization, rule.role)
            if pair not in grants:
                grants.append(pair)
    return grants


def merge_grants(*groups: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Concatenate grant lists, keeping the first occurrence of each pair."""
    merged: list[tuple[str, str]] = []
    for group in groups:
        for pair in group:
            if pair not in merged:
                merged.append(pair)
    return merged
