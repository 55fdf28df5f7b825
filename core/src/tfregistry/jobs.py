"""Background jobs: one way to enqueue work, on RQ when Redis is configured, in-process otherwise.

A job is a top-level function ``func(registry, *args)`` named by its dotted path
(``"tfregistry.jobs:storage_gc"``) and called with JSON-able arguments (ids, not
ORM objects), so it can be retried and run on any worker.  Jobs must be idempotent:
a retry or a second worker running the same job does no harm.

* With ``redis_url`` set, :meth:`JobQueue.enqueue` puts the job on an RQ queue
  (``default``, ``mirror``, ``scm``, ``notify``) and ``tfr worker`` processes run it,
  with retries and backoff from settings; failed jobs stay in RQ's failed registry.
* Without Redis, the same call runs the job in a background thread of the web
  process, with the same retry rules, and keeps its outcome in memory.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tfregistry.models import utcnow

if TYPE_CHECKING:
    from tfregistry.registry import Registry

log = logging.getLogger(__name__)

QUEUES = ("default", "mirror", "scm", "notify")
#: The registry jobs run against, set by ``tfr worker`` (or by the in-process runner).
_current: Registry | None = None


class JobError(Exception):
    """A job that cannot be found, retried or cancelled."""


@dataclass
class JobInfo:
    """A job as ``GET /api/v1/jobs`` and ``tfr jobs list`` show it."""

    id: str
    func: str
    args: list[Any]
    queue: str
    status: str  # queued, started, finished, failed, scheduled, canceled
    enqueued_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: int = 0
    retries_left: int = 0
    result: Any = None
    error: str | None = None


def resolve(path: str) -> Callable[..., Any]:
    """``"package.module:function"`` → the function."""
    module, _, name = path.partition(":")
    if not name:
        raise JobError(f"job {path!r} is not 'module:function'")
    return getattr(importlib.import_module(module), name)


#: Redis key a running RQ job refreshes while its worker lives (``jobs.heartbeat_seconds``; expires after 3x).
ALIVE_KEY = "tfr:job-alive:{}"


def execute(path: str, *args: Any) -> Any:
    """The RQ entry point: run job ``path`` against the worker's registry, with a liveness heartbeat."""
    if _current is None:
        raise JobError("no registry: jobs run inside `tfr worker` or the web process")
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        return resolve(path)(_current, *args)
    return _timed(_current, job.origin, path, lambda: _run_with_heartbeat(job, path, args))


def _timed(registry: Registry, queue: str, path: str, run: Callable[[], Any]) -> Any:
    """Run one attempt of job ``path`` and observe ``job_run`` (its duration, outcome ``finished``/``failed``)."""
    start = time.perf_counter()
    outcome = "failed"
    try:
        result = run()
        outcome = "finished"
        return result
    finally:
        if registry.observe.active:
            registry.observe("job_run", time.perf_counter() - start, queue=queue, job=path.rpartition(":")[2],
                             outcome=outcome)


def _run_with_heartbeat(job: Any, path: str, args: tuple[Any, ...]) -> Any:
    assert _current is not None
    interval = max(1, int(_current.settings["jobs.heartbeat_seconds"]))
    key, done = ALIVE_KEY.format(job.id), threading.Event()

    def beat() -> None:
        while True:
            try:
                job.connection.set(key, os.getpid(), ex=3 * interval)
            except Exception:  # Redis briefly away: the next beat retries
                log.warning("job %s: heartbeat failed", job.id, exc_info=True)
            if done.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"tfr-heartbeat-{job.id}", daemon=True)
    thread.start()
    try:
        return resolve(path)(_current, *args)
    except Exception:
        if not job.retries_left:  # no retry follows: this failure is final
            job_failed(_current, job.id, path, job.origin, traceback.format_exc(limit=5))
        raise
    finally:
        done.set()
        thread.join(timeout=5)
        job.connection.delete(key)


