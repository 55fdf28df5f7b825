"""Publish forms (a module archive, a provider release) and the version actions: deprecate,
undeprecate and delete module and provider versions.

Each form calls what the API calls (:func:`tfregistry.api.modules.publish_upload`,
:func:`tfregistry.api.providers.publish_upload`, the services' ``set_deprecated`` and
``delete_version``) after the same permission check (``auth.require`` with the same action), so
the limits, the size cap and the rules are the API's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import redirect, request, url_for
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import modules as api_modules
from tfregistry.api import providers as api_providers
from tfregistry.models import ModuleVersion, ProviderVersion
from tfregistry.services import ServiceError
from tfregistry.services import modules as module_svc
from tfregistry.services import providers as provider_svc
from tfregistry.web import current_registry
from tfregistry_webui.ui import bp, render_page

MODULE_FIELDS = ("namespace", "name", "system", "version", "description")
#: The setting that caps each form's upload.
UPLOAD_SETTINGS = {"tfr_webui.publish_module": "limits.module_archive_max_bytes",
                   "tfr_webui.publish_provider": "limits.provider_upload_max_bytes",
                   "tfr_webui.provider_docs_upload": "limits.provider_docs_max_bytes",
                   "tfr_webui.provider_docs_preview": "limits.provider_docs_max_bytes"}
PROVIDER_FIELDS = ("namespace", "type", "version", "protocols", "signing")
#: Which form field a service refusal is about, by words in its message (the message stays as written).
FIELD_WORDS = (("version", ("version",)), ("archive", ("archive", "tar", "gzip", "file")),
               ("namespace", ("namespace",)), ("system", ("system",)), ("name", ("name",)))
PROVIDER_FIELD_WORDS = (("shasums", ("sha256sums", "signature", "signing key", "signed", "managed key")),
                        ("protocols", ("protocol",)), ("packages", ("zip", "package", "platform")),
                        ("version", ("version",)), ("namespace", ("namespace",)), ("type", ("type",)))


def _field_of(message: str, words: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    lowered = message.lower()
    return next((field for field, keys in words if any(k in lowered for k in keys)), "form")


def may_publish(session: Session, action: str) -> tuple[auth.Identity, str | None]:
    """The caller, and why they cannot publish (``None`` when they might: the namespace decides)."""
    try:
        identity = auth.current_identity(session)
    except auth.Unauthenticated as exc:
        return auth.ANONYMOUS, str(exc)
    if identity.anonymous:
        return identity, "Sign in to publish."
    if action not in identity.scopes_anywhere():
        return identity, (f"{auth.describe(identity)} may not {auth.ACTION_WORDS[action]} in any namespace: "
                          f"that needs the {action} scope (the publisher or admin role). Ask an administrator.")
    return identity, None


def _validation_errors(exc: ma.ValidationError) -> dict[str, str]:
    messages = exc.messages if isinstance(exc.messages, dict) else {"form": exc.messages}
    return {field: " ".join(str(m) for m in (msgs if isinstance(msgs, list) else [msgs]))
            for field, msgs in messages.items()}


def too_large(setting: str) -> Any:
    limit = current_registry().settings[setting]
    return render_page("error.html", 413, careful=True, status=413, title="Upload too large",
                       message=f"The upload is larger than this registry accepts ({limit:,} bytes; setting {setting}). "
                               "Go back and choose a smaller file.")


@bp.errorhandler(413)
def _upload_too_large(error: Exception) -> Any:
    """Werkzeug stopped reading an upload at its cap (in the CSRF check or the view): the page, in the layout."""
    setting = UPLOAD_SETTINGS.get(request.endpoint or "", "limits.module_archive_max_bytes")
    return too_large(setting)


# --- modules ---------------------------------------------------------------------------------------


@bp.route("/publish/module", methods=["GET", "POST"])
@api_modules.upload_limit(UPLOAD_SETTINGS["tfr_webui.publish_module"])
def publish_module() -> Any:
    """Publish a module version from a ``.tar.gz`` archive; on success, to the version's page."""
    registry = current_registry()
    max_bytes = registry.settings["limits.module_archive_max_bytes"]
    with registry.db.session() as session:
        identity, why_not = may_publish(session, "modules:write")
        if request.method == "GET" or why_not:
            values = {f: request.args.get(f, "") for f in MODULE_FIELDS}
            return _module_form(values, {}, why_not, max_bytes, 200 if request.method == "GET" else 401
                                if identity.anonymous else 403)
        values = {f: request.form.get(f, "").strip() for f in MODULE_FIELDS}
        data = {**values, "archive": request.files.get("archive")}
        if data["archive"] is None or not data["archive"].filename:
            data.pop("archive")
        try:
            loaded = api_modules.PublishForm().load(data, unknown=ma.EXCLUDE)
        except ma.ValidationError as exc:
            return _module_form(values, _validation_errors(exc), None, max_bytes, 400)
        try:
            result = api_modules.publish_upload(session, loaded)
        except ServiceError as exc:
            session.rollback()
            if exc.status == 413:
                return too_large("limits.module_archive_max_bytes")
            field = "form" if exc.status in (401, 403) else _field_of(exc.message, FIELD_WORDS)
            return _module_form(values, {field: exc.message}, None, max_bytes, exc.status)
        except auth.PermissionDenied as exc:
            session.rollback()
            if isinstance(exc, auth.Hidden):
                raise
            return _module_form(values, {"namespace": str(exc)}, None, max_bytes, 403)
        mv = result.version
        m = mv.module
        return redirect(url_for("tfr_webui.module_page", ns=m.namespace.name, name=m.name, system=m.system,
                                version=mv.version), 303)


