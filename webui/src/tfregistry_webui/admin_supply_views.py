"""Administration of what the registry takes in: signing keys (per namespace) and provider mirrors
(configurations, runs, the approval queue, policies, pull-through statistics).

Every page calls what the API calls, after the same permission check: the signing-key services
(:mod:`tfregistry.services.gpgkeys`) with ``keys:manage`` (``admin`` for registry-managed keys) in the
namespace, as ``/api/v1/gpg-keys`` does; the mirroring services (:mod:`tfregistry.services.mirroring`)
behind :func:`tfregistry.api.mirrors.session_for` (``mirrors:read`` to look, ``mirrors:manage`` to change),
as ``/api/v1/mirrors`` does.  So the refusals, the checks and the audit entries are the API's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import marshmallow as ma
from flask import flash, get_flashed_messages, redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.api import mirrors as api_mirrors
from tfregistry.api import providers as api_providers
from tfregistry.models import MirrorConfig, MirrorPolicy, Namespace, utcnow
from tfregistry.services import Conflict, NotFound, ServiceError, mirroring
from tfregistry.services import gpgkeys as keys_svc
from tfregistry.services.pullthrough import all_stats
from tfregistry.web import current_registry
from tfregistry_webui.ui import bp, render_page

#: Keys expiring within this many days are flagged on the keys pages.
KEY_EXPIRY_NOTICE_DAYS = 30
KEY_TYPES = {"ed25519": "Ed25519 (recommended)", "rsa3072": "RSA 3072"}
MIRROR_TEXT_FIELDS = ("upstream_host", "upstream_url", "namespace", "type", "version_constraint", "latest",
                      "platforms", "trusted_fingerprints", "interval_seconds")
#: Which mirror form field a service refusal is about, by words in its message.
MIRROR_FIELD_WORDS = (("version_constraint", ("constraint",)), ("upstream_url", ("upstream_url",)),
                      ("upstream_token", ("upstream_token",)), ("type", ("type",)),
                      ("namespace", ("namespace",)))


def _field_of(message: str, words: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    lowered = message.lower()
    return next((field for field, keys in words if any(k in lowered for k in keys)), "form")


def _validation_errors(exc: ma.ValidationError) -> dict[str, str]:
    messages = exc.messages if isinstance(exc.messages, dict) else {"form": exc.messages}
    result = {}
    for field, msgs in messages.items():
        if isinstance(msgs, dict):  # a list field: {index: [messages]}
            msgs = [m for inner in msgs.values() for m in (inner if isinstance(inner, list) else [inner])]
        result[field] = " ".join(str(m) for m in (msgs if isinstance(msgs, list) else [msgs]))
    return result


def _caller(session: Session, action: str) -> auth.Identity:
    """The signed-in caller, who must hold ``action`` somewhere (401 for nobody, else 403)."""
    identity = auth.current_identity(session)
    if identity.anonymous:
        raise auth.Unauthenticated("Sign in to administer the registry.")
    if auth.REQUIRED_SCOPE.get(action, action) not in identity.scopes_anywhere():
        raise auth.PermissionDenied(f"{auth.describe(identity)} may not {auth.ACTION_WORDS[action]} anywhere")
    return identity


# --- signing keys --------------------------------------------------------------------------------------------


def _key_status(key: Any, now: Any) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if key.expires_at is not None and key.expires_at <= now + timedelta(days=KEY_EXPIRY_NOTICE_DAYS):
        return "expiring"
    return "active"


@bp.get("/admin/keys")
def admin_keys() -> Any:
    """The namespaces whose signing keys the caller manages, with their keys' state; ``?namespace=``
    (the "open a namespace" form) goes to that namespace's page."""
    wanted = request.args.get("namespace", "").strip()
    if wanted:
        return redirect(url_for("tfr_webui.admin_namespace_keys", ns=wanted), 303)
    with current_registry().db.session() as session:
        identity = _caller(session, "keys:manage")
        namespaces = [ns for ns in session.scalars(select(Namespace).order_by(Namespace.name))
                      if auth.allowed(identity, "keys:manage", ns, session)]
        keys = keys_svc.list_keys(session, [ns.name for ns in namespaces]) if namespaces else []
        now = utcnow()
        rows = []
        for ns in namespaces:
            own = [k for k in keys if k.namespace_id == ns.id]
            statuses = [_key_status(k, now) for k in own]
            rows.append({"name": ns.name, "active": sum(s in ("active", "expiring") for s in statuses),
                         "expiring": statuses.count("expiring"), "managed": any(k.managed and not k.revoked_at
                                                                                 for k in own),
                         "total": len(own)})
        return render_page("admin/keys/index.html", page_title="Signing keys", rows=rows,
                           notice_days=KEY_EXPIRY_NOTICE_DAYS)