def job_failed(registry: Registry, job_id: str, path: str, queue: str, error: str | None) -> None:
    """Raise ``job.failed`` for a job that failed for good (never raises itself)."""
    from tfregistry.events import emit

    try:
        last = (error or "").strip().splitlines()[-1:] or ["unknown error"]
        emit(registry, "job.failed", actor="worker",
             data={"job_id": job_id, "job": path, "queue": queue, "error": last[0][:500]})
    except Exception:
        log.exception("could not raise job.failed for job %s", job_id)


def backoff(retries: int, base: int) -> list[int]:
    """Exponential retry intervals: base, 2*base, 4*base..."""
    return [base * 2**i for i in range(retries)]


class InProcessQueue:
    """Runs jobs in a background thread of this process, with retries; outcomes kept in memory."""

    def __init__(self, registry: Registry, retries: int, backoff_base: int) -> None:
        self.registry = registry
        self.retries = retries
        self.backoff_base = backoff_base
        self.jobs: dict[str, JobInfo] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tfr-job")
        self._stopped = threading.Event()
        #: Each job's retry delays (its own retries and backoff, or the settings').
        self._backoff: dict[str, list[int]] = {}

    def start_periodic(self, periodic: list[tuple[str, tuple[Any, ...], int]]) -> None:
        """Enqueue each periodic job every ``interval`` seconds from a daemon thread (no Redis, no scheduler)."""

        def loop(path: str, args: tuple[Any, ...], interval: int) -> None:
            while not self._stopped.wait(interval):
                try:
                    self.enqueue(path, *args, job_id=f"periodic:{path}")
                except Exception:
                    log.exception("could not enqueue periodic job %s", path)

        for path, args, interval in periodic:
            threading.Thread(target=loop, args=(path, args, interval), daemon=True, name=f"tfr-every-{path}").start()

    def stop(self) -> None:
        """Stop periodic scheduling (running jobs finish on their own)."""
        self._stopped.set()

    def enqueue(self, path: str, *args: Any, queue: str = "default", job_id: str | None = None,
                retries: int | None = None, backoff_base: int | None = None) -> JobInfo:
        """Run ``path(registry, *args)`` soon; ``retries``/``backoff_base`` override the settings for this job."""
        resolve(path)  # fail now, in the caller, if the job does not exist
        info = JobInfo(job_id or uuid.uuid4().hex, path, list(args), queue, "queued", utcnow(),
                       retries_left=self.retries if retries is None else retries)
        self._backoff[info.id] = backoff(info.retries_left, self.backoff_base if backoff_base is None
                                         else backoff_base)
        with self._lock:
            if job_id and job_id in self.jobs and self.jobs[job_id].status in ("queued", "started", "scheduled"):
                return self.jobs[job_id]  # the same job is already pending: enqueue is idempotent
            self.jobs[info.id] = info
        self._pool.submit(self._run, info)
        return info

    def _run(self, info: JobInfo) -> None:
        global _current
        delays = self._backoff.get(info.id)
        if delays is None:
            delays = backoff(self.retries, self.backoff_base)
        total = len(delays)
        while True:
            if info.status == "canceled":
                return
            info.status, info.attempts = "started", info.attempts + 1
            _current = self.registry
            try:
                info.result = _timed(self.registry, info.queue, info.func,
                                     lambda: resolve(info.func)(self.registry, *info.args))
                info.status, info.error = "finished", None
            except Exception:
                info.error = traceback.format_exc(limit=5)
                if info.retries_left > 0:
                    delay = delays[total - info.retries_left]
                    info.retries_left -= 1
                    info.status = "scheduled"
                    log.warning("job %s (%s) failed; retrying in %ss", info.id, info.func, delay)
                    time.sleep(delay)
                    continue
                info.status = "failed"
                log.error("job %s (%s) failed for good:\n%s", info.id, info.func, info.error)
                job_failed(self.registry, info.id, info.func, info.queue, info.error)
            info.ended_at = utcnow()
            return

    def wait_idle(self, timeout: float | None = 60.0) -> None:
        """Wait until every job enqueued so far has run (jobs run one at a time, in order)."""
        self._pool.submit(lambda: None).result(timeout=timeout)

    def list(self, status: str | None = None) -> list[JobInfo]:
        with self._lock:
            jobs = list(self.jobs.values())
        return [j for j in jobs if status in (None, j.status)]

    def get(self, job_id: str) -> JobInfo:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobError(f"no job {job_id}") from None

    def retry(self, job_id: str) -> JobInfo:
        info = self.get(job_id)
        if info.status not in ("failed", "canceled"):
            raise JobError(f"job {job_id} is {info.status}; only failed or canceled jobs can be retried")
        delays = self._backoff.get(info.id)
        info.status, info.error = "queued", None
        info.retries_left = self.retries if delays is None else len(delays)
        self._pool.submit(self._run, info)
        return info

    def cancel(self, job_id: str) -> JobInfo:
        info = self.get(job_id)
        if info.status in ("finished", "failed"):
            raise JobError(f"job {job_id} already {info.status}")
        info.status = "canceled"
        return info

    def wait(self, timeout: float = 30) -> None:
        """Block until every job queued so far is done (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while any(j.status in ("queued", "started", "scheduled") for j in self.list()):
            if time.monotonic() > deadline:
                raise TimeoutError("background jobs did not finish in time")
            time.sleep(0.02)


class RQQueue:
    """Jobs on RQ queues in Redis, run by ``tfr worker`` processes."""

    def __init__(self, redis_url: str, retries: int, backoff_base: int, result_ttl: int, failure_ttl: int,
                 job_timeout: int) -> None:
        from redis import Redis

        self.connection = Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=30)
        self.retries = retries
        self.backoff_base = backoff_base
        self.result_ttl = result_ttl
        self.failure_ttl = failure_ttl
        self.job_timeout = job_timeout

    def queue(self, name: str) -> Any:
        from rq import Queue

        if name not in QUEUES:
            raise JobError(f"unknown queue {name!r} (queues: {', '.join(QUEUES)})")
        return Queue(name, connection=self.connection)

    def enqueue(self, path: str, *args: Any, queue: str = "default", job_id: str | None = None,
                retries: int | None = None, backoff_base: int | None = None) -> JobInfo:
        """Queue ``path(registry, *args)``; ``retries``/``backoff_base`` override the settings for this job."""
        from rq import Retry
        from rq.job import Job, JobStatus

        resolve(path)
        if job_id:  # idempotent: the same pending job is not queued twice
            try:
                existing = Job.fetch(job_id, connection=self.connection)
                status = existing.get_status()
                if status == JobStatus.STARTED and self._abandoned(existing):
                    # its worker died (no heartbeat): RQ would notice only after the job timeout
                    from rq.registry import StartedJobRegistry

                    StartedJobRegistry(existing.origin, connection=self.connection).remove(existing)
                    log.warning("job %s was abandoned by its worker; queueing it again", job_id)
                elif status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
                    return self._info(existing)
            except Exception:
                pass
        retries = self.retries if retries is None else retries
        base = self.backoff_base if backoff_base is None else backoff_base
        retry = Retry(max=retries, interval=backoff(retries, base)) if retries else None
        job = self.queue(queue).enqueue_call(
            execute, args=(path, *args), job_id=job_id, retry=retry, result_ttl=self.result_ttl,
            failure_ttl=self.failure_ttl, timeout=self.job_timeout, description=f"{path}{tuple(args)!r}",
            meta={"func": path, "args": list(args), "retries": retries},
        )
        return self._info(job)

    def _abandoned(self, job: Any) -> bool:
        """A started job whose heartbeat key has expired (allowing a few seconds for it to appear)."""
        from datetime import UTC, datetime

        started = job.started_at.replace(tzinfo=UTC) if job.started_at else None
        if started is None or (datetime.now(UTC) - started).total_seconds() < 10:
            return False
        return not self.connection.exists(ALIVE_KEY.format(job.id))

    def _info(self, job: Any) -> JobInfo:
        status = str(job.get_status(refresh=True) or "unknown")
        status = status.split(".")[-1].lower()
        result = job.return_value() if status == "finished" else None
        error = None
        if status == "failed":
            latest = job.latest_result()
            error = getattr(latest, "exc_string", None) or job.exc_info
        meta = job.meta or {}
        return JobInfo(job.id, meta.get("func", job.func_name), meta.get("args", []), job.origin, status,
                       job.enqueued_at, job.ended_at, attempts=(meta.get("retries", self.retries)
                                                                - (job.retries_left or 0)) + 1
                       if job.retries_left is not None else 1, retries_left=job.retries_left or 0,
                       result=result, error=error)

    def list(self, status: str | None = None) -> list[JobInfo]:
        from rq.job import Job
        from rq.registry import (
            CanceledJobRegistry,
            FailedJobRegistry,
            FinishedJobRegistry,
            ScheduledJobRegistry,
            StartedJobRegistry,
        )

        ids: list[str] = []
        for name in QUEUES:
            q = self.queue(name)
            sources = {"queued": q.get_job_ids, "started": StartedJobRegistry(queue=q).get_job_ids,
                       "finished": FinishedJobRegistry(queue=q).get_job_ids,
                       "failed": FailedJobRegistry(queue=q).get_job_ids,
                       "scheduled": ScheduledJobRegistry(queue=q).get_job_ids,
                       "canceled": CanceledJobRegistry(queue=q).get_job_ids}
            for state, get_ids in sources.items():
                if status in (None, state):
                    ids.extend(get_ids())
        jobs = [j for j in Job.fetch_many(list(dict.fromkeys(ids)), connection=self.connection) if j is not None]
        return [self._info(j) for j in jobs]

    def get(self, job_id: str) -> JobInfo:
        return self._info(self._fetch(job_id))

    def _fetch(self, job_id: str) -> Any:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            return Job.fetch(job_id, connection=self.connection)
        except NoSuchJobError:
            raise JobError(f"no job {job_id}") from None

    def retry(self, job_id: str) -> JobInfo:
        job = self._fetch(job_id)
        status = str(job.get_status()).split(".")[-1].lower()
        if status not in ("failed", "canceled"):
            raise JobError(f"job {job_id} is {status}; only failed or canceled jobs can be retried")
        if status == "canceled":
            self.queue(job.origin).enqueue_job(job)
        else:
            job.requeue()
        return self._info(job)

    def cancel(self, job_id: str) -> JobInfo:
        job = self._fetch(job_id)
        status = str(job.get_status()).split(".")[-1].lower()
        if status in ("finished", "failed", "canceled"):
            raise JobError(f"job {job_id} already {status}")
        job.cancel()
        return self._info(job)

    def ping(self) -> None:
        self.connection.ping()


def storage_gc(registry: Registry, grace_seconds: int = 3600) -> int:
    """Periodic job: remove stored objects no row refers to (see ``tfr storage gc``); returns how many."""
    from datetime import timedelta

    from tfregistry.services.storage import collect_garbage

    with registry.db.session() as session:
        return len(collect_garbage(session, registry.storage, timedelta(seconds=grace_seconds)))


def token_expiry_notices(registry: Registry) -> list[int]:
    """Periodic job: note every live token that expires within ``jobs.token_expiry_notice`` (once per
    token): a ``token.expiring`` audit entry and a warning in the log; returns the token ids."""
    from datetime import timedelta

    from tfregistry.services.tokens import expiring_tokens

    window = timedelta(seconds=registry.settings["jobs.token_expiry_notice"])
    with registry.db.session() as session:
        noticed = expiring_tokens(session, window)
        session.commit()
    for token_id, name, expires_at in noticed:
        log.warning("token %s (%s) expires at %s; rotate it (tfr token rotate %s)", token_id, name,
                    expires_at.isoformat(), token_id)
    return [token_id for token_id, _, _ in noticed]


def mirror_sync(registry: Registry, config_id: int) -> dict[str, Any]:
    """Job: sync one mirror configuration from its upstream registry; returns the run's figures."""
    from tfregistry import gpg
    from tfregistry.api.providers import encryption_key, limits
    from tfregistry.models import MirrorConfig
    from tfregistry.services.mirroring import sync

    with registry.db.session() as session:
        config = session.get(MirrorConfig, config_id)
        token = None
        if config is not None and config.upstream_token_encrypted:
            token = gpg.decrypt_secret(config.upstream_token_encrypted, encryption_key(registry), MIRROR_TOKEN)
        start = time.perf_counter()
        run = sync(session, registry.storage, config_id, limits(registry), token)
        if registry.observe.active:
            registry.observe("mirror_sync", time.perf_counter() - start, outcome=run.status)
            registry.observe("mirror_sync_bytes", run.bytes or 0)
            registry.observe("mirror_sync_errors", len(run.errors or ()))
        return {"run": run.id, "status": run.status, "versions": run.versions, "packages": run.packages,
                "skipped": run.skipped, "bytes": run.bytes, "errors": run.errors}


