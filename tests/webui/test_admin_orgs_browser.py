"""Administration pages in a real browser (issue 13's proof for organizations and users): an organization
administrator adds a member and changes their role, and the member's next request reflects it; a site
administrator disables a user and that user's browser session ends; axe-core light and dark on every page.

Real chromium, a ``tfr serve`` subprocess on SQLite and on PostgreSQL; people are set up with the ``tfr`` CLI
as an operator would, and sign in with their personal tokens through the sign-in page (a session of the user).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import RegistryServer, unique
from tests.e2e.test_terraform_tenancy import owned_token
from tests.webui.harness import assert_accessible, check_page, screenshot
from tfregistry.testing.plugin import build_module_archive


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    token: str


@dataclass(frozen=True)
class People:
    org: str
    other_org: str
    ann: Person  # administers org
    pat: Person  # a viewer in other_org only, to begin with
    vic: Person  # a viewer in other_org


def person(server: RegistryServer, name: str, org: str, role: str, scopes: tuple[str, ...]) -> Person:
    email = f"{unique(name)}@example.test"
    created = server.cli("user", "create", email, "--name", name.title())
    user_id = int(re.match(r"created user (\d+) ", created.strip().splitlines()[-1]).group(1))
    server.cli("org", "member", org, email, "--role", role)
    _, token = owned_token(server, *scopes, user=email, name=f"{name}-browser")
    return Person(user_id, email, token)


@pytest.fixture(scope="module")
def people(registry: RegistryServer) -> People:
    org, other = unique("blue"), unique("green")
    for name in (org, other):
        registry.cli("org", "create", name)
    return People(org, other, ann=person(registry, "ann", org, "admin", ("admin",)),
                  pat=person(registry, "pat", other, "viewer", ("modules:read",)),
                  vic=person(registry, "vic", other, "viewer", ("modules:read",)))


def signed_in(open_page: Callable[..., Page], server: RegistryServer, secret: str) -> Page:
    """A fresh browser context signed in through the sign-in page's token form."""
    page = open_page(server)
    page.goto("/sign-in")
    page.get_by_label("API token", exact=True).fill(secret)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("header .account")).to_contain_text("Signed in as")
    return page


def org_scopes(page: Page, org: str) -> list[str]:
    """The scopes ``GET /api/v1/me`` says the page's session holds in ``org`` (the browser's cookie)."""
    me = page.request.get("/api/v1/me")
    assert me.status == 200, me.text()
    return next((o["scopes"] for o in me.json()["organizations"] if o["name"] == org), [])


def test_organization_admin_adds_a_member_and_changes_their_role(open_page: Callable[..., Page],
                                                                 registry: RegistryServer, people: People):
    ann = signed_in(open_page, registry, people.ann.token)
    pat = signed_in(open_page, registry, people.pat.token)
    assert org_scopes(pat, people.org) == []
    expect(pat.locator("header .account").get_by_role("link", name="Administration")).to_have_count(0)

    ann.goto("/")
    ann.locator("header .account").get_by_role("link", name="Administration").click()
    ann.get_by_role("navigation", name="Administration").get_by_role("link", name="Organizations").click()
    ann.get_by_role("link", name=people.org, exact=True).click()
    expect(ann.locator("main h1")).to_have_text(f"Organization {people.org}")
    ann.get_by_label("E-mail address").fill(people.pat.email)
    ann.get_by_label("Role", exact=True).select_option("publisher")
    ann.get_by_role("button", name="Add member").click()
    expect(ann.get_by_role("status")).to_contain_text(f"{people.pat.email} is now publisher in {people.org}")
    row = ann.get_by_role("row", name=re.compile(re.escape(people.pat.email)))
    expect(row.get_by_label(f"Role of {people.pat.email}")).to_have_value("publisher")

    # pat's very next request holds the new role: publishing, and the signing keys' administration
    assert "modules:write" in org_scopes(pat, people.org)
    pat.goto("/")
    expect(pat.locator("header .account").get_by_role("link", name="Administration")).to_be_visible()

    row.get_by_label(f"Role of {people.pat.email}").select_option("viewer")
    row.get_by_role("button", name=f"Change role of {people.pat.email}").click()
    expect(ann.get_by_role("status")).to_contain_text(f"{people.pat.email} is now viewer in {people.org}")
    scopes = org_scopes(pat, people.org)
    assert "modules:read" in scopes and "modules:write" not in scopes
    pat.reload()
    expect(pat.locator("header .account").get_by_role("link", name="Administration")).to_have_count(0)
    assert_accessible(ann, "organization after changing a role")


