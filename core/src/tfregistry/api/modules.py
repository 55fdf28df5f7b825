"""``/api/v1/modules``: search, publish, deprecate and delete module versions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import (
    MAX_ID,
    MAX_TEXT,
    PUBLIC,
    api_error,
    errors,
    flag,
    load_multipart,
    module_name,
    pattern,
    text,
    version_field,
)
from tfregistry.api import MODULE_SYSTEM as SYSTEM
from tfregistry.models import ModuleVersion
from tfregistry.protocol import register_error_handlers
from tfregistry.services import ServiceError
from tfregistry.services import modules as svc
from tfregistry.services import search as search_svc
from tfregistry.telemetry import observed_publish
from tfregistry.web import current_registry

blp = Blueprint("api_modules", __name__, url_prefix="/api/v1/modules", description="Publish and manage modules")
register_error_handlers(blp, api_error)

#: Room for the form fields and multipart framing around the archive itself.
FORM_OVERHEAD = 64 * 1024


SYSTEM_ERROR = "invalid module system: use 1-64 lower-case letters or digits (e.g. aws)"


class PublishForm(ma.Schema):
    """The ``multipart/form-data`` body of a module publish: four address fields and the archive."""

    namespace = module_name("namespace", required=True, metadata={"example": "acme"})
    name = module_name("name", required=True, metadata={"example": "network"})
    system = ma.fields.String(required=True, validate=[ma.validate.Length(1, 64, error=SYSTEM_ERROR),
                                                       pattern(SYSTEM, SYSTEM_ERROR)], metadata={
        "description": "Target system, e.g. aws (the 'provider')", "example": "aws"})
    version = version_field(required=True, metadata={"description": "Semantic version, e.g. 1.2.0 or 2.0.0-rc.1",
                                                     "example": "1.2.0"})
    description = text(load_default="")
    archive = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary",
                                                     "description": "The module as a .tar.gz archive"})


class ModuleVersionSchema(ma.Schema):
    id = ma.fields.String()
    namespace = ma.fields.String()
    name = ma.fields.String()
    provider = ma.fields.String()
    version = ma.fields.String()
    description = ma.fields.String()
    published_at = ma.fields.String()
    published_by = ma.fields.String()
    sha256 = ma.fields.String()
    size = ma.fields.Integer()
    deprecated = ma.fields.Boolean()
    deprecation_reason = ma.fields.String(allow_none=True)
    created = ma.fields.Boolean(metadata={"description": "false when identical bytes were already published "
                                          "(only in the answer to a publish)"})


class SearchArgs(ma.Schema):
    q = text(search_svc.MAX_QUERY, load_default=None, metadata={
        "description": "Words to find in the latest version's namespace, name, description, README, input and "
                       "output names and resource types (all required; the last also as a prefix)"})
    namespace = text(64, load_default=None)
    system = text(64, load_default=None, metadata={"description": "The module's system (the 'provider' of its "
                                                                  "address)"})
    organization = text(64, load_default=None, metadata={"description": "The organization owning the namespace"})
    provider = text(255, load_default=None, metadata={
        "description": "A provider the module requires: local name or source, e.g. aws or hashicorp/aws"})
    sort = ma.fields.String(load_default=None, validate=ma.validate.OneOf(search_svc.SORTS), metadata={
        "description": "relevance (the default with q), downloads, recent or name (the default without q)"})
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=MAX_ID))
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))


class SearchMetaSchema(ma.Schema):
    offset = ma.fields.Integer()
    limit = ma.fields.Integer()
    next_offset = ma.fields.Integer(metadata={"description": "present when more modules follow"})


class SearchSchema(ma.Schema):
    modules = ma.fields.List(ma.fields.Nested(ModuleVersionSchema), metadata={
        "description": "each module's latest version"})
    meta = ma.fields.Nested(SearchMetaSchema)


class DeprecateArgs(ma.Schema):
    deprecated = flag(required=True)
    reason = text(MAX_TEXT, load_default=None, allow_none=True)


def version_json(mv: ModuleVersion, created: bool | None = None) -> dict[str, Any]:
    m = mv.module
    data = {
        "id": f"{m.namespace.name}/{m.name}/{m.system}/{mv.version}",
        "namespace": m.namespace.name,
        "name": m.name,
        "provider": m.system,
        "version": mv.version,
        "description": mv.description,
        "published_at": mv.published_at.isoformat(),
        "published_by": mv.published_by,
        "sha256": mv.sha256,
        "size": mv.size,
        "deprecated": mv.deprecated,
        "deprecation_reason": mv.deprecation_reason,
    }
    if created is not None:
        data["created"] = created
    return data


def upload_limit(setting: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cap the request body at the size in ``setting`` before the form is parsed.

    Werkzeug enforces it while the body streams in (also for chunked uploads), so an
    oversized upload is refused with 413 without being buffered first.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cap_upload(setting)
            return view(*args, **kwargs)

        wrapper.upload_limit_setting = setting  # type: ignore[attr-defined]  (read by cap_request_body)
        return wrapper

    return decorator


def publish_upload(session: Session, form: dict[str, Any]) -> svc.PublishResult:
    """Publish the module of a loaded :class:`PublishForm` (``archive``: the uploaded file) as the caller,
    after the size cap and the permission check; the API and the web UI's form both call it."""
    registry = current_registry()
    settings = registry.settings
    max_bytes = settings["limits.module_archive_max_bytes"]
    stream = form["archive"].stream
    stream.seek(0, 2)
    if stream.tell() > max_bytes:
        raise ServiceError(f"archive is larger than the limit of {max_bytes} bytes", status=413)
    stream.seek(0)

    def publish(actor: Any) -> svc.PublishResult:
        return svc.publish_module(
            session, registry.storage, actor,
            namespace=form["namespace"], name=form["name"], system=form["system"], version=form["version"],
            archive=stream, limits=svc.archive_limits(settings), description=form["description"],
        )

    return observed_publish(registry.observe, session, "module", form["namespace"],
                            f"{form['name']}/{form['system']}", publish)