def reanalyse_modules(registry: Registry, version_ids: list[int]) -> int:
    """Job: analyse these module versions again from their stored archives (``tfr modules reanalyze``)."""
    from tfregistry.services.modules import archive_limits, reanalyse_versions

    with registry.db.session() as session:
        return reanalyse_versions(session, registry.storage, archive_limits(registry.settings), version_ids)


def deliver_notification(registry: Registry, delivery_id: str) -> str:
    """Job: one attempt at one notification delivery (see :mod:`tfregistry.services.notifications`)."""
    from tfregistry.services.notifications import deliver

    return deliver(registry, delivery_id)


def notify_tick(registry: Registry) -> list[str]:
    """Periodic job: queue again pending deliveries whose worker died (not attempted for 5 minutes) and
    raise the expiry notices due (``token.expiring``, ``gpg_key.expiring``)."""
    from datetime import timedelta

    from tfregistry.services.notifications import expiry_notices, requeue_pending

    requeue_pending(registry, timedelta(seconds=registry.settings["notify.requeue_after"]))
    return expiry_notices(registry)


#: Encryption purpose of stored upstream tokens.
MIRROR_TOKEN = b"tfregistry mirror upstream token"


def mirror_tick(registry: Registry) -> list[int]:
    """Periodic job: enqueue a sync of every mirror configuration whose interval has elapsed."""
    from tfregistry.services.mirroring import due_configs

    with registry.db.session() as session:
        due = [c.id for c in due_configs(session)]
    for config_id in due:
        registry.jobs.enqueue("tfregistry.jobs:mirror_sync", config_id, queue="mirror", job_id=f"mirror-{config_id}")
    return due


