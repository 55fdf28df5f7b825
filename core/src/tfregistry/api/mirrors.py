"""``/api/v1/mirrors``: configurations that copy providers from upstream registries, syncs and their history."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from tfregistry import auth, gpg
from tfregistry.api import api_error
from tfregistry.api.providers import encryption_key
from tfregistry.jobs import MIRROR_TOKEN
from tfregistry.models import MirrorConfig, MirrorRun
from tfregistry.protocol import register_error_handlers
from tfregistry.provider_packages import KNOWN_ARCH, KNOWN_OS, PackageError, validate_provider_address
from tfregistry.services import NotFound, ServiceError
from tfregistry.services.audit import record
from tfregistry.services.mirroring import matches
from tfregistry.web import current_registry

blp = Blueprint("api_mirrors", __name__, url_prefix="/api/v1/mirrors", description="Provider mirroring")
register_error_handlers(blp, api_error)


def _platform(value: str) -> None:
    os_, _, arch = value.partition("_")
    if os_ not in KNOWN_OS or arch not in KNOWN_ARCH:
        raise ma.ValidationError(f"{value!r} is not OS_ARCH, e.g. linux_amd64")


class MirrorArgs(ma.Schema):
    upstream_host = ma.fields.String(required=True, metadata={"description": "Origin host, e.g. registry.terraform.io"})
    upstream_url = ma.fields.String(load_default=None, allow_none=True,
                                    metadata={"description": "Where to reach it, if not https://upstream_host"})
    upstream_token = ma.fields.String(load_default=None, allow_none=True, load_only=True)
    namespace = ma.fields.String(required=True)
    type = ma.fields.String(required=True)
    version_constraint = ma.fields.String(load_default=None, allow_none=True,
                                          metadata={"description": "e.g. '>= 5.0, < 6.0' or '~> 3.2'"})
    latest = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(min=1))
    platforms = ma.fields.List(ma.fields.String(validate=_platform), load_default=list)
    trusted_fingerprints = ma.fields.List(ma.fields.String(), load_default=list,
                                          metadata={"description": "Accept only these upstream keys (default: "
                                                    "the keys the upstream offers)"})
    interval_seconds = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(min=60))
    enabled = ma.fields.Boolean(load_default=True)


class MirrorSchema(MirrorArgs):
    id = ma.fields.Integer()
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


def _apply(config: MirrorConfig, args: dict[str, Any]) -> None:
    try:
        validate_provider_address(args["namespace"], args["type"])
        if args.get("version_constraint"):
            matches("0.0.1", args["version_constraint"])
    except PackageError as exc:
        raise ServiceError(str(exc)) from None
    token = args.pop("upstream_token", None)
    for key, value in args.items():
        setattr(config, key, value)
    if token:
        config.upstream_token_encrypted = gpg.encrypt_secret(token, encryption_key(current_registry()), MIRROR_TOKEN)


def _session_admin() -> Any:
    session = current_registry().db.sessionmaker()
    try:
        identity = auth.require(session, "admin", None)
    except BaseException:
        session.close()
        raise
    return session, identity


@blp.route("")
class Mirrors(MethodView):
    @blp.response(200, MirrorSchema(many=True))
    def get(self) -> Any:
        """List mirror configurations."""
        session, _ = _session_admin()
        with session:
            return [_json(c) for c in session.query(MirrorConfig).order_by(MirrorConfig.id)]

    @blp.arguments(MirrorArgs)
    @blp.response(201, MirrorSchema)
    def post(self, args: dict[str, Any]) -> Any:
        """Create a mirror configuration (admin)."""
        session, identity = _session_admin()
        with session:
            config = MirrorConfig()
            _apply(config, args)
            session.add(config)
            session.flush()
            record(session, auth.request_actor(identity), "mirror.create",
                   f"{config.upstream_host}/{config.namespace}/{config.type}", id=config.id)
            session.commit()
            return _json(config)


def _config(session: Any, mirror_id: int) -> MirrorConfig:
    config = session.get(MirrorConfig, mirror_id)
    if config is None:
        raise NotFound(f"no mirror configuration {mirror_id}")
    return config


@blp.route("/pull-through")
class PullThroughStats(MethodView):
    @blp.response(200)
    def get(self) -> Any:
        """Pull-through cache statistics per upstream host: hits, misses, bytes saved, last upstream error."""
        from tfregistry.services.pullthrough import all_stats

        session, _ = _session_admin()
        with session:
            return all_stats(session)


@blp.route("/<int:mirror_id>")
class Mirror(MethodView):
    @blp.response(200, MirrorSchema)
    def get(self, mirror_id: int) -> Any:
        session, _ = _session_admin()
        with session:
            return _json(_config(session, mirror_id))

    @blp.arguments(MirrorArgs)
    @blp.response(200, MirrorSchema)
    def put(self, args: dict[str, Any], mirror_id: int) -> Any:
        """Replace a mirror configuration."""
        session, identity = _session_admin()
        with session:
            config = _config(session, mirror_id)
            _apply(config, args)
            record(session, auth.request_actor(identity), "mirror.update", str(mirror_id))
            session.commit()
            return _json(config)

    @blp.response(204)
    def delete(self, mirror_id: int) -> None:
        """Delete a configuration (providers already mirrored stay)."""
        session, identity = _session_admin()
        with session:
            session.delete(_config(session, mirror_id))
            record(session, auth.request_actor(identity), "mirror.delete", str(mirror_id))
            session.commit()


@blp.route("/<int:mirror_id>/sync")
class MirrorSync(MethodView):
    @blp.response(202)
    def post(self, mirror_id: int) -> Any:
        """Start a sync now (a background job on the ``mirror`` queue)."""
        session, _ = _session_admin()
        with session:
            _config(session, mirror_id)
        job = current_registry().jobs.enqueue("tfregistry.jobs:mirror_sync", mirror_id, queue="mirror",
                                              job_id=f"mirror-{mirror_id}")
        return {"job": job.id, "status": job.status}


@blp.route("/<int:mirror_id>/status")
class MirrorStatus(MethodView):
    @blp.response(200, RunSchema(many=True))
    def get(self, mirror_id: int) -> Any:
        """Run history, newest first: counts, bytes, durations, errors."""
        session, _ = _session_admin()
        with session:
            _config(session, mirror_id)
            runs = session.query(MirrorRun).filter_by(config_id=mirror_id).order_by(MirrorRun.id.desc()).limit(50)
            return [{**{c.name: getattr(r, c.name) for c in MirrorRun.__table__.columns},
                     "duration_seconds": (r.finished_at - r.started_at).total_seconds() if r.finished_at else None}
                    for r in runs]
