"""``/api/v1/jobs``: background jobs, failed ones included; retry and cancel (admin)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from tfregistry import auth
from tfregistry.api import api_error
from tfregistry.jobs import JobError, JobInfo
from tfregistry.protocol import register_error_handlers
from tfregistry.services import jobs as jobs_svc
from tfregistry.web import current_registry

blp = Blueprint("api_jobs", __name__, url_prefix="/api/v1/jobs", description="Background jobs")
register_error_handlers(blp, api_error)
blp.register_error_handler(JobError, lambda e: api_error(404 if str(e).startswith("no job") else 409, str(e)))


class JobQuery(ma.Schema):
    status = ma.fields.String(validate=ma.validate.OneOf(
        ["queued", "started", "finished", "failed", "scheduled", "canceled"]))


class JobSchema(ma.Schema):
    id = ma.fields.String()
    func = ma.fields.String()
    args = ma.fields.List(ma.fields.Raw())
    queue = ma.fields.String()
    status = ma.fields.String()
    enqueued_at = ma.fields.DateTime(allow_none=True)
    ended_at = ma.fields.DateTime(allow_none=True)
    attempts = ma.fields.Integer()
    retries_left = ma.fields.Integer()
    result = ma.fields.Raw(allow_none=True)
    error = ma.fields.String(allow_none=True)


def _admin() -> None:
    with current_registry().db.session() as session:
        auth.require(session, "admin", None)


def _change(change: Any, job_id: str) -> dict[str, Any]:
    """Retry or cancel a job as the registry administrator calling, with its audit entry."""
    with current_registry().db.session() as session:
        identity = auth.require(session, "admin", None)
        info = change(session, auth.request_actor(identity), current_registry().jobs, job_id)
        session.commit()
        return _json(info)


def _json(info: JobInfo) -> dict[str, Any]:
    return asdict(info)


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(JobQuery, location="query")
    @blp.response(200, JobSchema(many=True))
    def get(self, query: dict[str, Any]) -> Any:
        """Jobs of every queue, newest first; ``?status=failed`` for the failed-job registry."""
        _admin()
        return [_json(j) for j in jobs_svc.list_jobs(current_registry().jobs, query.get("status"))]


@blp.route("/<job_id>")
class Job(MethodView):
    @blp.response(200, JobSchema)
    def get(self, job_id: str) -> Any:
        """One job, with its result or its error."""
        _admin()
        return _json(current_registry().jobs.get(job_id))

    @blp.response(200, JobSchema)
    def delete(self, job_id: str) -> Any:
        """Cancel a job that has not finished (audit entry ``job.cancel``)."""
        return _change(jobs_svc.cancel_job, job_id)


@blp.route("/<job_id>/retry")
class JobRetry(MethodView):
    @blp.response(200, JobSchema)
    def post(self, job_id: str) -> Any:
        """Run a failed or canceled job again (audit entry ``job.retry``)."""
        return _change(jobs_svc.retry_job, job_id)
