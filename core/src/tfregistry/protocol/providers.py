"""The Provider Registry Protocol (``providers.v1``), its browse API, and the Provider Network Mirror Protocol.

Shapes follow ``docs/reference/protocols.md`` §4 and §5.  The mirror routes have four
path segments before the file (``<hostname>/<ns>/<type>/index.json``), so they never
collide with the registry's three-segment ``<ns>/<type>/versions``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from tfregistry import auth
from tfregistry.models import Namespace, Provider, ProviderVersion
from tfregistry.protocol import page_args, page_meta, register_error_handlers, url_ttl
from tfregistry.readcache import cacheable
from tfregistry.services import NotFound, ServiceError
from tfregistry.services import providers as svc
from tfregistry.services.gpgkeys import active_keys
from tfregistry.web import current_registry

bp = Blueprint("tfr_providers", __name__, url_prefix="/v1/providers")
register_error_handlers(bp)


def _readable_provider(session: Session, ns: str, type_: str, hostname: str | None = "") -> Provider:
    """The provider; ``hostname=None`` means "ours, else one mirrored from an upstream registry"."""
    auth.require(session, "providers:read", auth.namespace_for(session, ns))
    if hostname is not None:
        return svc.get_provider(session, ns, type_, hostname)
    own = svc.find_provider(session, ns, type_)
    if own is not None and own.versions:
        return own
    mirrored = session.scalars(
        select(Provider).join(Provider.namespace)
        .where(Namespace.name == ns, Provider.type == type_, Provider.hostname != "")
        .order_by(Provider.hostname)
    ).first()
    if mirrored is None or not mirrored.versions:
        raise NotFound(f"provider {ns}/{type_} not found")
    return mirrored


def _signed_versions(provider: Provider) -> list[ProviderVersion]:
    return [pv for pv in svc.sorted_versions(provider.versions) if svc.signed(pv) and pv.packages]


def _downloads(session: Session, versions: Sequence[ProviderVersion]) -> dict[int, int]:
    """Downloads per version, written and pending in this process."""
    ids = [pv.id for pv in versions]
    return svc.download_counts(session, ids, current_registry().downloads.pending_provider_counts(ids))


def provider_json(pv: ProviderVersion, downloads: int = 0) -> dict[str, Any]:
    p = pv.provider
    return {
        "id": f"{p.namespace.name}/{p.type}/{pv.version}",
        "owner": "",
        "namespace": p.namespace.name,
        "name": p.type,
        "alias": p.type,
        "version": pv.version,
        "tag": f"v{pv.version}",
        "description": p.description,
        "source": "",
        "published_at": pv.published_at.isoformat(),
        "downloads": downloads,
        "tier": "community",
        "protocols": pv.protocols,
        "platforms": [{"os": k.os, "arch": k.arch} for k in sorted(pv.packages, key=lambda k: (k.os, k.arch))],
        "deprecated": pv.deprecated,
        "deprecation_reason": pv.deprecation_reason,
    }


# --- registry protocol -------------------------------------------------------------


@bp.get("/<ns>/<type_>/versions")
def versions(ns: str, type_: str):
    with current_registry().db.session() as session:
        provider = _readable_provider(session, ns, type_, None)
        listed = _signed_versions(provider)
        if not listed:
            raise NotFound(f"provider {ns}/{type_} not found")
        warnings = []
        for pv in listed:
            if pv.deprecated:
                warnings.append(f"{ns}/{type_} {pv.version} is deprecated" +
                                (f": {pv.deprecation_reason}" if pv.deprecation_reason else ""))
            if pv.signing_key is not None and pv.signing_key.revoked_at is not None:
                warnings.append(f"{ns}/{type_} {pv.version} was signed with a key that has been revoked; "
                                "it will not install")
        body: dict[str, Any] = {
            "id": f"{ns}/{type_}",
            "versions": [{
                "version": pv.version,
                "protocols": pv.protocols,
                "platforms": [{"os": k.os, "arch": k.arch} for k in sorted(pv.packages, key=lambda k: (k.os, k.arch))],
            } for pv in listed],
        }
        if warnings:
            body["warnings"] = warnings
        cacheable()
        return jsonify(body)


@bp.get("/<ns>/<type_>/<version>/download/<os>/<arch>")
def download(ns: str, type_: str, version: str, os: str, arch: str):
    registry = current_registry()
    with registry.db.session() as session:
        provider = _readable_provider(session, ns, type_, None)
        pv = next((v for v in provider.versions if v.version == version and svc.signed(v)), None)
        if pv is None:
            raise NotFound(f"provider {ns}/{type_} has no version {version}")
        package = next((k for k in pv.packages if (k.os, k.arch) == (os, arch)), None)
        if package is None:
            raise NotFound(f"provider {ns}/{type_} {version} is not available for {os}_{arch}")
        assert pv.shasums_key and pv.signature_key
        if pv.upstream_key_armor:  # mirrored: the upstream key that verified it at sync time
            offered = [{"key_id": "", "ascii_armor": pv.upstream_key_armor, "source": provider.hostname,
                        "source_url": ""}]
        else:
            offered = [{"key_id": k.key_id, "ascii_armor": k.ascii_armor, "source": k.source,
                        "source_url": k.source_url} for k in active_keys(session, provider.namespace)]
        registry.downloads.add_provider(pv.id)  # counted in memory, written in batches
        cacheable(url_ttl() / 2, provider_download=pv.id, observe=(("provider_download", {
            "namespace": provider.namespace.name, "os": package.os, "arch": package.arch}),))
        return jsonify({
            "protocols": pv.protocols,
            "os": os,
            "arch": arch,
            "filename": package.filename,
            "download_url": registry.download_url(package.storage_key, package.filename),
            "shasums_url": registry.download_url(pv.shasums_key),
            "shasums_signature_url": registry.download_url(pv.signature_key),
            "shasum": package.sha256,
            # trust_signature stays empty: non-empty makes Terraform demand a HashiCorp partner signature
            "signing_keys": {"gpg_public_keys": [{**k, "trust_signature": ""} for k in offered]},
        })


# --- browse API ----------------------------------------------------------------------


def _list(session: Session, namespace: str | None = None, type_: str | None = None) -> Any:
    offset, limit = page_args()
    stmt = (select(Provider).join(Provider.namespace).where(Provider.hostname == "")
            .where(Provider.namespace_id.in_(auth.readable_namespace_ids(session)))
            .options(selectinload(Provider.versions)).order_by(Namespace.name, Provider.type))
    if namespace:
        stmt = stmt.where(Namespace.name == namespace)
    if type_:
        stmt = stmt.where(Provider.type == type_)
    providers = session.scalars(stmt.offset(offset).limit(limit + 1)).unique().all()
    latest = [listed[0] for listed in (_signed_versions(p) for p in providers[:limit]) if listed]
    counts = _downloads(session, latest)
    cacheable()
    return jsonify(meta=page_meta(offset, limit, len(providers) > limit),
                   providers=[provider_json(pv, counts.get(pv.id, 0)) for pv in latest])


@bp.get("")
@bp.get("/")
def list_all():
    with current_registry().db.session() as session:
        return _list(session, namespace=request.args.get("namespace"))


@bp.get("/<ns>")
def list_namespace(ns: str):
    with current_registry().db.session() as session:
        return _list(session, namespace=ns)


@bp.get("/<ns>/<type_>")
def latest_details(ns: str, type_: str):
    with current_registry().db.session() as session:
        listed = _signed_versions(_readable_provider(session, ns, type_))
        if not listed:
            raise NotFound(f"provider {ns}/{type_} not found")
        downloads = _downloads(session, listed[:1]).get(listed[0].id, 0)
        cacheable()
        return jsonify({**provider_json(listed[0], downloads), "versions": [pv.version for pv in listed]})


@bp.get("/<ns>/<type_>/<version>")
def version_details(ns: str, type_: str, version: str):
    with current_registry().db.session() as session:
        provider = _readable_provider(session, ns, type_)
        listed = _signed_versions(provider)
        pv = next((v for v in listed if v.version == version), None)
        if pv is None:
            raise NotFound(f"provider {ns}/{type_} has no version {version}")
        downloads = _downloads(session, [pv]).get(pv.id, 0)
        cacheable()
        return jsonify({**provider_json(pv, downloads), "versions": [v.version for v in listed]})


# --- network mirror protocol -------------------------------------------------------------


def own_hostnames() -> set[str]:
    """Host names under which the mirror serves this registry's own providers."""
    settings = current_registry().settings
    names = {h.lower() for h in settings["providers.hostnames"]}
    if settings["public_url"]:
        names.add((urlsplit(settings["public_url"]).netloc or "").lower())
    names.add(request.host.lower())
    return {n.removesuffix(":443") for n in names}


