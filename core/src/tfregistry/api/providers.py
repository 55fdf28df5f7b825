"""``/api/v1/providers`` and ``/api/v1/gpg-keys``: publish providers, manage signing keys."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import (
    PROTOCOLS,
    PUBLIC,
    api_error,
    errors,
    load_multipart,
    pattern,
    provider_name,
    text,
    version_field,
)
from tfregistry.api.modules import DeprecateArgs, upload_limit
from tfregistry.models import GpgKey, ProviderVersion
from tfregistry.protocol import register_error_handlers
from tfregistry.provider_docs import DocsLimits, DocsReport
from tfregistry.registry import Registry
from tfregistry.services import ServiceError
from tfregistry.services import gpgkeys as keys_svc
from tfregistry.services import provider_docs as docs_svc
from tfregistry.services import providers as svc
from tfregistry.telemetry import observed_publish
from tfregistry.web import current_registry

blp = Blueprint("api_providers", __name__, url_prefix="/api/v1/providers", description="Publish and manage providers")
keys_blp = Blueprint("api_gpg_keys", __name__, url_prefix="/api/v1/gpg-keys", description="Provider signing keys")
register_error_handlers(blp, api_error)
register_error_handlers(keys_blp, api_error)

#: The most SHA256SUMS/signature bytes we read (they are a few hundred bytes in practice).
SMALL_FILE_MAX = 1024 * 1024


class ProviderPublishForm(ma.Schema):
    """The ``multipart/form-data`` body of a provider publish."""

    namespace = provider_name("namespace", required=True, metadata={"example": "acme"})
    type = provider_name("type", required=True, metadata={"description": "Provider type, e.g. foo for acme/foo",
                                                  "example": "foo"})
    version = version_field(required=True, metadata={"example": "1.0.0"})
    protocols = ma.fields.String(load_default="", validate=[ma.validate.Length(max=100), pattern(PROTOCOLS)],
                                 metadata={"description": "Comma-separated, default 5.0", "example": "5.0"})
    packages = ma.fields.List(ma.fields.Raw(metadata={"type": "string", "format": "binary"}), required=True,
                              validate=ma.validate.Length(min=1),
                              metadata={"description": "terraform-provider-TYPE_VERSION_OS_ARCH.zip, repeated"})
    shasums = ma.fields.Raw(metadata={"type": "string", "format": "binary"})
    shasums_signature = ma.fields.Raw(metadata={"type": "string", "format": "binary",
                                                "description": "Detached signature (binary or armored)"})


class PlatformSchema(ma.Schema):
    os = ma.fields.String()
    arch = ma.fields.String()
    filename = ma.fields.String()
    sha256 = ma.fields.String()
    h1 = ma.fields.String()
    size = ma.fields.Integer()


class ProviderVersionSchema(ma.Schema):
    id = ma.fields.String()
    namespace = ma.fields.String()
    type = ma.fields.String()
    version = ma.fields.String()
    protocols = ma.fields.List(ma.fields.String())
    platforms = ma.fields.List(ma.fields.Nested(PlatformSchema))
    signing_key_id = ma.fields.String(allow_none=True)
    signed_by_managed_key = ma.fields.Boolean()
    signing_key_revoked = ma.fields.Boolean()
    deprecated = ma.fields.Boolean()
    deprecation_reason = ma.fields.String(allow_none=True)
    published_at = ma.fields.String()
    published_by = ma.fields.String()
    origin = ma.fields.String(metadata={"description": "published (this registry's own), mirrored, "
                                        "pulled-through or imported (tfr mirror import)"})
    created = ma.fields.Boolean()
    added_platforms = ma.fields.List(ma.fields.String())


def version_json(pv: ProviderVersion, **extra: Any) -> dict[str, Any]:
    p = pv.provider
    key = pv.signing_key
    return {
        "id": f"{p.namespace.name}/{p.type}/{pv.version}",
        "namespace": p.namespace.name,
        "type": p.type,
        "version": pv.version,
        "protocols": pv.protocols,
        "platforms": [{"os": k.os, "arch": k.arch, "filename": k.filename, "sha256": k.sha256, "h1": k.h1,
                       "size": k.size} for k in sorted(pv.packages, key=lambda k: (k.os, k.arch))],
        "signing_key_id": key.key_id if key else None,
        "signed_by_managed_key": bool(key and key.managed),
        "signing_key_revoked": bool(key and key.revoked_at),
        "deprecated": pv.deprecated,
        "deprecation_reason": pv.deprecation_reason,
        "published_at": pv.published_at.isoformat(),
        "published_by": pv.published_by,
        "origin": svc.origin(pv),
        **extra,
    }


def _small_file(field: str) -> bytes | None:
    return small_file(request.files.get(field), field)


def small_file(upload: Any, field: str) -> bytes | None:
    """The bytes of a small uploaded file (SHA256SUMS, its signature), refusing anything large."""
    if upload is None:
        return None
    data = upload.stream.read(SMALL_FILE_MAX + 1)
    if len(data) > SMALL_FILE_MAX:
        raise ServiceError(f"{field} is larger than {SMALL_FILE_MAX} bytes; is it the right file?")
    return data


def limits(registry: Registry) -> svc.ProviderLimits:
    s = registry.settings
    return svc.ProviderLimits(s["limits.provider_package_max_bytes"], s["limits.provider_uncompressed_max_bytes"],
                              s["limits.max_compression_ratio"])


def encryption_key(registry: Registry) -> bytes:
    return keys_svc.encryption_key(registry.settings["gpg.encryption_key"], registry.secret_key)


def publish_upload(session: Session, form: dict[str, Any], *, shasums: bytes | None,
                   signature: bytes | None) -> svc.PublishResult:
    """Publish the provider release of a loaded :class:`ProviderPublishForm` (``packages``: the uploaded
    zips) as the caller, after the permission check; the API and the web UI's form both call it.
    Without ``shasums`` and ``signature``, the namespace's managed key signs the release."""
    registry = current_registry()
    uploads = [svc.Upload(f.filename or "", f.stream) for f in form["packages"]]
    protocols = [p.strip() for p in form["protocols"].split(",") if p.strip()]

    def publish(actor: Any) -> svc.PublishResult:
        return svc.publish_provider(
            session, registry.storage, actor,
            namespace=form["namespace"], type_=form["type"], version=form["version"], packages=uploads,
            limits=limits(registry), enc_key=encryption_key(registry), protocols=protocols or None,
            shasums=shasums, signature=signature,
        )

    return observed_publish(registry.observe, session, "provider", form["namespace"], form["type"], publish)


