"""Pull-through caching for the network mirror: fetch from an allowed upstream on first request, then serve locally.

* ``index.json`` for a provider we do not hold lists the upstream's versions (nothing stored).
* ``VERSION.json`` for a version we do not hold fetches the upstream ``SHA256SUMS``, verifies its
  signature against the upstream's keys, stores the version (without packages) and answers with
  the signed hashes and URLs to our own ``/v1/pull/...`` route.
* That route downloads the platform's zip from the upstream once (per-package lock), checks it
  against the verified ``SHA256SUMS``, stores it, and serves it; later requests are local.

"Once" holds across threads (a lock per process) and, on PostgreSQL, across the registry
processes sharing the database (a transaction-scoped advisory lock): replicas behind a load
balancer do not each fetch the same file.  SQLite is a single-node database.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tfregistry import gpg, semver
from tfregistry import provider_packages as pkg
from tfregistry.interfaces import StorageBackend
from tfregistry.models import Provider, ProviderPackage, ProviderVersion, RegistryState, utcnow
from tfregistry.services import NotFound, ServiceError
from tfregistry.services.mirroring import UpstreamClient
from tfregistry.services.modules import get_or_create_namespace
from tfregistry.services.providers import (
    ProviderLimits,
    Upload,
    _Checked,
    _store_package,
    find_provider,
    storage_prefix,
)

_locks: dict[tuple[str, ...], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(*key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _lock_replicas(session: Session, *key: str) -> None:
    """Lock ``key`` for every process on the same PostgreSQL database until the session's transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256("\0".join(("tfregistry pull-through", *key)).encode()).digest()
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": int.from_bytes(digest[:8], "big", signed=True)})


def upstreams(entries: list[str]) -> dict[str, str | None]:
    """``mirror.upstreams`` entries (``host`` or ``host=https://url``) as host → URL override."""
    result: dict[str, str | None] = {}
    for entry in entries:
        host, _, url = entry.partition("=")
        result[host.strip().lower()] = url.strip() or None
    return result


def client_for(allowed: Mapping[str, str | None], hostname: str) -> UpstreamClient | None:
    host = hostname.lower()
    if host not in allowed:
        return None
    return UpstreamClient(host, allowed[host])


def record_stats(session: Session, hostname: str, *, hit: bool = False, miss: bool = False, saved: int = 0,
                 error: str | None = None) -> None:
    key = f"pull_through:{hostname}"
    with _stats_lock:  # threads of this process (SQLite has no row locks); FOR UPDATE covers replicas
        _record_stats(session, key, hit, miss, saved, error)


_stats_lock = threading.Lock()


def _record_stats(session: Session, key: str, hit: bool, miss: bool, saved: int, error: str | None) -> None:
    for attempt in (1, 2):
        # FOR UPDATE (PostgreSQL): concurrent requests add to the counts instead of overwriting each other's
        state = session.get(RegistryState, key, with_for_update=True, populate_existing=True)
        stats = json.loads(state.value) if state else {"hits": 0, "misses": 0, "bytes_saved": 0, "last_error": None}
        stats["hits"] += int(hit)
        stats["misses"] += int(miss)
        stats["bytes_saved"] += saved
        if error:
            stats["last_error"], stats["last_error_at"] = error, utcnow().isoformat()
        if state is None:
            session.add(RegistryState(key=key, value=json.dumps(stats)))
        else:
            state.value = json.dumps(stats)
        try:
            session.commit()
            return
        except IntegrityError:  # another request made the row meanwhile: count on top of it
            session.rollback()
            if attempt == 2:
                raise


def all_stats(session: Session) -> dict[str, Any]:
    rows = session.query(RegistryState).filter(RegistryState.key.like("pull_through:%"))
    return {row.key.split(":", 1)[1]: json.loads(row.value) for row in rows}


def upstream_versions(client: UpstreamClient, ns: str, type_: str) -> dict[str, Any]:
    base = client.providers_base()
    listing = client.json(urljoin(base, f"{ns}/{type_}/versions"))
    return {e["version"]: e for e in listing.get("versions", []) if "version" in e}


