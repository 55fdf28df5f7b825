"""Background jobs as administrators see them: listing, retrying and cancelling, with audit entries.

The queue itself (RQ, or in-process without Redis) is :mod:`tfregistry.jobs`; the API
(``/api/v1/jobs``) and the web UI's Jobs page both go through these functions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tfregistry.jobs import JobInfo
from tfregistry.services.audit import Actor, record

#: Job states, in the order the Jobs page offers them.
STATUSES = ("queued", "started", "scheduled", "failed", "finished", "canceled")
#: Which jobs the web UI offers to retry, and which to cancel: those that have not run yet (the API also
#: cancels a running job, whose run then goes on to its end).
RETRYABLE = ("failed", "canceled")
CANCELLABLE = ("queued", "scheduled")


def list_jobs(queue: Any, status: str | None = None) -> list[JobInfo]:
    """Jobs of every queue (only those in ``status`` when given), newest first."""
    return sorted(queue.list(status), key=lambda j: j.enqueued_at.timestamp() if j.enqueued_at else 0,
                  reverse=True)


def retry_job(session: Session, actor: Actor, queue: Any, job_id: str) -> JobInfo:
    """Queue a failed or canceled job again (:class:`~tfregistry.jobs.JobError` otherwise) and record
    ``job.retry``; the caller commits."""
    info = queue.retry(job_id)
    record(session, actor, "job.retry", f"job:{job_id}", func=info.func, queue=info.queue)
    return info


def cancel_job(session: Session, actor: Actor, queue: Any, job_id: str) -> JobInfo:
    """Cancel a job that has not finished and record ``job.cancel``; the caller commits."""
    info = queue.cancel(job_id)
    record(session, actor, "job.cancel", f"job:{job_id}", func=info.func, queue=info.queue)
    return info