def _keys_page(session: Session, ns: str, status: int = 200, *, errors: dict[str, str] | None = None,
               managed_errors: dict[str, str] | None = None, values: dict[str, str] | None = None) -> Any:
    identity = auth.current_identity(session)
    namespace = auth.namespace_for(session, ns)
    keys = keys_svc.list_keys(session, [ns]) if namespace.id is not None else []
    now = utcnow()
    return render_page("admin/keys/namespace.html", status, page_title=f"Signing keys of {ns}", ns=ns, keys=keys,
                       statuses={k.id: _key_status(k, now) for k in keys},
                       signed=keys_svc.signed_versions(session, keys),
                       may_create_managed=auth.allowed(identity, "admin", namespace, session),
                       has_managed=any(k.managed and not k.revoked_at for k in keys), key_types=KEY_TYPES,
                       errors=errors or {}, managed_errors=managed_errors or {},
                       values={"ascii_armor": "", "source": "", "source_url": "", "key_type": "ed25519",
                               **(values or {})},
                       notices=get_flashed_messages(), notice_days=KEY_EXPIRY_NOTICE_DAYS)


@bp.get("/admin/keys/<ns>")
def admin_namespace_keys(ns: str) -> Any:
    """One namespace's keys (fingerprint, expiry, what each signed) and the forms to add or create one."""
    with current_registry().db.session() as session:
        auth.require_in_namespace(session, "keys:manage", ns, create=False)
        return _keys_page(session, ns)


@bp.post("/admin/keys/<ns>")
def admin_add_key(ns: str) -> Any:
    """Register an uploaded ASCII-armoured public key (the API's checks: ``POST /api/v1/gpg-keys``)."""
    values = {f: request.form.get(f, "").strip() for f in ("ascii_armor", "source", "source_url")}
    with current_registry().db.session() as session:
        auth.require_in_namespace(session, "keys:manage", ns, create=False)
        try:
            args = api_providers.KeyArgs().load({**values, "namespace": ns})
        except ma.ValidationError as exc:
            errors = _validation_errors(exc)
            if "namespace" in errors:
                errors["form"] = errors.pop("namespace")
            return _keys_page(session, ns, 400, errors=errors, values=values)
        try:
            # as the API: checked again with create=True, which makes a new namespace in the caller's organization
            _, actor = auth.require_in_namespace(session, "keys:manage", ns)
            key = keys_svc.add_public_key(session, actor, ns, args["ascii_armor"], args["source"],
                                          args["source_url"])
        except ServiceError as exc:
            session.rollback()
            field = "ascii_armor" if "key" in exc.message.lower() or isinstance(exc, Conflict) else "form"
            return _keys_page(session, ns, exc.status, errors={field: exc.message}, values=values)
        flash(f"Key {key.key_id} added to {ns}.")
        return redirect(url_for("tfr_webui.admin_namespace_keys", ns=ns), 303)


@bp.post("/admin/keys/<ns>/managed")
def admin_create_managed_key(ns: str) -> Any:
    """Create a registry-managed key (``admin`` in the namespace, as ``POST /api/v1/gpg-keys/managed``)."""
    key_type = request.form.get("key_type", "ed25519")
    registry = current_registry()
    with registry.db.session() as session:
        auth.require_in_namespace(session, "admin", ns, create=False)
        if key_type not in KEY_TYPES:
            return _keys_page(session, ns, 400, managed_errors={"key_type": "Choose one of the offered key types."})
        try:
            _, actor = auth.require_in_namespace(session, "admin", ns)
            key = keys_svc.create_managed_key(session, actor, ns, api_providers.encryption_key(registry), key_type)
        except ServiceError as exc:
            session.rollback()
            return _keys_page(session, ns, exc.status, managed_errors={"key_type": exc.message},
                              values={"key_type": key_type})
        flash(f"Registry-managed key {key.key_id} created for {ns}: unsigned provider uploads are now signed with it.")
        return redirect(url_for("tfr_webui.admin_namespace_keys", ns=ns), 303)