def fetch_version(session: Session, storage: StorageBackend, client: UpstreamClient, hostname: str, ns: str,
                  type_: str, version: str) -> ProviderVersion:
    """Verify and store the upstream SHA256SUMS of ``version`` (packages come later, one by one)."""
    with _lock(hostname, ns, type_):  # per provider: a new provider's row is made once too
        _lock_replicas(session, hostname, ns, type_)
        provider = find_provider(session, ns, type_, hostname)
        if provider is not None:
            session.refresh(provider)  # loaded by the caller, maybe before another request stored the version
        existing = next((v for v in provider.versions if v.version == version), None) if provider else None
        if existing is not None:
            return existing
        entries = upstream_versions(client, ns, type_)
        if version not in entries or not entries[version].get("platforms"):
            raise NotFound(f"{hostname}/{ns}/{type_} has no version {version}")
        first = entries[version]["platforms"][0]
        base = client.providers_base()
        meta = client.json(urljoin(base, f"{ns}/{type_}/{version}/download/{first['os']}/{first['arch']}"))
        sums, signature = io.BytesIO(), io.BytesIO()
        client.download(urljoin(base, meta["shasums_url"]), sums, 1024 * 1024)
        client.download(urljoin(base, meta["shasums_signature_url"]), signature, 1024 * 1024)
        armors = [k["ascii_armor"] for k in meta.get("signing_keys", {}).get("gpg_public_keys", [])
                  if k.get("ascii_armor")]
        try:
            fingerprint = gpg.verify_detached(sums.getvalue(), signature.getvalue(), armors)
            pkg.parse_shasums(sums.getvalue())
        except (gpg.GpgError, pkg.PackageError) as exc:
            raise ServiceError(f"{hostname}/{ns}/{type_} {version}: upstream SHA256SUMS refused: {exc}",
                               status=502) from None
        if provider is None:
            provider = Provider(hostname=hostname, namespace=get_or_create_namespace(session, ns), type=type_)
            session.add(provider)
        prefix = storage_prefix(hostname, ns, type_, version)
        sums_key = f"{prefix}/{hashlib.sha256(sums.getvalue()).hexdigest()[:16]}/{pkg.sums_filename(type_, version)}"
        storage.put(sums_key, io.BytesIO(sums.getvalue()))
        storage.put(sums_key + ".sig", io.BytesIO(signature.getvalue()))
        pv = ProviderVersion(provider=provider, version=version, prerelease=semver.parse(version).is_prerelease,
                             protocols=meta.get("protocols") or [], shasums=sums.getvalue().decode(),
                             shasums_key=sums_key, signature_key=sums_key + ".sig",
                             upstream_key_armor=next(a for a in armors
                                                     if gpg.parse_public_key(a).fingerprint == fingerprint),
                             published_by=f"pull-through:{hostname}")
        session.add(pv)
        session.commit()
        return pv


def fetch_package(session: Session, storage: StorageBackend, client: UpstreamClient, pv: ProviderVersion,
                  os_: str, arch: str, limits: ProviderLimits) -> ProviderPackage:
    """Download one platform's zip from the upstream (once), verify it against the stored SHA256SUMS, store it."""
    p = pv.provider
    with _lock(p.hostname, p.namespace.name, p.type, pv.version, os_, arch):
        _lock_replicas(session, p.hostname, p.namespace.name, p.type, pv.version, os_, arch)
        session.refresh(pv)
        have = next((k for k in pv.packages if (k.os, k.arch) == (os_, arch)), None)
        if have is not None:
            return have
        sums = pkg.parse_shasums((pv.shasums or "").encode())
        filename = pkg.package_filename(p.type, pv.version, os_, arch)
        if filename not in sums:
            raise NotFound(f"{p.hostname}/{p.namespace.name}/{p.type} {pv.version} has no package for {os_}_{arch}")
        base = client.providers_base()
        meta = client.json(urljoin(base, f"{p.namespace.name}/{p.type}/{pv.version}/download/{os_}/{arch}"))
        stored: list[str] = []
        with tempfile.TemporaryFile() as fh:
            client.download(urljoin(base, meta["download_url"]), fh, limits.package_max_bytes)
            fh.seek(0)
            try:
                report = pkg.inspect_provider_zip(fh, p.type, max_uncompressed_bytes=limits.uncompressed_max_bytes,
                                                  max_compression_ratio=limits.max_compression_ratio)
            except pkg.PackageError as exc:
                raise ServiceError(f"upstream package {filename}: {exc}", status=502) from None
            if report.sha256 != sums[filename]:
                raise ServiceError(f"upstream package {filename} does not match the signed SHA256SUMS", status=502)
            checked = _Checked(Upload(filename, fh), pkg.PackageName(p.type, pv.version, os_, arch), report)
            package = _store_package(storage, stored, storage_prefix(p.hostname, p.namespace.name, p.type,
                                                                     pv.version), checked)
            pv.packages.append(package)
            try:
                session.commit()
            except IntegrityError:  # another process stored it meanwhile: use theirs
                session.rollback()
                session.refresh(pv)
                return next(k for k in pv.packages if (k.os, k.arch) == (os_, arch))
        return package