def _module_form(values: dict[str, str], errors: dict[str, str], why_not: str | None, max_bytes: int,
                 status: int = 200) -> Any:
    return render_page("publish/module.html", status, page_title="Publish a module", values=values, errors=errors,
                       why_not=why_not, max_bytes=max_bytes)


# --- providers -------------------------------------------------------------------------------------


@bp.route("/publish/provider", methods=["GET", "POST"])
@api_modules.upload_limit(UPLOAD_SETTINGS["tfr_webui.publish_provider"])
def publish_provider() -> Any:
    """Publish a provider release (zips, SHA256SUMS and its signature, or the namespace's managed key)."""
    registry = current_registry()
    max_bytes = registry.settings["limits.provider_upload_max_bytes"]
    with registry.db.session() as session:
        identity, why_not = may_publish(session, "providers:write")
        if request.method == "GET" or why_not:
            values = {f: request.args.get(f, "") for f in PROVIDER_FIELDS}
            values["signing"] = values["signing"] or "upload"
            return _provider_form(values, {}, why_not, max_bytes, 200 if request.method == "GET" else 401
                                  if identity.anonymous else 403)
        values = {f: request.form.get(f, "").strip() for f in PROVIDER_FIELDS}
        managed = values["signing"] == "managed"
        packages = [f for f in request.files.getlist("packages") if f.filename]
        errors: dict[str, str] = {}
        try:
            loaded = api_providers.ProviderPublishForm().load(
                {k: v for k, v in values.items() if k != "signing"} | ({"packages": packages} if packages else {}),
                unknown=ma.EXCLUDE)
        except ma.ValidationError as exc:
            errors = _validation_errors(exc)
        sums = None if managed else request.files.get("shasums")
        sig = None if managed else request.files.get("shasums_signature")
        sums, sig = (s if s is not None and s.filename else None for s in (sums, sig))
        if not managed and (sums is None or sig is None):
            errors["shasums"] = ("Upload both SHA256SUMS and its detached signature, or choose "
                                 "“Sign with the namespace's managed key”.")
        if errors:
            return _provider_form(values, errors, None, max_bytes, 400)
        try:
            result = api_providers.publish_upload(session, loaded, shasums=api_providers.small_file(sums, "SHA256SUMS"),
                                                  signature=api_providers.small_file(sig, "the signature"))
        except ServiceError as exc:
            session.rollback()
            field = "form" if exc.status in (401, 403) else _field_of(exc.message, PROVIDER_FIELD_WORDS)
            return _provider_form(values, {field: exc.message}, None, max_bytes, exc.status)
        except auth.PermissionDenied as exc:
            session.rollback()
            if isinstance(exc, auth.Hidden):
                raise
            return _provider_form(values, {"namespace": str(exc)}, None, max_bytes, 403)
        pv = result.version
        return redirect(url_for("tfr_webui.provider_page", ns=pv.provider.namespace.name, type_=pv.provider.type,
                                version=pv.version), 303)