@blp.route("")
class Providers(MethodView):
    @upload_limit("limits.provider_upload_max_bytes")
    @blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": ProviderPublishForm}}})
    @blp.response(201, ProviderVersionSchema, description="Published (a new version, or new platforms)")
    @blp.alt_response(200, schema=ProviderVersionSchema, description="Everything uploaded was already there",
                      success=True)
    @errors(blp, 409)
    def post(self) -> Any:
        """Publish a provider version: zips plus SHA256SUMS and its signature (or none, with a managed key);
        409: the version exists with different content."""
        form = load_multipart(ProviderPublishForm(), lists=("packages",))
        with current_registry().db.session() as session:
            result = publish_upload(session, form, shasums=_small_file("shasums"),
                                    signature=_small_file("shasums_signature"))
            body = version_json(result.version, created=result.created, added_platforms=result.added)
            return body, 201 if result.added else 200


@blp.route("/<ns>/<type_>/<version>")
class ProviderVersionResource(MethodView):
    @blp.response(200, ProviderVersionSchema)
    @blp.doc(security=PUBLIC)
    def get(self, ns: str, type_: str, version: str) -> Any:
        """Show one version: platforms with their hashes, signing key, deprecation."""
        with current_registry().db.session() as session:
            auth.require(session, "providers:read", auth.namespace_for(session, ns))
            return version_json(svc.get_version(session, ns, type_, version))

    @blp.arguments(DeprecateArgs)
    @blp.response(200, ProviderVersionSchema)
    def patch(self, args: dict[str, Any], ns: str, type_: str, version: str) -> Any:
        """Deprecate (or un-deprecate) a version; Terraform shows the reason as a warning."""
        with current_registry().db.session() as session:
            identity, actor = auth.require_in_namespace(session, "providers:write", ns, create=False)
            auth.require_package(identity, "provider", ns, type_)
            pv = svc.get_version(session, ns, type_, version)
            svc.set_deprecated(session, actor, pv, args["deprecated"], args["reason"])
            return version_json(pv)

    @blp.response(204)
    def delete(self, ns: str, type_: str, version: str) -> None:
        """Delete a version, its packages and checksum files (admin only; audited)."""
        registry = current_registry()
        with registry.db.session() as session:
            _, actor = auth.require_in_namespace(session, "providers:delete", ns, create=False)
            svc.delete_version(session, registry.storage, actor,
                               svc.get_version(session, ns, type_, version))


