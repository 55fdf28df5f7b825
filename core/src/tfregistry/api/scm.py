"""``/api/v1/scm``: publishing modules from source control (connections, links, webhooks, violations)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import flash, redirect, request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import MAX_ID, PUBLIC, api_error, errors, module_name, pattern, text
from tfregistry.api import MODULE_SYSTEM as SYSTEM
from tfregistry.api.providers import encryption_key
from tfregistry.auth import Identity
from tfregistry.models import ModuleVersion, Namespace, Organization, ScmConnection, ScmDelivery, ScmLink, ScmViolation
from tfregistry.protocol import register_error_handlers
from tfregistry.services import NotFound, ServiceError, scm
from tfregistry.services import modules as modules_svc
from tfregistry.services.identity import get_organization
from tfregistry.services.modules import archive_limits
from tfregistry.web import current_registry

blp = Blueprint("api_scm", __name__, url_prefix="/api/v1/scm", description="Publishing modules from source control")
register_error_handlers(blp, api_error)

#: Largest webhook body accepted (GitHub caps payloads at 25 MB; tag events are a few KB).
MAX_WEBHOOK_BODY = 1024 * 1024


class ConnectionArgs(ma.Schema):
    organization = text(64, load_default=None, allow_none=True,
                        metadata={"description": "Owning organization (default: the caller's only one)"})
    name = ma.fields.String(required=True, validate=[ma.validate.Length(1, 64), pattern(r"^[A-Za-z0-9._-]+$")],
                            metadata={"example": "github"})
    provider = ma.fields.String(required=True, validate=ma.validate.Length(1, 64),
                                metadata={"description": "An installed SCM provider: see GET /api/v1/scm/providers",
                                          "example": "github"})
    auth_method = ma.fields.String(load_default="token", validate=ma.validate.OneOf(scm.AUTH_METHODS))
    base_url = text(500, load_default=None, allow_none=True,
                    metadata={"description": "GitHub Enterprise Server, GitLab self-managed... (default: the "
                              "public service)"})
    username = text(200, load_default=None, allow_none=True)
    token = text(4096, load_default=None, allow_none=True, load_only=True)
    ssh_private_key = text(16384, load_default=None, allow_none=True, load_only=True)
    ssh_known_hosts = text(16384, load_default=None, allow_none=True, load_only=True,
                           metadata={"description": "ssh_key: the server's host keys in known_hosts format "
                                     "(`ssh-keyscan -p PORT HOST`); git over ssh accepts no other key"})
    verify = ma.fields.Boolean(load_default=True, metadata={"description": "Check the credentials first"})


class ConnectionSchema(ma.Schema):
    id = ma.fields.Integer()
    organization_id = ma.fields.Integer()
    name = ma.fields.String()
    provider = ma.fields.String()
    auth_method = ma.fields.String()
    base_url = ma.fields.String(allow_none=True)
    username = ma.fields.String(allow_none=True)
    has_secret = ma.fields.Boolean()
    created_by = ma.fields.String()
    created_at = ma.fields.DateTime()
    oauth_status = ma.fields.String(allow_none=True, metadata={
        "description": "oauth connections: pending (not authorized yet), active, or reauthorize (the token "
                       "refresh failed: authorize again)"})
    expires_at = ma.fields.DateTime(allow_none=True, metadata={"description": "When the OAuth access token "
                                                                              "expires (refreshed before)"})
    authorize_url = ma.fields.String(metadata={
        "description": "oauth connections, when created: open it in a browser to authorize the registry"})


class OAuthAuthorizeSchema(ma.Schema):
    authorize_url = ma.fields.String(metadata={"description": "Open it in a browser; the system sends the person "
                                               "back to /api/v1/scm/oauth/callback"})


class OAuthCallbackArgs(ma.Schema):
    code = text(2000, load_default=None, allow_none=True)
    state = text(500, load_default=None, allow_none=True)
    error = text(200, load_default=None, allow_none=True)
    error_description = text(2000, load_default=None, allow_none=True)


class RepositorySchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    clone_url = ma.fields.String()
    web_url = ma.fields.String(allow_none=True)
    default_branch = ma.fields.String(allow_none=True)


class TagSchema(ma.Schema):
    name = ma.fields.String()
    commit_sha = ma.fields.String()
    version = ma.fields.String(allow_none=True, metadata={"description": "The version it publishes (links only)"})
    module = ma.fields.String(metadata={"description": "The module it publishes (links that discover modules only)"})


class TagsArgs(ma.Schema):
    repository = text(500, required=True, min_length=1)


class LinkArgs(ma.Schema):
    connection_id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=MAX_ID))
    repository = text(500, required=True, min_length=1,
                      metadata={"description": "The repository id the connection lists (owner/name, or a git URL)"})
    namespace = module_name("namespace", required=True)
    name = module_name("name", load_default=None,
                       metadata={"description": "Required, unless discover_modules (then left out: each module "
                                 "is named after its folder)"})
    system = ma.fields.String(required=True, validate=[ma.validate.Length(1, 64), pattern(SYSTEM)])
    subdirectory = text(500, load_default="",
                        metadata={"description": "The module's folder; with discover_modules, the folder whose "
                                  "direct sub-folders are the modules (e.g. modules)"})
    tag_pattern = text(200, load_default="v{version}",
                       metadata={"description": "v{version}, or {name}/v{version} or {name}-v{version} for "
                                 "monorepos"})
    import_tags = ma.fields.Boolean(load_default=False,
                                    metadata={"description": "Publish every existing matching tag now (a sync "
                                              "job), instead of waiting for new tags or the reconcile"})
    discover_modules = ma.fields.Boolean(load_default=False,
                                         metadata={"description": "Monorepo: every folder directly under "
                                                   "subdirectory holding *.tf or *.tofu files is a module named "
                                                   "after the folder; the tag pattern must hold {name}"})
    branch_mode = ma.fields.Boolean(load_default=False,
                                    metadata={"description": "Also allow publishing a chosen version from a chosen "
                                              "commit of a branch (POST /links/{id}/publish)"})
    create_webhook = ma.fields.Boolean(load_default=True,
                                       metadata={"description": "Create the webhook in the system (when it has "
                                                 "webhooks)"})


class LinkSchema(ma.Schema):
    id = ma.fields.Integer()
    connection_id = ma.fields.Integer()
    provider = ma.fields.String()
    repository = ma.fields.String()
    repository_url = ma.fields.String()
    module = ma.fields.String()
    namespace = ma.fields.String()
    name = ma.fields.String()
    system = ma.fields.String()
    subdirectory = ma.fields.String()
    tag_pattern = ma.fields.String()
    hook_id = ma.fields.String(allow_none=True)
    enabled = ma.fields.Boolean()
    branch_mode = ma.fields.Boolean()
    discover_modules = ma.fields.Boolean()
    created_by = ma.fields.String()
    created_at = ma.fields.DateTime()
    last_reconciled_at = ma.fields.DateTime(allow_none=True)
    webhook_url = ma.fields.String()
    webhook_secret = ma.fields.String(metadata={"description": "Shown once, when the link is created"})
    import_job = ma.fields.String(metadata={"description": "The sync job importing existing tags (import_tags)"})


class ScmDeliverySchema(ma.Schema):
    id = ma.fields.Integer()
    link_id = ma.fields.Integer()
    delivery_id = ma.fields.String(allow_none=True)
    received_at = ma.fields.DateTime()
    headers = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())
    status_code = ma.fields.Integer()
    outcome = ma.fields.String()
    latency_ms = ma.fields.Integer()
    redelivery_of = ma.fields.Integer(allow_none=True)


class ViolationSchema(ma.Schema):
    id = ma.fields.Integer()
    link_id = ma.fields.Integer(allow_none=True)
    module_version = ma.fields.String(allow_none=True)
    tag = ma.fields.String()
    published_sha = ma.fields.String()
    current_sha = ma.fields.String()
    detected_by = ma.fields.String(metadata={"description": "webhook or reconcile"})
    delivery_id = ma.fields.String(allow_none=True)
    detected_at = ma.fields.DateTime()


class BranchPublishArgs(ma.Schema):
    branch = text(200, required=True, min_length=1, metadata={"description": "The branch to publish from"})
    commit = ma.fields.String(load_default=None, validate=pattern(r"^[0-9a-f]{40}([0-9a-f]{24})?$",
                                                                "must be a full commit SHA (40 or 64 hex digits)"),
                              metadata={"description": "Full commit SHA on the branch (default: the branch head)"})
    version = ma.fields.String(required=True, validate=ma.validate.Length(1, 64),
                               metadata={"description": "The new version; a version number is never reused"})


class BranchPublishSchema(ma.Schema):
    status = ma.fields.String()
    version = ma.fields.String()
    commit_sha = ma.fields.String()
    message = ma.fields.String()


class ProvenanceSchema(ma.Schema):
    repository_url = ma.fields.String()
    commit_sha = ma.fields.String()
    tag = ma.fields.String(allow_none=True, metadata={"description": "None for a version published in branch mode"})
    branch = ma.fields.String(allow_none=True, metadata={"description": "The branch of a branch-mode version"})
    subdirectory = ma.fields.String()
    delivery_id = ma.fields.String(allow_none=True)
    triggered_by = ma.fields.String()
    link_id = ma.fields.Integer(allow_none=True)
    published_at = ma.fields.DateTime()
    violations = ma.fields.List(ma.fields.Nested(ViolationSchema))


class ScmJobSchema(ma.Schema):
    job = ma.fields.String()
    status = ma.fields.String()


# --- permissions -------------------------------------------------------------------------------------


def scm_organization(session: Session, identity: Identity, name: str | None) -> Organization:
    """The organization a connection belongs to, if the caller may publish modules there."""
    if name is not None:
        org = get_organization(session, name)
    else:
        org_id = auth.home_organization(session, identity)
        if org_id is None:
            raise ServiceError("name the organization: you may publish modules in several, or none")
        org = session.get(Organization, org_id)
        assert org is not None
    auth.require_scope(identity, "modules:write", org)
    return org


def scm_connection(session: Session, identity: Identity, connection_id: int) -> ScmConnection:
    """A connection the caller may use (``modules:write`` in its organization); else not found (404)."""
    conn = scm.get_connection(session, connection_id)
    if "modules:write" not in identity.scopes_in(conn.organization_id):
        raise NotFound(f"SCM connection {connection_id} not found")
    return conn


def link_target(session: Session, connection_id: int, namespace: str) -> tuple[ScmConnection, Any]:
    """The connection and actor for linking a module of ``namespace``: ``modules:write`` there, a connection
    the caller may use, and of the namespace's organization (400 otherwise)."""
    identity, actor = auth.require_in_namespace(session, "modules:write", namespace)
    conn = scm_connection(session, identity, connection_id)
    if auth.organization_of(session, auth.namespace_for(session, namespace)) != conn.organization_id:
        raise ServiceError("the connection belongs to another organization than the namespace")
    return conn, actor


