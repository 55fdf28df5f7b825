"""Browser test kit: Debian's chromium through Playwright, axe-core, page weight, screenshots, OIDC sign-in.

The fixtures in ``tests/webui/conftest.py`` use these; tests call the helpers directly:

* :func:`assert_accessible` runs axe-core (from npm, installed on first use into ``<repo>/.cache/axe-core``)
  in light and dark colour schemes and fails on any serious or critical violation;
* :func:`page_weight` / :func:`assert_page_weight` load a URL with the cache off and add up the bytes
  transferred (Chrome DevTools Protocol ``Network.loadingFinished.encodedDataLength``);
* :func:`check_page` does all of that for one URL (status, weight, nothing off-site, axe light and dark);
* :func:`screenshot` saves ``docs/img/ui/<name>.png`` when ``TFREGISTRY_TEST_SCREENSHOTS=1``;
* :func:`sign_in_with_oidc` signs in through the registry's sign-in page and ``oidc-provider-mock``'s form.

Playwright never downloads a browser here (no ``playwright install``): it drives ``/usr/bin/chromium``
(``apt-get install chromium``; ``TFREGISTRY_TEST_CHROMIUM`` names another binary).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from weakref import WeakKeyDictionary

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route
from playwright.sync_api import Error as PlaywrightError

from tfregistry.testing.npm import npm_package

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TFREGISTRY_TEST_CHROMIUM", "/usr/bin/chromium")
#: axe-core's major version (an exact version works too); installed with npm into AXE_CACHE.
AXE_VERSION = os.environ.get("TFREGISTRY_TEST_AXE_VERSION", "4")
AXE_CACHE = REPO / ".cache" / "axe-core"
SCREENSHOTS = REPO / "docs" / "img" / "ui"
#: axe impacts that fail a test (``minor`` and ``moderate`` do not).
FAILING_IMPACTS = ("serious", "critical")
#: The most a page may weigh, in bytes transferred (issue 12: every page under 200 KB).
PAGE_WEIGHT_LIMIT = 200 * 1024
VIEWPORT = {"width": 1280, "height": 800}
#: Hosts a page may load from (the registry, the mock identity provider); anything else is blocked.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

#: Requests a page tried to send off this machine (blocked), per browser context.
_offsite: WeakKeyDictionary[BrowserContext, list[str]] = WeakKeyDictionary()


# --- the browser ------------------------------------------------------------------------------------------


def chromium_executable() -> str:
    """Path of Debian's chromium; fails (never skips) naming the apt package when it is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"the browser tests drive Debian's chromium at {CHROMIUM}, which is missing: "
                    "apt-get install chromium (or set TFREGISTRY_TEST_CHROMIUM to a Chromium binary). "
                    "Playwright's own browser download is not used.", pytrace=False)
    return CHROMIUM


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless chromium from :func:`chromium_executable` (``--no-sandbox`` when running as root)."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=chromium_executable(), headless=True, args=args)