def test_site_admin_disables_a_user_and_their_session_ends(open_page: Callable[..., Page], registry: RegistryServer,
                                                          people: People):
    vic = signed_in(open_page, registry, people.vic.token)
    assert vic.request.get("/api/v1/me").status == 200
    admin = signed_in(open_page, registry, registry.admin_token)
    admin.goto("/admin/users")
    admin.get_by_label("Search by e-mail or name").fill(people.vic.email)
    admin.get_by_role("button", name="Search users").click()
    admin.get_by_role("link", name=people.vic.email).click()
    admin.get_by_role("link", name=f"Disable {people.vic.email}…").click()
    expect(admin.locator("main h1")).to_have_text(f"Disable {people.vic.email}?")
    admin.get_by_role("button", name=f"Disable {people.vic.email}").click()
    expect(admin.get_by_role("status")).to_contain_text("is disabled")
    expect(admin.locator("dl.facts")).to_contain_text("disabled")

    vic.reload()
    expect(vic.locator("header .account").get_by_role("link", name="Sign in")).to_be_visible()
    assert vic.request.get("/api/v1/me").status == 401
    assert registry.get("/api/v1/me", token=people.vic.token).status == 401  # and the personal token

    admin.get_by_role("button", name=f"Enable {people.vic.email}").click()
    expect(admin.get_by_role("status")).to_contain_text("is enabled again")
    assert registry.get("/api/v1/me", token=people.vic.token).status == 200


def test_every_admin_page_passes_axe_light_and_dark(open_page: Callable[..., Page], registry: RegistryServer,
                                                    people: People):
    archive = build_module_archive("vpc", {"main.tf": 'variable "cidr" {\n  type = string\n}\n'})
    assert registry.publish(unique("network"), "vpc", "aws", "1.0.0", archive) == 201  # for "recent publishes"
    admin = signed_in(open_page, registry, registry.admin_token)
    role = unique("auditor")
    admin.goto("/admin/roles")
    admin.get_by_role("textbox", name="Name", exact=True).fill(role)
    admin.get_by_label("Description").fill("Reads the audit log")
    admin.get_by_label(re.compile(r"^audit:read")).check()
    admin.get_by_role("button", name="Define role template").click()
    expect(admin.get_by_role("status")).to_contain_text(f"Role template “{role}” is defined.")

    org = f"/admin/organizations/{people.org}"
    admin.goto(org)
    admin.get_by_role("textbox", name="Token name").fill("ci-network")
    admin.get_by_role("button", name="Create service token").click()
    expect(admin.get_by_role("heading", name="Secret of “ci-network”")).to_be_visible()
    assert re.fullmatch(r"tfr_\S+", admin.locator("#token-secret").inner_text().strip())
    assert_accessible(admin, "service token secret")
    admin.goto(org)
    revoke = admin.get_by_role("link", name=re.compile(r"^Revoke\s+ci-network")).first.get_attribute("href")

    pages = [("/admin", "dashboard", "admin-dashboard"), ("/admin/organizations", "organizations",
                                                          "admin-organizations"),
             (org, "organization", "admin-organization"), (f"{org}/delete", "delete organization", None),
             (f"{org}/members/{people.ann.id}/remove", "remove a member", None),
             (revoke, "revoke a service token", None),
             ("/admin/users", "users", "admin-users"), (f"/admin/users/{people.ann.id}", "user", "admin-user"),
             (f"/admin/users/{people.ann.id}/disable", "disable a user", None),
             ("/admin/roles", "role templates", "admin-roles"), ("/admin/roles/viewer", "built-in role", None),
             (f"/admin/roles/{role}", "custom role", None), (f"/admin/roles/{role}/delete", "delete a role", None)]
    for url, label, shot in pages:
        check_page(admin, url, label)
        if shot:  # the first screen: long pages' full-height pictures weigh too much for the docs
            screenshot(admin, shot, full_page=shot not in ("admin-organization", "admin-roles"))
    ann = signed_in(open_page, registry, people.ann.token)
    check_page(ann, "/admin", "dashboard (organization admin)")
    check_page(ann, f"/admin/organizations/{people.other_org}", "another organization (404)", status=404)