def scm_link(session: Session, link_id: int) -> tuple[ScmLink, Identity]:
    """A link of a module the caller may publish (``modules:write`` in its namespace), and the caller."""
    link = scm.get_link(session, link_id)
    identity, _ = auth.require_in_namespace(session, "modules:write", link.namespace, create=False)
    return link, identity


def _signed_in(session: Session | None = None) -> Identity:
    """The caller, who must have credentials (401 otherwise)."""
    if session is None:
        with current_registry().db.session() as own:
            return _signed_in(own)
    identity = auth.current_identity(session)
    if identity.anonymous:
        raise auth.Unauthenticated("authentication required: send a registry token as 'Authorization: Bearer <token>'")
    return identity


def webhook_url_of(link_id: int | str) -> str:
    """The absolute URL a system sends a link's webhook deliveries to."""
    return current_registry().absolute_url(f"/api/v1/scm/links/{link_id}/webhook")


def visible_connections(session: Session, identity: Identity) -> list[ScmConnection]:
    """Connections in the organizations where ``identity`` may publish modules."""
    rows = session.scalars(select(ScmConnection).order_by(ScmConnection.id))
    return [c for c in rows if "modules:write" in identity.scopes_in(c.organization_id)]


def visible_links(session: Session, identity: Identity) -> list[ScmLink]:
    """Links of the modules ``identity`` may publish."""
    return [link for link in session.scalars(select(ScmLink).order_by(ScmLink.id))
            if auth.allowed(identity, "modules:write", auth.namespace_for(session, link.namespace), session)]