def cap_upload(setting: str) -> None:
    """Cap the current request's body at the size in ``setting`` (plus the form's framing)."""
    request.max_content_length = current_registry().settings[setting] + FORM_OVERHEAD


def cap_request_body() -> None:
    """Apply the upload cap of the view about to run (:func:`upload_limit`) now: for code that reads
    the form before the view does (the CSRF check), so no body is read past the cap."""
    from flask import current_app

    view = current_app.view_functions.get(request.endpoint or "")
    view = getattr(getattr(view, "view_class", None), request.method.lower(), view)
    setting = getattr(view, "upload_limit_setting", None)
    if setting is not None:
        cap_upload(setting)


@blp.route("")
class Modules(MethodView):
    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, SearchSchema)
    @blp.doc(security=PUBLIC)
    def get(self, args: dict[str, Any]) -> Any:
        """Search and list the modules the caller may read (see docs/modules.md, Search)."""
        with current_registry().db.session() as session:
            found = search_svc.search_modules(session, auth.readable_namespace_ids(session), **args)
            latest = [mv for mv in (svc.latest_version(m) for m in found.modules) if mv is not None]
            meta: dict[str, Any] = {"offset": args["offset"], "limit": args["limit"]}
            if found.has_more:
                meta["next_offset"] = args["offset"] + args["limit"]
            return {"modules": [version_json(mv) for mv in latest], "meta": meta}

    @upload_limit("limits.module_archive_max_bytes")
    @blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": PublishForm}}})
    @blp.response(201, ModuleVersionSchema, description="Published")
    @blp.alt_response(200, schema=ModuleVersionSchema, description="Identical bytes were already published",
                      success=True)
    @errors(blp, 409)
    def post(self) -> Any:
        """Publish a module version from a ``.tar.gz`` archive (409: the version exists with other content)."""
        form = load_multipart(PublishForm())
        with current_registry().db.session() as session:
            result = publish_upload(session, form)
            return version_json(result.version, result.created), 201 if result.created else 200


@blp.route("/<ns>/<name>/<system>/<version>")
class ModuleVersionResource(MethodView):
    @blp.response(200, ModuleVersionSchema)
    @blp.doc(security=PUBLIC)
    def get(self, ns: str, name: str, system: str, version: str) -> Any:
        """Show one version, with its checksum and deprecation status."""
        with current_registry().db.session() as session:
            auth.require(session, "modules:read", auth.namespace_for(session, ns))
            return version_json(svc.get_version(session, ns, name, system, version))

    @blp.arguments(DeprecateArgs)
    @blp.response(200, ModuleVersionSchema)
    def patch(self, args: dict[str, Any], ns: str, name: str, system: str, version: str) -> Any:
        """Deprecate (or un-deprecate) a version; it stays installable and the API flags it."""
        with current_registry().db.session() as session:
            identity, actor = auth.require_in_namespace(session, "modules:write", ns, create=False)
            auth.require_package(identity, "module", ns, f"{name}/{system}")
            mv = svc.get_version(session, ns, name, system, version)
            svc.set_deprecated(session, actor, mv, args["deprecated"], args["reason"])
            return version_json(mv)

    @blp.response(204)
    def delete(self, ns: str, name: str, system: str, version: str) -> None:
        """Delete a version and its archive (admin only; audited)."""
        registry = current_registry()
        with registry.db.session() as session:
            _, actor = auth.require_in_namespace(session, "modules:delete", ns, create=False)
            mv = svc.get_version(session, ns, name, system, version)
            svc.delete_version(session, registry.storage, actor, mv)
