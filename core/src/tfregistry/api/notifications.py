"""``/api/v1/notifications``: subscriptions (who is told which events, through which notifier), test
notifications, the delivery log and its dead letters.

An organization's subscriptions are managed by holders of ``orgs:manage`` in it; site-wide ones (no
organization: every organization's events, plus the site's own such as mirror syncs and failed jobs)
by holders of ``orgs:manage`` registry-wide (site administrators).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import MAX_ID, api_error, errors, flag, text
from tfregistry.events import EVENTS, schema
from tfregistry.models import NotificationDelivery, NotificationSubscription
from tfregistry.protocol import register_error_handlers
from tfregistry.services import NotFound
from tfregistry.services import notifications as svc
from tfregistry.services.identity import visible_organization
from tfregistry.web import current_registry

blp = Blueprint("api_notifications", __name__, url_prefix="/api/v1/notifications",
                description="Event notifications: subscriptions, deliveries, dead letters")
register_error_handlers(blp, api_error)

SCOPE = "orgs:manage"


class SubscriptionArgs(ma.Schema):
    name = text(200, required=True, metadata={"example": "releases to #platform"})
    organization = text(64, load_default=None, allow_none=True,
                        metadata={"description": "Organization name; null for a site-wide subscription"})
    events = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf([*EVENTS, "*"])), required=True,
                            validate=ma.validate.Length(1, len(EVENTS) + 1),
                            metadata={"example": ["module.published", "provider.published"]})
    namespace = text(64, load_default=None, allow_none=True, metadata={"description": "Only this namespace's events"})
    notifier = text(64, required=True, metadata={"example": "webhook"})
    target = ma.fields.Dict(keys=ma.fields.String(), required=True,
                            metadata={"description": "The notifier's settings (see docs/operations.md); secret "
                                      "ones are stored encrypted and shown as ********",
                                      "example": {"url": "https://hooks.example.com/tfr", "secret": "whsec_..."}})
    enabled = flag(load_default=True)


class SubscriptionChanges(ma.Schema):
    name = text(200)
    events = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf([*EVENTS, "*"])),
                            validate=ma.validate.Length(1, len(EVENTS) + 1))
    namespace = text(64, allow_none=True)
    target = ma.fields.Dict(keys=ma.fields.String(), metadata={
        "description": "Replaces the target settings; a secret setting left out or sent as ******** is kept"})
    enabled = flag()


class SubscriptionSchema(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    organization = ma.fields.String(allow_none=True)
    events = ma.fields.List(ma.fields.String())
    namespace = ma.fields.String(allow_none=True)
    notifier = ma.fields.String()
    target = ma.fields.Dict()
    enabled = ma.fields.Boolean()
    created_by = ma.fields.String()
    created_at = ma.fields.DateTime()


class NotificationDeliverySchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "Stable across retries: the webhook-id"})
    subscription_id = ma.fields.Integer()
    event_id = ma.fields.String()
    event_type = ma.fields.String()
    status = ma.fields.String(metadata={"description": "pending, delivered or dead (the dead-letter list)"})
    attempts = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    last_attempt_at = ma.fields.DateTime(allow_none=True)
    delivered_at = ma.fields.DateTime(allow_none=True)


class DeliveryQuery(ma.Schema):
    status = ma.fields.String(validate=ma.validate.OneOf(svc.STATUSES))
    subscription = ma.fields.Integer(validate=ma.validate.Range(min=1, max=MAX_ID))
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, 1000))


class TestResult(ma.Schema):
    delivered = ma.fields.Boolean()
    error = ma.fields.String(allow_none=True)


def managed_organizations(identity: auth.Identity) -> set[int | None] | None:
    """The organizations whose subscriptions ``identity`` manages: ``None`` for all (and site-wide ones)."""
    if identity.anonymous:
        raise auth.Unauthenticated("authentication required: send a registry token or sign in")
    if SCOPE in identity.scopes_in(None):
        return None
    return {oid for oid in {*identity.roles, identity.organization_id} - {None} if SCOPE in identity.scopes_in(oid)}


def _caller(session: Session) -> tuple[auth.Identity, set[int | None] | None]:
    identity = auth.current_identity(session)
    orgs = managed_organizations(identity)
    if orgs is not None and not orgs:
        raise auth.PermissionDenied(f"{auth.describe(identity)} may not {auth.ACTION_WORDS[SCOPE]} anywhere")
    return identity, orgs


def subscription_json(sub: NotificationSubscription) -> dict[str, Any]:
    return {"id": sub.id, "name": sub.name, "organization": sub.organization.name if sub.organization else None,
            "events": sub.events, "namespace": sub.namespace, "notifier": sub.notifier,
            "target": svc.shown_target(current_registry(), sub), "enabled": sub.enabled,
            "created_by": sub.created_by, "created_at": sub.created_at}


def _delivery_json(d: NotificationDelivery) -> dict[str, Any]:
    return {c.name: getattr(d, c.name) for c in NotificationDelivery.__table__.columns if c.name != "event"}


@blp.route("/events")
class Events(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """The event vocabulary: each event's JSON schema (also in docs/events.md)."""
        with current_registry().db.session() as session:
            _caller(session)
        return {name: schema(name) for name in EVENTS}