# --- documentation ---------------------------------------------------------------------------


class DocsForm(ma.Schema):
    """The ``multipart/form-data`` body of a docs upload or preview."""

    archive = ma.fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "The provider's docs/ folder as a .tar.gz or .zip (index.md, resources/, data-sources/, "
                       "ephemeral-resources/, guides/, functions/)"})


class DocPageSummarySchema(ma.Schema):
    path = ma.fields.String(metadata={"description": "Where the page is inside docs/", "example": "resources/thing.md"})
    category = ma.fields.String(metadata={"example": "resources"})
    slug = ma.fields.String(metadata={"example": "thing"})
    title = ma.fields.String()
    subcategory = ma.fields.String()
    description = ma.fields.String()


class DocPageSchema(DocPageSummarySchema):
    content = ma.fields.String(metadata={"description": "The page's Markdown, front matter removed (not rendered: "
                                         "render and sanitise it before showing it)"})


class DocSubcategorySchema(ma.Schema):
    name = ma.fields.String(metadata={"description": "Empty for pages without a subcategory"})
    pages = ma.fields.List(ma.fields.Nested(DocPageSummarySchema))


class DocCategorySchema(ma.Schema):
    category = ma.fields.String(metadata={"example": "resources"})
    label = ma.fields.String(metadata={"example": "Resources"})
    subcategories = ma.fields.List(ma.fields.Nested(DocSubcategorySchema))


class DocsIndexSchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "namespace/type/version (absent in a preview)"})
    page_count = ma.fields.Integer()
    categories = ma.fields.List(ma.fields.Nested(DocCategorySchema))
    problems = ma.fields.List(ma.fields.String(), metadata={
        "description": "Files skipped and why (uploads and previews only)"})
    replaced = ma.fields.Integer(metadata={"description": "Pages the version had before this upload (uploads only)"})


def docs_limits(registry: Registry) -> DocsLimits:
    s = registry.settings
    return DocsLimits(max_pages=s["limits.provider_docs_max_pages"],
                      max_page_bytes=s["limits.provider_docs_max_page_bytes"],
                      max_total_bytes=s["limits.provider_docs_max_bytes"],
                      max_compression_ratio=s["limits.max_compression_ratio"])


def _docs_upload(registry: Registry) -> Any:
    """The uploaded archive's stream, refused with 413 past ``limits.provider_docs_max_bytes``."""
    return docs_archive(registry, load_multipart(DocsForm())["archive"])


def docs_archive(registry: Registry, upload: Any) -> Any:
    """The stream of an uploaded docs archive (a werkzeug ``FileStorage``), at its start; a 413
    :class:`ServiceError` past ``limits.provider_docs_max_bytes``.  The API and the web UI's forms call it."""
    stream = upload.stream
    max_bytes = registry.settings["limits.provider_docs_max_bytes"]
    stream.seek(0, 2)
    if stream.tell() > max_bytes:
        raise ServiceError(f"the docs archive is larger than the limit of {max_bytes} bytes "
                           "(setting limits.provider_docs_max_bytes)", status=413)
    stream.seek(0)
    return stream


def _report_json(report: DocsReport, **extra: Any) -> dict[str, Any]:
    return {**extra, "page_count": len(report.pages), "categories": docs_svc.group_pages(report.pages),
            "problems": report.problems}


