"""Storage housekeeping: finding and removing objects no database row refers to."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry.interfaces import ObjectInfo, StorageBackend
from tfregistry.models import ModuleVersion, ProviderPackage, ProviderVersion, utcnow

#: Prefixes the registry writes; anything under them not referenced by a row is an orphan.
MANAGED_PREFIXES = ("modules/", "providers/", "mirror/", "_tfr_probe/")


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
    """Delete (unless ``dry_run``) the orphans :func:`find_orphans` finds; returns them."""
    orphans = list(find_orphans(session, storage, grace))
    if not dry_run:
        for info in orphans:
            storage.delete(info.key)
    return orphans
