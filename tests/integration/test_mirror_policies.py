"""Who may mirror (scopes and roles), mirror requests and their approval, and allow/deny mirror policies.

Everything goes through the HTTP API with the Flask test client, on SQLite and on PostgreSQL.  Where a
policy or an approval must stop traffic to an upstream registry, the upstream is a tiny local HTTP
server that counts the requests it receives, so "refused before any upstream request" is checked,
not assumed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, new_token
from tfregistry import jobs as jobs_mod
from tfregistry.services import NotFound
from tfregistry.services import identity as identity_svc
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR
from tfregistry.services.mirroring import due_configs

MIRRORS = "/api/v1/mirrors"
POLICIES = "/api/v1/mirrors/policies"


# --- a counting upstream ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _CountingServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.paths.append(path)
        if path == "/.well-known/terraform.json":
            body: Any = {"providers.v1": "/v1/providers/"}
        elif path.startswith("/v1/providers/") and path.endswith("/versions"):
            address = path.removeprefix("/v1/providers/").removesuffix("/versions")
            body = {"versions": self.server.versions.get(address, [])}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.paths: list[str] = []
        #: "namespace/type" -> the ``versions`` the upstream lists for it (default: none).
        self.versions: dict[str, list[dict[str, Any]]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.paths)


@pytest.fixture
def upstream() -> Iterator[_CountingServer]:
    server = _CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="counting-upstream")
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


# --- helpers ------------------------------------------------------------------------------------------------


class Site:
    """An app, its test client, and ways to make tokens, users and memberships directly in its database."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.registry = app.extensions["tfregistry"]
        self.manager = new_token(app, "mirrors:manage", name="manager")

    def token(self, scopes: str, name: str = "t") -> str:
        return new_token(self.app, scopes, name=name)

    def member(self, email: str, memberships: dict[str, str], scopes: str = "admin") -> str:
        """A user with ``memberships`` (organization -> role; organizations made if missing) and a
        personal token with ``scopes`` (never wider than the roles)."""
        with self.registry.db.session() as s:
            user = identity_svc.create_user(s, CLI_ACTOR, email, email.split("@")[0])
            for org_name, role in memberships.items():
                try:
                    org = identity_svc.get_organization(s, org_name)
                except NotFound:
                    org = identity_svc.create_organization(s, CLI_ACTOR, org_name)
                identity_svc.set_membership(s, CLI_ACTOR, user, org, identity_svc.get_role(s, role))
            _, secret = token_svc.create_token(s, CLI_ACTOR, name="p", scopes=scopes.split(), kind="personal",
                                               user=user)
            s.commit()
            return secret

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> Any:
        kwargs: dict[str, Any] = {"headers": bearer(token) if token else {}}
        if body is not None:
            kwargs["json"] = body
        return self.client.open(path, method=method, **kwargs)

    def create(self, token: str | None = None, namespace: str = "hashicorp", type_: str = "aws",
               host: str = "registry.terraform.io", **fields: Any) -> Any:
        body = {"upstream_host": host, "namespace": namespace, "type": type_, **fields}
        return self.call("POST", MIRRORS, token or self.manager, body)

    def policy(self, effect: str, pattern: str, token: str | None = None, description: str = "") -> Any:
        return self.call("POST", POLICIES, token or self.manager,
                         {"effect": effect, "pattern": pattern, "description": description})

    def runs(self, mirror_id: int) -> list[dict[str, Any]]:
        r = self.call("GET", f"{MIRRORS}/{mirror_id}/status", self.manager)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def audit(self, action: str) -> list[dict[str, Any]]:
        """Rows of the audit_log table for ``action``, oldest first."""
        with self.registry.db.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT actor, target, details FROM audit_log WHERE action = :action "
                                        "ORDER BY id"), {"action": action}).mappings().all()
        return [{**row, "details": json.loads(row["details"]) if isinstance(row["details"], str) else row["details"]}
                for row in rows]


@pytest.fixture
def site(app_factory: Any) -> Site:
    return Site(app_factory({"jobs.backoff_seconds": 0}))


@pytest.fixture
def approval_site(app_factory: Any) -> Site:
    return Site(app_factory({"mirror.require_approval": True, "jobs.backoff_seconds": 0}))


# --- scopes ---------------------------------------------------------------------------------------------------


