"""Signed-in pages in a real browser: sign in with an API token through the form and through OpenID Connect,
create and rotate a token in "My tokens" (the secret shown once), publish a module through the form and see it
listed, deprecate it (the version picker and the page show it deprecated, with the reason).

Real chromium, a ``tfr serve`` subprocess on SQLite and on PostgreSQL whose sign-in methods are the ``oidc``
plugin (pointed at ``oidc-provider-mock``; alice's group makes her a publisher in the default organization)
and the token form; axe-core on every page met, light and dark.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from tfregistry_auth_oidc.testing import OIDCMock

from tests.e2e.conftest import RegistryServer, unique
from tests.webui import showcase
from tests.webui.conftest import ALICE
from tests.webui.harness import (
    assert_accessible,
    check_page,
    forget_offsite_requests,
    screenshot,
    sign_in_with_oidc,
)
from tfregistry.testing.plugin import build_module_archive


@pytest.fixture
def alice(open_page: Callable[..., Page], oidc_registry: RegistryServer, oidc: OIDCMock) -> Page:
    """A page signed in as alice through OpenID Connect, with clipboard access."""
    page = open_page(oidc_registry, permissions=["clipboard-read", "clipboard-write"])
    sign_in_with_oidc(page, oidc.issuer, "alice")
    # the mock's own page asked a CDN for its stylesheet (blocked); the registry's pages are judged from here on
    assert all(oidc.issuer not in url for url in forget_offsite_requests(page))
    return page


def account(page: Page) -> str:
    """The header's sign-in state."""
    return page.locator("header .account").inner_text()


def me(server: RegistryServer, token: str) -> int:
    """Status of ``GET /api/v1/me`` with ``token`` (outside the browser: no cookie)."""
    return server.get("/api/v1/me", token=token).status


# --- signing in -----------------------------------------------------------------------------------------


def test_sign_in_with_an_api_token_through_the_form(open_page: Callable[..., Page], oidc_registry: RegistryServer):
    page = open_page(oidc_registry)
    check_page(page, "/sign-in", "sign-in page", shot="sign-in")
    expect(page.get_by_role("link", name="Sign in with OpenID Connect")).to_be_visible()  # the provider too

    page.get_by_label("API token", exact=True).fill("tfr_" + "A" * 43)  # well-formed, never issued
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert page.request.get("/api/v1/me").status == 401
    assert_accessible(page, "sign-in refused")

    page.get_by_label("API token", exact=True).fill(oidc_registry.admin_token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("header .account")).to_contain_text("Signed in as")
    session = page.request.get("/api/v1/me")  # the browser's cookie, no Authorization header
    assert session.status == 200, session.text()
    assert session.json()["kind"] == "site" and session.json()["token"]["id"] == 1  # the token's own identity
    assert oidc_registry.admin_token not in page.content()
    # the administrator's other pages: publish a provider, revoke a token (the confirmation; not confirmed)
    check_page(page, "/publish/provider", "publish a provider (form)")
    check_page(page, "/account/tokens/1/revoke", "revoke a token (confirmation)")
    expect(page.get_by_role("button", name=re.compile("Revoke"))).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{oidc_registry.url}/")
    expect(page.locator("header .account").get_by_role("link", name="Sign in")).to_be_visible()
    assert page.request.get("/api/v1/me").status == 401


def test_sign_in_with_oidc_shows_the_person_everywhere(alice: Page, oidc_registry: RegistryServer):
    alice.goto("/")
    assert ALICE["email"] in account(alice) or ALICE["name"] in account(alice), account(alice)
    assert alice.request.get("/api/v1/me").json()["user"]["email"] == ALICE["email"]
    check_page(alice, "/account/tokens", "my tokens (signed in)", shot="my-tokens")


# --- My tokens ---------------------------------------------------------------------------------------------


def test_create_and_rotate_a_token_the_secret_shown_once(alice: Page, oidc_registry: RegistryServer):
    name = unique("ci-network")
    alice.goto("/account/tokens")
    alice.get_by_role("textbox", name="Name", exact=True).fill(name)
    expect(alice.get_by_label("modules:read")).to_be_checked()
    alice.get_by_label("Expires after").select_option("30d")
    alice.get_by_role("button", name="Create token").click()

    expect(alice.get_by_role("heading", name=f"Secret of “{name}”")).to_be_visible()
    secret = alice.locator("#token-secret").inner_text().strip()
    assert re.fullmatch(r"tfr_\S+", secret), secret
    assert_accessible(alice, "new token's secret")
    alice.get_by_role("button", name="Copy").click()
    assert alice.evaluate("() => navigator.clipboard.readText()") == secret
    assert me(oidc_registry, secret) == 200

    alice.get_by_role("link", name="Back to my tokens").click()
    row = alice.get_by_role("row", name=re.compile(re.escape(name)))
    expect(row).to_contain_text("modules:read")
    expect(row).to_contain_text("active")
    assert secret not in alice.content()  # shown once: never again

    row.get_by_label(f"Old secret of {name} keeps working for").select_option("1h")
    row.get_by_role("button", name=f"Rotate {name}").click()
    expect(alice.get_by_role("heading", name=f"Secret of “{name}”")).to_be_visible()
    rotated = alice.locator("#token-secret").inner_text().strip()
    assert rotated != secret and rotated.startswith("tfr_")
    expect(alice.locator("dl.facts")).to_contain_text("Old secret works until")
    assert me(oidc_registry, rotated) == 200 and me(oidc_registry, secret) == 200  # the grace hour
    alice.goto("/account/tokens")
    expect(alice.get_by_role("row", name=re.compile(re.escape(name)))).to_contain_text("old secret until")
    assert rotated not in alice.content() and secret not in alice.content()