def _origin(hostname: str) -> str:
    """"" for our own providers, else the (lower-case) origin host."""
    return "" if hostname.lower().removesuffix(":443") in own_hostnames() else hostname.lower()


def _require_mirror_read(session: Session, origin: str, ns: str) -> None:
    """Our own providers follow their namespace's visibility; mirrored ones are registry-wide content
    any authenticated caller may read (anyone, with ``auth.anonymous_read``)."""
    auth.require(session, "providers:read", auth.namespace_for(session, ns) if not origin else None)


def _pull_client(origin: str) -> Any:
    """An upstream client when pull-through is on and ``origin`` is an allowed upstream, else None."""
    from tfregistry.services import pullthrough

    settings = current_registry().settings
    if not origin or not settings["mirror.pull_through"]:
        return None
    return pullthrough.client_for(pullthrough.upstreams(settings["mirror.upstreams"]), origin)


def _pull_client_for(session: Session, origin: str, ns: str, type_: str) -> tuple[Any, str | None]:
    """The upstream client for pull-through of ``origin/ns/type_``, or ``None`` with the mirror policy's
    refusal: a denied provider never causes an upstream request (what is already held is still served,
    as when pull-through is off)."""
    from tfregistry.services.mirroring import policy_refusal

    client = _pull_client(origin)
    if client is None:
        return None, None
    refusal = policy_refusal(session, origin, ns, type_)
    return (None, refusal) if refusal else (client, None)