def visible_violations(session: Session, limit: int = 500) -> list[ScmViolation]:
    """The latest moved-tag violations of module versions the caller may read, newest first."""
    readable = auth.readable_namespace_ids(session)
    out = []
    for v in session.scalars(select(ScmViolation).order_by(ScmViolation.id.desc()).limit(limit)):
        mv = session.get(ModuleVersion, v.module_version_id)
        if mv is not None and session.scalar(readable.where(Namespace.id == mv.module.namespace_id)) is not None:
            out.append(v)
    return out


def enqueue_sync(registry: Any, link_id: int) -> Any:
    """Queue the link's reconcile job ("sync now", importing existing tags); one pending per link."""
    return registry.jobs.enqueue("tfregistry.jobs:scm_reconcile", link_id, queue="scm",
                                 job_id=f"scm-reconcile-{link_id}")


def oauth_callback_url() -> str:
    """Where a system sends the person back after an OAuth authorization."""
    return current_registry().absolute_url("/api/v1/scm/oauth/callback")


def _link_json(link: ScmLink, secret: str | None = None) -> dict[str, Any]:
    data = scm.link_json(link) | {"webhook_url": webhook_url_of(link.id)}
    if secret is not None:
        data["webhook_secret"] = secret
    return data


def _provider(name: str) -> Any:
    return scm.provider_for(current_registry().scm_providers, name)


