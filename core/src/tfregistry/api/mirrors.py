"""``/api/v1/mirrors``: configurations that copy providers from upstream registries, syncs and their history."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from tfregistry import auth
from tfregistry.api import MAX_ID, api_error, errors, flag, pattern, provider_name, text, whole
from tfregistry.api.providers import encryption_key
from tfregistry.models import MirrorConfig, MirrorPolicy, MirrorRun
from tfregistry.protocol import register_error_handlers
from tfregistry.provider_packages import KNOWN_ARCH, KNOWN_OS
from tfregistry.services import ServiceError, mirroring
from tfregistry.web import current_registry

blp = Blueprint("api_mirrors", __name__, url_prefix="/api/v1/mirrors", description="Provider mirroring")
register_error_handlers(blp, api_error)


def _platform(value: str) -> None:
    os_, _, arch = value.partition("_")
    if os_ not in KNOWN_OS or arch not in KNOWN_ARCH:
        raise ma.ValidationError(f"{value!r} is not OS_ARCH, e.g. linux_amd64")


#: ``OS_ARCH`` of the known systems and architectures.
PLATFORM = f"^({'|'.join(sorted(KNOWN_OS))})_({'|'.join(sorted(KNOWN_ARCH))})$"


#: http(s) URL without spaces, control characters, query or fragment.
UPSTREAM_URL = r"^https?://[^\u0000- /?#\u007f]+(/[^\u0000- ?#\u007f]*)?$"


class MirrorArgs(ma.Schema):
    upstream_host = ma.fields.String(required=True, validate=[ma.validate.Length(1, 255),
                                                              pattern(r"^[A-Za-z0-9.-]+(:[0-9]+)?$")],
                                     metadata={"description": "Origin host, e.g. registry.terraform.io",
                                               "example": "registry.terraform.io"})
    upstream_url = ma.fields.String(load_default=None, allow_none=True, validate=[
                                        ma.validate.Length(max=500), pattern(UPSTREAM_URL)],
                                    metadata={"description": "Where to reach it, if not https://upstream_host"})
    upstream_token = text(4096, load_default=None, allow_none=True, load_only=True)
    namespace = provider_name("namespace", required=True, metadata={"example": "hashicorp"})
    type = provider_name("type", required=True, metadata={"example": "random"})
    version_constraint = text(200, load_default=None, allow_none=True,
                              metadata={"description": "e.g. '>= 5.0, < 6.0' or '~> 3.2'"})
    latest = whole(load_default=None, allow_none=True, validate=ma.validate.Range(min=1, max=MAX_ID))
    platforms = ma.fields.List(ma.fields.String(validate=[pattern(PLATFORM), _platform],
                                                metadata={"example": "linux_amd64"}),
                               load_default=list, validate=ma.validate.Length(max=64))
    trusted_fingerprints = ma.fields.List(ma.fields.String(validate=[ma.validate.Length(16, 40),
                                                                            pattern(r"^[0-9A-Fa-f]+$")]),
                                          load_default=list, validate=ma.validate.Length(max=64),
                                          metadata={"description": "Accept only these upstream keys (default: "
                                                    "the keys the upstream offers)"})
    interval_seconds = whole(load_default=None, allow_none=True,
                                         validate=ma.validate.Range(min=60, max=MAX_ID))
    enabled = flag(load_default=True)


class MirrorSchema(MirrorArgs):
    id = ma.fields.Integer()
    status = ma.fields.String(metadata={"description": "approved, pending (waits for a mirror manager) or rejected"})
    requested_by = ma.fields.String()
    decided_by = ma.fields.String(allow_none=True)
    decided_at = ma.fields.DateTime(allow_none=True)
    decision_note = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    last_run_at = ma.fields.DateTime(allow_none=True)
    has_token = ma.fields.Boolean()


class RunSchema(ma.Schema):
    id = ma.fields.Integer()
    status = ma.fields.String()
    started_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)
    versions = ma.fields.Integer()
    packages = ma.fields.Integer()
    skipped = ma.fields.Integer()
    bytes = ma.fields.Integer()
    errors = ma.fields.List(ma.fields.String())
    duration_seconds = ma.fields.Float(allow_none=True)


def _json(config: MirrorConfig) -> dict[str, Any]:
    data = {c.name: getattr(config, c.name) for c in MirrorConfig.__table__.columns
            if c.name != "upstream_token_encrypted"}
    data["has_token"] = config.upstream_token_encrypted is not None
    return data


def session_for(action: str) -> Any:
    """A session and the caller, who must hold ``action`` (``mirrors:read``/``mirrors:manage``) in some
    organization or registry-wide: mirror configurations are shared by the whole registry."""
    session = current_registry().db.sessionmaker()
    try:
        identity = auth.require(session, action, None)
    except BaseException:
        session.close()
        raise
    return session, identity


@blp.route("")
class Mirrors(MethodView):
    @blp.response(200, MirrorSchema(many=True))
    def get(self) -> Any:
        """List mirror configurations (``mirrors:read``)."""
        session, _ = session_for("mirrors:read")
        with session:
            return [_json(c) for c in session.query(MirrorConfig).order_by(MirrorConfig.id)]

    @blp.arguments(MirrorArgs)
    @blp.response(201, MirrorSchema)
    def post(self, args: dict[str, Any]) -> Any:
        """Create a mirror configuration (``mirrors:manage``).  With ``mirror.require_approval``, callers
        holding only ``mirrors:read`` may request one: it waits (``status: pending``) until a mirror
        manager approves it.  Configurations the mirror policies deny are refused (403)."""
        registry = current_registry()
        may_request = registry.settings["mirror.require_approval"]
        session, identity = session_for("mirrors:read" if may_request else "mirrors:manage")
        with session:
            config = mirroring.create_config(session, auth.request_actor(identity), args, encryption_key(registry),
                                             manager=auth.allowed(identity, "mirrors:manage", None, session))
            session.commit()
            return _json(config)


@blp.route("/pull-through")
class PullThroughStats(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """Pull-through cache statistics per upstream host: hits, misses, bytes saved, last upstream error."""
        from tfregistry.services.pullthrough import all_stats

        session, _ = session_for("mirrors:read")
        with session:
            return all_stats(session)


@blp.route("/<id:mirror_id>")
class Mirror(MethodView):
    @blp.response(200, MirrorSchema)
    def get(self, mirror_id: int) -> Any:
        session, _ = session_for("mirrors:read")
        with session:
            return _json(mirroring.get_config(session, mirror_id))

    @blp.arguments(MirrorArgs)
    @blp.response(200, MirrorSchema)
    def put(self, args: dict[str, Any], mirror_id: int) -> Any:
        """Replace a mirror configuration (``mirrors:manage``)."""
        session, identity = session_for("mirrors:manage")
        with session:
            config = mirroring.get_config(session, mirror_id)
            mirroring.update_config(session, auth.request_actor(identity), config, args,
                                    encryption_key(current_registry()))
            session.commit()
            return _json(config)

    @blp.response(204)
    def delete(self, mirror_id: int) -> None:
        """Delete a configuration (providers already mirrored stay)."""
        session, identity = session_for("mirrors:manage")
        with session:
            mirroring.delete_config(session, auth.request_actor(identity), mirroring.get_config(session, mirror_id))
            session.commit()


@blp.route("/<id:mirror_id>/sync")
class MirrorSync(MethodView):
    @blp.response(202)
    @errors(blp, 409)
    def post(self, mirror_id: int) -> Any:
        """Start a sync now (a background job on the ``mirror`` queue)."""
        job = start_sync(mirror_id)
        return {"job": job.id, "status": job.status}


def start_sync(mirror_id: int) -> Any:
    """Enqueue a sync of ``mirror_id`` for a caller holding ``mirrors:manage`` (409 with the reason when it
    may not sync now); returns the job.  The API and the web UI both call it."""
    session, _ = session_for("mirrors:manage")
    with session:
        refusal = mirroring.sync_refusal(session, mirroring.get_config(session, mirror_id))
        if refusal:
            raise ServiceError(refusal, status=409)
    return current_registry().jobs.enqueue("tfregistry.jobs:mirror_sync", mirror_id, queue="mirror",
                                           job_id=f"mirror-{mirror_id}")


@blp.route("/<id:mirror_id>/status")
class MirrorStatus(MethodView):
    @blp.response(200, RunSchema(many=True))
    def get(self, mirror_id: int) -> Any:
        """Run history, newest first: counts, bytes, durations, errors."""
        session, _ = session_for("mirrors:read")
        with session:
            mirroring.get_config(session, mirror_id)
            return [{**{c.name: getattr(r, c.name) for c in MirrorRun.__table__.columns},
                     "duration_seconds": (r.finished_at - r.started_at).total_seconds() if r.finished_at else None}
                    for r in mirroring.recent_runs(session, mirror_id)]


class DecisionArgs(ma.Schema):
    note = text(load_default=None, allow_none=True)


@blp.route("/<id:mirror_id>/approve")
class MirrorApprove(MethodView):
    @blp.arguments(DecisionArgs)
    @blp.response(200, MirrorSchema)
    def post(self, args: dict[str, Any], mirror_id: int) -> Any:
        """Approve a requested mirror configuration (``mirrors:manage``); it then syncs on its schedule."""
        return _decide(mirror_id, True, args["note"])


@blp.route("/<id:mirror_id>/reject")
class MirrorReject(MethodView):
    @blp.arguments(DecisionArgs)
    @blp.response(200, MirrorSchema)
    def post(self, args: dict[str, Any], mirror_id: int) -> Any:
        """Reject a requested (or stop an approved) mirror configuration (``mirrors:manage``)."""
        return _decide(mirror_id, False, args["note"])


def _decide(mirror_id: int, approve: bool, note: str | None) -> Any:
    session, identity = session_for("mirrors:manage")
    with session:
        config = mirroring.get_config(session, mirror_id)
        mirroring.decide_checked(session, auth.request_actor(identity), config, approve, note)
        session.commit()
        return _json(config)


class PolicyArgs(ma.Schema):
    effect = ma.fields.String(required=True, validate=ma.validate.OneOf(mirroring.POLICY_EFFECTS))
    pattern = text(255, required=True, metadata={
        "description": "host[/namespace[/type]] with * wildcards, e.g. registry.terraform.io/hashicorp/*"})
    description = text(load_default="")


class PolicySchema(ma.Schema):
    effect = ma.fields.String(metadata={"enum": list(mirroring.POLICY_EFFECTS)})
    pattern = ma.fields.String(metadata={"description": "Normalised: lower case, padded to host/namespace/type"})
    description = ma.fields.String()
    id = ma.fields.Integer()
    created_by = ma.fields.String()
    created_at = ma.fields.DateTime()


def _policy_json(policy: MirrorPolicy) -> dict[str, Any]:
    return {c.name: getattr(policy, c.name) for c in MirrorPolicy.__table__.columns}


@blp.route("/policies")
class Policies(MethodView):
    @blp.response(200, PolicySchema(many=True))
    def get(self) -> Any:
        """Allow/deny rules for upstream hosts, namespaces and providers (deny wins; once an allow rule
        exists, only what an allow rule matches may be mirrored or pulled through)."""
        session, _ = session_for("mirrors:read")
        with session:
            return [_policy_json(p) for p in session.query(MirrorPolicy).order_by(MirrorPolicy.id)]

    @blp.arguments(PolicyArgs)
    @blp.response(201, PolicySchema)
    def post(self, args: dict[str, Any]) -> Any:
        """Add a rule (``mirrors:manage``)."""
        session, identity = session_for("mirrors:manage")
        with session:
            policy = mirroring.add_policy(session, auth.request_actor(identity), args["effect"], args["pattern"],
                                          args["description"])
            session.commit()
            return _policy_json(policy)


@blp.route("/policies/<id:policy_id>")
class Policy(MethodView):
    @blp.response(204)
    def delete(self, policy_id: int) -> None:
        session, identity = session_for("mirrors:manage")
        with session:
            mirroring.delete_policy(session, auth.request_actor(identity), policy_id)
            session.commit()