@blp.route("/<ns>/<type_>/<version>/docs")
class ProviderDocs(MethodView):
    @blp.response(200, DocsIndexSchema)
    @blp.doc(security=PUBLIC)
    def get(self, ns: str, type_: str, version: str) -> Any:
        """The version's documentation index: pages grouped by category and subcategory, without content."""
        with current_registry().db.session() as session:
            auth.require(session, "providers:read", auth.namespace_for(session, ns))
            pv = svc.get_version(session, ns, type_, version)
            pages = docs_svc.doc_pages(session, pv)
            return {"id": f"{ns}/{type_}/{pv.version}", "page_count": len(pages),
                    "categories": docs_svc.group_pages(pages)}

    @upload_limit("limits.provider_docs_max_bytes")
    @blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": DocsForm}}})
    @blp.response(201, DocsIndexSchema, description="Stored; the version's previous docs, if any, are replaced")
    @errors(blp, 409)
    def post(self, ns: str, type_: str, version: str) -> Any:
        """Publish (or replace) the version's documentation.

        The body is an archive (.tar.gz or .zip) of the provider's docs/ folder; files out of place are
        skipped and listed in ``problems``.  Needs the scope that publishes the provider."""
        registry = current_registry()
        stream = _docs_upload(registry)
        with registry.db.session() as session:
            identity, actor = auth.require_in_namespace(session, "providers:write", ns, create=False)
            auth.require_package(identity, "provider", ns, type_)
            pv = svc.get_version(session, ns, type_, version)
            result = docs_svc.store_provider_docs(session, actor, pv, stream, docs_limits(registry))
            return _report_json(result.report, id=f"{ns}/{type_}/{pv.version}", replaced=result.replaced)


@blp.route("/<ns>/<type_>/<version>/docs/<category>/<slug>")
class ProviderDocPageResource(MethodView):
    @blp.response(200, DocPageSchema)
    @blp.doc(security=PUBLIC)
    def get(self, ns: str, type_: str, version: str, category: str, slug: str) -> Any:
        """One documentation page with its Markdown (``index/index`` is the overview page)."""
        with current_registry().db.session() as session:
            auth.require(session, "providers:read", auth.namespace_for(session, ns))
            page = docs_svc.get_doc_page(session, svc.get_version(session, ns, type_, version), category, slug)
            return {**docs_svc.page_summary(page), "content": page.content}


@blp.route("/docs/preview")
class ProviderDocsPreview(MethodView):
    @upload_limit("limits.provider_docs_max_bytes")
    @blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": DocsForm}}})
    @blp.response(200, DocsIndexSchema, description="The index the archive would give, and its problems")
    def post(self) -> Any:
        """Check a docs archive without storing it.

        Answers the index the archive would give and the files it would skip.  For provider authors:
        needs ``providers:write`` in some namespace."""
        registry = current_registry()
        with registry.db.session() as session:
            identity = auth.current_identity(session)
            if identity.anonymous:
                raise auth.Unauthenticated("authentication required: send a registry token as "
                                           "'Authorization: Bearer <token>'")
            if "providers:write" not in identity.scopes_anywhere():
                raise auth.PermissionDenied(f"{auth.describe(identity)} may not publish providers anywhere, so it "
                                            "may not preview provider docs")
        stream = _docs_upload(registry)
        return _report_json(docs_svc.check_docs(stream, docs_limits(registry)))


# --- signing keys ----------------------------------------------------------------------------


class KeyArgs(ma.Schema):
    namespace = provider_name("namespace", required=True, metadata={"example": "acme"})
    ascii_armor = text(1024 * 1024, 1, required=True, metadata={"description": "Armored OpenPGP public key"})
    source = text(200, load_default="")
    source_url = text(500, load_default="")


class ManagedKeyArgs(ma.Schema):
    namespace = provider_name("namespace", required=True, metadata={"example": "acme"})
    key_type = ma.fields.String(load_default="ed25519", validate=ma.validate.OneOf(["ed25519", "rsa3072"]))


class KeyQuery(ma.Schema):
    namespace = text(64)