def make_queue(settings: Mapping[str, Any], registry: Registry | None = None) -> InProcessQueue | RQQueue:
    """RQ when ``redis_url`` is set, else the in-process runner (which needs the ``registry`` to run jobs on)."""
    s = settings
    if s["redis_url"]:
        return RQQueue(s["redis_url"], s["jobs.retries"], s["jobs.backoff_seconds"], s["jobs.result_ttl"],
                       s["jobs.failure_ttl"], s["jobs.timeout"])
    if registry is None:
        raise JobError("without redis_url, jobs run inside the web process: see GET /api/v1/jobs there")
    return InProcessQueue(registry, s["jobs.retries"], s["jobs.backoff_seconds"])


def periodic_jobs(registry: Registry) -> list[tuple[str, tuple[Any, ...], int]]:
    """(job, args, interval seconds) that ``tfr scheduler`` enqueues on schedule."""
    jobs: list[tuple[str, tuple[Any, ...], int]] = [
        ("tfregistry.jobs:mirror_tick", (), registry.settings["jobs.mirror_tick_seconds"])]
    if registry.settings["jobs.storage_gc_interval"]:
        jobs.append(("tfregistry.jobs:storage_gc", (), registry.settings["jobs.storage_gc_interval"]))
    if registry.settings["notify.tick_seconds"]:
        jobs.append(("tfregistry.jobs:notify_tick", (), registry.settings["notify.tick_seconds"]))
    if registry.settings["jobs.token_expiry_notice"]:
        jobs.append(("tfregistry.jobs:token_expiry_notices", (), 3600))
    if registry.settings["scm.reconcile_interval"]:
        jobs.append(("tfregistry.jobs:scm_reconcile_tick", (), registry.settings["scm.reconcile_interval"]))
    return jobs


