"""The append-only audit log: writing entries, and reading them back filtered (API, web UI, exports)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from tfregistry.models import AuditEntry, Organization

if TYPE_CHECKING:
    from tfregistry.auth import Identity


@dataclass(frozen=True)
class Actor:
    """Who did something and from where; the web layer builds it from the request."""

    name: str
    token_id: int | None = None
    organization_id: int | None = None
    ip: str | None = None
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: The actor for commands run on the server itself (``tfr token create``...).
CLI_ACTOR = Actor(name="cli")


def record(session: Session, actor: Actor, action: str, target: str = "", **details: Any) -> AuditEntry:
    """Add an audit entry to ``session``; it is committed with the change it describes."""
    entry = AuditEntry(
        actor=actor.name,
        token_id=actor.token_id,
        organization_id=actor.organization_id,
        action=action,
        target=target,
        details={k: v for k, v in details.items() if v is not None},
        ip=actor.ip,
        request_id=actor.request_id,
    )
    session.add(entry)
    return entry


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to read: ``GET /api/v1/audit``'s query, the web UI's filter form and its exports.

    ``organization_id`` is an organization the caller may read (checked by
    :func:`tfregistry.auth.require_audit_read`), ``None`` for every entry; ``action`` is an exact action
    or a prefix ending in ``.`` (``token.``); ``until`` is exclusive.
    """

    organization_id: int | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def filtered(filters: AuditFilter) -> Select:
    """The entries matching ``filters``, newest first."""
    stmt = select(AuditEntry)
    if filters.organization_id is not None:
        stmt = stmt.where(AuditEntry.organization_id == filters.organization_id)
    if filters.actor:
        stmt = stmt.where(AuditEntry.actor == filters.actor)
    if filters.action:
        action = filters.action
        stmt = stmt.where(AuditEntry.action.startswith(action, autoescape=True) if action.endswith(".")
                          else AuditEntry.action == action)
    if filters.since:
        stmt = stmt.where(AuditEntry.at >= filters.since)
    if filters.until:
        stmt = stmt.where(AuditEntry.at < filters.until)
    return stmt.order_by(AuditEntry.id.desc())


def entries_page(session: Session, filters: AuditFilter, offset: int, limit: int) -> tuple[list[AuditEntry], bool]:
    """One page of matching entries, newest first, and whether there are more after it."""
    rows = session.scalars(filtered(filters).offset(offset).limit(limit + 1)).all()
    return list(rows[:limit]), len(rows) > limit


def iter_entries(session: Session, filters: AuditFilter, batch: int = 500) -> Iterator[AuditEntry]:
    """Every matching entry, newest first, read ``batch`` rows at a time (by id, so entries written
    meanwhile neither repeat nor shift the rest): for exports of any size."""
    last_id: int | None = None
    while True:
        stmt = filtered(filters)
        if last_id is not None:
            stmt = stmt.where(AuditEntry.id < last_id)
        rows = session.scalars(stmt.limit(batch)).all()
        for row in rows:
            yield row
            session.expunge(row)  # keep memory flat over a long export
        if len(rows) < batch:
            return
        last_id = rows[-1].id


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """An entry as ``GET /api/v1/audit`` returns it."""
    return {"id": entry.id, "at": entry.at, "actor": entry.actor, "token_id": entry.token_id,
            "organization_id": entry.organization_id, "action": entry.action, "target": entry.target,
            "details": entry.details, "ip": entry.ip, "request_id": entry.request_id}


def organization_names(session: Session) -> dict[int, str]:
    """Organization id -> name, to show and export entries with their organization's name."""
    return {org_id: name for org_id, name in session.execute(select(Organization.id, Organization.name))}


#: Columns of the CSV export (``details`` as JSON); the JSON lines export has the same keys.
EXPORT_FIELDS = ("id", "at", "actor", "token_id", "organization_id", "organization", "action", "target",
                 "details", "ip", "request_id")


def export_record(entry: AuditEntry, org_names: dict[int, str]) -> dict[str, Any]:
    """An entry as the exports write it: the API's fields plus the organization's name, ``at`` in ISO 8601."""
    data = entry_json(entry)
    data["at"] = entry.at.isoformat()
    data["organization"] = org_names.get(entry.organization_id) if entry.organization_id is not None else None
    return {name: data[name] for name in EXPORT_FIELDS}


def export_lines(session: Session, filters: AuditFilter, fmt: str) -> Iterator[str]:
    """The matching entries as CSV (``fmt`` ``csv``, with a header row) or JSON lines (``jsonl``), a line
    at a time, newest first."""
    org_names = organization_names(session)
    if fmt == "jsonl":
        for entry in iter_entries(session, filters):
            yield json.dumps(export_record(entry, org_names), ensure_ascii=False, sort_keys=False) + "\n"
        return
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}")
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def row(values: Any) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield row(EXPORT_FIELDS)
    for entry in iter_entries(session, filters):
        data = export_record(entry, org_names)
        data["details"] = json.dumps(data["details"], ensure_ascii=False, sort_keys=True)
        yield row(["" if data[name] is None else data[name] for name in EXPORT_FIELDS])


def readable_organizations(session: Session, identity: Identity) -> list[Organization]:
    """The organizations whose entries ``identity`` may read (``audit:read`` there or registry-wide)."""
    everything = "audit:read" in identity.scopes_in(None)
    return [o for o in session.scalars(select(Organization).order_by(Organization.name))
            if everything or "audit:read" in identity.scopes_in(o.id)]
