"""Notification subscriptions and their deliveries: who is told what, the delivery job, the delivery log
with its dead letters, and the expiry notices (tokens and signing keys).

A delivery is one (event, subscription) pair with a stable id (``msg_...``, the Standard Webhooks
``webhook-id``).  Its job (:func:`deliver`, on the ``notify`` queue) counts attempts in the database:
after ``notify.max_attempts`` failures, or one permanent failure, the delivery is ``dead`` (the
dead-letter list) until someone redelivers it.  A worker that dies mid-delivery leaves it ``pending``;
:func:`requeue_pending` (a periodic job) queues it again, with the same id.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tfregistry import gpg
from tfregistry.events import EVENTS, emit
from tfregistry.interfaces import Delivery, DeliveryError, Event
from tfregistry.models import (
    ApiToken,
    ExpiryNotice,
    GpgKey,
    Namespace,
    NotificationDelivery,
    NotificationSubscription,
    Organization,
    utcnow,
)
from tfregistry.services import NotFound, ServiceError
from tfregistry.services.audit import Actor, record
from tfregistry.services.gpgkeys import encryption_key

if TYPE_CHECKING:
    from tfregistry.registry import Registry

log = logging.getLogger(__name__)

#: Encryption purpose (HKDF info) of subscriptions' secret target settings.
NOTIFY_SECRETS = b"tfregistry notification target secrets"
#: What a secret target setting looks like when shown.
MASK = "********"
STATUSES = ("pending", "delivered", "dead")
DELIVER_JOB = "tfregistry.jobs:deliver_notification"


def _key(registry: Registry) -> bytes:
    return encryption_key(registry.settings["gpg.encryption_key"], registry.secret_key)


def notifier_of(registry: Registry, name: str) -> Any:
    """The installed notifier ``name``, or a :class:`ServiceError` naming the installed ones."""
    try:
        return registry.notifiers[name]
    except KeyError:
        offered = ", ".join(sorted(registry.notifiers)) or "none: install tfregistry-notify-webhook or -smtp"
        raise ServiceError(f"no notifier {name!r} is installed (installed: {offered})") from None


# --- subscriptions ---------------------------------------------------------------------------------


def _check_events(events: list[str]) -> list[str]:
    if not events:
        raise ServiceError("choose at least one event (or '*' for all)")
    unknown = [e for e in events if e != "*" and e not in EVENTS]
    if unknown:
        raise ServiceError(f"unknown events: {', '.join(unknown)} (known: {', '.join(EVENTS)})")
    return sorted(set(events))


def _set_target(registry: Registry, sub: NotificationSubscription, target: dict[str, Any]) -> None:
    """Validate ``target`` with the notifier and store it, its secret fields encrypted.  A secret field
    left out (or sent back masked) keeps its stored value."""
    notifier = notifier_of(registry, sub.notifier)
    old = secret_target(registry, sub) if sub.secrets_encrypted else {}
    merged = {k: v for k, v in target.items() if not (k in notifier.secret_fields and v == MASK)}
    for name in notifier.secret_fields:
        if name not in merged and name in old:
            merged[name] = old[name]
    try:
        clean = notifier.validate(dict(merged))
    except ValueError as exc:
        raise ServiceError(f"target settings for notifier {sub.notifier!r}: {exc}") from None
    secrets = {k: v for k, v in clean.items() if k in notifier.secret_fields}
    sub.target = {k: v for k, v in clean.items() if k not in notifier.secret_fields}
    sub.secrets_encrypted = gpg.encrypt_secret(json.dumps(secrets), _key(registry), NOTIFY_SECRETS) if secrets \
        else None


def secret_target(registry: Registry, sub: NotificationSubscription) -> dict[str, Any]:
    """The subscription's full target settings, secrets decrypted (for notifiers only: never show them)."""
    secrets = json.loads(gpg.decrypt_secret(sub.secrets_encrypted, _key(registry), NOTIFY_SECRETS)) \
        if sub.secrets_encrypted else {}
    return {**sub.target, **secrets}


def shown_target(registry: Registry, sub: NotificationSubscription) -> dict[str, Any]:
    """The target settings as the API and the CLI show them: secret fields masked."""
    notifier = registry.notifiers.get(sub.notifier)
    fields = notifier.secret_fields if notifier is not None else ()
    return {**sub.target, **{name: MASK for name in fields if sub.secrets_encrypted}}