def run_scheduler(registry: Registry) -> None:
    """Run RQ's cron scheduler for :func:`periodic_jobs` until stopped (``tfr scheduler``)."""
    from rq.cron import CronScheduler

    queue = registry.jobs
    if not isinstance(queue, RQQueue):
        raise JobError("periodic jobs need redis_url: the scheduler enqueues into Redis for `tfr worker` to run")
    scheduler = CronScheduler(connection=queue.connection)
    for path, args, interval in periodic_jobs(registry):
        scheduler.register(execute, "default", args=(path, *args), interval=interval,
                           result_ttl=queue.result_ttl, failure_ttl=queue.failure_ttl, name=path)
    scheduler.start()


def run_worker(registry: Registry, queues: list[str], burst: bool = False) -> bool:
    """Run an RQ worker (no fork: one job at a time per process) until stopped, or until idle with ``burst``."""
    global _current
    from rq import SimpleWorker

    queue = registry.jobs
    if not isinstance(queue, RQQueue):
        raise JobError("`tfr worker` needs redis_url; without Redis the web process runs jobs itself")
    _current = registry

    class Worker(SimpleWorker):
        def unsubscribe(self) -> None:
            """RQ's unsubscribe with a bounded wait for its pubsub thread.  redis-py 8.2 made
            ``PubSubWorkerThread.stop()`` wait for the thread, which RQ starts with ``sleep_time=60``
            and which, once unsubscribed, sleeps out that minute: every worker took up to 60 s to stop
            (longer than a container's grace period), and ``--burst`` to exit.  The thread is a
            daemon and ends on its own; closing the pubsub here is what RQ does too."""
            thread = self.pubsub_thread
            if thread is None:
                return
            self.pubsub.unsubscribe()
            try:
                thread.stop(timeout=1)
            except TypeError:  # redis-py before 8.2: stop() takes no timeout and does not wait
                thread.stop()
            self.pubsub.close()

    worker = Worker([queue.queue(name) for name in queues], connection=queue.connection)
    return worker.work(burst=burst, with_scheduler=True)