def test_without_a_token_the_mirror_api_answers_401(site: Site):
    for method, path in (("GET", MIRRORS), ("GET", POLICIES), ("GET", f"{MIRRORS}/pull-through")):
        r = site.call(method, path, None)
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = site.create(token="tfr_" + "x" * 43)  # well-formed, unknown: refused, not treated as anonymous
    assert r.status_code == 401
    assert site.call("GET", MIRRORS, site.manager).get_json() == []


@pytest.mark.parametrize("scopes", ["modules:read", "modules:write providers:write keys:manage"])
def test_a_token_without_mirror_scopes_gets_403(site: Site, scopes: str):
    token = site.token(scopes)
    r = site.call("GET", MIRRORS, token)
    assert r.status_code == 403
    assert "may not view mirror configurations" in r.get_json()["message"]
    assert site.call("GET", POLICIES, token).status_code == 403
    assert site.create(token=token).status_code == 403


@pytest.mark.parametrize("scopes", ["mirrors:read", "read", "publish"])
def test_mirrors_read_can_view_but_not_change(site: Site, upstream: _CountingServer, scopes: str):
    mirror = site.create(upstream_url=upstream.url).get_json()
    policy = site.policy("deny", "example.com").get_json()
    reader = site.token(scopes, name="reader")
    mid = mirror["id"]

    listed = site.call("GET", MIRRORS, reader)
    assert listed.status_code == 200 and [m["id"] for m in listed.get_json()] == [mid]
    got = site.call("GET", f"{MIRRORS}/{mid}", reader)
    assert got.status_code == 200 and got.get_json()["namespace"] == "hashicorp"
    assert "upstream_token" not in got.get_json()
    status = site.call("GET", f"{MIRRORS}/{mid}/status", reader)
    assert status.status_code == 200 and status.get_json() == []
    assert site.call("GET", f"{MIRRORS}/pull-through", reader).status_code == 200
    policies = site.call("GET", POLICIES, reader)
    assert policies.status_code == 200 and [p["id"] for p in policies.get_json()] == [policy["id"]]

    body = {"upstream_host": "registry.terraform.io", "namespace": "hashicorp", "type": "null"}
    refused = [
        site.call("POST", MIRRORS, reader, body),
        site.call("PUT", f"{MIRRORS}/{mid}", reader, body),
        site.call("DELETE", f"{MIRRORS}/{mid}", reader),
        site.call("POST", f"{MIRRORS}/{mid}/sync", reader),
        site.call("POST", f"{MIRRORS}/{mid}/approve", reader, {}),
        site.call("POST", f"{MIRRORS}/{mid}/reject", reader, {"note": "no"}),
        site.call("POST", POLICIES, reader, {"effect": "allow", "pattern": "registry.terraform.io"}),
        site.call("DELETE", f"{POLICIES}/{policy['id']}", reader),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert "may not manage mirror configurations" in refused[0].get_json()["message"]

    # nothing changed, and no sync reached the upstream
    after = site.call("GET", f"{MIRRORS}/{mid}", site.manager).get_json()
    assert after["type"] == "aws" and after["status"] == "approved"
    assert len(site.call("GET", MIRRORS, site.manager).get_json()) == 1
    assert len(site.call("GET", POLICIES, site.manager).get_json()) == 1
    site.registry.jobs.wait()
    assert site.runs(mid) == [] and upstream.count == 0


def test_mirrors_manage_can_do_everything(site: Site, upstream: _CountingServer):
    created = site.create(upstream_url=upstream.url, version_constraint="~> 5.0")
    assert created.status_code == 201, created.get_json()
    mirror = created.get_json()
    mid = mirror["id"]
    assert mirror["status"] == "approved"
    assert mirror["requested_by"] == mirror["decided_by"] == "token:manager"
    assert site.audit("mirror.create")[0]["target"] == "registry.terraform.io/hashicorp/aws"

    body = {"upstream_host": "registry.terraform.io", "upstream_url": upstream.url, "namespace": "hashicorp",
            "type": "aws", "version_constraint": ">= 5.1", "latest": 2}
    put = site.call("PUT", f"{MIRRORS}/{mid}", site.manager, body)
    assert put.status_code == 200 and put.get_json()["version_constraint"] == ">= 5.1"

    sync = site.call("POST", f"{MIRRORS}/{mid}/sync", site.manager)
    assert sync.status_code == 202 and sync.get_json()["job"] == f"mirror-{mid}"
    site.registry.jobs.wait()
    [run] = site.runs(mid)
    assert run["status"] == "succeeded" and run["errors"] == []  # the upstream lists no versions
    assert "/.well-known/terraform.json" in upstream.paths
    assert "/v1/providers/hashicorp/aws/versions" in upstream.paths

    rejected = site.call("POST", f"{MIRRORS}/{mid}/reject", site.manager, {"note": "stop it"})
    assert rejected.status_code == 200 and rejected.get_json()["status"] == "rejected"
    approved = site.call("POST", f"{MIRRORS}/{mid}/approve", site.manager, {})
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    again = site.call("POST", f"{MIRRORS}/{mid}/approve", site.manager, {})
    assert again.status_code == 409 and "already approved" in again.get_json()["message"]

    policy = site.policy("allow", "registry.terraform.io/hashicorp")
    assert policy.status_code == 201
    assert site.call("DELETE", f"{POLICIES}/{policy.get_json()['id']}", site.manager).status_code == 204
    assert site.call("DELETE", f"{POLICIES}/{policy.get_json()['id']}", site.manager).status_code == 404

    assert site.call("DELETE", f"{MIRRORS}/{mid}", site.manager).status_code == 204
    assert site.call("GET", f"{MIRRORS}/{mid}", site.manager).status_code == 404
    assert [e["target"] for e in site.audit("mirror.delete")] == [str(mid)]


@pytest.mark.parametrize(("role", "manages"), [
    ("viewer", False), ("publisher", False), ("mirror-manager", True), ("admin", True),
])
def test_organization_roles_grant_mirror_scopes_through_personal_tokens(site: Site, role: str, manages: bool):
    # a membership in any organization counts: mirror configurations are registry-wide
    token = site.member(f"{role}@example.com", {"platform": role})
    listed = site.call("GET", MIRRORS, token)
    assert listed.status_code == 200
    r = site.create(token=token)
    assert r.status_code == (201 if manages else 403), r.get_json()
    if manages:
        assert r.get_json()["status"] == "approved"
        assert r.get_json()["requested_by"] == f"user:{role}@example.com (token p)"
    else:
        assert "may not manage mirror configurations" in r.get_json()["message"]
    assert site.policy("deny", "example.com", token=token).status_code == (201 if manages else 403)


def test_a_personal_token_narrower_than_the_role_cannot_manage(site: Site):
    narrow = site.member("mm@example.com", {"default": "mirror-manager"}, scopes="mirrors:read")
    assert site.call("GET", MIRRORS, narrow).status_code == 200
    assert site.create(token=narrow).status_code == 403


def test_a_user_without_memberships_cannot_even_read(site: Site):
    token = site.member("nobody@example.com", {})
    assert site.call("GET", MIRRORS, token).status_code == 403


# --- approval ---------------------------------------------------------------------------------------------------


def test_a_requested_configuration_waits_for_a_manager(approval_site: Site, upstream: _CountingServer):
    site = approval_site
    viewer = site.member("vera@example.com", {"default": "viewer"})
    # a requester cannot choose where the origin's providers really come from
    elsewhere = site.create(token=viewer, upstream_url=upstream.url, interval_seconds=3600)
    assert elsewhere.status_code == 403 and "only mirror managers may set upstream_url" in \
        elsewhere.get_json()["message"]
    requested = site.create(token=viewer, interval_seconds=3600)
    assert requested.status_code == 201, requested.get_json()
    mirror = requested.get_json()
    mid = mirror["id"]
    assert mirror["status"] == "pending"
    assert mirror["requested_by"] == "user:vera@example.com (token p)"
    assert mirror["decided_by"] is None and mirror["decided_at"] is None
    assert [e["target"] for e in site.audit("mirror.request")] == ["registry.terraform.io/hashicorp/aws"]

    # not synced: neither on demand nor by the scheduler
    sync = site.call("POST", f"{MIRRORS}/{mid}/sync", site.manager)
    assert sync.status_code == 409
    assert sync.get_json()["message"] == (f"mirror configuration {mid} is pending: "
                                          "a mirror manager must approve it first")
    with site.registry.db.session() as s:
        assert [c.id for c in due_configs(s)] == []
    assert jobs_mod.mirror_tick(site.registry) == []

    # the requester cannot approve their own request
    assert site.call("POST", f"{MIRRORS}/{mid}/approve", viewer, {}).status_code == 403

    approved = site.call("POST", f"{MIRRORS}/{mid}/approve", site.manager, {"note": "needed by team X"})
    assert approved.status_code == 200, approved.get_json()
    body = approved.get_json()
    assert body["status"] == "approved" and body["decided_by"] == "token:manager"
    assert body["decision_note"] == "needed by team X" and body["decided_at"] is not None
    assert body["requested_by"] == "user:vera@example.com (token p)"
    [entry] = site.audit("mirror.approve")
    assert entry["actor"] == "token:manager" and entry["target"] == "registry.terraform.io/hashicorp/aws"
    assert entry["details"] == {"id": mid, "note": "needed by team X"}

    with site.registry.db.session() as s:
        assert [c.id for c in due_configs(s)] == [mid]
    assert upstream.count == 0  # nothing went upstream before approval


def test_a_rejected_configuration_never_syncs(approval_site: Site, upstream: _CountingServer):
    site = approval_site
    requester = site.token("mirrors:read", name="requester")
    mirror = site.create(token=requester, interval_seconds=60).get_json()
    mid = mirror["id"]
    assert mirror["status"] == "pending" and mirror["requested_by"] == "token:requester"

    rejected = site.call("POST", f"{MIRRORS}/{mid}/reject", site.manager, {"note": "use the vendor mirror"})
    assert rejected.status_code == 200
    assert rejected.get_json()["status"] == "rejected"
    assert rejected.get_json()["decision_note"] == "use the vendor mirror"
    [entry] = site.audit("mirror.reject")
    assert entry["actor"] == "token:manager" and entry["details"]["note"] == "use the vendor mirror"

    sync = site.call("POST", f"{MIRRORS}/{mid}/sync", site.manager)
    assert sync.status_code == 409 and f"mirror configuration {mid} is rejected" in sync.get_json()["message"]
    with site.registry.db.session() as s:
        assert due_configs(s) == []

    # asked to run anyway (a job queued before the decision), the sync records its refusal
    result = jobs_mod.mirror_sync(site.registry, mid)
    assert result["status"] == "failed" and result["errors"] == [f"mirror configuration {mid} is rejected"]
    [run] = site.runs(mid)
    assert run["status"] == "failed" and run["errors"] == [f"mirror configuration {mid} is rejected"]
    assert run["finished_at"] is not None
    assert upstream.count == 0


def test_a_manager_request_is_approved_at_once_even_with_approval_required(approval_site: Site):
    r = approval_site.create()
    assert r.status_code == 201
    assert r.get_json()["status"] == "approved" and r.get_json()["decided_by"] == "token:manager"
    assert approval_site.audit("mirror.create") and not approval_site.audit("mirror.request")


def test_without_require_approval_a_reader_cannot_request(site: Site):
    reader = site.token("mirrors:read")
    r = site.create(token=reader)
    assert r.status_code == 403
    assert "may not manage mirror configurations" in r.get_json()["message"]
    assert site.call("GET", MIRRORS, site.manager).get_json() == []
    assert site.audit("mirror.request") == []


# --- policies ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    "registry.terraform.io/hashicorp/aws/extra", "registry.terraform.io/hashi corp", "", "https://registry.terraform.io",
    "registry.terraform.io//aws", "host?/x",
])
def test_an_invalid_policy_pattern_is_400(site: Site, pattern: str):
    r = site.policy("deny", pattern)
    assert r.status_code == 400
    assert "invalid policy pattern" in r.get_json()["message"]
    assert site.call("GET", POLICIES, site.manager).get_json() == []