class KeySchema(ma.Schema):
    id = ma.fields.Integer()
    namespace = ma.fields.String()
    key_id = ma.fields.String()
    fingerprint = ma.fields.String()
    ascii_armor = ma.fields.String()
    source = ma.fields.String()
    source_url = ma.fields.String()
    managed = ma.fields.Boolean(metadata={"description": "The registry holds the private key and signs uploads"})
    created_at = ma.fields.String()
    created_by = ma.fields.String(metadata={"description": "who registered the key (empty for keys added "
                                            "before migration 0017)"})
    expires_at = ma.fields.String(allow_none=True)
    revoked_at = ma.fields.String(allow_none=True)


def key_json(key: GpgKey) -> dict[str, Any]:
    return {
        "id": key.id, "namespace": key.namespace.name, "key_id": key.key_id, "fingerprint": key.fingerprint,
        "ascii_armor": key.ascii_armor, "source": key.source, "source_url": key.source_url, "managed": key.managed,
        "created_at": key.created_at.isoformat(), "created_by": key.created_by,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _key_args() -> dict[str, Any]:
    """JSON or form fields: both are documented."""
    data = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    try:
        return KeyArgs().load(data or {})
    except ma.ValidationError as exc:
        raise ServiceError(f"invalid request: {exc.messages}", status=422) from None


@keys_blp.route("")
class Keys(MethodView):
    @keys_blp.arguments(KeyQuery, location="query")
    @keys_blp.response(200, KeySchema(many=True))
    @keys_blp.doc(security=PUBLIC)
    def get(self, query: dict[str, Any]) -> Any:
        """List signing keys (public parts), optionally of one namespace."""
        with current_registry().db.session() as session:
            keys = keys_svc.list_keys(session, [query["namespace"]] if query.get("namespace") else None)
            return [key_json(k) for k in keys if auth.allowed(auth.current_identity(session), "providers:read",
                                                              k.namespace)]

    @keys_blp.doc(requestBody={"required": True, "content": {
        "application/json": {"schema": KeyArgs}, "application/x-www-form-urlencoded": {"schema": KeyArgs}}})
    @keys_blp.response(201, KeySchema)
    @errors(keys_blp, 409)
    def post(self) -> Any:
        """Register a public key for a namespace (JSON or form fields ``namespace`` and ``ascii_armor``)."""
        args = _key_args()
        with current_registry().db.session() as session:
            _, actor = auth.require_in_namespace(session, "keys:manage", args["namespace"])
            key = keys_svc.add_public_key(session, actor, args["namespace"],
                                          args["ascii_armor"], args["source"], args["source_url"])
            return key_json(key)


@keys_blp.route("/managed")
class ManagedKeys(MethodView):
    @keys_blp.arguments(ManagedKeyArgs)
    @keys_blp.response(201, KeySchema)
    @errors(keys_blp, 409)
    def post(self, args: dict[str, Any]) -> Any:
        """Create a registry-managed key: unsigned provider uploads to the namespace are then signed with it."""
        registry = current_registry()
        with registry.db.session() as session:
            _, actor = auth.require_in_namespace(session, "admin", args["namespace"])
            key = keys_svc.create_managed_key(session, actor, args["namespace"],
                                              encryption_key(registry), args["key_type"])
            return key_json(key)


@keys_blp.route("/<id:key_id>")
class Key(MethodView):
    @keys_blp.response(200, KeySchema)
    @keys_blp.doc(security=PUBLIC)
    def get(self, key_id: int) -> Any:
        """One key, with its armored public part (exportable)."""
        with current_registry().db.session() as session:
            key = keys_svc.get_key(session, key_id)
            auth.require(session, "providers:read", key.namespace)
            return key_json(key)

    @keys_blp.response(200, KeySchema)
    def delete(self, key_id: int) -> Any:
        """Revoke a key: it is no longer offered to Terraform, so versions signed only by it stop installing."""
        with current_registry().db.session() as session:
            key = keys_svc.get_key(session, key_id)
            _, actor = auth.require_in_namespace(session, "keys:manage", key.namespace, create=False)
            keys_svc.revoke_key(session, actor, key)
            return key_json(key)
