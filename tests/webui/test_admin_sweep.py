"""Issue 13's permission and CSRF proof, route by route: every ``/admin`` POST route the application registers
(found in its URL map, so a new one is covered without editing this file) is sent

* by a site administrator without the CSRF token, and with a forged one: 403;
* by a viewer of the organization that owns the objects, with a valid CSRF token: 403 or 404;
* by the administrator of another organization, with a valid CSRF token: 403 or 404;

and after each sweep every row of every table is what it was before (nothing changed, no audit entry).
Every ``/admin`` page (GET) is also requested by the viewer and the other organization's administrator: each
answers 403 or 404, except the few pages the API lets them read (listed, with the reason, below), which answer
200 without naming the owning organization's objects.

Multi tenancy: ``blue`` owns the namespace ``blue-apps`` (with a signing key), a service token and the member
``ann`` (admin); ``vic`` is a viewer in blue; ``rob`` administers ``red``; ``sam`` is a site administrator. A
mirror configuration, a mirror policy, a custom role template and a failed job exist registry-wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from werkzeug.routing import Rule

from tests.webui.test_account import form_csrf, personal_token, sign_in
from tfregistry.models import Base, GpgKey, MirrorConfig
from tfregistry.services import identity as identity_svc
from tfregistry.services import mirroring as mirror_svc
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR


def broken(registry: Any, what: str) -> None:
    """A job that always fails (the Jobs page's retry and cancel routes need one)."""
    raise RuntimeError(f"broken on purpose: {what}")


@dataclass
class Sweep:
    app: Any
    users: dict[str, int]
    values: dict[str, Any]  # the URL variables naming blue's (and the registry's) objects

    def client(self, who: str) -> Any:
        """A test client signed in as ``who`` through the sign-in page (a session of that user)."""
        client = self.app.test_client()
        assert sign_in(client, personal_token(self.app, self.users[who])).status_code == 303
        return client

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (sorted), to prove that nothing changed."""
        with self.app.extensions["tfregistry"].db.session() as s:
            return {table.name: sorted(tuple(map(repr, row)) for row in s.execute(table.select()))
                    for table in Base.metadata.sorted_tables}

    def admin_rules(self, method: str) -> list[Rule]:
        return sorted((r for r in self.app.url_map.iter_rules()
                       if r.rule.startswith("/admin") and method in (r.methods or ())), key=lambda r: r.rule)

    def url(self, rule: Rule) -> str:
        """``rule`` with its variables filled with the objects of the sweep."""
        values = {**self.values, "decision": "approve", "fmt": "csv"}
        built = rule.build({name: values[name] for name in rule.arguments}, append_unknown=False)
        assert built is not None, rule.rule
        return built[1]


@pytest.fixture
def sweep(ui_factory: Any) -> Sweep:
    app = ui_factory({"tenancy": "multi", "jobs.retries": 0, "jobs.backoff_seconds": 0})
    registry = app.extensions["tfregistry"]
    users: dict[str, int] = {}
    with registry.db.session() as s:
        blue = identity_svc.create_organization(s, CLI_ACTOR, "blue", "Blue team")
        red = identity_svc.create_organization(s, CLI_ACTOR, "red")
        for name, org, role in (("ann", blue, "admin"), ("vic", blue, "viewer"), ("rob", red, "admin"),
                                ("sam", None, None)):
            user = identity_svc.create_user(s, CLI_ACTOR, f"{name}@example.com", name.title(),
                                            site_admin=name == "sam")
            if org is not None:
                identity_svc.set_membership(s, CLI_ACTOR, user, org, identity_svc.get_role(s, role))
            users[name] = user.id
        ns = identity_svc.save_namespace(s, CLI_ACTOR, blue, "blue-apps", "private")
        key = GpgKey(namespace_id=ns.id, fingerprint="AB" * 20, key_id="ABABABABABABABAB", ascii_armor="-")
        s.add(key)
        token, _ = token_svc.create_token(s, CLI_ACTOR, name="ci-blue", scopes=["modules:read"], kind="service",
                                          organization=blue)
        mirror = MirrorConfig(upstream_host="upstream.example", namespace="hashicorp", type="null")
        s.add(mirror)
        policy = mirror_svc.add_policy(s, CLI_ACTOR, "deny", "registry.terraform.io/evilcorp")
        identity_svc.save_role(s, CLI_ACTOR, "auditor", ["audit:read"], "Reads the audit log")
        s.commit()
        values = {"org_name": "blue", "user_id": users["ann"], "token_id": token.id, "ns": "blue-apps",
                  "key_id": key.id, "mirror_id": mirror.id, "policy_id": policy.id, "name": "auditor"}
    job = registry.jobs.enqueue("tests.webui.test_admin_sweep:broken", "sweep")
    registry.jobs.wait()
    assert registry.jobs.get(job.id).status == "failed"
    values["job_id"] = job.id
    return Sweep(app, users, values)


#: What each form would send: enough for the action to succeed if the caller were allowed.
FORM = {"display_name": "taken over", "email": "vic@example.com", "role": "admin", "namespace": "blue-apps",
        "visibility": "public", "name": "stolen", "scopes": "admin", "site_admin": "1", "description": "x",
        "ascii_armor": "-", "note": "ok", "effect": "allow", "pattern": "registry.terraform.io/evilcorp",
        "upstream_host": "upstream.example", "type": "null", "confirm": "1"}


def post_everything(sweep: Sweep, client: Any, csrf: str | None, skip: str | None = None) -> dict[str, int]:
    """POST every admin action (but those under ``skip``) with :data:`FORM`; the status of each."""
    statuses = {}
    for rule in sweep.admin_rules("POST"):
        if skip and rule.rule.startswith(skip):
            continue
        data = dict(FORM)
        if csrf is not None:
            data["csrf_token"] = csrf
        statuses[rule.rule] = client.post(sweep.url(rule), data=data).status_code
    return statuses


def test_the_sweep_covers_every_admin_action(sweep: Sweep) -> None:
    rules = {r.rule for r in sweep.admin_rules("POST")}
    assert len(rules) >= 25  # organizations, members, tokens, users, roles, keys, mirrors, policies, jobs
    for rule in sweep.admin_rules("POST") + sweep.admin_rules("GET"):
        sweep.url(rule)  # every variable is filled


def test_every_admin_post_needs_the_csrf_token(sweep: Sweep) -> None:
    sam = sweep.client("sam")
    before = sweep.snapshot()
    for csrf in (None, "forged"):
        statuses = post_everything(sweep, sam, csrf)
        assert statuses and set(statuses.values()) == {403}, statuses
    assert sweep.snapshot() == before


#: Mirror configurations and policies belong to the whole registry, and the ``admin`` role in *any* organization
#: grants ``mirrors:manage`` (docs/mirroring.md, "Who may mirror"; the API answers the same): another
#: organization's administrator is no outsider there, so the sweep leaves those actions out for ``rob``.
REGISTRY_WIDE_FOR = {"vic": None, "rob": "/admin/mirrors"}


@pytest.mark.parametrize("who", ["vic", "rob"])
def test_a_viewer_and_another_organizations_admin_change_nothing(sweep: Sweep, who: str) -> None:
    client = sweep.client(who)
    csrf = form_csrf(client.get("/account/tokens").get_data(as_text=True))
    before = sweep.snapshot()
    statuses = post_everything(sweep, client, csrf, skip=REGISTRY_WIDE_FOR[who])
    assert len(statuses) >= 20
    refused = {rule: status for rule, status in statuses.items() if status not in (403, 404)}
    assert refused == {}, refused
    assert sweep.snapshot() == before


#: Pages the API also lets them read (200), none of which names blue's objects:
#: a viewer holds ``mirrors:read`` (registry-wide configurations, runs, policies, statistics) and nothing
#: administrative (so the dashboard is 403 for him); red's administrator sees the dashboard, the organizations
#: list, the role templates and the keys list for red only, red's audit log and its export, and manages the
#: registry's mirrors (see :data:`REGISTRY_WIDE_FOR`).
MIRROR_PAGES = {"/admin/mirrors", "/admin/mirrors/<int:mirror_id>", "/admin/mirrors/policies",
                "/admin/mirrors/pull-through"}
READABLE = {
    "vic": MIRROR_PAGES,
    "rob": MIRROR_PAGES | {"/admin", "/admin/organizations", "/admin/roles", "/admin/roles/<name>", "/admin/keys",
                           "/admin/audit", "/admin/audit/export.<fmt>", "/admin/mirrors/new",
                           "/admin/mirrors/<int:mirror_id>/edit", "/admin/mirrors/<int:mirror_id>/delete",
                           "/admin/mirrors/policies/<int:policy_id>/delete"},
}


@pytest.mark.parametrize("who", ["vic", "rob"])
def test_admin_pages_are_refused_to_a_viewer_and_another_organizations_admin(sweep: Sweep, who: str) -> None:
    client = sweep.client(who)
    before = sweep.snapshot()
    answered = {}
    for rule in sweep.admin_rules("GET"):
        response = client.get(sweep.url(rule))
        answered[rule.rule] = response.status_code
        if response.status_code == 200:
            body = response.get_data(as_text=True)
            assert "blue-apps" not in body and "ci-blue" not in body, rule.rule  # blue's objects stay hidden
    unexpected = {rule: status for rule, status in answered.items()
                  if (status == 200) != (rule in READABLE[who]) or status not in (200, 403, 404)}
    assert unexpected == {}, unexpected
    assert sweep.snapshot() == before



def test_the_same_posts_from_a_site_administrator_do_change_things(sweep: Sweep) -> None:
    """The control for the sweeps above: their forms are real ones, so a refusal there is the permission check
    (a few actions still fail here on their own terms, e.g. deleting an organization that owns namespaces)."""
    sam = sweep.client("sam")
    csrf = form_csrf(sam.get("/account/tokens").get_data(as_text=True))
    before = sweep.snapshot()
    statuses = post_everything(sweep, sam, csrf)
    done = sorted(rule for rule, status in statuses.items() if status in (200, 303))
    assert len(done) >= 20, statuses
    assert "/admin/organizations/<org_name>/members" in done and "/admin/users/<int:user_id>/disable" in done
    assert sweep.snapshot() != before