@blp.route("/notifiers")
class Notifiers(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """Installed notifiers and their secret target settings."""
        with current_registry().db.session() as session:
            _caller(session)
        return [{"name": name, "secret_fields": list(n.secret_fields)}
                for name, n in sorted(current_registry().notifiers.items())]


@blp.route("/subscriptions")
class Subscriptions(MethodView):
    @blp.response(200, SubscriptionSchema(many=True))
    def get(self) -> Any:
        """Subscriptions the caller manages."""
        with current_registry().db.session() as session:
            _, orgs = _caller(session)
            return [subscription_json(s) for s in svc.list_subscriptions(session, orgs)]

    @blp.arguments(SubscriptionArgs)
    @blp.response(201, SubscriptionSchema)
    def post(self, args: dict[str, Any]) -> Any:
        """Subscribe an organization (``orgs:manage`` in it) or the whole site (``orgs:manage`` registry-wide)."""
        with current_registry().db.session() as session:
            identity, _ = _caller(session)
            org = visible_organization(session, identity, args["organization"]) if args["organization"] else None
            auth.require_scope(identity, SCOPE, org)
            sub = svc.create_subscription(
                session, current_registry(), auth.request_actor(identity, org.id if org else None),
                name=args["name"], organization=org, events=args["events"], notifier=args["notifier"],
                target=args["target"], namespace=args["namespace"], enabled=args["enabled"])
            session.commit()
            return subscription_json(sub)


@blp.route("/subscriptions/<id:sub_id>")
class Subscription(MethodView):
    @blp.response(200, SubscriptionSchema)
    def get(self, sub_id: int) -> Any:
        with current_registry().db.session() as session:
            _, orgs = _caller(session)
            return subscription_json(svc.get_subscription(session, sub_id, orgs))

    @blp.arguments(SubscriptionChanges)
    @blp.response(200, SubscriptionSchema)
    def patch(self, changes: dict[str, Any], sub_id: int) -> Any:
        """Change a subscription (only the fields sent)."""
        with current_registry().db.session() as session:
            identity, orgs = _caller(session)
            sub = svc.get_subscription(session, sub_id, orgs)
            svc.update_subscription(session, current_registry(), auth.request_actor(identity, sub.organization_id),
                                    sub, changes)
            session.commit()
            return subscription_json(sub)

    @blp.response(204)
    def delete(self, sub_id: int) -> None:
        """Delete a subscription and its delivery log."""
        with current_registry().db.session() as session:
            identity, orgs = _caller(session)
            sub = svc.get_subscription(session, sub_id, orgs)
            svc.delete_subscription(session, auth.request_actor(identity, sub.organization_id), sub)
            session.commit()


@blp.route("/subscriptions/<id:sub_id>/test")
class SubscriptionTest(MethodView):
    @blp.response(200, TestResult)
    def post(self, sub_id: int) -> Any:
        """Send a ``notification.test`` event to the subscription's target now; answers whether it arrived."""
        with current_registry().db.session() as session:
            identity, orgs = _caller(session)
            sub = svc.get_subscription(session, sub_id, orgs)
            error = svc.send_test(current_registry(), sub, auth.request_actor(identity, sub.organization_id))
            return {"delivered": error is None, "error": error}


@blp.route("/deliveries")
class Deliveries(MethodView):
    @blp.arguments(DeliveryQuery, location="query")
    @blp.response(200, NotificationDeliverySchema(many=True))
    def get(self, query: dict[str, Any]) -> Any:
        """The delivery log, newest first; ``?status=dead`` for the dead-letter list."""
        with current_registry().db.session() as session:
            _, orgs = _caller(session)
            return [_delivery_json(d) for d in svc.list_deliveries(
                session, orgs, status=query.get("status"), subscription_id=query.get("subscription"),
                limit=query["limit"])]


@blp.route("/deliveries/<delivery_id>/redeliver")
class Redeliver(MethodView):
    @blp.response(202, NotificationDeliverySchema)
    @errors(blp, 409)
    def post(self, delivery_id: str) -> Any:
        """Queue a dead delivery again, with the same id (its attempts start again from zero)."""
        with current_registry().db.session() as session:
            identity, orgs = _caller(session)
            delivery = session.get(NotificationDelivery, delivery_id)
            if delivery is None:
                raise NotFound(f"delivery {delivery_id} not found")
            sub = svc.get_subscription(session, delivery.subscription_id, orgs)
            svc.redeliver(current_registry(), session, auth.request_actor(identity, sub.organization_id), delivery)
            return _delivery_json(delivery)