# --- publishing and deprecating ------------------------------------------------------------------------------


def test_publish_a_module_through_the_form_then_deprecate_it(alice: Page, oidc_registry: RegistryServer):
    namespace = unique("team")
    check_page(alice, "/publish/module", "publish a module (form)", shot="publish-module")
    alice.get_by_role("textbox", name="Namespace", exact=True).fill(namespace)
    alice.get_by_role("textbox", name="Name", exact=True).fill(showcase.NAME)
    alice.get_by_role("textbox", name="System", exact=True).fill(showcase.SYSTEM)
    alice.get_by_role("textbox", name="Version", exact=True).fill("1.0.0")
    alice.get_by_label("Description").fill("Published from the browser")
    archive = build_module_archive(showcase.NAME, showcase.webapp_files("1.0.0"))
    alice.locator("#f-archive").set_input_files(
        files=[{"name": "webapp-1.0.0.tar.gz", "mimeType": "application/gzip", "buffer": archive}])
    alice.get_by_role("button", name="Publish").click()

    module = f"/modules/{namespace}/{showcase.NAME}/{showcase.SYSTEM}"
    alice.wait_for_url(f"**{module}/1.0.0")
    expect(alice.locator(".page-head h1")).to_have_text(f"{namespace}/{showcase.NAME}/{showcase.SYSTEM}")
    expect(alice.get_by_role("navigation", name="Sections")).to_contain_text("Inputs (7)")  # analysed at publish
    alice.goto(f"/modules?namespace={namespace}")
    listed = alice.locator("ul.cards li")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("Published from the browser")

    alice.goto(f"{module}/1.0.0")
    alice.get_by_text("Deprecate this version…").click()
    alice.get_by_label(re.compile(r"^Reason")).fill("Use 2.x: 1.x names resources badly.")
    alice.get_by_role("button", name=re.compile(r"^Deprecate ")).click()
    alice.wait_for_url(f"**{module}/1.0.0")
    expect(alice.locator("#version-picker option:checked")).to_have_text(re.compile(r"^1\.0\.0\b.*\(deprecated\)$"))
    expect(alice.get_by_role("note")).to_have_text(re.compile(
        r"Version 1\.0\.0 is deprecated\.\s+Use 2\.x: 1\.x names resources badly\."))
    expect(alice.get_by_role("button", name=re.compile(r"^Undeprecate "))).to_be_visible()
    assert_accessible(alice, "deprecated version (signed in)")
    screenshot(alice, "module-deprecated", full_page=False)
    alice.goto(f"/modules?namespace={namespace}")
    expect(alice.locator("ul.cards li .badge.deprecated")).to_have_text("deprecated")
    # a publisher may not delete: no button, and the URL is the 403 page
    alice.goto(f"{module}/1.0.0")
    expect(alice.get_by_role("link", name=re.compile(r"^Delete "))).to_have_count(0)
    check_page(alice, f"{module}/1.0.0/delete", "delete refused (403)", status=403)
    expect(alice.locator("main h1")).to_have_text("Not allowed")


# --- without JavaScript ----------------------------------------------------------------------------------------


def test_without_javascript_sign_in_create_a_token_publish_and_deprecate(open_page: Callable[..., Page],
                                                                         oidc_registry: RegistryServer):
    """Every form works as plain HTML: the same steps with JavaScript off in the browser."""
    page = open_page(oidc_registry, java_script_enabled=False)
    page.goto("/sign-in")
    page.get_by_label("API token", exact=True).fill(oidc_registry.admin_token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("header .account")).to_contain_text("Signed in as")

    name = unique("nojs")
    page.goto("/account/tokens")
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_role("radio", name="Site (registry-wide)").check()  # an administrator's session
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("heading", name=f"Secret of “{name}”")).to_be_visible()
    secret = page.locator("#token-secret").inner_text().strip()
    assert me(oidc_registry, secret) == 200
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()  # the one thing that needs the script

    namespace = unique("nojs")
    page.goto("/publish/module")
    page.get_by_role("textbox", name="Namespace", exact=True).fill(namespace)
    page.get_by_role("textbox", name="Name", exact=True).fill(showcase.NAME)
    page.get_by_role("textbox", name="System", exact=True).fill(showcase.SYSTEM)
    page.get_by_role("textbox", name="Version", exact=True).fill("1.0.0")
    page.locator("#f-archive").set_input_files(files=[{
        "name": "webapp-1.0.0.tar.gz", "mimeType": "application/gzip",
        "buffer": build_module_archive(showcase.NAME, showcase.webapp_files("1.0.0"))}])
    page.get_by_role("button", name="Publish").click()
    module = f"/modules/{namespace}/{showcase.NAME}/{showcase.SYSTEM}"
    page.wait_for_url(f"**{module}/1.0.0")
    page.get_by_text("Deprecate this version…").click()
    page.get_by_label(re.compile(r"^Reason")).fill("Replaced by 2.x.")
    page.get_by_role("button", name=re.compile(r"^Deprecate ")).click()
    page.wait_for_url(f"**{module}/1.0.0")
    expect(page.get_by_role("note")).to_contain_text("Replaced by 2.x.")
    body = oidc_registry.get(f"/api/v1/modules/{namespace}/{showcase.NAME}/{showcase.SYSTEM}/1.0.0",
                             token=oidc_registry.admin_token)
    assert body.status == 200 and b"Replaced by 2.x." in body.body

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("header .account").get_by_role("link", name="Sign in")).to_be_visible()
