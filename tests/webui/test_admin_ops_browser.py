"""Issue 13's proof for the Jobs, Audit log and System pages, in headless chromium against real ``tfr serve``
processes (SQLite, then PostgreSQL) with Redis and real ``tfr worker`` processes:

* a job fails for real in a worker, is retried from the Jobs page, and the page (under the UI's strict
  Content-Security-Policy) shows it finish without being reloaded;
* a queued job is cancelled through the confirmation page;
* the audit log's JSON lines and CSV exports, downloaded from the Audit log page, hold those actions;
* every page of this area passes ``check_page`` (weight, nothing off-site, axe-core light and dark).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from playwright.sync_api import Page, expect

from tests.conftest import REDIS_URL
from tests.e2e.conftest import RegistryServer
from tests.webui.harness import REPO, check_page, screenshot
from tfregistry.jobs import RQQueue

#: The job that fails for real: ``flaky(name, failures)`` fails that many times (counted in Redis), then succeeds.
FLAKY = "tests.integration.test_jobs:flaky"
ECHO = "tests.integration.test_jobs:echo"
WORKER_TIMEOUT = 120


@pytest.fixture(scope="module")
def registry_env() -> dict[str, str]:
    """Jobs in Redis (this test's database), no automatic retry: a failure stays failed until retried."""
    return {"TFR_REDIS_URL": REDIS_URL, "TFR_JOBS__RETRIES": "0"}


@pytest.fixture
def queue(registry: RegistryServer) -> Iterator[RQQueue]:
    """The server's job queues, seen from the test (an empty Redis database first)."""
    connection = redis_lib.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis_lib.ConnectionError as exc:
        pytest.fail(f"Redis is required for this test and is not reachable at {REDIS_URL}: {exc}")
    connection.flushdb()
    jobs = RQQueue(REDIS_URL, retries=0, backoff_base=1, result_ttl=3600, failure_ttl=3600, job_timeout=120)
    yield jobs
    jobs.connection.close()
    connection.flushdb()
    connection.close()


def worker(server: RegistryServer, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``tfr worker`` on the server's database, storage and Redis; it can import the tests' job functions."""
    env = {**server.env, "PYTHONPATH": str(REPO), "TFREGISTRY_TEST_REDIS_URL": REDIS_URL}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tfregistry", "worker", "--queues", "default", *extra],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def run_burst_worker(server: RegistryServer, log: Path) -> None:
    proc = worker(server, log, "--burst")
    try:
        assert proc.wait(timeout=WORKER_TIMEOUT) == 0, log.read_text()
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def sign_in(page: Page, token: str) -> None:
    """Sign in through the sign-in page's token form, as a person pasting a token does."""
    page.goto("/sign-in")
    page.get_by_label("API token", exact=True).fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


def job_row(page: Page, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def test_a_failed_job_is_retried_from_the_jobs_page_and_the_audit_export_holds_it(
        open_page: Callable[..., Page], registry: RegistryServer, queue: RQQueue, tmp_path: Path) -> None:
    name = f"browser-{uuid.uuid4().hex[:8]}"
    failing = queue.enqueue(FLAKY, name, 1)
    run_burst_worker(registry, tmp_path / "worker-1.log")
    assert queue.get(failing.id).status == "failed"  # for real, in another process

    # the UI's own Content-Security-Policy applies: the refresh script must work under it
    page = open_page(registry, bypass_csp=False)
    sign_in(page, registry.admin_token)
    page.goto("/admin/jobs")
    row = job_row(page, failing.id)
    expect(row.locator("[data-status]")).to_have_text("Failed")
    expect(row).to_contain_text("attempt failed on purpose")
    expect(row).to_contain_text(f'["{name}", 1]')
    row.get_by_role("button", name=f"Retry job {failing.id}").click()
    page.wait_for_url("**/admin/jobs")
    expect(page.get_by_role("status").first).to_contain_text(f"Job {failing.id} ({FLAKY}) is queued again.")
    expect(job_row(page, failing.id).locator("[data-status]")).to_have_text("Queued")

    # a worker runs the retried job while the page stays open: the table refreshes itself, no reload
    page.evaluate("window.__still_the_same_page = true")
    run_burst_worker(registry, tmp_path / "worker-2.log")
    assert queue.get(failing.id).status == "finished" and queue.get(failing.id).result == "recovered"
    expect(job_row(page, failing.id).locator("[data-status]")).to_have_text("Finished", timeout=30_000)
    assert page.evaluate("window.__still_the_same_page === true")
    assert page.locator("#jobs-table").get_attribute("data-refreshed")
    expect(page.locator("[data-refresh-status]")).to_contain_text("refreshes itself every 5 seconds")

    # a queued job (no worker runs now) is cancelled through the confirmation page
    waiting = queue.enqueue(ECHO, "never run")
    page.goto("/admin/jobs?status=queued")
    job_row(page, waiting.id).get_by_role("link", name=f"Cancel job {waiting.id}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Cancel job")
    assert queue.get(waiting.id).status == "queued"  # the confirmation page changed nothing
    page.get_by_role("button", name=f"Cancel job {waiting.id}").click()
    page.wait_for_url("**/admin/jobs?status=queued")
    assert queue.get(waiting.id).status == "canceled"

    # the audit log shows both actions, and its exports (same filter) hold them
    page.goto("/admin/audit")
    page.get_by_label("Action").fill("job.")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/admin/audit?*action=job.*")
    expect(page.locator("table.audit-table tbody tr")).to_have_count(2)
    records = [json.loads(line) for line in export(page, "Export JSON lines", ".jsonl").splitlines()]
    me = json.loads(registry.get("/api/v1/me", token=registry.admin_token).body)["name"]  # token:initial admin
    assert [(r["action"], r["target"], r["actor"]) for r in records] == [
        ("job.cancel", f"job:{waiting.id}", me), ("job.retry", f"job:{failing.id}", me)]
    assert records[1]["details"] == {"func": FLAKY, "queue": "default"}
    rows = list(csv.DictReader(io.StringIO(export(page, "Export CSV", ".csv"))))
    assert [(r["action"], r["target"]) for r in rows] == [(r["action"], r["target"]) for r in records]


def export(page: Page, label: str, suffix: str) -> str:
    """The body of the page's export link ``label``, fetched with the browser's session.

    Fetched by ``page.request`` rather than by clicking: Chromium cancels downloads from a site whose
    certificate it does not trust (the test servers' CA is trusted through ``ignore_https_errors`` only)."""
    link = page.get_by_role("link", name=label)
    assert link.get_attribute("download") is not None
    response = page.request.get(link.get_attribute("href"))
    assert response.status == 200, response.text()
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="audit-') and disposition.endswith(f'{suffix}"')
    return response.text()


def test_every_page_of_this_area_passes_the_checks(open_page: Callable[..., Page], registry: RegistryServer,
                                                   queue: RQQueue, tmp_path: Path) -> None:
    failing = queue.enqueue(FLAKY, f"checks-{uuid.uuid4().hex[:8]}", 99)
    run_burst_worker(registry, tmp_path / "worker-1.log")
    queue.enqueue(ECHO, {"later": True})
    waiting = queue.enqueue(ECHO, "waiting")
    page = open_page(registry)
    sign_in(page, registry.admin_token)
    check_page(page, "/admin/jobs", "jobs", shot="admin-jobs")
    check_page(page, "/admin/jobs?status=failed", "failed jobs")
    check_page(page, f"/admin/jobs/{failing.id}", "a failed job", shot="admin-job")
    check_page(page, f"/admin/jobs/{waiting.id}/cancel", "cancel a job", shot="admin-job-cancel")
    check_page(page, "/admin/audit", "audit log", shot="admin-audit")
    check_page(page, "/admin/audit?since=not-a-time", "audit log with a bad filter", status=400)
    # the System page with a worker running: it lists the worker
    running = worker(registry, tmp_path / "worker-2.log")
    try:
        from rq import Worker

        deadline = time.monotonic() + WORKER_TIMEOUT
        while not Worker.all(connection=queue.connection) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert Worker.all(connection=queue.connection), (tmp_path / "worker-2.log").read_text()
        check_page(page, "/admin/system", "system")
        screenshot(page, "admin-system", full_page=False)  # the whole page (every setting) would be megabytes
        workers = page.locator("table").filter(has=page.locator("caption", has_text="Workers"))
        expect(workers.locator("tbody tr")).to_have_count(1)
        expect(workers.locator("tbody tr")).to_contain_text("default")
        expect(page.locator("main")).to_contain_text("reachable")
    finally:
        stop(running)
