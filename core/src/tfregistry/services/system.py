"""What an administrator checks first: versions, plugins, effective settings, storage, database, jobs.

The web UI's System page shows these; each probe reports a failure as text instead of raising, so
one broken part never hides the others.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from tfregistry.settings import mask_url_password

if TYPE_CHECKING:
    from tfregistry.registry import Registry


def _problem(exc: BaseException) -> str:
    first = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass
class StorageStatus:
    """The active storage backend and the problems its ``check()`` found (none: healthy)."""

    name: str
    implementation: str
    plugin: str | None
    presigned_urls: bool
    problems: list[str]


def storage_status(registry: Registry) -> StorageStatus:
    """Run the active backend's ``check()`` (write, read, list, delete a probe object: ``tfr storage check``)."""
    backend = registry.storage
    name = backend.name
    offered = registry.storage_backends.get(name)
    try:
        problems = list(backend.check())
    except Exception as exc:  # a backend whose check itself breaks is not healthy either
        problems = [_problem(exc)]
    return StorageStatus(name, f"{type(backend).__module__}.{type(backend).__qualname__}",
                         getattr(offered, "plugin", None), bool(backend.supports_presigned_urls), problems)


@dataclass
class DatabaseStatus:
    """The database's type, its address (password masked), and the schema revision against the code's."""

    dialect: str
    driver: str
    url: str
    server_version: str | None = None
    current: list[str] = field(default_factory=list)
    heads: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def up_to_date(self) -> bool:
        return self.problem is None and set(self.current) == set(self.heads)


def database_status(registry: Registry) -> DatabaseStatus:
    """Type, server version and schema revision (``tfr db upgrade`` applies the missing migrations)."""
    db = registry.db
    engine = db.engine
    status = DatabaseStatus(engine.dialect.name, engine.dialect.driver, mask_url_password(db.url))
    try:
        with engine.connect() as conn:
            query = "SELECT sqlite_version()" if engine.dialect.name == "sqlite" else "SELECT version()"
            status.server_version = str(conn.execute(text(query)).scalar())
        status.current = sorted(db.current_revisions())
        status.heads = sorted(db.head_revisions())
    except Exception as exc:
        status.problem = _problem(exc)
    return status


@dataclass
class WorkerStatus:
    """One ``tfr worker`` process as RQ knows it."""

    name: str
    state: str
    queues: list[str]
    current_job: str | None
    last_heartbeat: datetime | None
    successful: int
    failed: int


@dataclass
class JobsStatus:
    """How background jobs run: in this process (no Redis) or on RQ, with Redis reachability, the
    queues' lengths and the workers."""

    backend: str  # "redis" or "in-process"
    redis_url: str | None = None
    redis_version: str | None = None
    problem: str | None = None
    queues: dict[str, dict[str, int]] = field(default_factory=dict)
    workers: list[WorkerStatus] = field(default_factory=list)


def uses_redis(registry: Registry) -> bool:
    """Whether jobs go to Redis for ``tfr worker`` processes (else this process runs them)."""
    from tfregistry.jobs import RQQueue

    return isinstance(registry.jobs, RQQueue)


def jobs_status(registry: Registry) -> JobsStatus:
    """Redis and worker status (``tfr worker`` processes), or the in-process runner's job counts."""
    from tfregistry.jobs import QUEUES, RQQueue

    queue = registry.jobs
    if not isinstance(queue, RQQueue):
        counts: dict[str, dict[str, int]] = {}
        for job in queue.list():
            by_status = counts.setdefault(job.queue, {})
            by_status[job.status] = by_status.get(job.status, 0) + 1
        return JobsStatus("in-process", queues=counts)
    status = JobsStatus("redis", redis_url=mask_url_password(registry.settings["redis_url"]))
    try:
        from rq import Worker
        from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

        status.redis_version = str(queue.connection.info("server").get("redis_version", ""))
        for name in QUEUES:
            q = queue.queue(name)
            status.queues[name] = {"queued": q.count, "started": StartedJobRegistry(queue=q).count,
                                   "scheduled": ScheduledJobRegistry(queue=q).count,
                                   "failed": FailedJobRegistry(queue=q).count}
        for worker in Worker.all(connection=queue.connection):
            state = worker.get_state()
            status.workers.append(WorkerStatus(
                worker.name, str(getattr(state, "value", state)), list(worker.queue_names()),
                worker.get_current_job_id(), worker.last_heartbeat, worker.successful_job_count,
                worker.failed_job_count))
    except Exception as exc:
        status.problem = _problem(exc)
    status.workers.sort(key=lambda w: w.name)
    return status


def versions(registry: Registry) -> dict[str, str]:
    """The core's, Python's and the platform's versions."""
    from tfregistry import __version__

    return {"tfregistry": __version__, "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
            "platform": platform.platform(terse=True)}


def plugin_rows(registry: Registry) -> list[Any]:
    """Loaded plugins with versions and the hooks each implements (as ``tfr plugins`` and
    ``GET /api/v1/plugins``)."""
    return registry.pm.plugin_infos()