def create_subscription(session: Session, registry: Registry, actor: Actor, *, name: str,
                        organization: Organization | None, events: list[str], notifier: str,
                        target: dict[str, Any], namespace: str | None = None,
                        enabled: bool = True) -> NotificationSubscription:
    """Subscribe ``organization`` (``None``: site-wide) to ``events``; the caller checked permissions
    and commits.  Audited as ``notify.subscribe``."""
    if not name.strip():
        raise ServiceError("a subscription needs a name")
    sub = NotificationSubscription(name=name.strip(), organization_id=organization.id if organization else None,
                                   events=_check_events(events), namespace=namespace or None, notifier=notifier,
                                   enabled=enabled, created_by=actor.name)
    _check_namespace(session, sub)
    _set_target(registry, sub, target)
    session.add(sub)
    session.flush()
    record(session, actor, "notify.subscribe", f"subscription:{sub.id}", notifier=notifier, events=sub.events)
    return sub


def _check_namespace(session: Session, sub: NotificationSubscription) -> None:
    if sub.namespace is None or sub.organization_id is None:
        return
    ns = session.scalar(select(Namespace).where(Namespace.name == sub.namespace))
    if ns is not None and ns.organization_id not in (None, sub.organization_id):
        raise ServiceError(f"namespace {sub.namespace!r} does not belong to this subscription's organization")


def update_subscription(session: Session, registry: Registry, actor: Actor, sub: NotificationSubscription,
                        changes: dict[str, Any]) -> NotificationSubscription:
    """Change ``name``, ``events``, ``namespace``, ``enabled`` or ``target``; the caller commits."""
    if "name" in changes:
        if not changes["name"].strip():
            raise ServiceError("a subscription needs a name")
        sub.name = changes["name"].strip()
    if "events" in changes:
        sub.events = _check_events(changes["events"])
    if "namespace" in changes:
        sub.namespace = changes["namespace"] or None
        _check_namespace(session, sub)
    if "enabled" in changes:
        sub.enabled = bool(changes["enabled"])
    if "target" in changes:
        _set_target(registry, sub, changes["target"])
    record(session, actor, "notify.update", f"subscription:{sub.id}", changed=sorted(changes))
    return sub


def delete_subscription(session: Session, actor: Actor, sub: NotificationSubscription) -> None:
    """Remove a subscription and its delivery log; the caller commits."""
    record(session, actor, "notify.unsubscribe", f"subscription:{sub.id}", name=sub.name)
    session.delete(sub)


def get_subscription(session: Session, sub_id: int, organization_ids: set[int | None] | None) -> \
        NotificationSubscription:
    """One subscription among those of ``organization_ids`` (``None``: any); others are "not found"."""
    sub = session.get(NotificationSubscription, sub_id)
    if sub is None or (organization_ids is not None and sub.organization_id not in organization_ids):
        raise NotFound(f"subscription {sub_id} not found")
    return sub


def list_subscriptions(session: Session, organization_ids: set[int | None] | None) -> list[NotificationSubscription]:
    """Subscriptions of ``organization_ids`` (``None`` in the set: site-wide ones; ``None``: all), oldest first."""
    stmt = select(NotificationSubscription).order_by(NotificationSubscription.id)
    if organization_ids is not None:
        ids = [i for i in organization_ids if i is not None]
        cond = [NotificationSubscription.organization_id.in_(ids)]
        if None in organization_ids:
            cond.append(NotificationSubscription.organization_id.is_(None))
        stmt = stmt.where(or_(*cond))
    return list(session.scalars(stmt))


# --- from event to deliveries ----------------------------------------------------------------------


def resolve_organization(registry: Registry, event: Event) -> Event:
    """``event`` with its organization filled in from its namespace, when it has one and no organization."""
    if event.organization is not None or event.namespace is None:
        return event
    with registry.db.session() as session:
        name = session.scalar(select(Organization.name).join(Namespace, Namespace.organization_id == Organization.id)
                              .where(Namespace.name == event.namespace))
    return dataclasses.replace(event, organization=name) if name else event


def matches(sub: NotificationSubscription, event: Event) -> bool:
    """Whether ``sub`` wants ``event``: the event chosen, the namespace filter, and the organization
    (site-wide subscriptions see every organization's events)."""
    if not sub.enabled or not ("*" in sub.events or event.type in sub.events):
        return False
    if sub.namespace is not None and sub.namespace != event.namespace:
        return False
    if sub.organization_id is None:
        return True
    return sub.organization is not None and sub.organization.name == event.organization