def test_an_unknown_effect_is_refused(site: Site):
    r = site.policy("maybe", "registry.terraform.io")
    assert r.status_code == 422
    assert site.call("GET", POLICIES, site.manager).get_json() == []


def test_patterns_are_normalised_and_record_who_made_them(site: Site):
    assert site.policy("allow", "Registry.Terraform.IO/HashiCorp").get_json()["pattern"] == \
        "registry.terraform.io/hashicorp/*"
    assert site.policy("deny", "example.com", description="not ours").get_json()["pattern"] == "example.com/*/*"
    listed = site.call("GET", POLICIES, site.manager).get_json()
    assert [(p["effect"], p["pattern"], p["created_by"]) for p in listed] == [
        ("allow", "registry.terraform.io/hashicorp/*", "token:manager"),
        ("deny", "example.com/*/*", "token:manager"),
    ]
    assert listed[1]["description"] == "not ours"
    assert [e["target"] for e in site.audit("mirror.policy.add")] == ["registry.terraform.io/hashicorp/*",
                                                                       "example.com/*/*"]


def test_a_deny_rule_blocks_matching_configurations_until_it_is_deleted(site: Site):
    kept = site.create(namespace="hashicorp", type_="aws").get_json()
    rule = site.policy("deny", "registry.terraform.io/evilcorp", description="not vetted").get_json()
    naming = f"mirror policy {rule['id']} denies registry.terraform.io/evilcorp/*"

    refused = site.create(namespace="evilcorp", type_="miner")
    assert refused.status_code == 403
    assert refused.get_json()["message"] == naming
    assert site.create(host="Registry.Terraform.IO", namespace="evilcorp", type_="miner").status_code == 403

    # an update into denied territory is refused and changes nothing
    body = {"upstream_host": "registry.terraform.io", "namespace": "evilcorp", "type": "miner"}
    put = site.call("PUT", f"{MIRRORS}/{kept['id']}", site.manager, body)
    assert put.status_code == 403 and put.get_json()["message"] == naming
    unchanged = site.call("GET", f"{MIRRORS}/{kept['id']}", site.manager).get_json()
    assert (unchanged["namespace"], unchanged["type"]) == ("hashicorp", "aws")

    assert site.create(namespace="hashicorp", type_="random").status_code == 201  # not covered
    assert [m["namespace"] for m in site.call("GET", MIRRORS, site.manager).get_json()] == ["hashicorp", "hashicorp"]

    assert site.call("DELETE", f"{POLICIES}/{rule['id']}", site.manager).status_code == 204
    assert [e["target"] for e in site.audit("mirror.policy.delete")] == ["registry.terraform.io/evilcorp/*"]
    assert site.create(namespace="evilcorp", type_="miner").status_code == 201


