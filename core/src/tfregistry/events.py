"""Events: what happened in the registry, told to listening plugins and to notification subscriptions.

One vocabulary (:data:`EVENTS`), one JSON schema per event (:func:`schema`, documented in
``docs/events.md``), and one way to raise an event: :func:`emit`.

``emit(session, ...)`` inside a unit of work waits for that session's transaction to commit: a
rolled-back publish tells nobody.  Once committed (or at once, when given the registry instead of a
session), the event goes to every ``tfr_event`` listener and one delivery job per matching
subscription is queued on the ``notify`` queue.  Nothing here sends anything: a slow or dead
target delays only its own delivery job, never the request that raised the event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from tfregistry.interfaces import Event
from tfregistry.models import utcnow

if TYPE_CHECKING:
    from tfregistry.registry import Registry
    from tfregistry.services.audit import Actor

log = logging.getLogger(__name__)

__all__ = ["EVENTS", "Event", "emit", "example", "schema"]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}

_MODULE = {"namespace": _STR, "name": _STR, "system": _STR, "version": _STR}
_PROVIDER = {"namespace": _STR, "type": _STR, "version": _STR, "hostname": _STR}

#: Each event's ``data`` properties (all required) and a one-line description.
EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "module.published": ("A module version was published.", {**_MODULE, "sha256": _STR, "size": _INT}),
    "module.deprecated": ("A module version was deprecated.", {**_MODULE, "reason": _NSTR}),
    "module.deleted": ("A module version was deleted.", _MODULE),
    "provider.published": ("A provider version was published.", {**_PROVIDER, "platforms": {
        "type": "array", "items": _STR}}),
    "provider.deprecated": ("A provider version was deprecated.", {**_PROVIDER, "reason": _NSTR}),
    "provider.deleted": ("A provider version was deleted.", _PROVIDER),
    "scm.tag_moved": ("A Git tag a published version came from now points at another commit.", {
        **_MODULE, "repository": _STR, "tag": _STR, "old_commit": _STR, "new_commit": _STR}),
    "mirror.sync_failed": ("A mirror sync ended with errors.", {
        "mirror_id": _INT, "run_id": _INT, "upstream_host": _STR, "namespace": _STR, "type": _STR,
        "status": _STR, "errors": {"type": "array", "items": _STR}}),
    "mirror.sync_succeeded": ("A mirror sync ended without errors.", {
        "mirror_id": _INT, "run_id": _INT, "upstream_host": _STR, "namespace": _STR, "type": _STR,
        "versions": _INT, "packages": _INT, "bytes": _INT}),
    "mirror.request_pending": ("A mirror was requested and waits for a mirror manager's decision.", {
        "mirror_id": _INT, "upstream_host": _STR, "namespace": _STR, "type": _STR, "requested_by": _STR}),
    "token.expiring": ("An API token expires within the notice window.", {
        "token_id": _INT, "name": _STR, "kind": _STR, "expires_at": _TIME, "days": _INT}),
    "gpg_key.expiring": ("A namespace signing key expires within the notice window.", {
        "key_id": _STR, "fingerprint": _STR, "expires_at": _TIME, "days": _INT}),
    "job.failed": ("A background job failed for good (no retries left).", {
        "job_id": _STR, "job": _STR, "queue": _STR, "error": _STR}),
    "user.disabled": ("A user was disabled.", {"user_id": _INT, "email": _NSTR, "name": _STR}),
    "notification.test": ("A test notification sent on request (tfr notify test).", {"message": _STR}),
}

_EXAMPLE_VALUES: dict[str, Any] = {
    "namespace": "acme", "name": "network", "system": "aws", "version": "1.2.0", "type": "dns", "hostname": "",
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "size": 2048,
    "reason": "use 2.x", "platforms": ["linux_amd64", "darwin_arm64"], "repository": "https://git.example.com/acme/net",
    "tag": "v1.2.0", "old_commit": "3b18e512dba79e4c8300dd08aeb37f8e728b8dad",
    "new_commit": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "mirror_id": 4, "run_id": 17,
    "upstream_host": "registry.terraform.io", "status": "failed", "errors": ["1.2.0: upstream answered 502"],
    "versions": 2, "packages": 6, "bytes": 73400320, "requested_by": "alice@example.com", "token_id": 12,
    "kind": "service", "expires_at": "2027-01-03T00:00:00+00:00", "days": 30, "key_id": "34365D9472D7468F",
    "fingerprint": "B5E1DF7A2F9E2D8C9A1A0B0F34365D9472D7468F", "job_id": "5d3c6a3e1b2f4c0e9a8b7c6d5e4f3a2b",
    "job": "tfregistry.jobs:mirror_sync", "queue": "mirror", "error": "UpstreamError: connection refused",
    "user_id": 7, "email": "bob@example.com", "message": "test notification from tfr notify test",
}


def schema(event_type: str) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of the delivered JSON of ``event_type`` (:meth:`Event.to_dict`)."""
    description, properties = EVENTS[event_type]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://tfregistry.dev/schemas/events/{event_type}.json",
        "title": event_type,
        "description": description,
        "type": "object",
        "required": ["id", "type", "time", "organization", "namespace", "actor", "request_id", "data"],
        "additionalProperties": False,
        "properties": {
            "id": _STR,
            "type": {"const": event_type},
            "time": _TIME,
            "organization": _NSTR,
            "namespace": _NSTR,
            "actor": _STR,
            "request_id": _NSTR,
            "data": {"type": "object", "required": sorted(properties), "additionalProperties": False,
                     "properties": properties},
        },
    }