@bp.route("/admin/keys/<ns>/<int:key_id>/revoke", methods=["GET", "POST"])
def admin_revoke_key(ns: str, key_id: int) -> Any:
    """Revoke a key after a confirmation page (``DELETE /api/v1/gpg-keys/ID``)."""
    with current_registry().db.session() as session:
        key = keys_svc.get_key(session, key_id)
        _, actor = auth.require_in_namespace(session, "keys:manage", key.namespace, create=False)
        if key.namespace.name != ns:
            raise auth.Hidden(f"no signing key {key_id} in namespace {ns!r}")
        if request.method == "GET":
            signed = keys_svc.signed_versions(session, [key])[key.id]
            return render_page("admin/keys/revoke.html", page_title=f"Revoke key {key.key_id}", key=key, ns=ns,
                               signed=signed)
        keys_svc.revoke_key(session, actor, key)
        flash(f"Key {key.key_id} is revoked.")
        return redirect(url_for("tfr_webui.admin_namespace_keys", ns=ns), 303)


# --- mirrors: configurations -------------------------------------------------------------------------------


def _last_runs(session: Session, configs: list[MirrorConfig]) -> dict[int, Any]:
    return {c.id: next(iter(mirroring.recent_runs(session, c.id, 1)), None) for c in configs}


@bp.get("/admin/mirrors")
def admin_mirrors() -> Any:
    """Mirror configurations with their last run, and the approval queue (``mirrors:read``)."""
    session, identity = api_mirrors.session_for("mirrors:read")
    with session:
        configs = list(session.scalars(select(MirrorConfig).order_by(MirrorConfig.id)))
        settings = current_registry().settings
        return render_page("admin/mirrors/index.html", page_title="Mirrors", configs=configs,
                           pending=[c for c in configs if c.status == "pending"],
                           last_runs=_last_runs(session, configs),
                           manager=auth.allowed(identity, "mirrors:manage", None, session),
                           may_request=settings["mirror.require_approval"], notices=get_flashed_messages())


def _mirror_values(config: MirrorConfig | None = None) -> dict[str, str]:
    if config is None:
        return {**dict.fromkeys(MIRROR_TEXT_FIELDS, ""), "enabled": "on"}
    values = {f: "" if getattr(config, f) is None else str(getattr(config, f)) for f in MIRROR_TEXT_FIELDS}
    values["platforms"] = " ".join(config.platforms)
    values["trusted_fingerprints"] = " ".join(config.trusted_fingerprints)
    values["enabled"] = "on" if config.enabled else ""
    return values


def _mirror_args(values: dict[str, str], token: str) -> dict[str, Any]:
    """The form's fields as the API's :class:`~tfregistry.api.mirrors.MirrorArgs` (validated by it)."""
    data: dict[str, Any] = {k: values[k] for k in ("upstream_host", "namespace", "type")}
    for key in ("upstream_url", "version_constraint"):
        data[key] = values[key] or None
    for key in ("latest", "interval_seconds"):  # whole numbers in the API's JSON: a form sends text
        data[key] = int(values[key]) if values[key].isdigit() and len(values[key]) < 12 else values[key] or None
    for key in ("platforms", "trusted_fingerprints"):
        data[key] = values[key].replace(",", " ").split()
    data["enabled"] = values["enabled"] == "on"
    if token:
        data["upstream_token"] = token
    return api_mirrors.MirrorArgs().load(data)


def _mirror_form(config: MirrorConfig | None, values: dict[str, str], errors: dict[str, str], manager: bool,
                 status: int = 200, has_token: bool = False) -> Any:
    title = f"Edit mirror {config.id}" if config else ("New mirror" if manager else "Request a mirror")
    return render_page("admin/mirrors/form.html", status, page_title=title, title=title, config=config,
                       values=values, errors=errors, manager=manager, has_token=has_token)


def _read_mirror_form() -> tuple[dict[str, str], str]:
    values = {f: request.form.get(f, "").strip() for f in MIRROR_TEXT_FIELDS}
    values["enabled"] = "on" if request.form.get("enabled") else ""
    return values, request.form.get("upstream_token", "")


@bp.route("/admin/mirrors/new", methods=["GET", "POST"])
def admin_new_mirror() -> Any:
    """Create a configuration (mirror managers), or request one (``mirror.require_approval``)."""
    registry = current_registry()
    may_request = registry.settings["mirror.require_approval"]
    session, identity = api_mirrors.session_for("mirrors:read" if may_request else "mirrors:manage")
    with session:
        manager = auth.allowed(identity, "mirrors:manage", None, session)
        if request.method == "GET":
            return _mirror_form(None, _mirror_values(), {}, manager)
        values, token = _read_mirror_form()
        try:
            args = _mirror_args(values, token)
        except ma.ValidationError as exc:
            return _mirror_form(None, values, _validation_errors(exc), manager, 400)
        try:
            config = mirroring.create_config(session, auth.request_actor(identity), args,
                                             api_providers.encryption_key(registry), manager=manager)
            session.commit()
        except ServiceError as exc:
            session.rollback()
            field = "form" if exc.status == 403 and "polic" in exc.message else _field_of(exc.message,
                                                                                          MIRROR_FIELD_WORDS)
            return _mirror_form(None, values, {field: exc.message}, manager, exc.status)
        flash(f"Mirror {config.id} created." if manager else f"Mirror request {config.id} sent: a mirror manager "
              "must approve it before it syncs.")
        return redirect(url_for("tfr_webui.admin_mirror", mirror_id=config.id), 303)