def test_an_allow_rule_admits_only_what_it_matches_and_deny_still_wins(site: Site):
    allow = site.policy("allow", "registry.terraform.io/hashicorp/*").get_json()
    assert site.create(namespace="hashicorp", type_="aws").status_code == 201

    other_ns = site.create(namespace="integrations", type_="github")
    assert other_ns.status_code == 403
    assert other_ns.get_json()["message"] == ("no mirror policy allows registry.terraform.io/integrations/github "
                                              "(allowed: registry.terraform.io/hashicorp/*)")
    other_host = site.create(host="mirror.example.com", namespace="hashicorp", type_="aws")
    assert other_host.status_code == 403 and "no mirror policy allows mirror.example.com/hashicorp/aws" in \
        other_host.get_json()["message"]

    deny = site.policy("deny", "*/hashicorp/null").get_json()
    denied = site.create(namespace="hashicorp", type_="null")
    assert denied.status_code == 403
    assert denied.get_json()["message"] == f"mirror policy {deny['id']} denies */hashicorp/null"

    assert site.call("DELETE", f"{POLICIES}/{allow['id']}", site.manager).status_code == 204
    assert site.create(namespace="integrations", type_="github").status_code == 201
    assert site.create(namespace="hashicorp", type_="null").status_code == 403  # the deny rule stays