def queue_deliveries(registry: Registry, event: Event) -> list[str]:
    """Record and queue one delivery per subscription that wants ``event``; returns the delivery ids."""
    with registry.db.session() as session:
        subs = [s for s in session.scalars(select(NotificationSubscription).where(
            NotificationSubscription.enabled.is_(True))) if matches(s, event)]
        ids = []
        for sub in subs:
            delivery = NotificationDelivery(id="msg_" + uuid.uuid4().hex, subscription_id=sub.id, event_id=event.id,
                                            event_type=event.type, event=event.to_dict(), status="pending",
                                            attempts=0)
            session.add(delivery)
            ids.append(delivery.id)
        session.commit()
    for delivery_id in ids:
        enqueue(registry, delivery_id)
    return ids


def enqueue(registry: Registry, delivery_id: str) -> None:
    """Queue the job of one delivery (idempotent: one pending job per delivery)."""
    registry.jobs.enqueue(DELIVER_JOB, delivery_id, queue="notify", job_id=f"notify-{delivery_id}",
                          retries=max(0, registry.settings["notify.max_attempts"] - 1),
                          backoff_base=registry.settings["notify.backoff_seconds"])


class DeliveryFailed(Exception):
    """Raised by the delivery job so the queue retries it (the reason is in the delivery log)."""


def record_outcome(registry: Registry, notifier: str, event_type: str, outcome: str) -> None:
    """Log and observe (``notification_delivery``) one delivery attempt's outcome (``delivered``,
    ``failed``: to be retried, ``dead``: no retries left)."""
    log.info("notification %s via %s: %s", event_type, notifier, outcome)
    if registry.observe.active:
        registry.observe("notification_delivery", notifier=notifier, outcome=outcome)


def deliver(registry: Registry, delivery_id: str) -> str:
    """Job: one attempt at one delivery; returns its status.  Raises :class:`DeliveryFailed` to be retried."""
    max_attempts = registry.settings["notify.max_attempts"]
    with registry.db.session() as session:
        delivery = session.get(NotificationDelivery, delivery_id)
        if delivery is None or delivery.status != "pending":
            return delivery.status if delivery is not None else "gone"
        sub = session.get(NotificationSubscription, delivery.subscription_id)
        if delivery.attempts >= max_attempts:
            delivery.status = "dead"
            session.commit()
            return "dead"
        delivery.attempts += 1
        delivery.last_attempt_at = utcnow()
        session.commit()  # the attempt counts even if this worker dies during it
        error, permanent = None, False
        try:
            notifier = notifier_of(registry, sub.notifier)
            notifier.send(Delivery(delivery.id, delivery.attempts, Event.from_dict(delivery.event),
                                   secret_target(registry, sub), registry.settings["public_url"]))
        except DeliveryError as exc:
            error, permanent = str(exc), exc.permanent
        except ServiceError as exc:
            error = exc.message
        except Exception as exc:  # a notifier's bug: its message might hold a target secret, so not kept
            error = f"unexpected {type(exc).__name__} in notifier {sub.notifier!r}; see the worker log"
            log.error("delivery %s: notifier %s raised %s", delivery.id, sub.notifier, type(exc).__name__)
        if error is None:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", utcnow(), None
        else:
            delivery.last_error = error[:2000]
            if permanent or delivery.attempts >= max_attempts:
                delivery.status = "dead"
        session.commit()
        outcome = "delivered" if error is None else ("dead" if delivery.status == "dead" else "failed")
        record_outcome(registry, sub.notifier, delivery.event_type, outcome)
        if outcome == "failed":
            raise DeliveryFailed(f"delivery {delivery.id} attempt {delivery.attempts} failed: {error}")
        return delivery.status


def list_deliveries(session: Session, organization_ids: set[int | None] | None, *, status: str | None = None,
                    subscription_id: int | None = None, limit: int = 100) -> list[NotificationDelivery]:
    """The delivery log, newest first: of the subscriptions of ``organization_ids`` (``None``: all)."""
    subs = [s.id for s in list_subscriptions(session, organization_ids)]
    stmt = select(NotificationDelivery).where(NotificationDelivery.subscription_id.in_(subs))
    if status:
        stmt = stmt.where(NotificationDelivery.status == status)
    if subscription_id is not None:
        stmt = stmt.where(NotificationDelivery.subscription_id == subscription_id)
    return list(session.scalars(stmt.order_by(NotificationDelivery.created_at.desc()).limit(limit)))


