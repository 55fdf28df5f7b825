"""``/api/v1``: trusted publishers of a namespace, and the exchange of a CI OIDC token for a publish token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import marshmallow as ma
from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import PUBLIC, api_error, errors, text
from tfregistry.models import Namespace, Organization, TrustedPublisher
from tfregistry.protocol import register_error_handlers
from tfregistry.services import NotFound
from tfregistry.services import trusted_publishing as svc
from tfregistry.services.audit import Actor, record
from tfregistry.web import current_registry

blp = Blueprint("api_trusted_publishing", __name__, url_prefix="/api/v1",
                description="Trusted publishing: keyless publishing from CI with the platform's OIDC token")
register_error_handlers(blp, api_error)


class PublisherSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    namespace = ma.fields.String(dump_only=True)
    platform = ma.fields.String(required=True, validate=ma.validate.OneOf(tuple(svc.PLATFORMS)), metadata={
        "description": "github, gitlab, azure-devops or oidc (any issuer)", "example": "github"})
    issuer = text(500, load_default=None, allow_none=True, metadata={
        "description": "The OIDC issuer; default for github and gitlab.com. Required for azure-devops "
                       "(https://vstoken.dev.azure.com/<organization id>), oidc and self-managed GitLab"})
    discovery_url = text(500, load_default=None, allow_none=True, metadata={
        "description": "The discovery document, when not {issuer}/.well-known/openid-configuration"})
    conditions = ma.fields.Dict(keys=ma.fields.String(),  # names checked by the service (a 400 naming the key)
                                values=ma.fields.String(validate=ma.validate.Length(1, 500)), load_default=dict,
                                metadata={"description": "Claim conditions, glob patterns (see docs/"
                                          "trusted-publishing.md)", "example": {"repository": "acme/infra",
                                                                              "ref": "refs/tags/v*"}})
    packages = ma.fields.List(ma.fields.String(validate=ma.validate.Length(1, 200)), required=True,
                              validate=ma.validate.Length(1, 100), metadata={
                                  "description": "What the minted token may publish: module:NAME/SYSTEM, "
                                                 "provider:TYPE (* and ? wildcards)",
                                  "example": ["module:network/aws"]})
    description = text(load_default="")
    created_by = ma.fields.String(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)


class ExchangeArgs(ma.Schema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(1, svc.MAX_TOKEN_LENGTH), metadata={
        "description": "The CI platform's OIDC token (a signed JWT)"})
    namespace = ma.fields.String(load_default=None, validate=ma.validate.Length(1, 64), metadata={
        "description": "The namespace to publish in: only its publishers are considered (needed when "
                       "publishers of several namespaces match the token)", "example": "acme"})


class ExchangedSchema(ma.Schema):
    token = ma.fields.String(metadata={"description": "The publish token; send it as Authorization: Bearer"})
    expires_at = ma.fields.DateTime()
    namespace = ma.fields.String()
    packages = ma.fields.List(ma.fields.String())
    publisher = ma.fields.Integer()


def publisher_json(publisher: TrustedPublisher) -> dict[str, Any]:
    return {"id": publisher.id, "namespace": publisher.namespace.name, "platform": publisher.platform,
            "issuer": publisher.issuer, "discovery_url": publisher.discovery_url,
            "conditions": publisher.conditions, "packages": publisher.packages,
            "description": publisher.description, "created_by": publisher.created_by,
            "created_at": publisher.created_at}


def managed_namespace(session: Session, ns: str) -> tuple[Namespace, Actor]:
    """The namespace, if the caller may manage its trusted publishers (``tokens:manage`` in its organization)."""
    identity, actor = auth.require_in_namespace(session, "tokens:manage", ns, create=False)
    namespace = auth.namespace_for(session, ns)
    if namespace.id is None:
        raise NotFound(f"namespace {ns!r} not found")
    return namespace, actor


def exchange_settings() -> svc.ExchangeSettings:
    settings = current_registry().settings
    return svc.ExchangeSettings(audience=settings["trusted_publishing.audience"],
                                token_ttl=timedelta(seconds=settings["trusted_publishing.token_ttl"]),
                                leeway=int(settings["trusted_publishing.leeway"]))


@blp.route("/namespaces/<ns>/trusted-publishers")
class Publishers(MethodView):
    @blp.response(200, PublisherSchema(many=True))
    def get(self, ns: str) -> Any:
        """The namespace's trusted publishers (``tokens:manage`` in its organization)."""
        with current_registry().db.session() as session:
            namespace, _ = managed_namespace(session, ns)
            return [publisher_json(p) for p in svc.list_publishers(session, namespace)]

    @blp.arguments(PublisherSchema)
    @blp.response(201, PublisherSchema)
    def post(self, args: dict[str, Any], ns: str) -> Any:
        """Register a trusted publisher: which CI identity may publish what in this namespace."""
        with current_registry().db.session() as session:
            namespace, actor = managed_namespace(session, ns)
            publisher = svc.add_publisher(session, actor, namespace, platform=args["platform"],
                                          conditions=args["conditions"], packages=args["packages"],
                                          issuer=args["issuer"], discovery_url=args["discovery_url"],
                                          description=args["description"])
            session.commit()
            return publisher_json(publisher)


@blp.route("/namespaces/<ns>/trusted-publishers/<id:publisher_id>")
class Publisher(MethodView):
    @blp.response(200, PublisherSchema)
    def get(self, ns: str, publisher_id: int) -> Any:
        """One trusted publisher."""
        with current_registry().db.session() as session:
            namespace, _ = managed_namespace(session, ns)
            return publisher_json(svc.get_publisher(session, namespace, publisher_id))

    @blp.response(204)
    def delete(self, ns: str, publisher_id: int) -> None:
        """Remove a trusted publisher; tokens it minted expire on their own (minutes)."""
        with current_registry().db.session() as session:
            namespace, actor = managed_namespace(session, ns)
            svc.remove_publisher(session, actor, svc.get_publisher(session, namespace, publisher_id))
            session.commit()


@blp.route("/trusted-publishing/token")
class Exchange(MethodView):
    @blp.arguments(ExchangeArgs)
    @blp.response(201, ExchangedSchema)
    @blp.doc(security=PUBLIC)
    @errors(blp, 403)
    def post(self, args: dict[str, Any]) -> Any:
        """Exchange a CI platform's OIDC token for a short-lived publish token (see docs/trusted-publishing.md).

        401 names the condition that failed (issuer, audience, expiry, replayed jti, signature, claims)."""
        registry = current_registry()
        actor = Actor(name="trusted-publishing", ip=request.remote_addr, request_id=g.get("request_id"))

        def organization_of(namespace: Namespace) -> Organization:
            org_id = auth.organization_of(session, namespace)
            return session.get(Organization, org_id)  # type: ignore[return-value]

        with registry.db.session() as session:
            try:
                result = svc.exchange(session, args["token"], exchange_settings(),
                                      registry.memo.setdefault("trusted_publishing_keys", {}), organization_of, actor,
                                      namespace=args["namespace"])
            except svc.Refused as exc:
                session.rollback()
                record(session, actor, "trusted_publishing.refused", reason=exc.message)
                session.commit()
                raise
            session.commit()
            return {"token": result.secret, "expires_at": result.token.expires_at,
                    "namespace": result.publisher.namespace.name, "packages": result.publisher.packages,
                    "publisher": result.publisher.id}
