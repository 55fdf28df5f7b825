"""A namespace's trusted publishers page in headless chromium against a real server (SQLite and PostgreSQL):
a publisher added in the UI lets a GitHub-shaped OIDC token be exchanged for a token that publishes; a bad
one is refused with the reason at its field; removal asks first.  Every page passes :func:`check_page`
(axe light and dark, weight, nothing off-site)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from tfregistry_auth_oidc.testing import IDTokenProxy, OIDCMock

from tests.e2e.conftest import unique
from tests.trusted_publishing_kit import github_claims
from tests.webui.harness import check_page
from tests.webui.test_admin_supply_browser import signed_in
from tfregistry.testing.plugin import build_module_archive


@pytest.fixture(scope="module")
def issuer() -> Iterator[IDTokenProxy]:
    with OIDCMock() as mock, IDTokenProxy(mock) as proxy:
        yield proxy


def test_a_publisher_added_in_the_ui_lets_ci_publish(open_page, registry, issuer):
    ns = unique("uitp")
    registry.cli("namespace", ns)
    page = signed_in(open_page, registry)
    page.goto(f"/namespaces/{ns}")
    page.get_by_role("link", name="Trusted publishers").click()
    expect(page.get_by_role("heading", name=f"Trusted publishers of {ns}")).to_be_visible()
    expect(page.get_by_text(f"No trusted publishers: CI jobs need a registry token to publish to {ns}.")
           ).to_be_visible()

    page.get_by_label("Platform").select_option("github")
    page.get_by_label("Issuer (optional for GitHub and gitlab.com)").fill(issuer.issuer)
    page.get_by_label("Claim conditions").fill("ref=refs/tags/v*")
    page.get_by_label("May publish").fill("module:network/generic")
    page.get_by_role("button", name="Add trusted publisher").click()
    expect(page.locator("#f-conditions-error")).to_have_text(
        "GitHub Actions publishers need the condition 'repository'")
    expect(page.get_by_label("May publish")).to_have_value("module:network/generic")

    page.get_by_label("Claim conditions").fill("repository=acme/infra\nref=refs/tags/v*")
    page.get_by_role("button", name="Add trusted publisher").click()
    expect(page.get_by_role("status")).to_contain_text(f"may publish module:network/generic in {ns}")
    expect(page.get_by_role("table")).to_contain_text("repository=acme/infra")

    ci_token = issuer.sign(github_claims(issuer.issuer, aud="tfregistry"))
    answer = registry.request("POST", "/api/v1/trusted-publishing/token",
                              body=json.dumps({"token": ci_token, "namespace": ns}).encode(),
                              headers={"Content-Type": "application/json"})
    assert answer.status == 201, answer.body
    assert registry.publish(ns, "network", "generic", "1.0.0", build_module_archive(),
                            token=answer.json()["token"]) == 201

    check_page(page, f"/namespaces/{ns}/trusted-publishers", "trusted publishers", shot="trusted-publishers")
    remove = page.get_by_role("link", name="Remove publisher").get_attribute("href")
    check_page(page, remove, "remove a trusted publisher")
    page.get_by_role("button", name="Remove trusted publisher").click()
    expect(page.get_by_role("status")).to_contain_text("removed")
    expect(page.get_by_text(f"No trusted publishers: CI jobs need a registry token to publish to {ns}.")
           ).to_be_visible()
    refused = registry.request("POST", "/api/v1/trusted-publishing/token",
                               body=json.dumps({"token": issuer.sign(github_claims(issuer.issuer, aud="tfregistry")),
                                                "namespace": ns}).encode(),
                               headers={"Content-Type": "application/json"})
    assert refused.status == 401


def test_the_page_needs_tokens_manage(open_page, registry):
    ns = unique("uitp")
    registry.cli("namespace", ns)
    page = open_page(registry)
    page.goto("/sign-in")
    page.get_by_label("API token", exact=True).fill(registry.create_token("publish"))
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(lambda url: "/sign-in" not in url)
    page.goto(f"/namespaces/{ns}")
    expect(page.get_by_role("link", name="Trusted publishers")).to_have_count(0)
    response = page.goto(f"/namespaces/{ns}/trusted-publishers")
    assert response is not None and response.status == 403
