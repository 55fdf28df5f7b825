"""Mirroring providers from upstream registries: discover, select, download, verify, store.

Nothing unverified is stored: each package must match the upstream SHA256SUMS, whose
detached signature must verify against a key the upstream offers and the trust
policy accepts (``trusted_fingerprints``; empty accepts the upstream's own keys).
Runs are idempotent: packages already stored with the same hash are skipped.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tfregistry import gpg, semver
from tfregistry import provider_packages as pkg
from tfregistry.events import emit
from tfregistry.interfaces import CHUNK_SIZE, StorageBackend
from tfregistry.models import (
    MirrorConfig,
    MirrorPolicy,
    MirrorRun,
    Provider,
    ProviderPackage,
    ProviderVersion,
    utcnow,
)
from tfregistry.services import NotFound, ServiceError
from tfregistry.services.audit import Actor, record
from tfregistry.services.modules import get_or_create_namespace
from tfregistry.services.providers import (
    ProviderLimits,
    Upload,
    _Checked,
    _store_package,
    find_provider,
    storage_prefix,
)
from tfregistry.services.storage import delete_quietly

_CONSTRAINT = re.compile(r"^\s*(=|!=|>=|<=|>|<|~>)?\s*(\S+)\s*$")


class UpstreamError(Exception):
    """The upstream registry could not be reached or answered something unusable."""


def matches(version: str, constraint: str | None) -> bool:
    """Terraform-style constraint (``>= 1.2, < 2.0``, ``~> 1.4``); pre-releases only when named exactly."""
    v = semver.parse(version)
    if not constraint:
        return not v.is_prerelease
    named_exactly = False
    for part in constraint.split(","):
        m = _CONSTRAINT.match(part)
        if not m:
            raise ServiceError(f"invalid version constraint {part!r}")
        op, text = m.group(1) or "=", m.group(2)
        parts = text.split(".")
        try:
            target = semver.parse(text if len(parts) >= 3 else ".".join(parts + ["0"] * (3 - len(parts))))
        except semver.InvalidVersion:
            raise ServiceError(f"invalid version constraint {part.strip()!r}") from None
        if op == "=" and v == target:
            named_exactly = True
        if op == "~>":
            upper = (f"{target.major + 1}.0.0" if len(parts) <= 2 else f"{target.major}.{target.minor + 1}.0")
            ok = target <= v < semver.parse(upper)
        else:
            ok = {"=": v == target, "!=": v != target, ">": v > target, ">=": v >= target, "<": v < target,
                  "<=": v <= target}[op]
        if not ok:
            return False
    return named_exactly or not v.is_prerelease


def select_versions(available: Sequence[str], constraint: str | None, latest: int | None) -> list[str]:
    """Versions to mirror: those matching ``constraint``, then only the newest ``latest`` of them."""
    chosen = sorted((v for v in available if matches(v, constraint)), key=lambda v: semver.parse(v).sort_key(),
                    reverse=True)
    return chosen[:latest] if latest else chosen


class UpstreamClient:
    """Talks to an upstream registry's provider protocol (token sent to the JSON API only)."""

    def __init__(self, host: str, url: str | None = None, token: str | None = None, timeout: float = 30) -> None:
        self.host = host
        self.base = (url or f"https://{host}").rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context()

    def _get(self, url: str, auth: bool) -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": "tfregistry-mirror"})
        if auth and self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise UpstreamError(f"{self.host}: GET {url} answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise UpstreamError(f"{self.host}: cannot reach {url}: {getattr(exc, 'reason', exc)}") from None

    def json(self, url: str) -> Any:
        try:
            return json.loads(self._get(url, auth=True))
        except ValueError:
            raise UpstreamError(f"{self.host}: {url} did not answer JSON") from None

    def download(self, url: str, dest: BinaryIO, max_bytes: int) -> int:
        """Stream ``url`` (no token: like Terraform) into ``dest``; refuse more than ``max_bytes``."""
        request = urllib.request.Request(url, headers={"User-Agent": "tfregistry-mirror"})
        size = 0
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                while chunk := response.read(CHUNK_SIZE):
                    size += len(chunk)
                    if size > max_bytes:
                        raise UpstreamError(f"{self.host}: {url} is larger than {max_bytes} bytes")
                    dest.write(chunk)
        except urllib.error.HTTPError as exc:
            raise UpstreamError(f"{self.host}: GET {url} answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise UpstreamError(f"{self.host}: cannot download {url}: {getattr(exc, 'reason', exc)}") from None
        return size

    def providers_base(self) -> str:
        discovery = self.json(f"{self.base}/.well-known/terraform.json")
        service = discovery.get("providers.v1") if isinstance(discovery, dict) else None
        if not service:
            raise UpstreamError(f"{self.host} does not offer a provider registry (no providers.v1)")
        return urljoin(f"{self.base}/.well-known/terraform.json", service)


@dataclass
class SyncStats:
    versions: int = 0
    packages: int = 0
    skipped: int = 0
    bytes: int = 0


def _trusted(keys: list[dict[str, Any]], fingerprints: Sequence[str]) -> list[str]:
    armors = [k.get("ascii_armor", "") for k in keys if k.get("ascii_armor")]
    if not fingerprints:
        return armors
    wanted = {f.upper().replace(" ", "") for f in fingerprints}
    accepted = []
    for armor in armors:
        try:
            if gpg.parse_public_key(armor).fingerprint in wanted:
                accepted.append(armor)
        except gpg.GpgError:
            continue
    return accepted


def _sync_version(session: Session, storage: StorageBackend, config: MirrorConfig, client: UpstreamClient,
                  base: str, entry: dict[str, Any], limits: ProviderLimits, stats: SyncStats) -> None:
    version = entry["version"]
    platforms = [f"{p['os']}_{p['arch']}" for p in entry.get("platforms", [])]
    wanted = [p for p in platforms if not config.platforms or p in config.platforms]
    if not wanted:
        return
    provider = find_provider(session, config.namespace, config.type, config.upstream_host)
    if provider is None:
        try:
            provider = Provider(hostname=config.upstream_host, type=config.type,
                                namespace=get_or_create_namespace(session, config.namespace))
            session.add(provider)
            # committed before any download: on SQLite an open write transaction would block every other
            # writer for as long as the downloads take
            session.commit()
        except IntegrityError:  # created meanwhile by another sync or a pull-through request
            session.rollback()
            provider = find_provider(session, config.namespace, config.type, config.upstream_host)
            if provider is None:
                raise
    pv = next((v for v in provider.versions if v.version == version), None)
    have = {f"{p.os}_{p.arch}": p for p in pv.packages} if pv else {}
    todo = [p for p in wanted if p not in have]
    stats.skipped += len(wanted) - len(todo)
    if not todo:
        return
    prefix = storage_prefix(config.upstream_host, config.namespace, config.type, version)
    stored: list[str] = []
    try:
        for platform in todo:
            os_, arch = platform.split("_", 1)
            meta = client.json(urljoin(base, f"{config.namespace}/{config.type}/{version}/download/{os_}/{arch}"))
            sums = io.BytesIO()
            client.download(urljoin(base, meta["shasums_url"]), sums, 1024 * 1024)
            signature = io.BytesIO()
            client.download(urljoin(base, meta["shasums_signature_url"]), signature, 1024 * 1024)
            armors = _trusted(meta.get("signing_keys", {}).get("gpg_public_keys", []), config.trusted_fingerprints)
            if not armors:
                raise ServiceError(f"{version} {platform}: no upstream key is trusted for {config.namespace}")
            try:
                fingerprint = gpg.verify_detached(sums.getvalue(), signature.getvalue(), armors)
                parsed = pkg.parse_shasums(sums.getvalue())
            except (gpg.GpgError, pkg.PackageError) as exc:
                raise ServiceError(f"{version} {platform}: SHA256SUMS refused: {exc}") from None
            filename = meta["filename"]
            with tempfile.TemporaryFile() as zip_file:
                size = client.download(urljoin(base, meta["download_url"]), zip_file, limits.package_max_bytes)
                zip_file.seek(0)
                digest = hashlib.sha256()
                while chunk := zip_file.read(CHUNK_SIZE):
                    digest.update(chunk)
                if digest.hexdigest() != meta["shasum"] or parsed.get(filename) != meta["shasum"]:
                    raise ServiceError(f"{version} {platform}: {filename} does not match the signed SHA256SUMS")
                try:
                    report = pkg.inspect_provider_zip(zip_file, config.type,
                                                      max_uncompressed_bytes=limits.uncompressed_max_bytes,
                                                      max_compression_ratio=limits.max_compression_ratio)
                except pkg.PackageError as exc:
                    raise ServiceError(f"{version} {platform}: {exc}") from None
                if pv is None:
                    pv = ProviderVersion(provider=provider, version=version,
                                         prerelease=semver.parse(version).is_prerelease,
                                         protocols=meta.get("protocols") or [], shasums=sums.getvalue().decode(),
                                         upstream_key_armor=next(a for a in armors if gpg.parse_public_key(a)
                                                                 .fingerprint == fingerprint),
                                         published_by=f"mirror:{config.id}")
                    session.add(pv)
                    sums_key = f"{prefix}/{hashlib.sha256(sums.getvalue()).hexdigest()[:16]}/" + \
                        pkg.sums_filename(config.type, version)
                    for key, data in ((sums_key, sums.getvalue()), (sums_key + ".sig", signature.getvalue())):
                        storage.put(key, io.BytesIO(data))
                        stored.append(key)
                    pv.shasums_key, pv.signature_key = sums_key, sums_key + ".sig"
                checked = _Checked(Upload(filename, zip_file), pkg.PackageName(config.type, version, os_, arch), report)
                pv.packages.append(_store_package(storage, stored, prefix, checked))
                stats.packages += 1
                stats.bytes += size
        session.flush()
        record(session, Actor(name=f"mirror:{config.id}"), "provider.mirror_sync",
               f"{config.upstream_host}/{config.namespace}/{config.type}/{version}", platforms=todo)
        session.commit()
        stats.versions += 1
    except IntegrityError:
        # another sync (or pull-through) committed this version first; the object keys are
        # deterministic, so ours may be the very objects its rows now reference: keep those
        session.rollback()
        delete_quietly(storage, unreferenced(session, stored))
        stats.skipped += len(todo)
    except BaseException:
        session.rollback()
        delete_quietly(storage, unreferenced(session, stored))
        raise


def unreferenced(session: Session, keys: list[str]) -> list[str]:
    """The storage keys among ``keys`` that no committed provider version or package refers to."""
    if not keys:
        return []
    used = set(session.scalars(select(ProviderPackage.storage_key).where(ProviderPackage.storage_key.in_(keys))))
    used |= set(session.scalars(select(ProviderVersion.shasums_key).where(ProviderVersion.shasums_key.in_(keys))))
    used |= set(session.scalars(select(ProviderVersion.signature_key)
                                .where(ProviderVersion.signature_key.in_(keys))))
    return [key for key in keys if key not in used]


def sync(session: Session, storage: StorageBackend, config_id: int, limits: ProviderLimits,
         token: str | None = None, progress: Callable[[str], None] = lambda _: None) -> MirrorRun:
    """Copy the selected versions and platforms of one mirror configuration; record the run."""
    config = session.get(MirrorConfig, config_id)
    if config is None:
        raise NotFound(f"no mirror configuration {config_id}")
    # Syncs of one configuration run one at a time (one job id), so a run still "running" now was
    # cut off: its worker died.  Close it, so the history says so.
    for stale in session.scalars(select(MirrorRun).where(MirrorRun.config_id == config.id,
                                                         MirrorRun.status == "running")):
        stale.status, stale.finished_at = "interrupted", utcnow()
        stale.errors = [*stale.errors, "interrupted: the worker stopped before the run finished; "
                        "this run's committed versions are kept, the rest is retried by the next run"]
    run = MirrorRun(config_id=config.id)
    session.add(run)
    config.last_run_at = utcnow()
    session.commit()
    refusal = sync_refusal(session, config)
    if refusal:
        run.status, run.errors, run.finished_at = "failed", [refusal], utcnow()
        _emit_run(session, config, run)
        session.commit()
        return run
    stats, errors = SyncStats(), []
    client = UpstreamClient(config.upstream_host, config.upstream_url, token)
    try:
        base = client.providers_base()
        listing = client.json(urljoin(base, f"{config.namespace}/{config.type}/versions"))
        entries = {e["version"]: e for e in listing.get("versions", []) if "version" in e}
        for version in select_versions(list(entries), config.version_constraint, config.latest):
            try:
                _sync_version(session, storage, config, client, base, entries[version], limits, stats)
                progress(f"{version}: ok")
            except (ServiceError, UpstreamError, KeyError) as exc:
                message = exc.message if isinstance(exc, ServiceError) else str(exc)
                errors.append(message)
                progress(f"{version}: {message}")
    except UpstreamError as exc:
        errors.append(str(exc))
    run = session.get(MirrorRun, run.id)
    run.versions, run.packages, run.skipped, run.bytes = stats.versions, stats.packages, stats.skipped, stats.bytes
    run.errors = errors
    run.status = "succeeded" if not errors else ("partial" if stats.packages or stats.skipped else "failed")
    run.finished_at = utcnow()
    _emit_run(session, config, run)
    session.commit()
    return run


def _emit_run(session: Session, config: MirrorConfig, run: MirrorRun) -> None:
    """``mirror.sync_succeeded`` or ``mirror.sync_failed`` (errors, a partial run included), site-wide."""
    where = {"mirror_id": config.id, "run_id": run.id, "upstream_host": config.upstream_host,
             "namespace": config.namespace, "type": config.type}
    if run.errors:
        emit(session, "mirror.sync_failed", actor=f"mirror:{config.id}",
             data={**where, "status": run.status, "errors": list(run.errors)})
    else:
        emit(session, "mirror.sync_succeeded", actor=f"mirror:{config.id}",
             data={**where, "versions": run.versions, "packages": run.packages, "bytes": run.bytes})


def due_configs(session: Session) -> list[MirrorConfig]:
    """Enabled configurations whose interval has elapsed since their last run."""
    now = utcnow()
    result = []
    for config in session.scalars(select(MirrorConfig).where(MirrorConfig.enabled.is_(True),
                                                             MirrorConfig.status == "approved")):
        if config.interval_seconds and (config.last_run_at is None
                                        or (now - config.last_run_at).total_seconds() >= config.interval_seconds):
            result.append(config)
    return result


# --- policies and approval -------------------------------------------------------------------------

POLICY_EFFECTS = ("allow", "deny")
_POLICY_PART = re.compile(r"^[a-z0-9.:*_-]+$")


def normalise_pattern(pattern: str) -> str:
    """``host[/namespace[/type]]`` with ``*`` wildcards, lower-cased and padded to three parts."""
    parts = pattern.strip().lower().split("/")
    if not 1 <= len(parts) <= 3 or not all(_POLICY_PART.match(p) for p in parts):
        raise ServiceError(f"invalid policy pattern {pattern!r}: use host[/namespace[/type]] with * wildcards, "
                           "e.g. registry.terraform.io/hashicorp/*")
    return "/".join(parts + ["*"] * (3 - len(parts)))


def add_policy(session: Session, actor: Actor, effect: str, pattern: str, description: str = "") -> MirrorPolicy:
    if effect not in POLICY_EFFECTS:
        raise ServiceError(f"effect must be one of {', '.join(POLICY_EFFECTS)}")
    policy = MirrorPolicy(effect=effect, pattern=normalise_pattern(pattern), description=description,
                          created_by=actor.name)
    session.add(policy)
    session.flush()
    record(session, actor, "mirror.policy.add", policy.pattern, effect=effect, id=policy.id)
    return policy


def policy_refusal(session: Session, host: str, namespace: str, type_: str) -> str | None:
    """Why the policies forbid mirroring ``host/namespace/type``, or ``None`` when they allow it.

    Deny rules win; when at least one allow rule exists, something must match one of them.
    """
    address = f"{host}/{namespace}/{type_}".lower()
    policies = session.scalars(select(MirrorPolicy).order_by(MirrorPolicy.id)).all()
    for policy in policies:
        if policy.effect == "deny" and fnmatch.fnmatchcase(address, policy.pattern):
            return f"mirror policy {policy.id} denies {policy.pattern}"
    allows = [p for p in policies if p.effect == "allow"]
    if allows and not any(fnmatch.fnmatchcase(address, p.pattern) for p in allows):
        return f"no mirror policy allows {address} (allowed: {', '.join(p.pattern for p in allows)})"
    return None


def sync_refusal(session: Session, config: MirrorConfig) -> str | None:
    """Why ``config`` may not sync now (waiting for approval, rejected, denied by a policy), or ``None``."""
    if config.status != "approved":
        return f"mirror configuration {config.id} is {config.status}" + (
            ": a mirror manager must approve it first" if config.status == "pending" else "")
    return policy_refusal(session, config.upstream_host, config.namespace, config.type)


def decide(session: Session, actor: Actor, config: MirrorConfig, approve: bool, note: str | None = None) -> None:
    """Approve or reject a pending (or earlier rejected) mirror request."""
    if config.status == "approved" and approve:
        raise ServiceError(f"mirror configuration {config.id} is already approved", status=409)
    config.status = "approved" if approve else "rejected"
    config.decided_by, config.decided_at, config.decision_note = actor.name, utcnow(), note
    record(session, actor, "mirror.approve" if approve else "mirror.reject",
           f"{config.upstream_host}/{config.namespace}/{config.type}", id=config.id, note=note)


# --- configurations: what the API and the web UI both change ----------------------------------------


def get_config(session: Session, mirror_id: int) -> MirrorConfig:
    """The configuration ``mirror_id``, or :class:`NotFound` (404)."""
    config = session.get(MirrorConfig, mirror_id)
    if config is None:
        raise NotFound(f"no mirror configuration {mirror_id}")
    return config


def apply_config(config: MirrorConfig, args: dict[str, Any], enc_key: bytes) -> None:
    """Check and set the fields of a configuration (the API's :class:`MirrorArgs`); a non-empty
    ``upstream_token`` is stored encrypted with ``enc_key``."""
    from tfregistry.jobs import MIRROR_TOKEN

    try:
        pkg.validate_provider_address(args["namespace"], args["type"])
        if args.get("version_constraint"):
            matches("0.0.1", args["version_constraint"])
    except pkg.PackageError as exc:
        raise ServiceError(str(exc)) from None
    args = dict(args)
    token = args.pop("upstream_token", None)
    for key, value in args.items():
        setattr(config, key, value)
    if token:
        config.upstream_token_encrypted = gpg.encrypt_secret(token, enc_key, MIRROR_TOKEN)


def check_policy(session: Session, config: MirrorConfig) -> None:
    """Refuse (403) a configuration the policies deny: they apply to the origin host and, when the
    upstream is reached at another URL, to that host too."""
    from urllib.parse import urlsplit

    hosts = [config.upstream_host]
    if config.upstream_url:
        hosts.append(urlsplit(config.upstream_url).netloc.lower())
    for host in hosts:
        refusal = policy_refusal(session, host, config.namespace, config.type)
        if refusal:
            raise ServiceError(refusal, status=403)


def create_config(session: Session, actor: Actor, args: dict[str, Any], enc_key: bytes, *,
                  manager: bool) -> MirrorConfig:
    """Create a configuration (``manager``: a mirror manager, approved at once) or request one (pending
    until a mirror manager decides; a request may not choose ``upstream_url`` or ``upstream_token``).
    Audited as ``mirror.create`` or ``mirror.request``; the caller commits."""
    if not manager and (args.get("upstream_url") or args.get("upstream_token")):
        # a request must not choose where "registry.terraform.io/hashicorp/aws" really comes from
        raise ServiceError("only mirror managers may set upstream_url or upstream_token; request the mirror "
                           "by its origin host and let a mirror manager add them", status=403)
    config = MirrorConfig(status="approved" if manager else "pending", requested_by=actor.name)
    if manager:
        config.decided_by, config.decided_at = actor.name, utcnow()
    apply_config(config, args, enc_key)
    check_policy(session, config)
    session.add(config)
    session.flush()
    record(session, actor, "mirror.create" if manager else "mirror.request",
           f"{config.upstream_host}/{config.namespace}/{config.type}", id=config.id)
    if not manager:
        emit(session, "mirror.request_pending", actor=actor,
             data={"mirror_id": config.id, "upstream_host": config.upstream_host, "namespace": config.namespace,
                   "type": config.type, "requested_by": actor.name})
    return config


def update_config(session: Session, actor: Actor, config: MirrorConfig, args: dict[str, Any],
                  enc_key: bytes) -> None:
    """Replace a configuration's fields (audited as ``mirror.update``); the caller commits."""
    apply_config(config, args, enc_key)
    check_policy(session, config)
    record(session, actor, "mirror.update", str(config.id))


def delete_config(session: Session, actor: Actor, config: MirrorConfig) -> None:
    """Delete a configuration and its runs; what it mirrored stays (``mirror.delete``); the caller commits."""
    record(session, actor, "mirror.delete", str(config.id))
    session.delete(config)


def decide_checked(session: Session, actor: Actor, config: MirrorConfig, approve: bool,
                   note: str | None = None) -> None:
    """:func:`decide`, after checking the policies again when approving (403 if a rule now denies it)."""
    if approve:
        check_policy(session, config)
    decide(session, actor, config, approve, note)


def recent_runs(session: Session, config_id: int, limit: int = 50) -> list[MirrorRun]:
    """The configuration's last ``limit`` runs, newest first."""
    return list(session.scalars(select(MirrorRun).where(MirrorRun.config_id == config_id)
                                .order_by(MirrorRun.id.desc()).limit(limit)))


def run_versions(session: Session, config: MirrorConfig, run: MirrorRun) -> list[dict[str, Any]]:
    """Per-version outcome of one run: the versions it copied (from the ``provider.mirror_sync`` audit
    entries it wrote, with their platforms) and the versions it refused (from its errors).  Errors not
    about one version (an unreachable upstream) have ``version`` ``None``."""
    from tfregistry.models import AuditEntry

    stmt = select(AuditEntry).where(AuditEntry.action == "provider.mirror_sync",
                                    AuditEntry.actor == f"mirror:{config.id}", AuditEntry.at >= run.started_at)
    if run.finished_at is not None:
        stmt = stmt.where(AuditEntry.at <= run.finished_at)
    outcomes = [{"version": entry.target.rsplit("/", 1)[-1], "outcome": "copied",
                 "detail": ", ".join(entry.details.get("platforms", []))}
                for entry in session.scalars(stmt.order_by(AuditEntry.id))]
    for error in run.errors:
        head = error.split(" ", 1)[0].rstrip(":")
        try:
            semver.parse(head)
        except semver.InvalidVersion:
            head = None
        outcomes.append({"version": head, "outcome": "failed", "detail": error})
    return outcomes


def delete_policy(session: Session, actor: Actor, policy_id: int) -> None:
    """Delete a policy rule (``mirror.policy.delete``); the caller commits."""
    policy = session.get(MirrorPolicy, policy_id)
    if policy is None:
        raise NotFound(f"no mirror policy {policy_id}")
    record(session, actor, "mirror.policy.delete", policy.pattern, id=policy_id)
    session.delete(policy)