def _pull_stats(session: Session, origin: str, *, hit: bool = False, miss: bool = False, saved: int = 0,
                error: str | None = None) -> None:
    """Record pull-through figures (kept in the database) and observe them (``pullthrough_hit``,
    ``pullthrough_fetch`` with outcome ``fetched`` or ``failed``)."""
    from tfregistry.services import pullthrough

    pullthrough.record_stats(session, origin, hit=hit, miss=miss, saved=saved, error=error)
    observe = current_registry().observe
    if observe.active:
        if hit:
            observe("pullthrough_hit")
        if miss or error:
            observe("pullthrough_fetch", outcome="failed" if error else "fetched")


def _upstream_failed(session: Session, origin: str, exc: Exception) -> None:

    _pull_stats(session, origin, error=str(exc))
    raise ServiceError(f"the upstream registry {origin} is unavailable: {exc}", status=502) from None


@bp.get("/<hostname>/<ns>/<type_>/index.json")
def mirror_index(hostname: str, ns: str, type_: str):
    from tfregistry.services import pullthrough
    from tfregistry.services.mirroring import UpstreamError

    origin = _origin(hostname)
    registry = current_registry()
    with registry.db.session() as session:
        _require_mirror_read(session, origin, ns)
        provider = svc.find_provider(session, ns, type_, origin)
        held = {pv.version for pv in provider.versions if pv.shasums or pv.packages} if provider else set()
        client, refusal = _pull_client_for(session, origin, ns, type_)
        if client is None:
            if not held:
                raise ServiceError(refusal, status=403) if refusal else NotFound(
                    f"provider {hostname}/{ns}/{type_} not found")
            cacheable()  # nothing is pulled through: the answer is what the database holds
            return jsonify(versions={v: {} for v in held})
        # The upstream's list, cached for mirror.pull_through_index_ttl: newer upstream versions
        # appear although some are held, and repeated installs send nothing upstream.
        cache: dict[tuple[str, str, str], tuple[float, list[str]]] = registry.memo.setdefault(
            "pull_through_index", {})
        cached = cache.get((origin, ns, type_))
        if cached is not None and time.monotonic() - cached[0] < registry.settings["mirror.pull_through_index_ttl"]:
            return jsonify(versions={v: {} for v in {*held, *cached[1]}})
        try:
            versions = list(pullthrough.upstream_versions(client, ns, type_))
        except UpstreamError as exc:
            if held:  # the upstream is down: what is cached keeps being served
                _pull_stats(session, origin, error=str(exc))
                return jsonify(versions={v: {} for v in held})
            _upstream_failed(session, origin, exc)
        cache[(origin, ns, type_)] = (time.monotonic(), versions)
        _pull_stats(session, origin, miss=not held, hit=bool(held))
        return jsonify(versions={v: {} for v in {*held, *versions}})