def test_approving_a_request_a_policy_now_denies_is_refused(approval_site: Site):
    site = approval_site
    mid = site.create(token=site.token("mirrors:read")).get_json()["id"]
    rule = site.policy("deny", "registry.terraform.io/hashicorp/aws").get_json()
    r = site.call("POST", f"{MIRRORS}/{mid}/approve", site.manager, {})
    assert r.status_code == 403
    assert r.get_json()["message"] == f"mirror policy {rule['id']} denies registry.terraform.io/hashicorp/aws"
    assert site.call("GET", f"{MIRRORS}/{mid}", site.manager).get_json()["status"] == "pending"
    assert site.audit("mirror.approve") == []
    # rejecting it is still possible
    assert site.call("POST", f"{MIRRORS}/{mid}/reject", site.manager, {}).get_json()["status"] == "rejected"


def test_a_sync_that_a_later_deny_rule_covers_fails_naming_the_rule(site: Site, upstream: _CountingServer):
    mid = site.create(upstream_url=upstream.url, interval_seconds=60).get_json()["id"]
    rule = site.policy("deny", "registry.terraform.io/hashicorp", description="security review").get_json()
    refusal = f"mirror policy {rule['id']} denies registry.terraform.io/hashicorp/*"

    sync = site.call("POST", f"{MIRRORS}/{mid}/sync", site.manager)
    assert sync.status_code == 409 and sync.get_json()["message"] == refusal

    # the scheduler still queues the approved configuration; the job refuses it and records why
    assert jobs_mod.mirror_tick(site.registry) == [mid]
    site.registry.jobs.wait()
    job = site.registry.jobs.get(f"mirror-{mid}")
    assert job.status == "finished" and job.result["status"] == "failed"
    [run] = site.runs(mid)
    assert run["status"] == "failed" and run["errors"] == [refusal]
    assert run["versions"] == run["packages"] == 0 and run["finished_at"] is not None
    assert upstream.count == 0

    # lifting the rule lets the next sync through to the upstream
    assert site.call("DELETE", f"{POLICIES}/{rule['id']}", site.manager).status_code == 204
    assert jobs_mod.mirror_sync(site.registry, mid)["status"] == "succeeded"
    assert [r["status"] for r in site.runs(mid)] == ["succeeded", "failed"]
    assert upstream.count > 0