@bp.get("/admin/mirrors/<int:mirror_id>")
def admin_mirror(mirror_id: int) -> Any:
    """One configuration: its settings, its decision, its runs with per-version outcomes."""
    session, identity = api_mirrors.session_for("mirrors:read")
    with session:
        config = mirroring.get_config(session, mirror_id)
        runs = mirroring.recent_runs(session, mirror_id)
        return render_page("admin/mirrors/detail.html", page_title=f"Mirror {config.id}", config=config, runs=runs,
                           outcomes={r.id: mirroring.run_versions(session, config, r) for r in runs},
                           refusal=mirroring.sync_refusal(session, config),
                           manager=auth.allowed(identity, "mirrors:manage", None, session),
                           has_token=config.upstream_token_encrypted is not None, notices=get_flashed_messages())


@bp.route("/admin/mirrors/<int:mirror_id>/edit", methods=["GET", "POST"])
def admin_edit_mirror(mirror_id: int) -> Any:
    """Change a configuration (``mirrors:manage``, as ``PUT /api/v1/mirrors/ID``); an empty token field keeps
    the stored token."""
    registry = current_registry()
    session, identity = api_mirrors.session_for("mirrors:manage")
    with session:
        config = mirroring.get_config(session, mirror_id)
        has_token = config.upstream_token_encrypted is not None
        if request.method == "GET":
            return _mirror_form(config, _mirror_values(config), {}, True, has_token=has_token)
        values, token = _read_mirror_form()
        try:
            args = _mirror_args(values, token)
        except ma.ValidationError as exc:
            return _mirror_form(config, values, _validation_errors(exc), True, 400, has_token)
        try:
            mirroring.update_config(session, auth.request_actor(identity), config, args,
                                    api_providers.encryption_key(registry))
            session.commit()
        except ServiceError as exc:
            session.rollback()
            config = mirroring.get_config(session, mirror_id)
            field = "form" if exc.status == 403 else _field_of(exc.message, MIRROR_FIELD_WORDS)
            return _mirror_form(config, values, {field: exc.message}, True, exc.status, has_token)
        flash(f"Mirror {mirror_id} saved.")
        return redirect(url_for("tfr_webui.admin_mirror", mirror_id=mirror_id), 303)


@bp.route("/admin/mirrors/<int:mirror_id>/delete", methods=["GET", "POST"])
def admin_delete_mirror(mirror_id: int) -> Any:
    """Delete a configuration after a confirmation page; what it mirrored stays."""
    session, identity = api_mirrors.session_for("mirrors:manage")
    with session:
        config = mirroring.get_config(session, mirror_id)
        if request.method == "GET":
            return render_page("admin/mirrors/delete.html", page_title=f"Delete mirror {mirror_id}", config=config)
        mirroring.delete_config(session, auth.request_actor(identity), config)
        session.commit()
        flash(f"Mirror {mirror_id} deleted; the providers it mirrored stay.")
        return redirect(url_for("tfr_webui.admin_mirrors"), 303)


@bp.post("/admin/mirrors/<int:mirror_id>/sync")
def admin_sync_mirror(mirror_id: int) -> Any:
    """Start a sync now (``POST /api/v1/mirrors/ID/sync``); the run appears in the history."""
    job = api_mirrors.start_sync(mirror_id)
    flash(f"Sync of mirror {mirror_id} started (job {job.id}, {job.status}).")
    return redirect(url_for("tfr_webui.admin_mirror", mirror_id=mirror_id), 303)