def redeliver(registry: Registry, session: Session, actor: Actor, delivery: NotificationDelivery) -> None:
    """Send a dead delivery again (same id, attempts counted afresh); commits and queues it."""
    if delivery.status != "dead":
        raise ServiceError(f"delivery {delivery.id} is {delivery.status}; only dead deliveries can be redelivered",
                           status=409)
    delivery.status, delivery.attempts = "pending", 0
    record(session, actor, "notify.redeliver", f"delivery:{delivery.id}")
    session.commit()
    enqueue(registry, delivery.id)


def requeue_pending(registry: Registry, older_than: timedelta) -> list[str]:
    """Queue again every pending delivery not attempted for ``older_than`` (its worker died, or the
    in-process queue was lost with its process); the queue skips those still queued or scheduled."""
    cutoff = utcnow() - older_than
    with registry.db.session() as session:
        ids = list(session.scalars(select(NotificationDelivery.id).where(
            NotificationDelivery.status == "pending",
            or_(NotificationDelivery.last_attempt_at < cutoff,
                NotificationDelivery.last_attempt_at.is_(None) & (NotificationDelivery.created_at < cutoff)))))
    for delivery_id in ids:
        enqueue(registry, delivery_id)
    return ids


def send_test(registry: Registry, sub: NotificationSubscription, actor: Actor) -> str | None:
    """Send a ``notification.test`` event to this subscription's target now, outside the queue; returns
    ``None`` on success or the error.  Not recorded in the delivery log."""
    event = Event("evt_" + uuid.uuid4().hex, "notification.test", utcnow(),
                  sub.organization.name if sub.organization else None, sub.namespace, actor.name, actor.request_id,
                  {"message": f"test notification for subscription {sub.id} ({sub.name})"})
    try:
        notifier_of(registry, sub.notifier).send(
            Delivery("msg_" + uuid.uuid4().hex, 1, event, secret_target(registry, sub),
                     registry.settings["public_url"]))
    except DeliveryError as exc:
        return str(exc)
    except ServiceError as exc:
        return exc.message
    except Exception as exc:
        log.error("test notification: notifier %s raised %s", sub.notifier, type(exc).__name__)
        return f"unexpected {type(exc).__name__} in notifier {sub.notifier!r}; see the server log"
    return None


# --- expiry notices --------------------------------------------------------------------------------


def expiry_notices(registry: Registry) -> list[str]:
    """Raise ``token.expiring`` and ``gpg_key.expiring`` once per item and window of ``notify.expiry_days``
    (the smallest window the item is in; an item first seen late gets only that one).  Returns the
    items noticed now, as ``item:days``."""
    windows = sorted({int(d) for d in registry.settings["notify.expiry_days"] if int(d) > 0})
    if not windows:
        return []
    now, done = utcnow(), []
    with registry.db.session() as session:
        horizon = now + timedelta(days=windows[-1])
        tokens = session.scalars(select(ApiToken).where(ApiToken.revoked_at.is_(None), ApiToken.expires_at.is_not(None),
                                                        ApiToken.expires_at > now, ApiToken.expires_at <= horizon))
        keys = session.scalars(select(GpgKey).where(GpgKey.revoked_at.is_(None), GpgKey.expires_at.is_not(None),
                                                    GpgKey.expires_at > now, GpgKey.expires_at <= horizon))
        for obj in [*tokens, *keys]:
            left = obj.expires_at - now
            days = next(d for d in windows if left <= timedelta(days=d))
            item = f"token:{obj.id}" if isinstance(obj, ApiToken) else f"gpg_key:{obj.fingerprint}"
            if session.scalar(select(ExpiryNotice.id).where(ExpiryNotice.item == item, ExpiryNotice.window_days == days,
                                                            ExpiryNotice.expires_at == obj.expires_at)):
                continue
            session.add(ExpiryNotice(item=item, window_days=days, expires_at=obj.expires_at))
            if isinstance(obj, ApiToken):
                org = session.get(Organization, obj.organization_id) if obj.organization_id else None
                emit(session, "token.expiring", actor="scheduler", namespace=obj.namespace,
                     organization=org.name if org else None,
                     data={"token_id": obj.id, "name": obj.name, "kind": obj.kind,
                           "expires_at": obj.expires_at.isoformat(), "days": days})
            else:
                emit(session, "gpg_key.expiring", actor="scheduler", namespace=obj.namespace.name,
                     data={"key_id": obj.key_id, "fingerprint": obj.fingerprint,
                           "expires_at": obj.expires_at.isoformat(), "days": days})
            try:
                session.commit()  # one item at a time: its event goes out with its record, or neither
            except IntegrityError:  # another scheduler noticed it at the same moment
                session.rollback()
                continue
            done.append(f"{item}:{days}")
    return done