# --- pull-through ----------------------------------------------------------------------------------------------


def test_pull_through_is_refused_by_policy_before_any_upstream_request(app_factory: Any,
                                                                       upstream: _CountingServer):
    site = Site(app_factory({"mirror.pull_through": True,
                             "mirror.upstreams": [f"up.example.test={upstream.url}"]}))
    upstream.versions["hashicorp/random"] = upstream.versions["evilcorp/miner"] = [
        {"version": "1.0.0", "protocols": ["5.0"], "platforms": [{"os": "linux", "arch": "amd64"}]}]
    reader = site.token("providers:read")
    base = "/v1/providers/up.example.test"

    # control: without a rule, the request goes upstream and answers with the upstream's versions
    ok = site.call("GET", f"{base}/hashicorp/random/index.json", reader)
    assert ok.status_code == 200 and ok.get_json() == {"versions": {"1.0.0": {}}}
    seen = upstream.count
    assert seen > 0

    rule = site.policy("deny", "up.example.test/evilcorp").get_json()
    for path in ("evilcorp/miner/index.json", "evilcorp/miner/1.0.0.json", "EvilCorp/miner/index.json"):
        r = site.call("GET", f"{base}/{path}", reader)
        assert r.status_code == 403, path
        assert r.get_json()["errors"] == [f"mirror policy {rule['id']} denies up.example.test/evilcorp/*"]
    assert upstream.count == seen

    # an allow list that does not cover the upstream refuses it too
    site.policy("allow", "registry.terraform.io/hashicorp/*")
    r = site.call("GET", f"{base}/hashicorp/random/index.json", reader)
    assert r.status_code == 403
    assert r.get_json()["errors"] == ["no mirror policy allows up.example.test/hashicorp/random "
                                      "(allowed: registry.terraform.io/hashicorp/*)"]
    assert upstream.count == seen

    stats = site.call("GET", f"{MIRRORS}/pull-through", site.manager).get_json()
    assert stats["up.example.test"]["misses"] == 1  # only the control request


def test_a_deny_rule_also_stops_pull_through_of_versions_whose_sums_are_held(app_factory: Any,
                                                                              upstream: _CountingServer):
    from tfregistry.models import Provider, ProviderVersion
    from tfregistry.services.modules import get_or_create_namespace

    site = Site(app_factory({"mirror.pull_through": True,
                             "mirror.upstreams": [f"up.example.test={upstream.url}"]}))
    with site.registry.db.session() as s:  # fetched before the rule: signed sums held, no package yet
        provider = Provider(hostname="up.example.test", namespace=get_or_create_namespace(s, "evilcorp"),
                            type="miner")
        s.add(ProviderVersion(provider=provider, version="1.0.0", protocols=["5.0"],
                              shasums=f"{'a' * 64}  terraform-provider-miner_1.0.0_linux_amd64.zip\n"))
        s.commit()
    reader = site.token("providers:read")
    base = "/v1/providers/up.example.test/evilcorp/miner"
    before = site.call("GET", f"{base}/1.0.0.json", reader)
    assert before.status_code == 200 and "/v1/pull/" in before.get_json()["archives"]["linux_amd64"]["url"]
    pull_url = before.get_json()["archives"]["linux_amd64"]["url"]

    rule = site.policy("deny", "up.example.test/evilcorp").get_json()
    after = site.call("GET", f"{base}/1.0.0.json", reader)
    assert after.status_code == 404  # nothing held to serve, and no pull links any more
    from urllib.parse import urlsplit

    parts = urlsplit(pull_url)
    pulled = site.client.get(f"{parts.path}?{parts.query}")
    assert pulled.status_code == 403
    assert pulled.get_json()["errors"] == [f"mirror policy {rule['id']} denies up.example.test/evilcorp/*"]
    assert upstream.count == 0