@bp.post("/admin/mirrors/<int:mirror_id>/<any(approve, reject):decision>")
def admin_decide_mirror(mirror_id: int, decision: str) -> Any:
    """Approve or reject a request with an optional note (``POST /api/v1/mirrors/ID/approve|reject``)."""
    note = request.form.get("note", "").strip()
    if len(note) > 2000:
        raise ServiceError("the note is longer than 2000 characters")
    session, identity = api_mirrors.session_for("mirrors:manage")
    with session:
        config = mirroring.get_config(session, mirror_id)
        mirroring.decide_checked(session, auth.request_actor(identity), config, decision == "approve", note or None)
        session.commit()
        flash(f"Mirror {mirror_id} {'approved' if decision == 'approve' else 'rejected'}.")
    if request.form.get("back") == "list":  # decided in the queue of the list page: back there
        return redirect(url_for("tfr_webui.admin_mirrors"), 303)
    return redirect(url_for("tfr_webui.admin_mirror", mirror_id=mirror_id), 303)


# --- mirrors: policies and pull-through ------------------------------------------------------------------


def _policies_page(session: Session, identity: auth.Identity, status: int = 200, *,
                   errors: dict[str, str] | None = None, values: dict[str, str] | None = None) -> Any:
    address = request.args.get("address", "").strip()[:400]
    verdict = None
    if address:
        parts = address.split("/")
        if len(parts) != 3 or not all(parts):
            verdict = {"allowed": False, "reason": "Write the full address: host/namespace/type, "
                                                   "e.g. registry.terraform.io/hashicorp/aws."}
        else:
            refusal = mirroring.policy_refusal(session, *parts)
            verdict = {"allowed": refusal is None, "reason": refusal}
    policies = list(session.scalars(select(MirrorPolicy).order_by(MirrorPolicy.id)))
    return render_page("admin/mirrors/policies.html", status, page_title="Mirror policies", policies=policies,
                       manager=auth.allowed(identity, "mirrors:manage", None, session), address=address,
                       verdict=verdict, effects=mirroring.POLICY_EFFECTS, errors=errors or {},
                       values={"effect": "allow", "pattern": "", "description": "", **(values or {})},
                       notices=get_flashed_messages())


@bp.get("/admin/mirrors/policies")
def admin_mirror_policies() -> Any:
    """Allow/deny rules and the "would this be allowed?" tester (the policy check syncs use)."""
    session, identity = api_mirrors.session_for("mirrors:read")
    with session:
        return _policies_page(session, identity)


@bp.post("/admin/mirrors/policies")
def admin_add_mirror_policy() -> Any:
    """Add a rule (``mirrors:manage``, as ``POST /api/v1/mirrors/policies``)."""
    values = {f: request.form.get(f, "").strip() for f in ("effect", "pattern", "description")}
    session, identity = api_mirrors.session_for("mirrors:manage")
    with session:
        try:
            args = api_mirrors.PolicyArgs().load(values)
        except ma.ValidationError as exc:
            return _policies_page(session, identity, 400, errors=_validation_errors(exc), values=values)
        try:
            policy = mirroring.add_policy(session, auth.request_actor(identity), args["effect"], args["pattern"],
                                          args["description"])
            session.commit()
        except ServiceError as exc:
            session.rollback()
            return _policies_page(session, identity, exc.status, errors={"pattern": exc.message}, values=values)
        flash(f"Policy {policy.id} added: {policy.effect} {policy.pattern}.")
        return redirect(url_for("tfr_webui.admin_mirror_policies"), 303)


@bp.route("/admin/mirrors/policies/<int:policy_id>/delete", methods=["GET", "POST"])
def admin_delete_mirror_policy(policy_id: int) -> Any:
    """Delete a rule after a confirmation page (``DELETE /api/v1/mirrors/policies/ID``)."""
    session, identity = api_mirrors.session_for("mirrors:manage")
    with session:
        policy = session.get(MirrorPolicy, policy_id)
        if request.method == "GET":
            if policy is None:
                raise NotFound(f"no mirror policy {policy_id}")
            return render_page("admin/mirrors/policy_delete.html", page_title=f"Delete mirror policy {policy_id}",
                               policy=policy)
        mirroring.delete_policy(session, auth.request_actor(identity), policy_id)
        session.commit()
        flash(f"Policy {policy_id} deleted.")
        return redirect(url_for("tfr_webui.admin_mirror_policies"), 303)


@bp.get("/admin/mirrors/pull-through")
def admin_pull_through() -> Any:
    """Pull-through statistics per upstream host (``GET /api/v1/mirrors/pull-through``)."""
    session, _ = api_mirrors.session_for("mirrors:read")
    with session:
        settings = current_registry().settings
        return render_page("admin/mirrors/pull_through.html", page_title="Pull-through cache",
                           stats=sorted(all_stats(session).items()), enabled=settings["mirror.pull_through"],
                           upstreams=settings["mirror.upstreams"])