@bp.get("/<hostname>/<ns>/<type_>/<version_json>")
def mirror_version(hostname: str, ns: str, type_: str, version_json: str):
    from tfregistry.services import pullthrough
    from tfregistry.services.mirroring import UpstreamError

    if not version_json.endswith(".json"):
        raise NotFound("not found")
    version = version_json.removesuffix(".json")
    origin = _origin(hostname)
    registry = current_registry()
    with registry.db.session() as session:
        _require_mirror_read(session, origin, ns)
        provider = svc.find_provider(session, ns, type_, origin)
        pv = next((v for v in provider.versions if v.version == version), None) if provider else None
        client, refusal = _pull_client_for(session, origin, ns, type_)
        if pv is None and refusal:
            raise ServiceError(refusal, status=403)
        if pv is None and client is not None:
            try:
                pv = pullthrough.fetch_version(session, registry.storage, client, origin, ns, type_, version)
            except UpstreamError as exc:
                _upstream_failed(session, origin, exc)
            _pull_stats(session, origin, miss=True)
        elif pv is not None and client is not None and pv.packages:
            # answered from the cache: count the packages the client can now fetch locally as saved
            _pull_stats(session, origin, hit=True, saved=sum(k.size for k in pv.packages))
        if pv is None or not (pv.packages or (client is not None and pv.shasums)):
            raise NotFound(f"the mirror has no archive index for {hostname}/{ns}/{type_} {version}")
        archives = {
            f"{k.os}_{k.arch}": {"url": registry.download_url(k.storage_key, k.filename),
                                 "hashes": [k.h1, f"zh:{k.sha256}"]}
            for k in pv.packages
        }
        if client is None:  # nothing is pulled through: the answer is what the database holds
            cacheable(url_ttl() / 2)
        if client is not None and pv.shasums:  # platforms not fetched yet: our pull route, signed hashes
            from tfregistry import provider_packages as pkg

            for filename, sha in pkg.parse_shasums(pv.shasums.encode()).items():
                try:
                    name = pkg.parse_package_filename(filename, type_=type_, version=version)
                except pkg.PackageError:
                    continue
                platform = f"{name.os}_{name.arch}"
                if platform not in archives:
                    path = f"pull/{origin}/{ns}/{type_}/{version}/{platform}.zip"
                    archives[platform] = {"url": registry.signed_url(path, registry.settings["downloads.url_ttl"]),
                                          "hashes": [f"zh:{sha}"]}
        return jsonify(archives=dict(sorted(archives.items())))


pull_bp = Blueprint("tfr_pull", __name__)
register_error_handlers(pull_bp)


@pull_bp.route("/v1/pull/<hostname>/<ns>/<type_>/<version>/<platform_zip>", methods=["GET", "HEAD"])
def pull(hostname: str, ns: str, type_: str, version: str, platform_zip: str):
    """Fetch one package from the upstream on first request (signed URL, no token), then serve it locally."""
    from flask import redirect

    from tfregistry.api.providers import limits
    from tfregistry.services import pullthrough
    from tfregistry.services.mirroring import UpstreamError

    registry = current_registry()
    path = f"pull/{hostname}/{ns}/{type_}/{version}/{platform_zip}"
    if not registry.signer.verify(path, request.args.get("expires"), request.args.get("signature")):
        raise ServiceError("this download link is invalid or has expired", status=403)
    os_, _, arch = platform_zip.removesuffix(".zip").partition("_")
    with registry.db.session() as session:
        provider = svc.find_provider(session, ns, type_, hostname)
        pv = next((v for v in provider.versions if v.version == version), None) if provider else None
        client, refusal = _pull_client_for(session, hostname, ns, type_)
        had = pv is not None and any((k.os, k.arch) == (os_, arch) for k in pv.packages)
        if pv is None or (client is None and not had):
            raise ServiceError(refusal, status=403) if refusal else NotFound("not found")
        try:
            package = pullthrough.fetch_package(session, registry.storage, client, pv, os_, arch, limits(registry))
        except UpstreamError as exc:
            _upstream_failed(session, hostname, exc)
        _pull_stats(session, hostname, hit=had, miss=not had, saved=package.size if had else 0)
        return redirect(registry.download_url(package.storage_key, package.filename), code=302)