# --- SCM publishing ------------------------------------------------------------------------------


def _scm_context(registry: Registry) -> tuple[bytes, Any]:
    from tfregistry.api.providers import encryption_key
    from tfregistry.services.modules import archive_limits

    return encryption_key(registry), archive_limits(registry.settings)


def scm_publish(registry: Registry, link_id: int, tag: str, delivery_id: str | None = None,
                triggered_by: str = "") -> dict[str, Any]:
    """Job (queue ``scm``): publish ``tag`` of an SCM link, pinned to the commit it points at now."""
    from tfregistry.services import scm

    enc_key, limits = _scm_context(registry)
    with registry.db.session() as session:
        link = scm.get_link(session, link_id)
        provider = scm.provider_for(registry.scm_providers, link.connection.provider)
        outcome = scm.publish_tag(session, registry.storage, provider, link, enc_key, limits, tag,
                                  delivery_id=delivery_id, triggered_by=triggered_by)
        return outcome.as_dict()


def scm_reconcile(registry: Registry, link_id: int) -> dict[str, Any]:
    """Job (queue ``scm``): publish a link's missing matching tags and catch moved ones."""
    from tfregistry.services import scm

    enc_key, limits = _scm_context(registry)
    with registry.db.session() as session:
        link = scm.get_link(session, link_id)
        provider = scm.provider_for(registry.scm_providers, link.connection.provider)
        return scm.reconcile_link(session, registry.storage, provider, link, enc_key, limits)


def scm_reconcile_tick(registry: Registry) -> list[int]:
    """Periodic job: enqueue a reconcile of every enabled SCM link (``scm.reconcile_interval``)."""
    from sqlalchemy import select

    from tfregistry.models import ScmLink

    with registry.db.session() as session:
        ids = list(session.scalars(select(ScmLink.id).where(ScmLink.enabled.is_(True))))
    for link_id in ids:
        registry.jobs.enqueue("tfregistry.jobs:scm_reconcile", link_id, queue="scm", job_id=f"scm-reconcile-{link_id}")
    return ids
