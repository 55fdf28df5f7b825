"""Providers: publishing signed releases, lookup, deprecation, deletion and mirror import."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from tfregistry import gpg, semver
from tfregistry import provider_packages as pkg
from tfregistry.events import emit
from tfregistry.interfaces import StorageBackend
from tfregistry.models import GpgKey, Namespace, Provider, ProviderDownloadTotal, ProviderPackage, ProviderVersion
from tfregistry.services import Conflict, NotFound, ServiceError
from tfregistry.services.audit import Actor, record
from tfregistry.services.gpgkeys import active_keys, managed_key
from tfregistry.services.modules import get_or_create_namespace, parse_version
from tfregistry.services.storage import delete_quietly
from tfregistry.uploads import put_upload, spooled_digest

DEFAULT_PROTOCOLS = ["5.0"]


@dataclass(frozen=True)
class ProviderLimits:
    package_max_bytes: int
    uncompressed_max_bytes: int
    #: Setting ``limits.max_compression_ratio``: see :func:`tfregistry.provider_packages.inspect_provider_zip`.
    max_compression_ratio: float = 100


@dataclass
class Upload:
    """One uploaded package: its file name and a seekable stream."""

    filename: str
    fileobj: BinaryIO


@dataclass
class PublishResult:
    version: ProviderVersion
    added: list[str] = field(default_factory=list)  # "os_arch" of platforms stored by this call
    created: bool = False  # the version itself is new


#: Provider zips of one publish checked at the same time (each in its own thread).
PACKAGE_CHECK_THREADS = min(4, os.cpu_count() or 1)


@dataclass
class _Checked:
    upload: Upload
    name: pkg.PackageName
    report: pkg.PackageReport

    @property
    def platform(self) -> str:
        return f"{self.name.os}_{self.name.arch}"


def origin(pv: ProviderVersion) -> str:
    """How a version came here: ``published`` (the registry's own), or for a provider of another
    registry (``hostname``) ``mirrored`` (a mirror configuration's sync), ``pulled-through`` (fetched on
    a client's first request) or ``imported`` (``tfr mirror import``), from ``published_by``."""
    if not pv.provider.hostname:
        return "published"
    if pv.published_by.startswith("mirror:"):
        return "mirrored"
    if pv.published_by.startswith("pull-through:"):
        return "pulled-through"
    return "imported"


def record_provider_downloads(session: Session, counts: dict[int, int]) -> int:
    """Add ``counts`` (provider version id -> downloads) to the versions' totals in the session's
    transaction; versions deleted meanwhile are dropped.  Returns how many downloads were written."""
    providers = dict(session.execute(select(ProviderVersion.id, ProviderVersion.provider_id)
                                     .where(ProviderVersion.id.in_(counts))).all())
    rows = [{"provider_version_id": v, "provider_id": providers[v], "count": n}
            for v, n in sorted(counts.items()) if v in providers]
    if not rows:
        return 0
    upsert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = upsert(ProviderDownloadTotal).values(rows)
    session.execute(stmt.on_conflict_do_update(index_elements=[ProviderDownloadTotal.provider_version_id],
                                               set_={"count": ProviderDownloadTotal.count + stmt.excluded.count}))
    return sum(row["count"] for row in rows)


def download_counts(session: Session, version_ids: Sequence[int],
                    pending: dict[int, int] | None = None) -> dict[int, int]:
    """Downloads per provider version: the written totals plus ``pending`` (this process's unwritten counts)."""
    counts = dict(session.execute(select(ProviderDownloadTotal.provider_version_id, ProviderDownloadTotal.count)
                                  .where(ProviderDownloadTotal.provider_version_id.in_(version_ids))).all())
    for version_id, n in (pending or {}).items():
        counts[version_id] = counts.get(version_id, 0) + n
    return counts


def provider_download_totals(session: Session, provider_ids: Sequence[int]) -> dict[int, int]:
    """Written downloads per provider (all versions)."""
    return dict(session.execute(select(ProviderDownloadTotal.provider_id, func.sum(ProviderDownloadTotal.count))
                                .where(ProviderDownloadTotal.provider_id.in_(provider_ids))
                                .group_by(ProviderDownloadTotal.provider_id)).all())


def _pkg_error(exc: Exception) -> ServiceError:
    return ServiceError(str(exc))


def storage_prefix(hostname: str, namespace: str, type_: str, version: str) -> str:
    """``providers/...`` for our own providers, ``mirror/<host>/...`` for mirrored ones."""
    if hostname:
        return f"mirror/{hostname.replace(':', '_')}/{namespace}/{type_}/{version}"
    return f"providers/{namespace}/{type_}/{version}"


def find_provider(session: Session, namespace: str, type_: str, hostname: str = "") -> Provider | None:
    return session.scalar(
        select(Provider).join(Provider.namespace)
        .where(Provider.hostname == hostname, Namespace.name == namespace, Provider.type == type_)
        .options(selectinload(Provider.versions))
    )


def get_provider(session: Session, namespace: str, type_: str, hostname: str = "") -> Provider:
    provider = find_provider(session, namespace, type_, hostname)
    if provider is None or not provider.versions:
        raise NotFound(f"provider {namespace}/{type_} not found")
    return provider


def get_version(session: Session, namespace: str, type_: str, version: str, hostname: str = "") -> ProviderVersion:
    for pv in get_provider(session, namespace, type_, hostname).versions:
        if pv.version == version:
            return pv
    raise NotFound(f"provider {namespace}/{type_} has no version {version}")


def sorted_versions(versions: Sequence[ProviderVersion]) -> list[ProviderVersion]:
    """Highest SemVer precedence first."""
    return sorted(versions, key=lambda pv: semver.parse(pv.version).sort_key(), reverse=True)


def signed(pv: ProviderVersion) -> bool:
    """Whether the version can be served through the provider registry protocol (it has signed sums)."""
    return pv.shasums is not None and pv.signature_key is not None


def _check_packages(uploads: Sequence[Upload], type_: str, version: str, limits: ProviderLimits) -> list[_Checked]:
    if not uploads:
        raise ServiceError("no provider packages were uploaded (field 'packages')")
    named: list[tuple[Upload, pkg.PackageName]] = []
    seen: set[str] = set()
    for upload in uploads:
        try:
            name = pkg.parse_package_filename(upload.filename, type_=type_, version=version)
        except pkg.PackageError as exc:
            raise _pkg_error(exc) from None
        if upload.filename in seen:
            raise ServiceError(f"{upload.filename} was uploaded twice")
        seen.add(upload.filename)
        upload.fileobj.seek(0, 2)
        size = upload.fileobj.tell()
        upload.fileobj.seek(0)
        if size > limits.package_max_bytes:
            raise ServiceError(f"{upload.filename} is larger than the limit of {limits.package_max_bytes} bytes "
                               "(setting limits.provider_package_max_bytes)", status=413)
        named.append((upload, name))

    def inspect(upload: Upload) -> pkg.PackageReport:
        spooled = spooled_digest(upload.fileobj)
        try:
            return pkg.inspect_provider_zip(upload.fileobj, type_,
                                            max_uncompressed_bytes=limits.uncompressed_max_bytes,
                                            max_compression_ratio=limits.max_compression_ratio,
                                            sha256=spooled[1] if spooled else None)
        except pkg.PackageError as exc:
            raise ServiceError(f"{upload.filename}: {exc}") from None
        finally:
            upload.fileobj.seek(0)

    # Unpacking and hashing release the GIL: the zips of a release are checked side by side.
    threads = min(len(named), PACKAGE_CHECK_THREADS)
    if threads < 2:
        reports = [inspect(upload) for upload, _ in named]
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tfr-package-check") as pool:
            futures = [pool.submit(inspect, upload) for upload, _ in named]
            try:
                reports = [future.result() for future in futures]  # the first refused zip, in upload order
            finally:
                for future in futures:
                    future.cancel()
    return [_Checked(upload, name, report) for (upload, name), report in zip(named, reports, strict=True)]


def _verify_signature(session: Session, ns: Namespace, sums: bytes, signature: bytes) -> tuple[GpgKey, bytes]:
    keys = active_keys(session, ns)
    if not keys:
        raise ServiceError(f"namespace {ns.name} has no signing keys: register one (POST /api/v1/gpg-keys) "
                           "before publishing signed providers")
    try:
        binary = gpg.dearmor_signature(signature)
        fingerprint = gpg.verify_detached(sums, binary, [k.ascii_armor for k in keys])
    except gpg.GpgError as exc:
        raise ServiceError(f"SHA256SUMS signature rejected: {exc}") from None
    key = next((k for k in keys if k.fingerprint == fingerprint), None)
    if key is None:  # pragma: no cover - gpg verified with a key we gave it
        raise ServiceError("SHA256SUMS was signed by a key that is not registered for this namespace")
    return key, binary


def _sign_with_managed_key(session: Session, ns: Namespace, checked: Sequence[_Checked], type_: str, version: str,
                           enc_key: bytes) -> tuple[GpgKey, bytes, bytes]:
    key = managed_key(session, ns)
    if key is None:
        raise ServiceError(
            f"upload SHA256SUMS and SHA256SUMS.sig signed with a key registered for namespace {ns.name}, "
            "or create a registry-managed key for it (tfr gpg create-key --namespace "
            f"{ns.name}) so the registry signs for you"
        )
    sums = pkg.render_shasums({c.upload.filename: c.report.sha256 for c in checked})
    try:
        private = gpg.decrypt_private_key(key.private_key_encrypted or "", enc_key)
        signature = gpg.sign_detached(sums, private)
    except gpg.GpgError as exc:
        raise ServiceError(f"cannot sign with the registry-managed key: {exc}", status=500) from None
    return key, sums, signature


def publish_provider(
    session: Session,
    storage: StorageBackend,
    actor: Actor,
    *,
    namespace: str,
    type_: str,
    version: str,
    packages: Sequence[Upload],
    limits: ProviderLimits,
    enc_key: bytes,
    protocols: Sequence[str] | None = None,
    shasums: bytes | None = None,
    signature: bytes | None = None,
) -> PublishResult:
    """Validate, verify (or sign) and store a provider release, all or nothing.

    A new version needs SHA256SUMS plus a detached signature by one of the namespace's
    keys, or neither when the namespace has a registry-managed key.  An existing
    version accepts more platforms only when its signed SHA256SUMS already lists them.
    """
    try:
        pkg.validate_provider_address(namespace, type_)
        protocol_list = pkg.validate_protocols(list(protocols) if protocols else DEFAULT_PROTOCOLS)
    except pkg.PackageError as exc:
        raise _pkg_error(exc) from None
    parsed = parse_version(version)
    version = str(parsed)
    if (shasums is None) != (signature is None):
        raise ServiceError("upload both SHA256SUMS and its detached signature (shasums_signature), or neither")
    checked = _check_packages(packages, type_, version, limits)
    ns = get_or_create_namespace(session, namespace)
    provider = find_provider(session, namespace, type_)
    existing = next((pv for pv in provider.versions if pv.version == version), None) if provider else None

    if existing is not None:
        return _add_platforms(session, storage, actor, existing, checked, shasums)

    if shasums is not None and signature is not None:
        key, sig_bytes = _verify_signature(session, ns, shasums, signature)
        sums_bytes = shasums
    else:
        key, sums_bytes, sig_bytes = _sign_with_managed_key(session, ns, checked, type_, version, enc_key)
    try:
        sums = pkg.parse_shasums(sums_bytes)
        pkg.check_sums_cover(sums, {c.upload.filename: c.report.sha256 for c in checked})
    except pkg.PackageError as exc:
        raise _pkg_error(exc) from None

    prefix = storage_prefix("", namespace, type_, version)
    digest = hashlib.sha256(sums_bytes).hexdigest()[:16]  # racing publishes never share a key
    sums_key = f"{prefix}/{digest}/{pkg.sums_filename(type_, version)}"
    sig_key = f"{prefix}/{digest}/{pkg.signature_filename(type_, version)}"
    stored: list[str] = []
    try:
        _put(storage, stored, sums_key, io.BytesIO(sums_bytes), "text/plain")
        _put(storage, stored, sig_key, io.BytesIO(sig_bytes), "application/pgp-signature")
        package_rows = [_store_package(storage, stored, prefix, c) for c in checked]
        if provider is None:
            provider = Provider(namespace=ns, type=type_)
            session.add(provider)
        pv = ProviderVersion(
            provider=provider, version=version, prerelease=parsed.is_prerelease, protocols=protocol_list,
            shasums_key=sums_key, signature_key=sig_key, shasums=sums_bytes.decode(), signing_key=key,
            published_by=actor.name, packages=package_rows,
        )
        session.add(pv)
        session.flush()
        record(session, actor, "provider.publish", f"{namespace}/{type_}/{version}",
               platforms=sorted(c.platform for c in checked), key_id=key.key_id, managed_key=key.managed)
        emit(session, "provider.published", actor=actor, namespace=namespace,
             data={"namespace": namespace, "type": type_, "version": version, "hostname": "",
                   "platforms": sorted(c.platform for c in checked)})
        session.commit()
    except IntegrityError:
        session.rollback()
        winner = find_provider(session, namespace, type_)
        won = next((v for v in winner.versions if v.version == version), None) if winner else None
        _delete_unreferenced(storage, stored, won)
        if won is not None:  # a concurrent publish of this version won: answer as if it had come first
            return _add_platforms(session, storage, actor, won, checked, shasums)
        raise Conflict(
            f"provider {namespace}/{type_} {version} was published concurrently; retry to add platforms"
        ) from None
    except BaseException:
        session.rollback()
        delete_quietly(storage, stored)
        raise
    return PublishResult(pv, added=sorted(c.platform for c in checked), created=True)


def _delete_unreferenced(storage: StorageBackend, stored: Sequence[str], winner: ProviderVersion | None) -> None:
    """Remove what a losing concurrent publish stored, except the objects the winner's row refers to:
    identical uploads map to identical keys, so the loser's bytes may be the winner's."""
    keep = set()
    if winner is not None:
        keep = {p.storage_key for p in winner.packages} | {winner.shasums_key, winner.signature_key}
    delete_quietly(storage, [key for key in stored if key not in keep])


def _put(storage: StorageBackend, stored: list[str], key: str, fileobj: BinaryIO, content_type: str) -> None:
    storage.put(key, fileobj, content_type=content_type)
    stored.append(key)


def _store_package(storage: StorageBackend, stored: list[str], prefix: str, c: _Checked) -> ProviderPackage:
    key = f"{prefix}/{c.report.sha256[:16]}/{c.upload.filename}"
    result = put_upload(storage, key, c.upload.fileobj, content_type="application/zip")
    stored.append(key)
    if result.sha256 != c.report.sha256:
        raise ServiceError(f"{c.upload.filename} changed while it was being stored; try again", status=500)
    return ProviderPackage(os=c.name.os, arch=c.name.arch, filename=c.upload.filename, storage_key=key,
                           size=result.size, sha256=c.report.sha256, h1=c.report.h1)


def _add_platforms(session: Session, storage: StorageBackend, actor: Actor, pv: ProviderVersion,
                   checked: Sequence[_Checked], shasums: bytes | None) -> PublishResult:
    p = pv.provider
    label = f"{p.namespace.name}/{p.type} {pv.version}"
    if pv.shasums is None:
        raise Conflict(f"{label} was imported from a mirror and has no signed SHA256SUMS; it cannot take new platforms")
    if shasums is not None and shasums != pv.shasums.encode():
        raise Conflict(f"{label} already exists with a different SHA256SUMS; versions are immutable, "
                       "publish a new version")
    try:
        pkg.check_sums_cover(pkg.parse_shasums(pv.shasums.encode()),
                             {c.upload.filename: c.report.sha256 for c in checked})
    except pkg.PackageError as exc:
        raise Conflict(f"{label} exists and its signed SHA256SUMS does not cover this upload: {exc}") from None
    have = {f"{pkg_.os}_{pkg_.arch}": pkg_ for pkg_ in pv.packages}
    new = [c for c in checked if c.platform not in have]
    if not new:
        return PublishResult(pv)  # every platform is already there, byte for byte (SHA256SUMS says so)
    prefix = storage_prefix(p.hostname, p.namespace.name, p.type, pv.version)
    stored: list[str] = []
    try:
        for c in new:
            pv.packages.append(_store_package(storage, stored, prefix, c))
        session.flush()
        record(session, actor, "provider.add_platforms", f"{p.namespace.name}/{p.type}/{pv.version}",
               platforms=sorted(c.platform for c in new))
        session.commit()
    except IntegrityError:
        session.rollback()
        _delete_unreferenced(storage, stored, pv)
        raise Conflict(f"{label}: a concurrent upload added these platforms; retry") from None
    except BaseException:
        session.rollback()
        delete_quietly(storage, stored)
        raise
    return PublishResult(pv, added=sorted(c.platform for c in new))


def set_deprecated(session: Session, actor: Actor, pv: ProviderVersion, deprecated: bool, reason: str | None) -> None:
    """Flag (or unflag) a version as deprecated; Terraform shows the reason as a warning."""
    pv.deprecated = deprecated
    pv.deprecation_reason = reason if deprecated else None
    p = pv.provider
    record(session, actor, "provider.deprecate" if deprecated else "provider.undeprecate",
           f"{p.namespace.name}/{p.type}/{pv.version}", reason=reason)
    if deprecated:
        emit(session, "provider.deprecated", actor=actor, namespace=p.namespace.name,
             data={"namespace": p.namespace.name, "type": p.type, "version": pv.version, "hostname": p.hostname,
                   "reason": reason})
    session.commit()


def delete_version(session: Session, storage: StorageBackend, actor: Actor, pv: ProviderVersion) -> None:
    """Delete a version with all its packages and checksum files."""
    p = pv.provider
    keys = [k.storage_key for k in pv.packages] + [k for k in (pv.shasums_key, pv.signature_key) if k]
    record(session, actor, "provider.delete", f"{p.hostname + '/' if p.hostname else ''}{p.namespace.name}/"
           f"{p.type}/{pv.version}")
    emit(session, "provider.deleted", actor=actor, namespace=p.namespace.name,
         data={"namespace": p.namespace.name, "type": p.type, "version": pv.version, "hostname": p.hostname})
    session.delete(pv)
    session.flush()
    session.refresh(p)
    if not p.versions:
        session.delete(p)
    session.commit()
    delete_quietly(storage, keys)


def import_mirror_directory(session: Session, storage: StorageBackend, actor: Actor, root: Path,
                            limits: ProviderLimits) -> list[str]:
    """Load a ``terraform providers mirror`` folder, verifying every archive against its listed hashes.

    Returns ``host/ns/type version os_arch`` for each package stored; packages already
    present with the same hash are skipped, so re-running after an interruption is safe.
    """
    try:
        archives = pkg.scan_mirror_directory(root)
    except pkg.PackageError as exc:
        raise _pkg_error(exc) from None
    imported: list[str] = []
    for archive in archives:
        label = f"{archive.hostname}/{archive.namespace}/{archive.type} {archive.version} {archive.os}_{archive.arch}"
        with open(archive.path, "rb") as fh:
            try:
                report = pkg.inspect_provider_zip(
                    fh, archive.type, max_uncompressed_bytes=limits.uncompressed_max_bytes,
                    max_compression_ratio=limits.max_compression_ratio,
                )
                pkg.verify_mirror_hashes(report, archive.hashes)
            except pkg.PackageError as exc:
                raise ServiceError(f"{label}: {exc}") from None
            fh.seek(0)
            if _import_one(session, storage, actor, archive, report, fh):
                imported.append(label)
    return imported


def _import_one(session: Session, storage: StorageBackend, actor: Actor, archive: pkg.MirrorArchive,
                report: pkg.PackageReport, fh: BinaryIO) -> bool:
    ns = get_or_create_namespace(session, archive.namespace)
    provider = find_provider(session, archive.namespace, archive.type, archive.hostname)
    if provider is None:
        provider = Provider(hostname=archive.hostname, namespace=ns, type=archive.type)
        session.add(provider)
        session.flush()
    pv = next((v for v in provider.versions if v.version == archive.version), None)
    if pv is None:
        parsed = parse_version(archive.version)
        pv = ProviderVersion(provider=provider, version=str(parsed), prerelease=parsed.is_prerelease, protocols=[],
                             published_by=actor.name)
        session.add(pv)
    existing = next((p for p in pv.packages if (p.os, p.arch) == (archive.os, archive.arch)), None)
    if existing is not None:
        if existing.sha256 != report.sha256:
            raise Conflict(f"{archive.hostname}/{archive.namespace}/{archive.type} {archive.version} "
                           f"{archive.os}_{archive.arch} is already stored with different content")
        session.rollback()
        return False
    prefix = storage_prefix(archive.hostname, archive.namespace, archive.type, archive.version)
    filename = pkg.package_filename(archive.type, archive.version, archive.os, archive.arch)
    stored: list[str] = []
    try:
        checked = _Checked(Upload(filename, fh), pkg.PackageName(archive.type, archive.version, archive.os,
                                                                 archive.arch), report)
        pv.packages.append(_store_package(storage, stored, prefix, checked))
        session.flush()
        record(session, actor, "provider.mirror_import", f"{archive.hostname}/{archive.namespace}/{archive.type}/"
               f"{archive.version}", platform=f"{archive.os}_{archive.arch}", h1=report.h1)
        session.commit()
    except BaseException:
        session.rollback()
        delete_quietly(storage, stored)
        raise
    return True
