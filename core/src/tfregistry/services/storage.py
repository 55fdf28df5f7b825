"""Storage housekeeping: finding and removing objects no database row refers to."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry.interfaces import CHUNK_SIZE, ObjectInfo, StorageBackend, StorageError, StorageFull
from tfregistry.models import ModuleVersion, ProviderPackage, ProviderVersion, RegistryState, utcnow
from tfregistry.services.audit import CLI_ACTOR, record

log = logging.getLogger(__name__)

#: Prefixes the registry writes; anything under them not referenced by a row is an orphan.
MANAGED_PREFIXES = ("modules/", "providers/", "mirror/", "_tfr_probe/")


#: Seconds a client is told to wait (``Retry-After``) when storage is unavailable.
RETRY_AFTER_SECONDS = 30


def storage_fault(exc: StorageError) -> tuple[int, str, dict[str, str]]:
    """How the web layer answers a storage failure: ``(status, message, headers)``.

    Out of space (:class:`StorageFull`) is ``507 Insufficient Storage``, which retrying
    will not fix until an operator frees space; anything else is ``503`` with
    ``Retry-After`` (the backend is unreachable or failing, and may come back).
    """
    if isinstance(exc, StorageFull):
        return 507, f"the storage backend is out of space: {exc}", {}
    return 503, f"the storage backend is unavailable: {exc}", {"Retry-After": str(RETRY_AFTER_SECONDS)}


def delete_quietly(storage: StorageBackend, keys: Iterable[str]) -> None:
    """Remove objects a failed operation stored; what cannot be removed is left for ``tfr storage gc``."""
    for key in keys:
        try:
            storage.delete(key)
        except Exception:
            log.warning("could not remove %s after a failed operation; `tfr storage gc` will", key, exc_info=True)


def referenced_keys(session: Session) -> set[str]:
    """Every storage key a database row refers to."""
    keys = set(session.scalars(select(ModuleVersion.storage_key)))
    keys.update(session.scalars(select(ProviderPackage.storage_key)))
    for sums_key, sig_key in session.execute(select(ProviderVersion.shasums_key, ProviderVersion.signature_key)):
        keys.update(k for k in (sums_key, sig_key) if k)
    return keys


def find_orphans(session: Session, storage: StorageBackend, grace: timedelta,
                 now: datetime | None = None) -> Iterator[ObjectInfo]:
    """Objects under the managed prefixes that no row refers to and that are older than ``grace``.

    The grace period protects a publish in progress: its bytes are stored a moment
    before its row is committed.
    """
    cutoff = (now or utcnow()) - grace
    keys = referenced_keys(session)
    for prefix in MANAGED_PREFIXES:
        for info in storage.list(prefix):
            if info.key not in keys and info.last_modified < cutoff:
                yield info


def collect_garbage(
    session: Session, storage: StorageBackend, grace: timedelta, dry_run: bool = False
) -> list[ObjectInfo]:
    """Delete (unless ``dry_run``) the orphans :func:`find_orphans` finds, then what interrupted
    writes left behind (:meth:`~tfregistry.interfaces.StorageBackend.remove_partial_writes`);
    returns both."""
    orphans = list(find_orphans(session, storage, grace))
    if not dry_run:
        for info in orphans:
            storage.delete(info.key)
    orphans.extend(storage.remove_partial_writes(utcnow() - grace, dry_run=dry_run))
    return orphans


#: ``registry_state`` key recording the backend ``tfr storage migrate`` switched to.
ACTIVE_BACKEND_KEY = "storage.backend"


def switched_backend(session: Session) -> str | None:
    """The backend a completed migration switched to, if any (it wins over ``storage.backend``)."""
    state = session.get(RegistryState, ACTIVE_BACKEND_KEY)
    return state.value if state else None


@dataclass
class MigrationReport:
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_copied: int = 0


def _digest(storage: StorageBackend, key: str) -> str:
    sha = hashlib.sha256()
    with storage.open(key) as fh:
        while chunk := fh.read(CHUNK_SIZE):
            sha.update(chunk)
    return sha.hexdigest()


def known_digests(session: Session) -> dict[str, str]:
    """SHA-256 of stored objects as the database recorded them at publish time."""
    digests = {key: sha for key, sha in session.execute(select(ModuleVersion.storage_key, ModuleVersion.sha256))}
    digests.update((key, sha) for key, sha in session.execute(select(ProviderPackage.storage_key,
                                                                     ProviderPackage.sha256)))
    return digests


def migrate(session: Session, source: StorageBackend, target: StorageBackend, target_name: str,
            progress: Callable[[str], None] = lambda _: None) -> MigrationReport:
    """Copy every object to ``target``, verify each copy, then record ``target_name`` as the active backend.

    Objects already in ``target`` with the right content are skipped, so an interrupted
    migration can simply be run again.  Nothing is switched unless every object verified.
    """
    known = known_digests(session)
    report = MigrationReport()
    for prefix in MANAGED_PREFIXES:
        if prefix == "_tfr_probe/":
            continue
        for info in list(source.list(prefix)):
            expected = known.get(info.key) or _digest(source, info.key)
            if target.exists(info.key) and _digest(target, info.key) == expected:
                report.skipped.append(info.key)
                continue
            with source.open(info.key) as fh:
                stored = target.put(info.key, fh)
            if stored.sha256 != expected or _digest(target, info.key) != expected:
                raise StorageError(f"the copy of {info.key} in the target does not match the source; "
                                   "nothing was switched, run the migration again")
            report.copied.append(info.key)
            report.bytes_copied += stored.size
            progress(f"copied {info.key} ({stored.size} bytes)")
    for key, sha in known.items():  # every object a row refers to must now be in the target
        if not target.exists(key) or _digest(target, key) != sha:
            raise StorageError(f"{key} is referenced by the database but missing or different in the target")
    state = session.get(RegistryState, ACTIVE_BACKEND_KEY) or RegistryState(key=ACTIVE_BACKEND_KEY, value="")
    state.value = target_name
    session.add(state)
    record(session, CLI_ACTOR, "storage.migrate", target_name, source=source.name, copied=len(report.copied),
           skipped=len(report.skipped), bytes=report.bytes_copied)
    session.commit()
    return report
