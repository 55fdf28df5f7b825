"""Multi-tenant mode in a real browser: another organization's private module, and its namespace, are exactly
the same page as ones that do not exist (status, title and every word), for a member of another organization
and for an anonymous visitor.

Organizations ``blue`` and ``red`` each own a private namespace with one module; alice is a viewer in blue and
browses with her personal token (sent by the browser as ``Authorization: Bearer``, which the pages honour like
the API).  Set up with the ``tfr`` CLI and the API, as an administrator would.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import RegistryServer
from tests.e2e.test_terraform_tenancy import owned_token
from tests.webui.harness import check_page
from tfregistry.testing.plugin import build_module_archive

NAME, SYSTEM = "network", "generic"


@pytest.fixture(scope="module")
def registry_env() -> dict[str, str]:
    return {"TFR_TENANCY": "multi"}


@dataclass(frozen=True)
class Tenants:
    server: RegistryServer
    blue_ns: str
    red_ns: str
    alice_token: str


@pytest.fixture(scope="module")
def tenants(registry: RegistryServer) -> Tenants:
    blue_ns, red_ns = "blue-apps", "red-apps"
    alice = "alice@example.test"
    for org in ("blue", "red"):
        registry.cli("org", "create", org)
    registry.cli("user", "create", alice)
    registry.cli("org", "member", "blue", alice, "--role", "viewer")
    for ns, org in ((blue_ns, "blue"), (red_ns, "red")):
        registry.cli("namespace", ns, "--org", org, "--visibility", "private")
        archive = build_module_archive(NAME, {"owner.tf": f'output "owner" {{\n  value = "{org}"\n}}\n'})
        assert registry.publish(ns, NAME, SYSTEM, "1.0.0", archive) == 201
    _, token = owned_token(registry, "modules:read", user=alice, name="alice-browser")
    return Tenants(registry, blue_ns, red_ns, token)


@pytest.fixture
def alice(open_page: Callable[..., Page], tenants: Tenants) -> Page:
    """A page whose every request carries alice's token."""
    return open_page(tenants.server, extra_http_headers={"Authorization": f"Bearer {tenants.alice_token}"})


def seen(page: Page, path: str) -> tuple[int | None, str, str]:
    """(status, title, text of the whole page) of ``path``."""
    response = page.goto(path)
    return (response.status if response else None), page.title(), page.locator("body").inner_text()


def missing() -> str:
    return f"gone-{uuid.uuid4().hex[:8]}"


def test_member_of_another_organization_gets_the_same_404_page(alice: Page, tenants: Tenants):
    own = seen(alice, f"/modules/{tenants.blue_ns}/{NAME}/{SYSTEM}")
    assert own[0] == 200 and f"{tenants.blue_ns}/{NAME}/{SYSTEM}" in own[2]  # her token works in the browser

    hidden = seen(alice, f"/modules/{tenants.red_ns}/{NAME}/{SYSTEM}")
    assert hidden[0] == 404
    expect(alice.get_by_role("heading", level=1)).to_have_text("Page not found")
    assert tenants.red_ns not in hidden[2]
    for path in (f"/modules/{missing()}/{NAME}/{SYSTEM}",        # no such namespace
                 f"/modules/{tenants.blue_ns}/{missing()}/{SYSTEM}",  # no such module in her own namespace
                 f"/modules/{tenants.red_ns}/{NAME}/{SYSTEM}/1.0.0/inputs"):  # a tab of the hidden module
        assert seen(alice, path) == hidden, path
    # the namespace page too
    hidden_ns = seen(alice, f"/namespaces/{tenants.red_ns}")
    assert hidden_ns[0] == 404 and hidden_ns == seen(alice, f"/namespaces/{missing()}")
    # and the lists never mention it
    for path in ("/", "/modules", f"/modules?q={NAME}", f"/modules?namespace={tenants.red_ns}"):
        alice.goto(path)
        assert tenants.red_ns not in alice.locator("main").inner_text(), path


def test_anonymous_visitor_gets_the_same_page_for_hidden_and_missing(open_page: Callable[..., Page],
                                                                      tenants: Tenants):
    page = open_page(tenants.server)
    hidden = seen(page, f"/modules/{tenants.red_ns}/{NAME}/{SYSTEM}")
    assert hidden[0] in (401, 404) and tenants.red_ns not in hidden[2]
    assert seen(page, f"/modules/{missing()}/{NAME}/{SYSTEM}") == hidden


def test_the_hidden_module_page_is_accessible(alice: Page, tenants: Tenants):
    check_page(alice, f"/modules/{tenants.red_ns}/{NAME}/{SYSTEM}", "hidden module (404)", status=404)