def new_context(browser: Browser, base_url: str | None = None, *, bypass_csp: bool = True,
                **options: Any) -> BrowserContext:
    """A fresh context (no cookies) that trusts the servers' self-signed certificates and sends nothing
    off this machine: requests to other hosts are aborted and listed by :func:`offsite_requests`.

    ``bypass_csp`` is on by default because :func:`assert_accessible` injects axe-core with
    ``page.add_script_tag``, an inline script that the UI's Content-Security-Policy (no inline scripts)
    would block; a test of the CSP itself opens its context with ``bypass_csp=False``.
    """
    context = browser.new_context(base_url=base_url, ignore_https_errors=True, bypass_csp=bypass_csp,
                                  viewport=VIEWPORT, **options)
    blocked: list[str] = []
    _offsite[context] = blocked

    def offsite(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.fallback()
        else:
            blocked.append(route.request.url)
            route.abort("blockedbyclient")

    context.route(re.compile(r"^(https?|wss?)://"), offsite)
    return context


def offsite_requests(page: Page) -> list[str]:
    """URLs the page's context tried to fetch from another machine (all blocked)."""
    return list(_offsite.get(page.context, []))


def forget_offsite_requests(page: Page) -> list[str]:
    """Empty the list of :func:`offsite_requests` (returning what it held): after a sign-in through a page
    that is not the registry's (``oidc-provider-mock`` asks a CDN for its stylesheet), so that
    :func:`check_page` judges the registry's own pages."""
    blocked = _offsite.get(page.context, [])
    held = list(blocked)
    blocked.clear()
    return held


# --- accessibility ----------------------------------------------------------------------------------------


@functools.cache
def axe_script() -> Path:
    """``axe.min.js`` of axe-core AXE_VERSION, installed with npm into ``<repo>/.cache/axe-core`` when missing."""
    directory = npm_package(AXE_CACHE, "axe-core", AXE_VERSION, label="axe-core",
                            role="the accessibility checker the browser tests run in every page")
    return directory / "axe.min.js"


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (injects axe-core first when needed)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        try:
            page.add_script_tag(path=axe_script())
        except PlaywrightError as exc:
            pytest.fail(f"axe-core could not be injected into {page.url}: open the page in a context with "
                        f"bypass_csp=True (the UI's Content-Security-Policy forbids inline scripts).\n{exc.message}",
                        pytrace=False)
    return page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")


def format_violations(violations: list[dict[str, Any]]) -> str:
    """One paragraph per violation: impact, rule id, help, its URL and the target selectors."""
    lines = []
    for v in violations:
        lines.append(f"- [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        lines += [f"    at {' '.join(map(str, node['target']))}" for node in v["nodes"]]
    return "\n".join(lines)


def assert_accessible(page: Page, label: str) -> None:
    """Fail when axe-core finds a serious or critical violation on the page, in light or in dark colour scheme.

    ``label`` names the page in the failure message.  The page is left in the light colour scheme.
    """
    problems = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        failing = [v for v in axe_violations(page) if v["impact"] in FAILING_IMPACTS]
        if failing:
            problems.append(f"{label} ({page.url}), {scheme} colour scheme:\n{format_violations(failing)}")
    page.emulate_media(color_scheme="light")
    if problems:
        pytest.fail("axe-core found serious or critical accessibility violations:\n" + "\n".join(problems),
                    pytrace=False)


# --- page weight ------------------------------------------------------------------------------------------


@dataclass
class PageWeight:
    """What loading one page transferred: bytes per response URL (headers and encoded bodies)."""

    url: str
    resources: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    #: HTTP status of the page itself (after redirects).
    status: int | None = None

    @property
    def total(self) -> int:
        return sum(self.resources.values())

    def __str__(self) -> str:
        rows = [f"  {size:>9,d}  {url}" for url, size in sorted(self.resources.items(), key=lambda r: -r[1])]
        rows += [f"  {'failed':>9}  {url}" for url in self.failed]
        return f"{self.url}: {self.total:,d} bytes transferred\n" + "\n".join(rows)


def page_weight(page: Page, url: str, *, exclude: Callable[[str], bool] = lambda url: False) -> PageWeight:
    """Load ``url`` (relative to the page's base URL, or absolute) with the browser cache off and measure
    the bytes transferred for it and everything it loads until the network is idle (``exclude(url)``
    leaves resources out, e.g. README images)."""
    cdp = page.context.new_cdp_session(page)
    urls: dict[str, str] = {}
    weight = PageWeight(url)

    def sent(event: dict[str, Any]) -> None:
        urls[event["requestId"]] = event["request"]["url"]

    def received(event: dict[str, Any]) -> None:
        urls[event["requestId"]] = event["response"]["url"]

    def finished(event: dict[str, Any]) -> None:
        resource = urls.get(event["requestId"])
        if resource is not None and not exclude(resource):
            weight.resources[resource] = weight.resources.get(resource, 0) + int(event["encodedDataLength"])

    def failed(event: dict[str, Any]) -> None:
        resource = urls.get(event["requestId"])  # None: a request of the page before, cancelled by this load
        # ERR_ABORTED: cancelled, not failed (Chromium drops its own /favicon.ico probe when the load ends);
        # an off-site asset is ERR_BLOCKED_BY_CLIENT(.Inspector) and counts
        if resource is not None and event["errorText"] != "net::ERR_ABORTED" and not exclude(resource):
            weight.failed.append(f"{resource} ({event['errorText']})")

    cdp.on("Network.requestWillBeSent", sent)
    cdp.on("Network.responseReceived", received)
    cdp.on("Network.loadingFinished", finished)
    cdp.on("Network.loadingFailed", failed)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    try:
        response = page.goto(url, wait_until="networkidle")
    finally:
        cdp.detach()
    weight.status = response.status if response is not None else None
    return weight


def assert_page_weight(page: Page, url: str, limit: int = PAGE_WEIGHT_LIMIT, **kwargs: Any) -> PageWeight:
    """:func:`page_weight`, failing when the page weighs ``limit`` bytes or more or a resource failed to load."""
    weight = page_weight(page, url, **kwargs)
    assert weight.resources, f"nothing was measured loading {url}"
    assert weight.total < limit, f"the page weighs {weight.total:,d} bytes, the limit is {limit:,d}:\n{weight}"
    assert not weight.failed, f"resources failed to load:\n{weight}"
    return weight


def check_page(page: Page, url: str, label: str, *, status: int = 200, shot: str | None = None,
               exclude: Callable[[str], bool] = lambda url: False) -> PageWeight:
    """What issue 12 asks of every page, in one call: load ``url`` (cache off) and check its status, that it
    weighs under 200 KB with nothing failing or fetched off this machine, and that axe-core finds nothing
    serious in light or dark; then save screenshot ``shot`` (when screenshots are on)."""
    weight = assert_page_weight(page, url, exclude=exclude)
    assert weight.status == status, f"{url}: HTTP {weight.status}, expected {status}"
    assert offsite_requests(page) == [], f"{url} made requests off this machine: {offsite_requests(page)}"
    assert_accessible(page, label)
    if shot:
        screenshot(page, shot)
    return weight


# --- screenshots ------------------------------------------------------------------------------------------


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path | None:
    """Save ``docs/img/ui/<name>.png`` (for docs/ui.md) when ``TFREGISTRY_TEST_SCREENSHOTS=1``; else nothing."""
    if os.environ.get("TFREGISTRY_TEST_SCREENSHOTS") != "1":
        return None
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


# --- sign-in ----------------------------------------------------------------------------------------------


def sign_in_with_oidc(page: Page, issuer: str, sub: str = "alice", *, next_path: str | None = None,
                      button: str | re.Pattern[str] = "Sign in with OpenID Connect") -> None:
    """Sign in as ``sub`` the way a person does: open ``/auth/login``, press ``button`` when the registry
    offers a choice, type ``sub`` into ``oidc-provider-mock``'s form at ``issuer`` and press Authorize;
    returns once the browser is back on the registry.  ``page`` must have the registry as its base URL
    (``open_page(server)``)."""
    page.goto("/auth/login" + (f"?next={quote(next_path)}" if next_path else ""))
    if not page.url.startswith(issuer):
        page.get_by_role("link", name=button).or_(page.get_by_role("button", name=button)).first.click()
        page.wait_for_url(f"{issuer}/**")
    page.locator("input[name=sub]").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(lambda url: not url.startswith(issuer))
