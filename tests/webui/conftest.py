"""Web UI test fixtures.

In-process (Flask test client): ``ui_factory``/``app`` build an application with tfregistry-webui
registered; :func:`assert_page` checks what every HTML page must carry.

Browser tests: real ``tfr serve`` subprocesses (SQLite and PostgreSQL) and headless Debian chromium.

Servers come from :func:`tests.e2e.conftest.running_server` (HTTPS with a self-signed CA, an admin
token, the access log); the browser side from :mod:`tests.webui.harness`.  Every test using the
``browser`` fixture (directly or through ``page``/``open_page``) is marked ``browser``.

* ``registry``: a server without an auth plugin, once per database (module scope); a test module changes
  its settings by overriding the ``registry_env`` fixture (``TFR_*`` variables).
* ``oidc`` / ``oidc_registry``: ``oidc-provider-mock`` with the person ``alice``, and a server whose only
  sign-in method is the ``oidc`` plugin pointed at it (also once per database, ``registry_env`` applies).
* ``browser``: one headless chromium per test module (see its docstring for why not per session).
* ``open_page(server=None, **context_options)``: a page in a fresh context (no cookies) whose base URL
  is ``server.url``; ``page``: ``open_page(registry)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from tfregistry_auth_oidc.testing import OIDCMock

import tfregistry_webui.plugin as webui_plugin
from tests.e2e.conftest import DATABASES, RegistryServer, running_server
from tests.webui.harness import launch_chromium, new_context

#: What every HTML page of the web UI must carry.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
MAX_PAGE_BYTES = 200 * 1024


@pytest.fixture
def ui_factory(app_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``ui_factory(config)``: an app with the web UI plugin (and only the local storage otherwise)."""

    def make(config: dict[str, Any] | None = None, plugins: tuple[Any, ...] = ()) -> Any:
        return app_factory(config, plugins=(webui_plugin, *plugins))

    return make


@pytest.fixture
def app(ui_factory: Callable[..., Any]) -> Any:
    """The ``app`` of the shared fixtures (tokens, ``publish``), here with the web UI."""
    return ui_factory()


def assert_page(response: Any, status: int = 200) -> str:
    """The page's HTML, after the checks every page must pass: status, headers, no inline script or
    style, bounded size."""
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    html = response.get_data(as_text=True)
    assert len(response.get_data()) < MAX_PAGE_BYTES
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\sstyle\s*=", html, re.I), "style= attribute"
    assert "<style" not in html.lower(), "inline <style>"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "inline event handler"
    return html


ALICE = {"email": "alice@example.com", "name": "Alice Example", "groups": ["grp-devs"]}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that drives the browser ``browser`` (they still run in the default suite)."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium driven by Playwright, one per test module.

    Not per session: while Playwright's sync API runs, its event loop is the running loop of the main
    thread, so ``asyncio.run`` anywhere else fails; per module, that stays inside the browser tests.
    """
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def registry_env() -> dict[str, str]:
    """Extra ``TFR_*`` settings for this module's servers; override it in a test module to change them."""
    return {}


@pytest.fixture(scope="module", params=DATABASES)
def registry(request: pytest.FixtureRequest, registry_env: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A ``tfr serve`` subprocess without an auth plugin on SQLite, then on PostgreSQL."""
    with running_server(request.param, tmp_path_factory.mktemp(f"webui-{request.param}"), registry_env) as srv:
        yield srv


@pytest.fixture(scope="session")
def oidc() -> Iterator[OIDCMock]:
    """``oidc-provider-mock`` knowing ``alice`` (:data:`ALICE`, in the group ``grp-devs``)."""
    with OIDCMock() as mock:
        mock.add_user("alice", ALICE)
        yield mock


@pytest.fixture(scope="module", params=DATABASES)
def oidc_registry(request: pytest.FixtureRequest, oidc: OIDCMock, registry_env: dict[str, str],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A ``tfr serve`` subprocess whose only sign-in method is the ``oidc`` plugin pointed at :func:`oidc`;
    ``grp-devs`` maps to publisher in the default organization."""
    env = {
        "TFR_AUTH__PROVIDERS": "oidc",
        "TFR_AUTH__OIDC__ISSUER": oidc.issuer,
        "TFR_AUTH__OIDC__CLIENT_ID": "tfregistry-webui",
        "TFR_AUTH__OIDC__CLIENT_SECRET": "tfregistry-webui-client-secret",
        "TFR_AUTH__OIDC__GROUP_MAPPING": "grp-devs=default:publisher",
        "TFR_LIMITS__LOGIN": "1000 per minute",  # the tests sign in more often than a person would
        **registry_env,
    }
    with running_server(request.param, tmp_path_factory.mktemp(f"webui-oidc-{request.param}"), env) as srv:
        yield srv


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """``open_page(server=None, *, bypass_csp=True, **context_options)``: a new page in a fresh context whose
    base URL is ``server.url`` (see :func:`tests.webui.harness.new_context`); all closed after the test."""
    contexts: list[BrowserContext] = []

    def open_(server: RegistryServer | None = None, **options: Any) -> Page:
        context = new_context(browser, server.url if server else None, **options)
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: Callable[..., Page], registry: RegistryServer) -> Page:
    """A page on :func:`registry` in a fresh browser context (``page.goto("/")`` opens its home)."""
    return open_page(registry)