# --- routes ------------------------------------------------------------------------------------------


@blp.route("/providers")
class Providers(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """The installed SCM providers and what each supports."""
        _signed_in()
        return [{"name": p.name, "label": p.label, "auth_methods": list(p.auth_methods),
                 "supports_webhooks": p.supports_webhooks}
                for p in current_registry().scm_providers.values()]


@blp.route("/connections")
class Connections(MethodView):
    @blp.response(200, ConnectionSchema(many=True))
    def get(self) -> Any:
        """Connections in the organizations where the caller may publish modules (never their secrets)."""
        with current_registry().db.session() as session:
            identity = _signed_in(session)
            return [scm.connection_json(c) for c in visible_connections(session, identity)]

    @blp.arguments(ConnectionArgs)
    @blp.response(201, ConnectionSchema)
    @errors(blp, 409, 502)
    def post(self, args: dict[str, Any]) -> Any:
        """Create a connection (``modules:write`` in its organization); its secrets are stored encrypted.
        With ``verify`` (the default) the provider checks the credentials first."""
        registry = current_registry()
        with registry.db.session() as session:
            identity = _signed_in(session)
            org = scm_organization(session, identity, args.pop("organization"))
            actor = auth.request_actor(identity, org.id)
            conn = scm.create_connection(session, actor, registry.scm_providers,
                                         encryption_key(registry), organization_id=org.id, **args)
            extra = {}
            if conn.auth_method == "oauth":
                extra["authorize_url"] = scm.start_oauth(session, actor, _provider(conn.provider), conn,
                                                         encryption_key(registry), oauth_callback_url())
            session.commit()
            return scm.connection_json(conn) | extra


@blp.route("/connections/<id:connection_id>/oauth/authorize")
class OAuthAuthorize(MethodView):
    @blp.response(200, OAuthAuthorizeSchema)
    def post(self, connection_id: int) -> Any:
        """Start (or repeat, to re-authorize) the OAuth 2.0 authorization of an ``oauth`` connection: the
        authorization URL, with ``state`` and a PKCE challenge.  A new start replaces an unfinished one."""
        registry = current_registry()
        with registry.db.session() as session:
            identity = _signed_in(session)
            conn = scm_connection(session, identity, connection_id)
            url = scm.start_oauth(session, auth.request_actor(identity, conn.organization_id),
                                  _provider(conn.provider), conn, encryption_key(registry), oauth_callback_url())
            session.commit()
            return {"authorize_url": url}


@blp.route("/oauth/callback")
class OAuthCallback(MethodView):
    @blp.doc(security=PUBLIC)
    @blp.arguments(OAuthCallbackArgs, location="query")
    @blp.response(200, ConnectionSchema)
    @blp.alt_response(303, description="Back to the web UI page the authorization was started from")
    @errors(blp, 502)
    def get(self, args: dict[str, Any]) -> Any:
        """Where the system sends the person back: ``state`` (single use, from the authorization this
        registry started) names the connection; ``code`` is exchanged for the access and refresh token,
        stored encrypted.  A missing, unknown or used ``state`` is refused (400).  An authorization started
        from a web UI page answers 303 back to that page, which says how it went."""
        registry = current_registry()
        with registry.db.session() as session:
            try:
                done = scm.finish_oauth(session, registry.scm_providers, encryption_key(registry),
                                        state=args["state"], code=args["code"], error=args["error"],
                                        redirect_uri=oauth_callback_url())
            except ServiceError as exc:
                if getattr(exc, "return_to", None):  # started from a web page: show the failure there
                    flash(f"The authorization failed: {exc}", "error")
                    return redirect(exc.return_to, 303)  # type: ignore[attr-defined]
                raise
            if done.return_to:  # started from a web page: back to it
                flash(f"Connection “{done.connection.name}” is authorized.")
                return redirect(done.return_to, 303)
            return scm.connection_json(done.connection)


@blp.route("/connections/<id:connection_id>")
class Connection(MethodView):
    @blp.response(200, ConnectionSchema)
    def get(self, connection_id: int) -> Any:
        with current_registry().db.session() as session:
            return scm.connection_json(scm_connection(session, auth.current_identity(session), connection_id))

    @blp.response(204)
    def delete(self, connection_id: int) -> None:
        """Delete a connection and its links (published versions stay)."""
        with current_registry().db.session() as session:
            identity = auth.current_identity(session)
            conn = scm_connection(session, identity, connection_id)
            scm.delete_connection(session, auth.request_actor(identity, conn.organization_id), conn)
            session.commit()


@blp.route("/connections/<id:connection_id>/repositories")
class Repositories(MethodView):
    @blp.response(200, RepositorySchema(many=True))
    @errors(blp, 409, 502)
    def get(self, connection_id: int) -> Any:
        """The repositories the connection can read (400 when the system cannot list them: plain git)."""
        registry = current_registry()
        with registry.db.session() as session:
            conn = scm_connection(session, auth.current_identity(session), connection_id)
            provider = _provider(conn.provider)
            creds = scm.credentials(conn, encryption_key(registry))
        return [vars(r) for r in scm.call(provider, "list repositories", provider.list_repositories, creds)]


@blp.route("/connections/<id:connection_id>/tags")
class RepositoryTags(MethodView):
    @blp.arguments(TagsArgs, location="query")
    @blp.response(200, TagSchema(many=True))
    @errors(blp, 409, 502)
    def get(self, args: dict[str, Any], connection_id: int) -> Any:
        """Every tag of a repository with its commit."""
        registry = current_registry()
        with registry.db.session() as session:
            conn = scm_connection(session, auth.current_identity(session), connection_id)
            provider = _provider(conn.provider)
            creds = scm.credentials(conn, encryption_key(registry))
        tags = scm.call(provider, "list tags", provider.list_tags, creds, args["repository"])
        return [{"name": t.name, "commit_sha": t.commit_sha, "version": None} for t in tags]


@blp.route("/links")
class Links(MethodView):
    @blp.response(200, LinkSchema(many=True))
    def get(self) -> Any:
        """Links of the modules the caller may publish."""
        with current_registry().db.session() as session:
            identity = _signed_in(session)
            return [_link_json(link) for link in visible_links(session, identity)]

    @blp.arguments(LinkArgs)
    @blp.response(201, LinkSchema)
    @errors(blp, 502)
    def post(self, args: dict[str, Any]) -> Any:
        """Link a module to a repository (``modules:write`` in the namespace; the connection must belong to the
        namespace's organization).  The answer carries the webhook URL and secret, shown this once; for a
        system with webhooks the hook is created there unless ``create_webhook`` is false.  With
        ``import_tags``, every existing matching tag is published by a sync job (``import_job``)."""
        registry = current_registry()
        with registry.db.session() as session:
            if args["discover_modules"] and args["name"] is not None:
                raise ServiceError("leave name out with discover_modules: each module is named after its folder")
            if not args["discover_modules"] and args["name"] is None:
                raise ServiceError("name is required (unless discover_modules)")
            conn, actor = link_target(session, args["connection_id"], args["namespace"])
            link, secret = scm.create_link(
                session, actor, _provider(conn.provider), conn, encryption_key(registry),
                repository=args["repository"], namespace=args["namespace"], name=args["name"], system=args["system"],
                subdirectory=args["subdirectory"], tag_pattern=args["tag_pattern"],
                webhook_url=webhook_url_of("{id}") if args["create_webhook"] else None, branch_mode=args["branch_mode"],
                discover_modules=args["discover_modules"])
            session.commit()
            data = _link_json(link, secret)
        if args["import_tags"]:
            job = enqueue_sync(registry, data["id"])
            data["import_job"] = job.id
        return data


@blp.route("/links/<id:link_id>")
class Link(MethodView):
    @blp.response(200, LinkSchema)
    def get(self, link_id: int) -> Any:
        with current_registry().db.session() as session:
            link, _ = scm_link(session, link_id)
            return _link_json(link)

    @blp.response(204)
    @errors(blp, 502)
    def delete(self, link_id: int) -> None:
        """Remove a link and its webhook; versions already published stay."""
        registry = current_registry()
        with registry.db.session() as session:
            link, identity = scm_link(session, link_id)
            scm.delete_link(session, auth.request_actor(identity), _provider(link.connection.provider), link,
                            encryption_key(registry))
            session.commit()


@blp.route("/links/<id:link_id>/tags")
class LinkTags(MethodView):
    @blp.response(200, TagSchema(many=True))
    @errors(blp, 502)
    def get(self, link_id: int) -> Any:
        """The repository's tags matching the link's pattern, with the versions they publish (a preview)."""
        registry = current_registry()
        with registry.db.session() as session:
            link, _ = scm_link(session, link_id)
            provider = _provider(link.connection.provider)
            found = scm.matching_tags(provider, scm.credentials(link.connection, encryption_key(registry)), link)
        return [{"name": m.tag, "commit_sha": m.commit_sha, "version": m.version}
                | ({"module": m.module} if link.discover_modules else {}) for m in found]


@blp.route("/links/<id:link_id>/sync")
class LinkSync(MethodView):
    @blp.response(202, ScmJobSchema)
    def post(self, link_id: int) -> Any:
        """Sync now: a reconcile job on the ``scm`` queue publishes every matching tag not published yet
        and records moved tags."""
        with current_registry().db.session() as session:
            scm_link(session, link_id)
        job = enqueue_sync(current_registry(), link_id)
        return {"job": job.id, "status": job.status}


@blp.route("/links/<id:link_id>/publish")
class LinkPublish(MethodView):
    @blp.arguments(BranchPublishArgs)
    @blp.response(201, BranchPublishSchema)
    @errors(blp, 409, 502)
    def post(self, args: dict[str, Any], link_id: int) -> Any:
        """Branch mode: publish ``version`` from ``commit`` (default: the head) of ``branch``, at once, with the
        same packer and provenance as a tag.  400 when the link is not in branch mode, the branch does not
        exist or the commit is not on it; 409 when the version exists (never reused, even from the same
        commit).  Nothing is published when refused."""
        registry = current_registry()
        with registry.db.session() as session:
            link, identity = scm_link(session, link_id)
            outcome = scm.publish_branch(session, registry.storage, _provider(link.connection.provider), link,
                                         encryption_key(registry), archive_limits(registry.settings),
                                         branch=args["branch"], version=args["version"], commit=args["commit"],
                                         triggered_by=auth.request_actor(identity).name)
        return outcome.as_dict()


@blp.route("/links/<id:link_id>/webhook")
class Webhook(MethodView):
    @blp.doc(security=PUBLIC)
    @blp.response(202)
    @errors(blp, 413, 502)
    def post(self, link_id: int) -> Any:
        """Receive a webhook delivery from the source-control system.  Authenticated by the link's secret
        as the system sends it (a signature, a secret header): missing, wrong, tampered or stale is 401 and
        nothing is queued.  A delivery id already seen within 24 hours is answered 200 and ignored.
        A created tag matching the pattern queues a publish job (202); a moved tag is recorded as a
        violation and never republished."""
        registry = current_registry()
        if (request.content_length or 0) > MAX_WEBHOOK_BODY:
            raise ServiceError("webhook body too large", status=413)
        body = request.get_data(cache=False)[:MAX_WEBHOOK_BODY + 1]
        if len(body) > MAX_WEBHOOK_BODY:
            raise ServiceError("webhook body too large", status=413)
        return _answer(receive(registry, link_id, dict(request.headers), body))


def _answer(result: Any) -> Any:
    if result.status_code >= 400:
        return api_error(result.status_code, result.outcome)
    return {"outcome": result.outcome}, result.status_code


def receive(registry: Any, link_id: int, headers: dict[str, str], body: bytes,
            redelivery_of: int | None = None) -> scm.WebhookResult:
    """Verify and act on one delivery (logged), queueing the publish jobs it asks for."""
    with registry.db.session() as session:
        link = session.get(ScmLink, link_id)
        if link is None:
            raise NotFound(f"SCM link {link_id} not found")
        provider = _provider(link.connection.provider)
        result = scm.receive_webhook(session, provider, link, encryption_key(registry), headers, body,
                                     redelivery_of=redelivery_of)
        provider_name = link.connection.provider
        session.commit()
    if result.status_code in (400, 401) and registry.observe.active:
        registry.observe("scm_webhook_rejected", provider=provider_name,
                         reason="signature" if result.status_code == 401 else "unreadable")
    for tag, delivery_id in result.publish:
        registry.jobs.enqueue("tfregistry.jobs:scm_publish", link_id, tag, delivery_id, "", queue="scm",
                              job_id=scm.publish_job_id(link_id, tag))
    return result


def redeliver(registry: Any, session: Session, link_id: int, delivery: int) -> scm.WebhookResult:
    """Process an accepted original delivery of the link again (the caller's access to the link is checked
    first); 404 for another link's, 409 for a rejected one or a redelivery."""
    scm_link(session, link_id)
    row = session.get(ScmDelivery, delivery)
    if row is None or row.link_id != link_id:
        raise NotFound(f"delivery {delivery} not found")
    if row.status_code in (400, 401) or row.redelivery_of is not None:
        raise ServiceError("only an accepted original delivery can be redelivered; ask the source-control "
                           "system to send a rejected one again", status=409)
    headers, body = dict(row.headers), row.body
    session.rollback()
    return receive(registry, link_id, headers, body, redelivery_of=delivery)


@blp.route("/links/<id:link_id>/deliveries")
class Deliveries(MethodView):
    @blp.response(200, ScmDeliverySchema(many=True))
    def get(self, link_id: int) -> Any:
        """The link's last 100 webhook deliveries, newest first: headers (secrets removed), outcome, latency."""
        with current_registry().db.session() as session:
            scm_link(session, link_id)
            return [scm.delivery_json(d) for d in scm.deliveries(session, link_id)]


@blp.route("/links/<id:link_id>/deliveries/<id:delivery>/redeliver")
class Redeliver(MethodView):
    @blp.response(202)
    @errors(blp, 409)
    def post(self, link_id: int, delivery: int) -> Any:
        """Process an accepted delivery again from the log (it was verified when it arrived; the 24-hour
        de-duplication does not apply), e.g. after a publish failed.  The new outcome is logged as a
        delivery of its own.  A rejected delivery cannot be redelivered (409)."""
        registry = current_registry()
        with registry.db.session() as session:
            return _answer(redeliver(registry, session, link_id, delivery))


@blp.route("/violations")
class Violations(MethodView):
    @blp.doc(security=PUBLIC)
    @blp.response(200, ViolationSchema(many=True))
    def get(self) -> Any:
        """Tags that moved after their version was published, in modules the caller may read."""
        with current_registry().db.session() as session:
            return [scm.violation_json(v, session) for v in visible_violations(session)]


@blp.route("/provenance/<ns>/<name>/<system>/<version>")
class Provenance(MethodView):
    @blp.doc(security=PUBLIC)
    @blp.response(200, ProvenanceSchema)
    def get(self, ns: str, name: str, system: str, version: str) -> Any:
        """Where a module version came from: repository, commit, tag, delivery or user, and any tag-moved
        violations (404 for a version not published from source control)."""
        with current_registry().db.session() as session:
            auth.require(session, "modules:read", auth.namespace_for(session, ns))
            mv = modules_svc.get_version(session, ns, name, system, version)
            prov = scm.provenance_of(session, mv.id)
            if prov is None:
                raise NotFound(f"{ns}/{name}/{system} {version} was not published from source control")
            return scm.provenance_json(prov) | {
                "violations": [scm.violation_json(v, session) for v in scm.violations_of_version(session, mv.id)]}