def example(event_type: str) -> dict[str, Any]:
    """An example of ``event_type`` as delivered (the same values as docs/events.md)."""
    _, properties = EVENTS[event_type]
    return {"id": "evt_2b1f0c9e8d7a4b6c9e0f1a2b3c4d5e6f", "type": event_type, "time": "2026-12-04T10:30:00+00:00",
            "organization": "acme-corp", "namespace": "acme", "actor": "alice@example.com",
            "request_id": "8a1c3f7e-5b2d-4e9a-b6c4-0d1e2f3a4b5c",
            "data": {key: _EXAMPLE_VALUES[key] for key in properties}}


def request_id() -> str | None:
    """The current HTTP request's id (:func:`tfregistry.web.current_request_id`), or ``None`` outside one."""
    from tfregistry.web import current_request_id

    return current_request_id()


_PENDING = "tfr_pending_events"


def emit(target: Session | Registry, event_type: str, *, data: Mapping[str, Any], actor: Actor | str | None = None,
         namespace: str | None = None, organization: str | None = None) -> Event:
    """Raise event ``event_type``.

    :param target: a session whose transaction the event belongs to (it is sent after that transaction
        commits, and dropped if it rolls back), or the registry, to send it now.  Sessions of a running
        registry know it; in a session of a bare database (a ``tfr`` command) the event is logged, not sent.
    :param data: the event's properties (see :data:`EVENTS`); checked against its schema's property names.
    :param actor: who caused it (an audit :class:`~tfregistry.services.audit.Actor` or a name).
    :param namespace: the namespace it concerns; the organization is looked up from it when not given.
    :param organization: the organization it concerns (name).
    """
    if event_type not in EVENTS:
        raise ValueError(f"unknown event {event_type!r} (known: {', '.join(EVENTS)})")
    wanted = set(EVENTS[event_type][1])
    if set(data) != wanted:
        raise ValueError(f"event {event_type}: data must have exactly {sorted(wanted)}, got {sorted(data)}")
    actor_name = actor if isinstance(actor, str) else (actor.name if actor is not None else "system")
    rid = (None if isinstance(actor, str) or actor is None else actor.request_id) or request_id()
    ev = Event(id="evt_" + uuid.uuid4().hex, type=event_type, time=utcnow(), organization=organization,
               namespace=namespace, actor=actor_name, request_id=rid, data=dict(data))
    if isinstance(target, Session):
        if target.info.get("tfr_registry") is None:
            # a `tfr` command working on the database alone: no plugins, no job queue to deliver with
            log.warning("event %s (%s) not sent: raised outside the registry application", event_type, namespace)
            return ev
        target.info.setdefault(_PENDING, []).append(ev)
    else:
        dispatch(target, [ev])
    return ev


def install(registry: Registry) -> None:
    """Make the registry's sessions know it, and send their events when they commit."""
    registry.db.sessionmaker.configure(info={"tfr_registry": registry})
    sa_event.listen(registry.db.sessionmaker, "after_commit", _after_commit)
    sa_event.listen(registry.db.sessionmaker, "after_soft_rollback", _after_rollback)


def _after_commit(session: Session) -> None:
    events = session.info.pop(_PENDING, None)
    if events:
        dispatch(session.info["tfr_registry"], events)


def _after_rollback(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outermost transaction: its events never happened
        session.info.pop(_PENDING, None)


def dispatch(registry: Registry, events: list[Event]) -> None:
    """Tell ``tfr_event`` listeners, then queue one delivery per matching subscription.

    Never raises: a failing listener or a database hiccup here is logged, and must not turn a
    committed publish into an error answer.
    """
    from tfregistry.services import notifications

    for ev in events:
        try:
            notifications.resolve_organization(registry, ev)
        except Exception:
            log.exception("event %s: could not look up the organization of namespace %s", ev.id, ev.namespace)
        for impl in registry.hooks.tfr_event.get_hookimpls():
            try:
                kwargs = {"registry": registry, "event": ev}
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                log.exception("tfr_event listener %s failed on %s %s", impl.plugin_name, ev.type, ev.id)
        try:
            notifications.queue_deliveries(registry, ev)
        except Exception:
            log.exception("event %s %s: could not queue its deliveries", ev.type, ev.id)