def _provider_form(values: dict[str, str], errors: dict[str, str], why_not: str | None, max_bytes: int,
                   status: int = 200) -> Any:
    return render_page("publish/provider.html", status, page_title="Publish a provider", values=values,
                       errors=errors, why_not=why_not, max_bytes=max_bytes)


# --- version actions: deprecate, undeprecate, delete --------------------------------------------------


@dataclass(frozen=True)
class VersionActions:
    """What the caller may do on one module or provider version, and where the forms post; the module
    and provider pages pass it to the ``version_actions`` macro (``_version_actions.html``)."""

    kind: str
    label: str
    deprecated: bool
    reason: str | None
    may_deprecate: bool
    may_delete: bool
    deprecate_url: str
    undeprecate_url: str
    delete_url: str

    @property
    def any(self) -> bool:
        return self.may_deprecate or self.may_delete


def module_version_actions(session: Session, mv: ModuleVersion) -> VersionActions:
    """The caller's actions on a module version (the API's checks: ``modules:write`` to deprecate,
    ``modules:delete`` to delete, in the version's namespace)."""
    m = mv.module
    address = {"ns": m.namespace.name, "name": m.name, "system": m.system, "version": mv.version}
    return _actions(session, "module", f"{m.namespace.name}/{m.name}/{m.system} {mv.version}", mv,
                    m.namespace, "modules", "tfr_webui.module_version_", address)


def provider_version_actions(session: Session, pv: ProviderVersion) -> VersionActions:
    """The caller's actions on a provider version (``providers:write`` / ``providers:delete``); none on
    mirrored providers, which the API does not change either."""
    p = pv.provider
    address = {"ns": p.namespace.name, "type_": p.type, "version": pv.version}
    return _actions(session, "provider", f"{p.namespace.name}/{p.type} {pv.version}", pv, p.namespace,
                    "providers", "tfr_webui.provider_version_", address, mirrored=bool(p.hostname))


def _actions(session: Session, kind: str, label: str, version: Any, namespace: Any, family: str, endpoint: str,
             address: dict[str, str], mirrored: bool = False) -> VersionActions:
    try:
        identity = auth.current_identity(session)
    except auth.Unauthenticated:
        identity = auth.ANONYMOUS
    writable = not mirrored and not identity.anonymous
    return VersionActions(
        kind=kind, label=label, deprecated=version.deprecated, reason=version.deprecation_reason,
        may_deprecate=writable and auth.allowed(identity, f"{family}:write", namespace, session),
        may_delete=writable and auth.allowed(identity, f"{family}:delete", namespace, session),
        deprecate_url=url_for(endpoint + "deprecate", **address),
        undeprecate_url=url_for(endpoint + "undeprecate", **address),
        delete_url=url_for(endpoint + "delete", **address))


def _module_url(mv: ModuleVersion | None, ns: str, name: str, system: str) -> str:
    return url_for("tfr_webui.module_page", ns=ns, name=name, system=system, version=mv.version if mv else None)


@bp.post("/modules/<ns>/<name>/<system>/<version>/deprecate")
def module_version_deprecate(ns: str, name: str, system: str, version: str) -> Any:
    """Deprecate a module version, with an optional reason (``modules:write``, as ``PATCH`` in the API)."""
    return _set_module_deprecated(ns, name, system, version, True)


