"""Background jobs: in-process without Redis, RQ with the real Redis, the jobs API, health and readiness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis as redis_lib
from click.testing import CliRunner

from tests.conftest import REDIS_URL, bearer
from tfregistry import jobs as jobs_mod
from tfregistry.cli import Context, cli

CALLS: dict[str, int] = {}


def echo(registry: Any, value: Any) -> Any:
    """A job returning its argument."""
    return value


def flaky(registry: Any, name: str, failures: int) -> str:
    """Fails ``failures`` times (counted per name in Redis, so any worker process sees it), then succeeds."""
    r = redis_lib.Redis.from_url(REDIS_URL)
    if r.incr(f"tfr-test-flaky:{name}") <= failures:
        raise RuntimeError(f"attempt failed on purpose ({name})")
    return "recovered"


def slow(registry: Any, seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


# --- in-process (no Redis) -------------------------------------------------------------------


def test_in_process_jobs_run_retry_and_show_in_the_api(app_factory, redis_db):
    app = app_factory({"jobs.backoff_seconds": 0, "jobs.retries": 2})
    registry = app.extensions["tfregistry"]
    assert isinstance(registry.jobs, jobs_mod.InProcessQueue)
    done = registry.jobs.enqueue("tests.integration.test_jobs:echo", {"x": 1})
    retried = registry.jobs.enqueue("tests.integration.test_jobs:flaky", "inproc", 2)
    failed = registry.jobs.enqueue("tests.integration.test_jobs:flaky", "never", 99)
    registry.jobs.wait()
    assert registry.jobs.get(done.id).result == {"x": 1}
    assert registry.jobs.get(retried.id).status == "finished" and registry.jobs.get(retried.id).attempts == 3
    assert registry.jobs.get(failed.id).status == "failed" and "on purpose" in registry.jobs.get(failed.id).error

    from tests.conftest import new_token

    token = new_token(app, "admin")
    client = app.test_client()
    listed = client.get("/api/v1/jobs?status=failed", headers=bearer(token)).get_json()
    assert [j["id"] for j in listed] == [failed.id]
    assert client.get("/api/v1/jobs", headers=bearer(new_token(app, "read"))).status_code == 403
    r = client.post(f"/api/v1/jobs/{done.id}/retry", headers=bearer(token))
    assert r.status_code == 409 and "only failed" in r.get_json()["message"]
    assert client.get("/api/v1/jobs/nope", headers=bearer(token)).status_code == 404


def test_unknown_job_function_fails_at_enqueue(app):
    with pytest.raises((ModuleNotFoundError, AttributeError)):
        app.extensions["tfregistry"].jobs.enqueue("tests.integration.test_jobs:no_such_job")


# --- RQ with the real Redis -------------------------------------------------------------------


def test_rq_jobs_retry_with_backoff_then_land_in_the_failed_registry(app_factory, redis_db):
    app = app_factory({"redis_url": REDIS_URL, "jobs.retries": 1, "jobs.backoff_seconds": 1})
    registry = app.extensions["tfregistry"]
    assert isinstance(registry.jobs, jobs_mod.RQQueue)
    ok = registry.jobs.enqueue("tests.integration.test_jobs:echo", [1, 2])
    recovers = registry.jobs.enqueue("tests.integration.test_jobs:flaky", "rq-recover", 1, queue="mirror")
    gives_up = registry.jobs.enqueue("tests.integration.test_jobs:flaky", "rq-never", 99)
    assert registry.jobs.get(ok.id).status == "queued"

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # burst workers until the retries (scheduled 1 s later) have run
        jobs_mod.run_worker(registry, ["default", "mirror"], burst=True)
        if {registry.jobs.get(j.id).status for j in (recovers, gives_up)} <= {"finished", "failed"}:
            break
        time.sleep(0.3)
    assert registry.jobs.get(ok.id).result == [1, 2]
    assert registry.jobs.get(recovers.id).status == "finished"
    assert registry.jobs.get(recovers.id).result == "recovered"
    failed = registry.jobs.get(gives_up.id)
    assert failed.status == "failed" and "on purpose" in failed.error
    assert [j.id for j in registry.jobs.list("failed")] == [gives_up.id]

    # retry through the API: it fails again, visibly (the function still fails)
    from tests.conftest import new_token

    token = new_token(app, "admin")
    client = app.test_client()
    assert client.post(f"/api/v1/jobs/{gives_up.id}/retry", headers=bearer(token)).get_json()["status"] == "queued"
    jobs_mod.run_worker(registry, ["default"], burst=True)
    assert registry.jobs.get(gives_up.id).status in ("failed", "scheduled")


def test_cli_jobs_list_retry_cancel(app_factory, redis_db, tmp_path, database_url):
    app = app_factory({"redis_url": REDIS_URL, "jobs.retries": 0})
    registry = app.extensions["tfregistry"]
    failing = registry.jobs.enqueue("tests.integration.test_jobs:flaky", "cli", 99)
    pending = registry.jobs.enqueue("tests.integration.test_jobs:echo", "later", queue="notify")
    jobs_mod.run_worker(registry, ["default"], burst=True)
    env = {"TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url, "TFR_REDIS_URL": REDIS_URL,
           "TFR_PLUGINS": "tfregistry-storage-local"}
    runner = CliRunner(env=env)
    listed = runner.invoke(cli, ["jobs", "list", "--status", "failed"], obj=Context(None)).output
    assert failing.id in listed and "on purpose" in listed
    assert runner.invoke(cli, ["jobs", "cancel", pending.id], obj=Context(None)).output.strip().endswith("canceled")
    assert registry.jobs.get(pending.id).status == "canceled"
    assert "queued" in runner.invoke(cli, ["jobs", "retry", failing.id], obj=Context(None)).output
    with registry.db.session() as session:  # audited like the API's retry and cancel
        from sqlalchemy import select

        from tfregistry.models import AuditEntry

        entries = session.scalars(select(AuditEntry).where(AuditEntry.action.startswith("job."))).all()
        assert {(e.action, e.actor, e.target) for e in entries} == {
            ("job.cancel", "cli", f"job:{pending.id}"), ("job.retry", "cli", f"job:{failing.id}")}
    missing = runner.invoke(cli, ["jobs", "retry", "no-such-job"], obj=Context(None))
    assert missing.exit_code == 1 and "no job no-such-job" in missing.output
    no_redis = CliRunner(env={k: v for k, v in env.items() if k != "TFR_REDIS_URL"})
    result = no_redis.invoke(cli, ["jobs", "list"], obj=Context(None))
    assert result.exit_code == 1 and "inside the web process" in result.output


def test_killed_worker_leaves_the_job_visible_and_another_worker_finishes_the_queue(
        app_factory, redis_db, tmp_path, database_url):
    app = app_factory({"redis_url": REDIS_URL, "jobs.retries": 0, "jobs.timeout": 2})
    registry = app.extensions["tfregistry"]
    stuck = registry.jobs.enqueue("tests.integration.test_jobs:slow", 30)
    after = registry.jobs.enqueue("tests.integration.test_jobs:echo", "after the crash")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TFR_")},
           "TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url, "TFR_REDIS_URL": REDIS_URL,
           "TFR_JOBS__TIMEOUT": "2", "TFR_PLUGINS": "tfregistry-storage-local", "PYTHONPATH": os.getcwd()}
    first = subprocess.Popen([sys.executable, "-m", "tfregistry", "worker", "--queues", "default"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while registry.jobs.get(stuck.id).status != "started" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert registry.jobs.get(stuck.id).status == "started"
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-job
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    second = subprocess.run([sys.executable, "-m", "tfregistry", "worker", "--queues", "default", "--burst"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert registry.jobs.get(after.id).result == "after the crash"
    # The dead worker's job stays in RQ's started registry until its heartbeat expires
    # (job timeout + 60 s), when any worker's maintenance moves it to the failed registry.
    # Ask for that maintenance as of two minutes from now instead of waiting for it.
    from rq.registry import StartedJobRegistry

    assert registry.jobs.get(stuck.id).status == "started"
    StartedJobRegistry(queue=registry.jobs.queue("default")).cleanup(timestamp=time.time() + 120)
    lost = registry.jobs.get(stuck.id)
    assert lost.status == "failed", "the job was silently lost"
    assert [j.id for j in registry.jobs.list("failed")] == [stuck.id]
    assert registry.jobs.retry(stuck.id).status == "queued"  # and an operator can run it again


# --- health ---------------------------------------------------------------------------------


def test_health_and_ready(app_factory, redis_db):
    app = app_factory({"redis_url": REDIS_URL})
    client = app.test_client()
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok", "redis": "ok"}}


def test_not_ready_when_redis_is_down(app_factory):
    app = app_factory({"redis_url": "redis://127.0.0.1:1/0"})
    r = app.test_client().get("/ready")
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "not ready" and body["checks"]["redis"].startswith("failing")
    assert body["checks"]["database"] == "ok"


def test_storage_gc_job(app_factory, redis_db):
    app = app_factory({"jobs.backoff_seconds": 0})
    registry = app.extensions["tfregistry"]
    job = registry.jobs.enqueue("tfregistry.jobs:storage_gc", 0)
    registry.jobs.wait()
    assert registry.jobs.get(job.id).status == "finished" and registry.jobs.get(job.id).result == 0


def test_expiring_tokens_are_noticed_once(app_factory):
    from datetime import timedelta

    from tests.conftest import new_token

    app = app_factory()
    registry = app.extensions["tfregistry"]
    new_token(app, "read", name="soon", expires_in=timedelta(days=2))
    new_token(app, "read", name="later", expires_in=timedelta(days=30))
    new_token(app, "read", name="forever")
    from tfregistry.jobs import token_expiry_notices

    first = token_expiry_notices(registry)
    assert len(first) == 1
    assert token_expiry_notices(registry) == []  # once per token
    r = app.test_client().get("/api/v1/audit?action=token.expiring",
                               headers={"Authorization": f"Bearer {new_token(app, 'admin', name='a')}"})
    entries = r.get_json()["entries"]
    assert [e["details"]["name"] for e in entries] == ["soon"] and entries[0]["target"] == f"token:{first[0]}"


def test_a_live_job_keeps_its_heartbeat_and_a_dead_one_is_queued_again(app_factory, redis_db, tmp_path,
                                                                       database_url):
    from tfregistry.jobs import ALIVE_KEY

    app = app_factory({"redis_url": REDIS_URL, "jobs.retries": 0})
    registry = app.extensions["tfregistry"]
    job = registry.jobs.enqueue("tests.integration.test_jobs:slow", 60, job_id="long-one")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TFR_")},
           "TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url, "TFR_REDIS_URL": REDIS_URL,
           "TFR_JOBS__HEARTBEAT_SECONDS": "1", "TFR_PLUGINS": "tfregistry-storage-local", "PYTHONPATH": os.getcwd()}
    worker = subprocess.Popen([sys.executable, "-m", "tfregistry", "worker", "--queues", "default"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while registry.jobs.get(job.id).status != "started" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert registry.jobs.get(job.id).status == "started"
        time.sleep(11)  # past the grace period for a new job's first beat: only the heartbeat keeps it alive
        assert redis_db.exists(ALIVE_KEY.format(job.id))
        assert registry.jobs.enqueue("tests.integration.test_jobs:slow", 60, job_id="long-one").status == "started"
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while redis_db.exists(ALIVE_KEY.format(job.id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    again = registry.jobs.enqueue("tests.integration.test_jobs:slow", 0, job_id="long-one")
    assert again.status == "queued" and again.id == job.id
