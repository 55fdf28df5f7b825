"""Administration: background jobs, the audit log (with CSV and JSON lines exports) and the System page.

The permission checks are the API's: jobs and the System page need ``admin`` registry-wide (as
``/api/v1/jobs`` and ``/api/v1/plugins``); the audit log needs ``audit:read`` registry-wide, or in the
organization it is filtered by (:func:`tfregistry.auth.require_audit_read`, as ``/api/v1/audit``).
Retrying and cancelling go through :mod:`tfregistry.services.jobs`, which writes the audit entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Response, flash, get_flashed_messages, redirect, request, stream_with_context, url_for
from sqlalchemy.orm import Session

from tfregistry import auth
from tfregistry.jobs import JobError, JobInfo
from tfregistry.services import NotFound, ServiceError
from tfregistry.services import audit as audit_svc
from tfregistry.services import jobs as jobs_svc
from tfregistry.services import system as system_svc
from tfregistry.web import current_registry
from tfregistry_webui.queries import Page
from tfregistry_webui.ui import bp, render_page
from tfregistry_webui.views import page_args, page_links

#: Seconds between two refreshes of the jobs table (``static/admin-jobs.js``).
JOBS_REFRESH_SECONDS = 5
JOBS_PAGE_SIZE = 50
#: Labels of the job states, in the order of the status filter.
JOB_STATUS_LABELS = {"queued": "Queued", "started": "Running", "scheduled": "Waiting to retry", "failed": "Failed",
                     "finished": "Finished", "canceled": "Canceled"}
AUDIT_PAGE_SIZE = 50
EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def _site_admin(session: Session) -> auth.Identity:
    """The caller, if they administer the registry (the API's check for jobs and plugins)."""
    return auth.require(session, "admin", None)


def _flashes() -> list[tuple[str, str]]:
    return get_flashed_messages(with_categories=True)


def _queue_unavailable(error: Exception) -> Any:
    """Redis (``redis_url``) cannot be reached: the 503 page naming it, as the API answers 503."""
    from tfregistry_webui.ui import error_page

    return error_page(503, f"The job queue (Redis, setting redis_url) is unavailable: {error}. Nothing was "
                      "changed; try again later.")


def _register_queue_fault_pages() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    bp.register_error_handler(RedisConnectionError, _queue_unavailable)
    bp.register_error_handler(RedisTimeoutError, _queue_unavailable)


_register_queue_fault_pages()


# --- jobs ----------------------------------------------------------------------------------------------


def _job_status_arg() -> str | None:
    status = request.args.get("status", "")
    if status and status not in JOB_STATUS_LABELS:
        raise ServiceError(f"unknown job status {status!r}; one of: {', '.join(JOB_STATUS_LABELS)}")
    return status or None


def _job_view(job: JobInfo) -> dict[str, Any]:
    """What the jobs table shows of a job."""
    error_lines = (job.error or "").strip().splitlines()
    return {"job": job, "args": json.dumps(job.args, default=str), "error_summary": error_lines[-1] if error_lines
            else "", "retryable": job.status in jobs_svc.RETRYABLE,
            "cancellable": job.status in jobs_svc.CANCELLABLE}


@bp.get("/admin/jobs")
def admin_jobs() -> Any:
    """Queued, running, failed and finished jobs with their arguments, attempts and errors; ``?fragment=1``
    answers the table alone (the page's script re-fetches it every few seconds)."""
    registry = current_registry()
    status = _job_status_arg()
    with registry.db.session() as session:
        _site_admin(session)
    offset, limit = page_args(JOBS_PAGE_SIZE)
    every = jobs_svc.list_jobs(registry.jobs, status)
    jobs = [_job_view(j) for j in every[offset:offset + limit]]

    def at(start: int) -> str:
        return url_for("tfr_webui.admin_jobs", status=status, offset=start or None, limit=None
                       if limit == JOBS_PAGE_SIZE else limit)

    links = {"prev": at(max(0, offset - limit)) if offset > 0 else None,
             "next": at(offset + limit) if len(every) > offset + limit else None}
    values = {"jobs": jobs, "status": status, "status_labels": JOB_STATUS_LABELS, "links": links,
              "total": len(every), "offset": offset, "in_process": not system_svc.uses_redis(registry)}
    if request.args.get("fragment") == "1":
        return render_page("admin/jobs/_table.html", **values)
    refresh_url = url_for("tfr_webui.admin_jobs", status=status, offset=offset or None, fragment=1)
    return render_page("admin/jobs/list.html", page_title="Jobs", refresh_url=refresh_url,
                       refresh_seconds=JOBS_REFRESH_SECONDS, flashes=_flashes(), **values)


def _find_job(job_id: str) -> JobInfo:
    try:
        return current_registry().jobs.get(job_id)
    except JobError:
        raise NotFound(f"no job {job_id}") from None


@bp.get("/admin/jobs/<job_id>")
def admin_job(job_id: str) -> Any:
    """One job: its arguments, attempts, result or full error."""
    with current_registry().db.session() as session:
        _site_admin(session)
    job = _find_job(job_id)
    return render_page("admin/jobs/job.html", page_title=f"Job {job.id}", view=_job_view(job),
                       result=json.dumps(job.result, indent=2, default=str) if job.result is not None else None,
                       status_labels=JOB_STATUS_LABELS, flashes=_flashes())


def _back_to_jobs() -> str:
    """Where a job action returns: the page it was posted from (the list with its filter, or the job)."""
    target = request.form.get("next", "")
    return target if target.startswith("/admin/jobs") and "//" not in target else url_for("tfr_webui.admin_jobs")


def _change_job(job_id: str, change: Any, done: str) -> Any:
    registry = current_registry()
    with registry.db.session() as session:
        identity = _site_admin(session)
        try:
            info = change(session, auth.request_actor(identity), registry.jobs, job_id)
        except JobError as exc:
            session.rollback()
            if str(exc).startswith("no job"):
                raise NotFound(str(exc)) from None
            flash(f"{exc}.", "error")
            return redirect(_back_to_jobs(), 303)
        session.commit()
    flash(f"Job {info.id} ({info.func}) {done}.", "ok")
    return redirect(_back_to_jobs(), 303)


@bp.post("/admin/jobs/<job_id>/retry")
def admin_job_retry(job_id: str) -> Any:
    """Queue a failed or canceled job again (as ``POST /api/v1/jobs/<id>/retry``)."""
    return _change_job(job_id, jobs_svc.retry_job, "is queued again")


@bp.route("/admin/jobs/<job_id>/cancel", methods=["GET", "POST"])
def admin_job_cancel(job_id: str) -> Any:
    """Cancel a job that has not run yet (as ``DELETE /api/v1/jobs/<id>``), after a confirmation page."""
    if request.method == "POST":
        return _change_job(job_id, jobs_svc.cancel_job, "is canceled")
    with current_registry().db.session() as session:
        _site_admin(session)
    job = _find_job(job_id)
    return render_page("admin/jobs/cancel.html", page_title=f"Cancel job {job.id}", view=_job_view(job),
                       next=request.args.get("next", ""))


# --- audit log -----------------------------------------------------------------------------------------


def _moment(raw: str) -> datetime:
    """A time from the filter form (``datetime-local``: no zone, read as UTC; or ISO 8601 with an offset)."""
    value = datetime.fromisoformat(raw)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _audit_form() -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    """The filter form's values as typed, as parsed, and the errors, field by field (the API's limits)."""
    values = {name: request.args.get(name, "").strip() for name in ("organization", "actor", "action", "since",
                                                                      "until")}
    parsed: dict[str, Any] = {"actor": values["actor"] or None, "action": values["action"] or None,
                              "since": None, "until": None}
    errors: dict[str, str] = {}
    for name in ("actor", "action"):
        if len(values[name]) > 255:
            errors[name] = "At most 255 characters."
    for name in ("since", "until"):
        if values[name]:
            try:
                parsed[name] = _moment(values[name])
            except ValueError:
                errors[name] = "A date and time such as 2026-12-04T09:30 (UTC)."
    if parsed["since"] and parsed["until"] and parsed["since"] >= parsed["until"]:
        errors["until"] = "“Until” must be later than “From”."
    return values, parsed, errors


def _audit_scope(session: Session, identity: auth.Identity, organization: str) -> Any:
    """The organization the entries are read from (the API's rule), defaulting, for callers who may read
    only some organizations' entries, to the first of those."""
    if not organization and "audit:read" not in identity.scopes_in(None):
        readable = audit_svc.readable_organizations(session, identity)
        if readable:
            organization = readable[0].name
    return auth.require_audit_read(session, identity, organization or None)


@bp.get("/admin/audit")
def admin_audit() -> Any:
    """The audit log, newest first, filtered by organization, actor, action and time range; paginated."""
    values, parsed, errors = _audit_form()
    offset, _ = page_args(AUDIT_PAGE_SIZE)
    with current_registry().db.session() as session:
        identity = auth.current_identity(session)
        org = _audit_scope(session, identity, values["organization"])
        if org is not None:
            values["organization"] = org.name
        readable = audit_svc.readable_organizations(session, identity)
        everything = "audit:read" in identity.scopes_in(None)
        entries: list[Any] = []
        links: dict[str, str | None] = {"prev": None, "next": None}
        if not errors:
            filters = audit_svc.AuditFilter(org.id if org else None, **parsed)
            entries, more = audit_svc.entries_page(session, filters, offset, AUDIT_PAGE_SIZE)
            links = page_links(Page(entries, offset, AUDIT_PAGE_SIZE, more))
        query = {k: v for k, v in values.items() if v}
        return render_page(
            "admin/audit/list.html", 400 if errors else 200, page_title="Audit log", values=values, errors=errors,
            entries=entries, details={e.id: json.dumps(e.details, sort_keys=True, default=str) for e in entries},
            org_names=audit_svc.organization_names(session), organizations=[o.name for o in readable],
            everything=everything, links=links, offset=offset,
            export_csv=url_for("tfr_webui.admin_audit_export", fmt="csv", **query),
            export_jsonl=url_for("tfr_webui.admin_audit_export", fmt="jsonl", **query))


@bp.get("/admin/audit/export.<fmt>")
def admin_audit_export(fmt: str) -> Any:
    """The filtered entries (all pages) as CSV or JSON lines, streamed; the same permission as the list."""
    if fmt not in EXPORT_TYPES:
        raise NotFound(f"no export format {fmt!r}")
    values, parsed, errors = _audit_form()
    if errors:
        raise ServiceError("; ".join(f"{name}: {message}" for name, message in errors.items()))
    registry = current_registry()
    with registry.db.session() as session:
        identity = auth.current_identity(session)
        org = _audit_scope(session, identity, values["organization"])
        filters = audit_svc.AuditFilter(org.id if org else None, **parsed)

    def lines() -> Iterator[str]:
        with registry.db.session() as export_session:
            yield from audit_svc.export_lines(export_session, filters, fmt)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"audit-{org.name}-{stamp}.{fmt}" if org else f"audit-{stamp}.{fmt}"
    return Response(stream_with_context(lines()), content_type=EXPORT_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# --- system --------------------------------------------------------------------------------------------


@bp.get("/admin/system")
def admin_system() -> Any:
    """Versions, plugins and their hooks, effective settings (secrets masked as ``tfr config show``),
    storage with its ``check()``, database and schema revision, Redis and workers."""
    from tfregistry_webui import __version__ as webui_version

    registry = current_registry()
    with registry.db.session() as session:
        _site_admin(session)
    versions = {**system_svc.versions(registry), "tfregistry-webui": webui_version}
    return render_page("admin/system.html", page_title="System", versions=versions,
                       plugins=system_svc.plugin_rows(registry), settings=registry.settings.effective(),
                       storage=system_svc.storage_status(registry), database=system_svc.database_status(registry),
                       jobs=system_svc.jobs_status(registry))
