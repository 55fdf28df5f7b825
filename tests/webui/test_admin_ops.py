"""Administration pages of issue 13, part "ops": Jobs (list, refresh fragment, retry, cancel), Audit log (filters,
pages, CSV and JSON lines exports) and System, through the Flask test client on SQLite and PostgreSQL: every page
and action, and the permission checks (anonymous 401, a viewer 403, another organization's admin 404; nothing
changes)."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from markupsafe import escape

from tests.conftest import REDIS_URL, bearer, new_token
from tests.webui.conftest import assert_page
from tests.webui.test_account import audit, form_csrf, make_user, personal_token, sign_in
from tfregistry.jobs import InProcessQueue
from tfregistry.services import identity as identity_svc
from tfregistry.services.audit import CLI_ACTOR, Actor, record
from tfregistry.settings import MASK

#: How often :func:`fails_then_succeeds` still fails, per name (in-process jobs run in this process).
FAILURES: dict[str, int] = {}
RELEASE = threading.Event()


def echo(registry: Any, value: Any) -> Any:
    """A job returning its argument."""
    return value


def fails_then_succeeds(registry: Any, name: str) -> str:
    """Fails while ``FAILURES[name]`` is positive (counting down), then succeeds."""
    if FAILURES.get(name, 0) > 0:
        FAILURES[name] -= 1
        raise RuntimeError(f"attempt failed on purpose ({name})")
    return f"recovered {name}"


def blocker(registry: Any) -> str:
    """Holds the in-process runner (one job at a time) until the test sets :data:`RELEASE`."""
    RELEASE.wait(30)
    return "released"


JOB = "tests.webui.test_admin_ops:"


@pytest.fixture
def app(ui_factory: Any) -> Any:
    """In-process jobs without automatic retries, so a failure stays failed."""
    return ui_factory({"jobs.retries": 0, "jobs.backoff_seconds": 0})


@pytest.fixture
def jobs(app: Any) -> InProcessQueue:
    return app.extensions["tfregistry"].jobs


def signed_in_admin(client: Any, admin_token: str) -> Any:
    assert sign_in(client, admin_token).status_code == 303
    return client


def csrf(client: Any, path: str = "/admin/jobs") -> str:
    return form_csrf(client.get(path).get_data(as_text=True))


def failed_job(jobs: InProcessQueue, name: str, failures: int = 1) -> str:
    FAILURES[name] = failures
    info = jobs.enqueue(JOB + "fails_then_succeeds", name)
    jobs.wait()
    assert jobs.get(info.id).status == "failed"
    return info.id


# --- jobs --------------------------------------------------------------------------------------------------


def test_jobs_page_lists_jobs_with_arguments_attempts_and_errors(client, jobs, admin_token):
    done = jobs.enqueue(JOB + "echo", {"answer": 42})
    failed = failed_job(jobs, "list")
    signed_in_admin(client, admin_token)
    html = assert_page(client.get("/admin/jobs"))
    assert "<h1>Jobs</h1>" in html and 'aria-current="page">Jobs</a>' in html
    assert f'data-job-id="{done.id}"' in html and f'data-job-id="{failed}"' in html
    assert escape('{"answer": 42}') in html and escape('["list"]') in html
    assert 'data-status="failed"' in html and 'data-status="finished"' in html
    assert "RuntimeError: attempt failed on purpose (list)" in html
    # retry is offered for the failed job only
    assert html.count('/retry"') == 1 and f"/admin/jobs/{failed}/retry" in html
    # the page's table refreshes itself from the fragment URL, through a static script (no inline script)
    assert 'data-refresh-url="/admin/jobs?fragment=1"' in html and "/admin-jobs.js" in html

    only_failed = assert_page(client.get("/admin/jobs?status=failed"))
    assert f'data-job-id="{failed}"' in only_failed and f'data-job-id="{done.id}"' not in only_failed
    assert 'data-refresh-url="/admin/jobs?status=failed&amp;fragment=1"' in only_failed
    assert "No running jobs." in assert_page(client.get("/admin/jobs?status=started"))
    assert "unknown job status" in assert_page(client.get("/admin/jobs?status=bogus"), 400)


def test_the_fragment_is_the_table_alone(client, jobs, admin_token):
    failed = failed_job(jobs, "fragment")
    signed_in_admin(client, admin_token)
    fragment = assert_page(client.get("/admin/jobs?fragment=1"))
    assert fragment.lstrip().startswith(("{#", "<div class=\"table-wrap\">", "<div"))
    assert "<html" not in fragment and "<header" not in fragment and "<h1" not in fragment
    assert f'data-job-id="{failed}"' in fragment and 'name="csrf_token"' in fragment
    # the fragment needs the same permission as the page
    client.post("/auth/logout", data={"csrf_token": csrf(client)})
    assert client.get("/admin/jobs?fragment=1").status_code == 401


def test_the_js_file_is_served_and_refetches_the_fragment(client):
    html = client.get("/").get_data(as_text=True)
    stamp = re.search(r"/-/static/([^/]+)/tfr\.js", html).group(1)
    script = client.get(f"/-/static/{stamp}/admin-jobs.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    body = script.get_data(as_text=True)
    assert "data-refresh-url" in body and "fetch(" in body and "setInterval" in body


def test_a_failed_job_is_retried_from_the_page_with_an_audit_entry(app, client, jobs, admin_token):
    failed = failed_job(jobs, "retry")
    signed_in_admin(client, admin_token)
    done = client.post(f"/admin/jobs/{failed}/retry", data={"csrf_token": csrf(client),
                                                            "next": "/admin/jobs?status=failed"})
    assert done.status_code == 303 and done.headers["Location"] == "/admin/jobs?status=failed"
    jobs.wait()
    job = jobs.get(failed)
    assert job.status == "finished" and job.result == "recovered retry" and job.attempts == 2
    entries = audit(app, "job.retry")
    assert [(e.actor, e.target, e.details["func"]) for e in entries] == [
        ("token:admin", f"job:{failed}", JOB + "fails_then_succeeds")]
    assert f"Job {failed} ({JOB}fails_then_succeeds) is queued again." in assert_page(client.get("/admin/jobs"))

    # a finished job cannot be retried: the page says why, nothing is recorded
    again = client.post(f"/admin/jobs/{failed}/retry", data={"csrf_token": csrf(client)})
    assert again.status_code == 303 and again.headers["Location"] == "/admin/jobs"
    assert "only failed or canceled jobs can be retried" in assert_page(client.get("/admin/jobs"))
    assert len(audit(app, "job.retry")) == 1
    assert client.post("/admin/jobs/nope/retry", data={"csrf_token": csrf(client)}).status_code == 404


def test_the_api_retry_writes_the_same_audit_entry(app, client, jobs, admin_token):
    failed = failed_job(jobs, "api-retry")
    answer = client.post(f"/api/v1/jobs/{failed}/retry", headers=bearer(admin_token))
    assert answer.status_code == 200 and answer.get_json()["status"] in ("queued", "started", "finished")
    jobs.wait()
    assert [(e.actor, e.target) for e in audit(app, "job.retry")] == [("token:admin", f"job:{failed}")]


def test_retry_needs_the_csrf_token(app, client, jobs, admin_token):
    failed = failed_job(jobs, "csrf")
    signed_in_admin(client, admin_token)
    for data in ({}, {"csrf_token": "forged"}):
        assert client.post(f"/admin/jobs/{failed}/retry", data=data).status_code == 403
    assert jobs.get(failed).status == "failed" and audit(app, "job.retry") == []


def test_cancel_asks_for_confirmation_then_cancels_with_an_audit_entry(app, client, jobs, admin_token):
    RELEASE.clear()
    busy = jobs.enqueue(JOB + "blocker")
    waiting = jobs.enqueue(JOB + "echo", "never run")
    try:
        signed_in_admin(client, admin_token)
        listed = assert_page(client.get("/admin/jobs?status=queued"))
        assert f"/admin/jobs/{waiting.id}/cancel?next=" in listed
        confirm = assert_page(client.get(f"/admin/jobs/{waiting.id}/cancel?next=/admin/jobs?status%3Dqueued"))
        assert "Cancel job" in confirm and f'action="/admin/jobs/{waiting.id}/cancel"' in confirm
        assert jobs.get(waiting.id).status == "queued"  # the page changed nothing
        done = client.post(f"/admin/jobs/{waiting.id}/cancel",
                           data={"csrf_token": form_csrf(confirm), "next": "/admin/jobs?status=queued"})
        assert done.status_code == 303 and done.headers["Location"] == "/admin/jobs?status=queued"
        assert jobs.get(waiting.id).status == "canceled"
        assert [e.target for e in audit(app, "job.cancel")] == [f"job:{waiting.id}"]
    finally:
        RELEASE.set()
    jobs.wait()
    assert jobs.get(waiting.id).status == "canceled" and jobs.get(busy.id).result == "released"
    # canceled jobs can be retried
    assert f"/admin/jobs/{waiting.id}/retry" in assert_page(client.get("/admin/jobs?status=canceled"))


def test_the_job_page_shows_the_full_error_and_the_result(client, jobs, admin_token):
    failed = failed_job(jobs, "detail")
    ok = jobs.enqueue(JOB + "echo", {"rows": [1, 2]})
    jobs.wait()
    signed_in_admin(client, admin_token)
    html = assert_page(client.get(f"/admin/jobs/{failed}"))
    assert "Traceback (most recent call last)" in html and "fails_then_succeeds" in html
    assert f'action="/admin/jobs/{failed}/retry"' in html
    result = assert_page(client.get(f"/admin/jobs/{ok.id}"))
    assert escape('"rows": [') in result and "/retry" not in result
    assert_page(client.get("/admin/jobs/no-such-job"), 404)


def test_jobs_with_redis_show_and_retry_through_rq(ui_factory, redis_db, admin_token_for):
    from tfregistry import jobs as jobs_mod

    app = ui_factory({"redis_url": REDIS_URL, "jobs.retries": 0})
    registry = app.extensions["tfregistry"]
    FAILURES["rq"] = 1  # the worker runs here (burst), in this process
    failed = registry.jobs.enqueue(JOB + "fails_then_succeeds", "rq")
    jobs_mod.run_worker(registry, ["default"], burst=True)
    client = app.test_client()
    signed_in_admin(client, admin_token_for(app))
    html = assert_page(client.get("/admin/jobs?status=failed"))
    assert f'data-job-id="{failed.id}"' in html and "attempt failed on purpose (rq)" in html
    assert "tfr worker" in html
    done = client.post(f"/admin/jobs/{failed.id}/retry", data={"csrf_token": form_csrf(html)})
    assert done.status_code == 303 and registry.jobs.get(failed.id).status == "queued"
    jobs_mod.run_worker(registry, ["default"], burst=True)
    assert registry.jobs.get(failed.id).status == "finished"
    assert 'data-status="finished"' in assert_page(client.get("/admin/jobs"))
    system = assert_page(client.get("/admin/system"))
    assert "reachable" in system and "Jobs per queue" in system
    health = assert_page(client.get("/admin")).split('id="health-heading"', 1)[1].split("</section>", 1)[0]
    assert re.search(r'>Redis</a>: <span class="badge ok">ok</span>', health), health  # the dashboard's health


def test_redis_down_gives_the_503_page_and_the_system_page_says_so(ui_factory, admin_token_for):
    app = ui_factory({"redis_url": "redis://127.0.0.1:1/0"})  # nothing listens on port 1
    client = signed_in_admin(app.test_client(), admin_token_for(app))
    down = assert_page(client.get("/admin/jobs"), 503)
    assert "The job queue (Redis, setting redis_url) is unavailable" in down
    system = assert_page(client.get("/admin/system"))
    assert '<span class="badge bad">failing</span> ConnectionError' in system
    assert "redis://127.0.0.1:1/0" in system
    health = assert_page(client.get("/admin")).split('id="health-heading"', 1)[1].split("</section>", 1)[0]
    assert re.search(r'>Redis</a>: <span class="badge bad">', health), health
    assert re.search(r'>Database</a>: <span class="badge ok">ok</span>', health), health


@pytest.fixture
def admin_token_for() -> Any:
    return lambda app: new_token(app, "admin", name="admin")


# --- permissions ---------------------------------------------------------------------------------------


PAGES = ("/admin/jobs", "/admin/jobs?fragment=1", "/admin/system", "/admin/audit", "/admin/audit/export.csv",
         "/admin/audit/export.jsonl")


def test_anonymous_callers_are_asked_to_sign_in(client):
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 401, path
        if response.mimetype == "text/html":
            assert "Sign-in required" in response.get_data(as_text=True)


def test_a_viewer_gets_403_everywhere_and_changes_nothing(app, client, jobs):
    failed = failed_job(jobs, "viewer")
    user_id = make_user(app, "vic@example.com", role="viewer")
    assert sign_in(client, personal_token(app, user_id, scopes="modules:read")).status_code == 303
    for path in PAGES:
        assert client.get(path).status_code == 403, path
    token = form_csrf(client.get("/account/tokens").get_data(as_text=True))
    assert client.post(f"/admin/jobs/{failed}/retry", data={"csrf_token": token}).status_code == 403
    assert client.get(f"/admin/jobs/{failed}/cancel").status_code == 403
    assert client.get(f"/admin/jobs/{failed}").status_code == 403
    assert jobs.get(failed).status == "failed" and audit(app, "job.retry") == []
    # the API answers the same
    secret = personal_token(app, user_id, scopes="modules:read", name="api")
    assert client.get("/api/v1/jobs", headers=bearer(secret)).status_code == 403
    assert client.get("/api/v1/audit", headers=bearer(secret)).status_code == 403


@pytest.fixture
def tenants(ui_factory: Any) -> Any:
    """A multi-tenant registry with organizations blue and red, an admin of each, and audit entries in each."""
    app = ui_factory({"tenancy": "multi", "jobs.retries": 0})
    with app.extensions["tfregistry"].db.session() as s:
        orgs = {name: identity_svc.create_organization(s, CLI_ACTOR, name) for name in ("blue", "red")}
        admin_role = identity_svc.get_role(s, "admin")
        ids = {}
        for name, org in orgs.items():
            user = identity_svc.create_user(s, CLI_ACTOR, f"{name}-admin@example.com", f"{name} admin")
            identity_svc.set_membership(s, CLI_ACTOR, user, org, admin_role)
            record(s, Actor(f"user:{name}-admin@example.com", organization_id=org.id), "namespace.save", name)
            ids[name] = user.id
        s.commit()
    return app, ids


def org_admin_client(app: Any, user_id: int) -> Any:
    client = app.test_client()
    assert sign_in(client, personal_token(app, user_id)).status_code == 303
    return client


def test_an_organization_admin_reads_only_their_organizations_audit_log(tenants):
    app, ids = tenants
    red = org_admin_client(app, ids["red"])
    html = assert_page(red.get("/admin/audit"))
    assert '<option value="red" selected>red</option>' in html
    assert "All organizations" not in html and '<option value="blue"' not in html
    assert "user:red-admin@example.com" in html and "user:blue-admin@example.com" not in html
    # another organization's log is "not found", as in the API; so are its exports
    assert_page(red.get("/admin/audit?organization=blue"), 404)
    assert red.get("/admin/audit/export.csv?organization=blue").status_code == 404
    exported = red.get("/admin/audit/export.jsonl").get_data(as_text=True).splitlines()
    assert {json.loads(line)["organization"] for line in exported} == {"red"}
    # jobs and the system page are the registry administrators'
    for path in ("/admin/jobs", "/admin/system"):
        assert red.get(path).status_code == 403, path
    # the API agrees
    secret = personal_token(app, ids["red"], name="api")
    assert red.get("/api/v1/audit?organization=blue", headers=bearer(secret)).status_code == 404
    assert red.get("/api/v1/audit?organization=red", headers=bearer(secret)).status_code == 200


# --- audit log -------------------------------------------------------------------------------------------


def write_entries(app: Any, count: int, action: str = "thing.do", actor: str = "user:a@example.com",
                  at: datetime | None = None) -> list[int]:
    with app.extensions["tfregistry"].db.session() as s:
        entries = [record(s, Actor(actor), action, f"target-{i}", n=i) for i in range(count)]
        if at is not None:  # before the INSERT: the log is append-only
            for entry in entries:
                entry.at = at
        s.commit()
        return [e.id for e in entries]


def table_actions(html: str) -> list[str]:
    return re.findall(r'<th scope="row"><code>([^<]+)</code></th>', html)


def test_the_audit_log_filters_by_actor_action_and_time(app, client, admin_token):
    write_entries(app, 2, "secret.create", "user:ann@example.com")
    write_entries(app, 1, "secret.revoke", "user:bob@example.com")
    write_entries(app, 1, "secrets.other", "user:ann@example.com")
    old = datetime(2020, 1, 1, 12, 0, tzinfo=UTC)
    write_entries(app, 1, "org.create", "user:old@example.com", at=old)
    signed_in_admin(client, admin_token)
    html = assert_page(client.get("/admin/audit"))
    assert "All organizations" in html and "<h1>Audit log</h1>" in html
    assert {"secret.create", "secret.revoke", "secrets.other", "org.create", "auth.login"} <= set(table_actions(html))

    by_prefix = assert_page(client.get("/admin/audit?action=secret."))
    assert sorted(table_actions(by_prefix)) == ["secret.create", "secret.create", "secret.revoke"]
    exact = assert_page(client.get("/admin/audit?action=secret.revoke"))
    assert table_actions(exact) == ["secret.revoke"]
    by_actor = assert_page(client.get("/admin/audit?actor=user:ann@example.com&action=secret."))
    assert table_actions(by_actor) == ["secret.create", "secret.create"]
    assert 'value="user:ann@example.com"' in by_actor  # the form keeps what was typed
    window = assert_page(client.get("/admin/audit?since=2019-12-31T00:00&until=2020-01-02T00:00"))
    assert table_actions(window) == ["org.create"] and "2020-01-01 12:00:00" in window
    after = assert_page(client.get("/admin/audit?since=2020-01-01T12:00:01"))
    assert "org.create" not in table_actions(after)
    # the export links carry the same filter
    assert 'href="/admin/audit/export.csv?actor=user:ann@example.com&amp;action=secret."' in by_actor


def test_bad_filter_values_are_shown_next_to_their_field(app, client, admin_token):
    signed_in_admin(client, admin_token)
    html = assert_page(client.get("/admin/audit?since=yesterday&actor=" + "x" * 300), 400)
    assert 'id="f-since-error"' in html and 'aria-invalid="true"' in html and 'value="yesterday"' in html
    assert 'id="f-actor-error"' in html and "At most 255 characters." in html
    order = assert_page(client.get("/admin/audit?since=2026-01-02T00:00&until=2026-01-01T00:00"), 400)
    assert 'id="f-until-error"' in order
    assert "since:" in assert_page(client.get("/admin/audit/export.csv?since=yesterday"), 400)


def test_the_audit_log_is_paginated(app, client, admin_token):
    ids = write_entries(app, 60, "bulk.write")
    signed_in_admin(client, admin_token)
    first = assert_page(client.get("/admin/audit?action=bulk.write"))
    assert table_actions(first) == ["bulk.write"] * 50
    assert 'href="/admin/audit?action=bulk.write&amp;offset=50" rel="next"' in first and 'rel="prev"' not in first
    second = assert_page(client.get("/admin/audit?action=bulk.write&offset=50"))
    assert table_actions(second) == ["bulk.write"] * 10 and 'rel="next"' not in second
    assert "target-0<" in second and f"target-{len(ids) - 1}<" in first  # newest first


def test_exports_hold_every_filtered_entry_as_csv_and_json_lines(app, client, admin_token):
    ids = write_entries(app, 70, "export.me", "user:exp@example.com")
    write_entries(app, 3, "export.other")
    signed_in_admin(client, admin_token)
    query = "?actor=user:exp@example.com&action=export."
    response = client.get("/admin/audit/export.csv" + query)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    assert response.headers["Cache-Control"] == "no-store" and response.is_streamed
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [int(r["id"]) for r in rows] == sorted(ids, reverse=True)  # all 70, beyond one page, newest first
    assert {r["action"] for r in rows} == {"export.me"} and json.loads(rows[0]["details"]) == {"n": 69}
    assert rows[0]["organization"] == "" and rows[0]["actor"] == "user:exp@example.com"

    lines = client.get("/admin/audit/export.jsonl" + query)
    assert lines.mimetype == "application/x-ndjson"
    records = [json.loads(line) for line in lines.get_data(as_text=True).splitlines()]
    assert [r["id"] for r in records] == [int(r["id"]) for r in rows]
    assert records[-1]["details"] == {"n": 0} and records[0]["target"] == "target-69"
    assert datetime.fromisoformat(records[0]["at"]).tzinfo is not None
    # the same entries as the API's pages
    api = client.get("/api/v1/audit" + query + "&limit=500", headers=bearer(admin_token)).get_json()
    assert [e["id"] for e in api["entries"]] == [r["id"] for r in records]
    assert client.get("/admin/audit/export.xml").status_code == 404


def test_exports_name_the_organization(tenants):
    app, ids = tenants
    blue = org_admin_client(app, ids["blue"])
    response = blue.get("/admin/audit/export.csv?organization=blue")
    assert 'filename="audit-blue-' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {r["organization"] for r in rows} == {"blue"} and "namespace.save" in {r["action"] for r in rows}


# --- system --------------------------------------------------------------------------------------------


def test_the_system_page_shows_versions_plugins_settings_storage_and_database(ui_factory, admin_token_for):
    secret = "a-very-secret-signing-key-1234567890"
    app = ui_factory({"secret_key": secret})
    client = signed_in_admin(app.test_client(), admin_token_for(app))
    html = assert_page(client.get("/admin/system"))
    from tfregistry import __version__

    registry = app.extensions["tfregistry"]
    assert "<h1>System</h1>" in html and f"<dd>{__version__}</dd>" in html
    # plugins with versions and their hooks
    for info in registry.pm.plugin_infos():
        assert escape(info.name) in html and all(f"<code>{hook}</code>" in html for hook in info.hooks)
    assert "<code>tfr_register_blueprints</code>" in html
    # settings exactly as `tfr config show` prints them: the secret masked
    assert secret not in html and MASK in html
    for decl, value, source in registry.settings.effective():
        assert f"<code>{escape(decl.key)}</code>" in html and f"<code>{escape(value)}</code>" in html
        assert escape(source) in html
    # storage with its check, database with its revision, jobs in-process
    assert "<code>local</code>" in html and '<span class="badge ok">OK</span>' in html
    heads = registry.db.head_revisions()
    assert all(f"<code>{h}</code>" in html for h in heads) and "up to date" in html
    assert registry.db.engine.dialect.name in html
    assert "this web process runs jobs itself" in html


def test_config_show_masks_secrets_like_the_system_page(tmp_path):
    from click.testing import CliRunner

    from tfregistry.cli import Context, cli

    env = {"TFR_DATA_DIR": str(tmp_path / "cli"), "TFR_SECRET_KEY": "another-secret-value-0123456789",
           "TFR_PLUGINS": "tfregistry-storage-local"}
    output = CliRunner(env=env).invoke(cli, ["config", "show"], obj=Context(None)).output
    assert "secret_key = ********    # environment TFR_SECRET_KEY" in output
    assert "another-secret-value" not in output


def test_entries_show_their_organizations_name(app, client, admin_token):
    with app.extensions["tfregistry"].db.session() as s:
        org = identity_svc.create_organization(s, CLI_ACTOR, "green")
        for i in range(5):
            record(s, Actor("user:g@example.com", organization_id=org.id), "green.thing", str(i))
        s.commit()
    signed_in_admin(client, admin_token)
    html = assert_page(client.get("/admin/audit?organization=green"))
    assert html.count("<td>green</td>") == 5 and table_actions(html) == ["green.thing"] * 5


def test_times_in_the_filter_may_carry_an_offset(app, client, admin_token):
    write_entries(app, 1, "zone.test", at=datetime(2021, 6, 1, 10, 0, tzinfo=UTC))
    signed_in_admin(client, admin_token)
    html = assert_page(client.get("/admin/audit", query_string={"since": "2021-06-01T11:30+02:00",
                                                                "until": "2021-06-01T10:01"}))
    assert table_actions(html) == ["zone.test"]
    later = assert_page(client.get("/admin/audit", query_string={"since": "2021-06-01T12:30+02:00"}))
    assert "zone.test" not in table_actions(later)


def test_the_jobs_list_is_paginated_and_the_fragment_keeps_the_page(client, jobs, admin_token):
    made = [jobs.enqueue(JOB + "echo", i).id for i in range(55)]
    jobs.wait()
    signed_in_admin(client, admin_token)
    first = assert_page(client.get("/admin/jobs"))
    assert first.count("data-job-id=") == 50 and "1–50 of 55 jobs" in first
    assert 'href="/admin/jobs?offset=50" rel="next"' in first
    second = assert_page(client.get("/admin/jobs?offset=50"))
    assert second.count("data-job-id=") == 5 and 'data-refresh-url="/admin/jobs?offset=50&amp;fragment=1"' in second
    fragment = assert_page(client.get("/admin/jobs?offset=50&fragment=1"))
    assert fragment.count("data-job-id=") == 5 and 'href="/admin/jobs" rel="prev"' in fragment
    shown = set(re.findall(r'data-job-id="([^"]+)"', first + second))
    assert shown == set(made)
