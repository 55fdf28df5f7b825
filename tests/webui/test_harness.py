"""The browser harness proven on the pages that exist before the web UI: sign-in, ``terraform login`` consent.

Real chromium, real ``tfr serve`` subprocesses on SQLite and PostgreSQL, a real OpenID provider
(``oidc-provider-mock``), axe-core in every page in light and dark colour schemes.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, Route
from tfregistry_auth_oidc.testing import OIDCMock

from tests.e2e.conftest import RegistryServer
from tests.e2e.test_terraform_login import AuthzRequest
from tests.webui import harness
from tests.webui.conftest import ALICE
from tests.webui.harness import (
    assert_accessible,
    assert_page_weight,
    check_page,
    offsite_requests,
    page_weight,
    screenshot,
    sign_in_with_oidc,
)

TERRAFORM_LISTENER = 10007


def test_sign_in_page_without_an_auth_plugin(page: Page, registry: RegistryServer):
    """With the web UI installed and no auth plugin, /auth/login sends browsers to the UI's sign-in page,
    which offers the API token form."""
    weight = check_page(page, "/auth/login", "sign-in with a token", shot="sign-in-token")
    assert urlsplit(page.url).path == "/sign-in"
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    assert page.get_by_label("API token", exact=True).count() == 1
    assert all(url.startswith(registry.url) for url in weight.resources)  # no asset from anywhere else


def test_oidc_sign_in_opens_a_session_in_the_browser(open_page: Callable[..., Page], oidc_registry: RegistryServer,
                                                     oidc: OIDCMock):
    page = open_page(oidc_registry)
    assert page.request.get("/api/v1/me").status == 401
    sign_in_with_oidc(page, oidc.issuer, "alice")
    assert page.url.startswith(f"{oidc_registry.url}/auth/callback/oidc?")
    assert page.get_by_role("heading", level=1).inner_text() == "Signed in"
    assert f"Signed in as {ALICE['email']}" in page.inner_text("body")
    assert_accessible(page, "signed in")
    screenshot(page, "signed-in")
    # the browser's session cookie authenticates API calls from the same context
    me = page.request.get("/api/v1/me")
    assert me.status == 200, me.text()
    assert me.json()["kind"] == "session" and me.json()["user"]["email"] == ALICE["email"]
    assert {"organization": "default", "role": "publisher", "source": "idp:oidc"} in me.json()["user"]["memberships"]
    # the mock's page asks a CDN for its stylesheet: blocked, never fetched
    assert offsite_requests(page) and all(oidc.issuer not in url for url in offsite_requests(page))

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{oidc_registry.url}/")  # the web UI's home
    assert page.get_by_role("link", name="Sign in").count() >= 1
    assert_accessible(page, "signed out")
    assert page.request.get("/api/v1/me").status == 401


def test_sign_in_returns_to_the_page_asked_for(open_page: Callable[..., Page], oidc_registry: RegistryServer,
                                               oidc: OIDCMock):
    page = open_page(oidc_registry)
    sign_in_with_oidc(page, oidc.issuer, "alice", next_path="/api/v1/me")
    assert urlsplit(page.url).path == "/api/v1/me"
    assert ALICE["email"] in page.inner_text("body")


def test_terraform_login_consent_page(open_page: Callable[..., Page], oidc_registry: RegistryServer,
                                      oidc: OIDCMock):
    page = open_page(oidc_registry)
    refused = page.goto("/oauth/authorize?response_type=code&client_id=terraform-cli")
    assert refused is not None and refused.status == 400
    assert page.get_by_role("heading", level=1).inner_text() == "Login refused"
    assert_accessible(page, "terraform login refused")

    request = AuthzRequest(oidc_registry, port=TERRAFORM_LISTENER)
    page.goto(request.url)  # not signed in: the registry sends the person to sign in first, then back
    page.locator("input[name=sub]").fill("alice")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(lambda url: url.startswith(f"{oidc_registry.url}/oauth/authorize?"))
    assert page.get_by_role("heading", level=1).inner_text() == "Authorize Terraform"
    assert ALICE["email"] in page.inner_text("body")
    assert_accessible(page, "terraform login consent")
    screenshot(page, "terraform-login-consent")

    sent_to_terraform: list[str] = []

    def terraform_listener(route: Route) -> None:
        sent_to_terraform.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="The login server has closed.")

    page.route(f"http://localhost:{TERRAFORM_LISTENER}/**", terraform_listener)
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"http://localhost:{TERRAFORM_LISTENER}/**")
    query = {k: v[0] for k, v in parse_qs(urlsplit(sent_to_terraform[0]).query).items()}
    assert query["state"] == request.state and query["code"]
    token = request.exchange(query["code"])
    assert token.status_code == 200 and token.json()["access_token"].startswith("tfr_"), token.text


# --- the harness's own behaviour ------------------------------------------------------------------------


def test_axe_failures_name_the_rule_the_colour_scheme_and_the_element(open_page: Callable[..., Page]):
    page = open_page()
    page.set_content(
        "<!doctype html><html lang=en><head><title>t</title><style>"
        "@media (prefers-color-scheme: dark) { body { background: #000 } #faint { color: #111 } }"
        "</style></head><body><main><h1>Heading</h1><p id=faint>Dark on dark only in the dark scheme</p>"
        "<img src='data:image/gif;base64,R0lGODlhAQABAAAAACw=' id=no-alt></main></body></html>")
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_accessible(page, "bad page")
    message = str(failed.value)
    light, dark = message.split("bad page (about:blank), light colour scheme:\n", 1)[1].split(
        "bad page (about:blank), dark colour scheme:\n")
    assert "[critical] image-alt:" in light and "at #no-alt" in light
    assert "color-contrast" not in light
    assert "[serious] color-contrast:" in dark and "at #faint" in dark and "at #no-alt" in dark
    assert "https://dequeuniversity.com/rules/axe/" in message


def test_axe_needs_the_csp_bypassed(open_page: Callable[..., Page]):
    page = open_page(bypass_csp=False)
    page.route("http://127.0.0.1:9/", lambda route: route.fulfill(
        status=200, content_type="text/html", headers={"Content-Security-Policy": "script-src 'self'"},
        body="<!doctype html><html lang=en><title>t</title><main><h1>CSP</h1></main></html>"))
    page.goto("http://127.0.0.1:9/")
    with pytest.raises(pytest.fail.Exception, match="bypass_csp=True"):
        assert_accessible(page, "csp page")


def test_page_weight_counts_every_response(page: Page, registry: RegistryServer):
    weight = page_weight(page, "/sign-in")
    assert weight.total > 0 and weight.failed == [] and weight.status == 200
    assert weight.total == sum(weight.resources.values()) and len(weight.resources) >= 2  # the page and its assets
    with pytest.raises(AssertionError, match=r"the page weighs [\d,]+ bytes, the limit is 100:"):
        assert_page_weight(page, "/sign-in", limit=100)
    assets_only = page_weight(page, "/sign-in", exclude=lambda url: url.endswith("/sign-in"))
    assert assets_only.total == weight.total - weight.resources[f"{registry.url}/sign-in"]


def test_screenshots_only_when_asked(page: Page, registry: RegistryServer, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path):
    page.goto("/auth/login")
    monkeypatch.delenv("TFREGISTRY_TEST_SCREENSHOTS", raising=False)
    assert screenshot(page, "never") is None
    monkeypatch.setenv("TFREGISTRY_TEST_SCREENSHOTS", "1")
    monkeypatch.setattr(harness, "SCREENSHOTS", tmp_path)
    path = screenshot(page, "login")
    assert path == tmp_path / "login.png" and path.read_bytes().startswith(b"\x89PNG")


def test_a_missing_chromium_fails_naming_the_apt_package(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setattr(harness, "CHROMIUM", str(tmp_path / "chromium"))
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install chromium"):
        harness.chromium_executable()


def test_a_page_with_an_offsite_asset_fails_the_check(open_page: Callable[..., Page]):
    page = open_page()
    page.route("http://127.0.0.1:9/", lambda route: route.fulfill(
        status=200, content_type="text/html",
        body="<!doctype html><html lang=en><title>t</title><link rel=stylesheet href='https://cdn.example.org/x.css'>"
             "<main><h1>CDN</h1></main></html>"))
    with pytest.raises(AssertionError, match=r"resources failed to load:[\s\S]*https://cdn\.example\.org/x\.css "
                                             r"\(net::ERR_BLOCKED_BY_CLIENT"):
        check_page(page, "http://127.0.0.1:9/", "cdn page")
    assert offsite_requests(page) == ["https://cdn.example.org/x.css"]