@bp.post("/modules/<ns>/<name>/<system>/<version>/undeprecate")
def module_version_undeprecate(ns: str, name: str, system: str, version: str) -> Any:
    """Lift a module version's deprecation."""
    return _set_module_deprecated(ns, name, system, version, False)


def _reason() -> str | None:
    reason = request.form.get("reason", "").strip()
    if len(reason) > 2000:
        raise ServiceError("the reason is longer than 2000 characters")
    return reason or None


def _set_module_deprecated(ns: str, name: str, system: str, version: str, deprecated: bool) -> Any:
    with current_registry().db.session() as session:
        identity, actor = auth.require_in_namespace(session, "modules:write", ns, create=False)
        auth.require_package(identity, "module", ns, f"{name}/{system}")
        mv = module_svc.get_version(session, ns, name, system, version)
        module_svc.set_deprecated(session, actor, mv, deprecated, _reason() if deprecated else None)
        return redirect(_module_url(mv, ns, name, system), 303)


@bp.route("/modules/<ns>/<name>/<system>/<version>/delete", methods=["GET", "POST"])
def module_version_delete(ns: str, name: str, system: str, version: str) -> Any:
    """Delete a module version and its archive (``modules:delete``, as ``DELETE`` in the API), after a
    confirmation page."""
    registry = current_registry()
    with registry.db.session() as session:
        _, actor = auth.require_in_namespace(session, "modules:delete", ns, create=False)
        mv = module_svc.get_version(session, ns, name, system, version)
        if request.method == "GET":
            return render_page("publish/delete.html", page_title=f"Delete {ns}/{name}/{system} {version}",
                               label=f"{ns}/{name}/{system} {version}", kind="module version",
                               action=request.path, cancel=_module_url(mv, ns, name, system))
        module_svc.delete_version(session, registry.storage, actor, mv)
        remaining = module_svc.find_module(session, ns, name, system)
        return redirect(_module_url(None, ns, name, system) if remaining is not None
                        else url_for("tfr_webui.namespace", ns=ns), 303)


def _provider_url(ns: str, type_: str, version: str | None = None) -> str:
    return url_for("tfr_webui.provider_page", ns=ns, type_=type_, version=version)


@bp.post("/providers/<ns>/<type_>/<version>/deprecate")
def provider_version_deprecate(ns: str, type_: str, version: str) -> Any:
    """Deprecate a provider version (``providers:write``); Terraform shows the reason as a warning."""
    return _set_provider_deprecated(ns, type_, version, True)


@bp.post("/providers/<ns>/<type_>/<version>/undeprecate")
def provider_version_undeprecate(ns: str, type_: str, version: str) -> Any:
    """Lift a provider version's deprecation."""
    return _set_provider_deprecated(ns, type_, version, False)


def _set_provider_deprecated(ns: str, type_: str, version: str, deprecated: bool) -> Any:
    with current_registry().db.session() as session:
        identity, actor = auth.require_in_namespace(session, "providers:write", ns, create=False)
        auth.require_package(identity, "provider", ns, type_)
        pv = provider_svc.get_version(session, ns, type_, version)
        provider_svc.set_deprecated(session, actor, pv, deprecated, _reason() if deprecated else None)
        return redirect(_provider_url(ns, type_, version), 303)


@bp.route("/providers/<ns>/<type_>/<version>/delete", methods=["GET", "POST"])
def provider_version_delete(ns: str, type_: str, version: str) -> Any:
    """Delete a provider version with its packages (``providers:delete``), after a confirmation page."""
    registry = current_registry()
    with registry.db.session() as session:
        _, actor = auth.require_in_namespace(session, "providers:delete", ns, create=False)
        pv = provider_svc.get_version(session, ns, type_, version)
        if request.method == "GET":
            return render_page("publish/delete.html", page_title=f"Delete {ns}/{type_} {version}",
                               label=f"{ns}/{type_} {version}", kind="provider version", action=request.path,
                               cancel=_provider_url(ns, type_, version))
        provider_svc.delete_version(session, registry.storage, actor, pv)
        return redirect(_provider_url(ns, type_), 303)
