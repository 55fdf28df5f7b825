"""The append-only audit log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tfregistry.models import AuditEntry


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
