"""Provider pages: versions, platforms, signing keys, the ``required_providers`` snippet."""

from __future__ import annotations

from typing import Any

from tfregistry.models import Provider, ProviderVersion
from tfregistry.services import providers as provider_svc


def listed_versions(provider: Provider) -> list[ProviderVersion]:
    """Versions Terraform can install (signed, with packages), highest first: what the protocol lists;
    mirrored versions carry the upstream's signature."""
    return [pv for pv in provider_svc.sorted_versions(provider.versions) if provider_svc.signed(pv) and pv.packages]


def latest_listed(provider: Provider) -> ProviderVersion | None:
    """The highest installable release, else the highest pre-release."""
    listed = listed_versions(provider)
    releases = [pv for pv in listed if not pv.prerelease]
    return (releases or listed or [None])[0]


def _unused() -> Any:  # pragma: no cover - replaced by the provider pages
    return None


from tfregistry_webui.ui import bp  # noqa: E402


@bp.get("/providers/<ns>/<type_>")
@bp.get("/providers/<ns>/<type_>/<version>")
def provider_page(ns: str, type_: str, version: str | None = None) -> Any:
    """Placeholder until the provider page lands."""
    from tfregistry.services import NotFound

    raise NotFound("not yet")
