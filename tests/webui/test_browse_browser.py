"""The public half of the web UI in a real browser: anonymous browsing, search, every tab of a module with a
submodule and an example, the version picker (with and without JavaScript), compare, the copy button, the
provider and namespace pages, error pages; axe-core, page weight and nothing off-site on every kind of page.

Real chromium, a real ``tfr serve`` subprocess on SQLite and on PostgreSQL; the showcase module
(:mod:`tests.webui.showcase`) is published once per server through the API and analysed at publish.
``TFR_PUBLIC_URL`` gives the pages a stable host for the screenshots in docs/ui.md
(``TFREGISTRY_TEST_SCREENSHOTS=1`` writes them; only the SQLite run takes them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import RegistryServer
from tests.webui import showcase
from tests.webui.harness import check_page, screenshot
from tests.webui.showcase import ADDRESS, NAMESPACE, PROVIDER, PROVIDER_VERSION

PUBLIC_HOST = "registry.example.com"
MODULE = f"/modules/{ADDRESS}"
LATEST = f"{MODULE}/1.1.0"


@pytest.fixture(scope="module")
def registry_env() -> dict[str, str]:
    """A stable host in every page (the provision box, the provider snippet), whatever port the server has."""
    return {"TFR_PUBLIC_URL": f"https://{PUBLIC_HOST}"}


@pytest.fixture(scope="module")
def site(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> RegistryServer:
    """The registry with the showcase modules (public namespace) and provider published, once per server."""
    showcase.publish_showcase(registry)
    showcase.record_downloads(registry)
    showcase.publish_provider(registry, tmp_path_factory.mktemp("provider"))
    return registry


@pytest.fixture
def page(open_page: Callable[..., Page], site: RegistryServer) -> Page:
    """An anonymous page on the showcase registry."""
    return open_page(site)


def shot(site: RegistryServer, page: Page, name: str, *, dark: bool = False) -> None:
    """A 1280x800 screenshot for docs/ui.md (SQLite run only; nothing unless TFREGISTRY_TEST_SCREENSHOTS=1)."""
    if site.database != "sqlite":
        return
    page.wait_for_load_state("networkidle")  # the logo and README images are in
    if dark:
        page.emulate_media(color_scheme="dark")
    screenshot(page, name, full_page=False)
    page.emulate_media(color_scheme="light")


def tab(page: Page, label: str) -> None:
    """Open a tab of a module or provider page the way a person does: its link in the tab bar."""
    page.get_by_role("navigation", name="Sections").get_by_role("link", name=re.compile(rf"^{label}\b")).click()
    expect(page.locator("nav.tabs a[aria-current=page]")).to_contain_text(label)


def snippet(page: Page) -> str:
    return page.locator("#provision-snippet").inner_text()


# --- browsing ---------------------------------------------------------------------------------------------


def test_anonymous_browse_from_home_through_search_to_the_module(page: Page, site: RegistryServer):
    page.goto("/")
    stats = page.locator("ul.stats").inner_text()
    assert re.search(r"2\s+modules", stats) and re.search(r"3\s+module versions", stats), stats
    assert re.search(r"1\s+providers", stats), stats
    recent = page.get_by_role("region", name="Recently published")
    expect(recent.get_by_role("link", name=f"{ADDRESS} 1.1.0")).to_be_visible()
    popular = page.get_by_role("region", name="Most downloaded")
    expect(popular.get_by_role("link", name=ADDRESS)).to_be_visible()
    expect(popular).to_contain_text("4 downloads")
    shot(site, page, "home")

    page.get_by_role("search", name="Registry").get_by_role("searchbox").fill("web tier")
    page.get_by_role("search", name="Registry").get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Search results")
    expect(page.locator("ul.cards li").filter(has_text=ADDRESS)).to_contain_text(showcase.DESCRIPTIONS["webapp"])
    page.get_by_role("link", name=ADDRESS, exact=True).click()

    page.wait_for_url(f"**{MODULE}")
    expect(page.locator(".page-head h1")).to_have_text(ADDRESS)
    expect(page.locator(".address").first).to_have_text(f"{PUBLIC_HOST}/{ADDRESS}")
    expect(page.locator(".readme")).to_contain_text("Provisions the web tier")
    assert "1.1.0" in page.locator(".page-head").inner_text() and "latest" in page.locator(".page-head").inner_text()


def test_readme_renders_with_its_relative_image_and_link(page: Page, site: RegistryServer):
    page.goto(MODULE)
    readme = page.locator(".readme")
    expect(readme.locator("pre.markdown-source")).to_have_count(0)  # rendered, not shown as source
    expect(readme.get_by_role("heading", name="Web application")).to_be_visible()
    expect(readme.locator("table")).to_contain_text("availability zones")
    # the README's relative image and link resolve to files inside the same archive, on this site
    image = readme.get_by_role("img", name="Architecture diagram")
    image.scroll_into_view_if_needed()
    in_archive = re.escape(f"{LATEST}/")
    expect(image).to_have_attribute("src", re.compile(rf"^{in_archive}.*docs/architecture\.png$"))
    page.wait_for_function("img => img.complete", arg=image.element_handle())
    assert image.evaluate("img => img.naturalWidth") == 300  # the PNG of the archive, decoded
    link = readme.get_by_role("link", name="the network submodule")
    expect(link).to_have_attribute("href", re.compile(rf"^{in_archive}.*modules/network/README\.md$"))
    response = page.request.get(link.get_attribute("href") or "")
    assert response.status == 200 and "One network with a subnet per zone." in response.text()


@pytest.mark.parametrize(("query", "found", "not_found"), [
    ("webapp", ["acme/webapp/generic"], ["acme/dns/generic"]),
    (showcase.RESOURCE_TYPE, ["acme/webapp/generic"], ["acme/dns/generic"]),  # the resource type it manages
    ("fqdn", ["acme/dns/generic"], ["acme/webapp/generic"]),  # an output name
])
def test_search_by_name_and_by_resource_type(page: Page, query: str, found: list[str], not_found: list[str]):
    page.goto("/providers")
    header_search = page.get_by_role("search", name="Site")
    header_search.get_by_role("searchbox", name="Search modules").fill(query)
    header_search.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"/modules\?q="))
    results = page.locator("ul.cards")
    for address in found:
        expect(results.get_by_role("link", name=address, exact=True)).to_be_visible()
    for address in not_found:
        expect(results.get_by_role("link", name=address, exact=True)).to_have_count(0)
    expect(page.get_by_role("search", name="Filter modules").get_by_label("Search")).to_have_value(query)


def test_every_tab_of_the_module(page: Page):
    page.goto(MODULE)
    tab(page, "Inputs")
    assert page.url.endswith(f"{LATEST}/inputs")
    expect(page.get_by_role("heading", name="Required inputs (4)")).to_be_visible()
    expect(page.get_by_role("heading", name="Optional inputs (4)")).to_be_visible()
    settings = page.locator("#input-settings")
    expect(settings).to_contain_text("object(")
    expect(settings).to_contain_text("optional(number, 1)")
    expect(page.locator("#input-instance_count")).to_contain_text("1 validation rule")
    expect(page.locator("#input-admin_password")).to_contain_text("sensitive")
    tab(page, "Outputs")
    expect(page.locator("#output-instance_names")).to_contain_text("Names of the instances.")
    expect(page.locator("#output-network_id")).to_be_visible()
    tab(page, "Dependencies")
    expect(page.get_by_role("row", name=re.compile(r"network\s+\.\Smodules\Snetwork"))).to_be_visible()
    tab(page, "Resources")
    managed = page.get_by_role("heading", name="Managed resources (2)")
    expect(managed).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(r"terraform_data\s+instance"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(r"terraform_data\s+settings"))).to_be_visible()
    tab(page, "Changelog")
    expect(page.locator(".readme")).to_contain_text(re.compile(r"New required input `?environment`?\."))
    tab(page, "Versions")
    expect(page.get_by_role("row", name=re.compile(r"^1\.1\.0\b.*latest"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(r"^1\.0\.0\b"))).to_be_visible()
    tab(page, "Usage")
    expect(page.locator("figure.chart svg").first).to_be_visible()
    # the downloads recorded from the User-Agent: Terraform 3, OpenTofu 1
    expect(page.get_by_role("main")).to_contain_text("4 downloads of all versions in the last 12 months")
    expect(page.get_by_role("main")).to_contain_text("Terraform 3, OpenTofu 1")
    tab(page, "Readme")
    assert page.url.endswith(LATEST)


def test_a_submodule_and_an_example_with_their_tabs(page: Page):
    page.goto(MODULE)
    tab(page, "Submodules")
    page.locator("ul.cards").get_by_role("link", name="network").click()
    expect(page.locator(".page-head h1")).to_contain_text("network")
    expect(page.locator(".address").first).to_have_text(f"{PUBLIC_HOST}/{ADDRESS}//modules/network")
    expect(page.locator(".readme")).to_contain_text("One network with a subnet per zone.")
    assert f'source  = "{PUBLIC_HOST}/{ADDRESS}//modules/network"' in snippet(page)
    assert 'cidr = "" # string' in snippet(page) and "zones" not in snippet(page)  # zones is optional
    tab(page, "Inputs")
    expect(page.get_by_role("heading", name="Required inputs (1)")).to_be_visible()
    tab(page, "Resources")
    expect(page.get_by_role("row", name=re.compile(r"terraform_data\s+network"))).to_be_visible()

    page.goto(MODULE)
    tab(page, "Examples")
    page.locator("ul.cards").get_by_role("link", name="basic").click()
    expect(page.locator(".readme")).to_contain_text("The smallest useful configuration.")
    tab(page, "Code")
    code = page.locator("#file-1").inner_text()  # main.tf (README.md sorts after it)
    # ../.. and ../../modules/network became the registry address, pinned to the version shown
    assert f'source = "{PUBLIC_HOST}/{ADDRESS}"\n  version = "1.1.0"' in code, code
    assert f'source = "{PUBLIC_HOST}/{ADDRESS}//modules/network"\n  version = "1.1.0"' in code, code
    assert "../.." not in code
    tab(page, "Dependencies")
    expect(page.get_by_role("row", name=re.compile(r"webapp\s+\.\.\S\.\."))).to_be_visible()


def test_version_picker_with_javascript(page: Page):
    page.goto(f"{MODULE}/inputs")
    expect(page.locator("#version-picker option:checked")).to_have_text("1.1.0 (latest)")
    page.get_by_label("Version", exact=True).select_option("1.0.0")  # submits by itself
    page.wait_for_url(f"**{MODULE}/1.0.0/inputs")
    expect(page.get_by_role("note")).to_contain_text("This is not the latest version.")
    expect(page.locator("#input-environment")).to_have_count(0)
    expect(page.get_by_role("heading", name="Required inputs (3)")).to_be_visible()
    expect(page.locator("#input-instance_count")).to_contain_text("1")
    assert "environment" not in snippet(page) and 'version = "= 1.0.0"' in snippet(page)  # pinned: not the latest


def test_version_picker_without_javascript(open_page: Callable[..., Page], site: RegistryServer):
    page = open_page(site, java_script_enabled=False)
    page.goto(f"{LATEST}/outputs")
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()  # the copy button needs the script
    page.get_by_label("Version", exact=True).select_option("1.0.0")
    assert page.url.endswith(f"{LATEST}/outputs")  # nothing happens without the script...
    page.get_by_role("button", name="Show").click()  # ...until the form is submitted
    page.wait_for_url(f"**{MODULE}/1.0.0/outputs")
    expect(page.locator("nav.tabs a[aria-current=page]")).to_contain_text("Outputs")
    expect(page.locator("#version-picker option:checked")).to_have_text("1.0.0")


def test_compare_the_two_versions(page: Page, site: RegistryServer):
    page.goto(MODULE)
    tab(page, "Versions")
    page.get_by_label("From").select_option("1.0.0")
    page.get_by_label("To").select_option("1.1.0")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(f"**{MODULE}/compare/1.0.0...1.1.0")
    expect(page.get_by_role("heading", level=1)).to_have_text("Changes from 1.0.0 to 1.1.0")
    root = page.get_by_role("region", name="Root module")
    expect(root.get_by_role("note")).to_contain_text("Callers may need to change their configuration")
    added = root.get_by_role("row", name=re.compile(r"input added \(required\)\s+environment"))
    expect(added).to_contain_text("string")
    default = root.get_by_role("row", name=re.compile(r"default changed\s+instance_count"))
    expect(default.get_by_role("cell")).to_have_text(["default changed", "1", "2"])
    shot(site, page, "compare")


def test_copy_the_provision_snippet(open_page: Callable[..., Page], site: RegistryServer):
    page = open_page(site, permissions=["clipboard-read", "clipboard-write"])
    page.goto(MODULE)
    shown = snippet(page)
    assert shown.startswith(f'module "webapp" {{\n  source  = "{PUBLIC_HOST}/{ADDRESS}"\n  version = "~> 1.1"')
    assert 'settings    = { tier = "" } # object(' in shown  # required attributes only: tier
    page.get_by_role("button", name="Copy").first.click()
    expect(page.locator("[data-copy-status]").first).to_have_text("Copied to the clipboard")
    assert page.evaluate("() => navigator.clipboard.readText()") == shown.rstrip("\n")


# --- keyboard and small screens -----------------------------------------------------------------------------


def focused(page: Page) -> str:
    """What has the keyboard focus: its tag, and its accessible text (or the link's href)."""
    return page.evaluate("() => { const e = document.activeElement;"
                         " return e.tagName + ' ' + (e.innerText || e.value || '').trim() + ' ' +"
                         " (e.getAttribute('href') || ''); }")


def tab_until(page: Page, pattern: str, limit: int = 80) -> str:
    """Press Tab until the focused element matches ``pattern`` (a regular expression); fail after ``limit``."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if re.search(pattern, now):
            return now
        seen.append(now)
    pytest.fail(f"Tab never reached {pattern!r}; it went through:\n" + "\n".join(seen))


def test_keyboard_only_with_the_real_content_security_policy(open_page: Callable[..., Page], site: RegistryServer):
    """No mouse, and the CSP enforced (no bypass): skip link, tabs, the copy button's script from the package."""
    page = open_page(site, bypass_csp=False, permissions=["clipboard-read", "clipboard-write"])
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(MODULE)
    page.keyboard.press("Tab")
    assert focused(page).startswith("A Skip to content"), focused(page)
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    tab_until(page, r"^A Inputs\b")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{LATEST}/inputs")
    expect(page.get_by_role("heading", name=re.compile(r"^Required inputs"))).to_be_visible()
    shown = snippet(page)
    tab_until(page, r"^BUTTON Copy")
    page.keyboard.press("Enter")
    expect(page.locator("[data-copy-status]").first).to_have_text("Copied to the clipboard")
    assert page.evaluate("() => navigator.clipboard.readText()") == shown.rstrip("\n")
    assert not [e for e in errors if "Content Security Policy" in e], errors


NARROW = [MODULE, f"{LATEST}/inputs", f"{LATEST}/usage", f"{MODULE}/compare/1.0.0...1.1.0", "/",
          "/modules?q=web+tier", f"/providers/{NAMESPACE}/{PROVIDER}",
          f"/providers/{NAMESPACE}/{PROVIDER}/{PROVIDER_VERSION}/docs/resources/widget"]


@pytest.mark.parametrize("path", NARROW)
def test_a_phone_sized_screen_never_scrolls_sideways(page: Page, path: str):
    """Responsive: at 375 px wide the page itself is no wider than the screen (wide code and tables scroll
    inside their own box)."""
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(path)
    page.wait_for_load_state("networkidle")
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{path}: the page is {width[0]} px wide on a {width[1]} px screen"
    expect(page.get_by_role("heading", level=1)).to_be_in_viewport()


# --- providers, namespaces, errors --------------------------------------------------------------------------


def test_provider_list_and_page(page: Page, site: RegistryServer):
    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Providers").click()
    page.get_by_role("link", name=f"{NAMESPACE}/{PROVIDER}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{NAMESPACE}/{PROVIDER}")
    expect(page.get_by_role("heading", name="Platforms (2)")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(r"linux\s+amd64"))).to_be_visible()
    provider_snippet = page.locator("#provider-snippet").inner_text()
    assert f'source  = "{PUBLIC_HOST}/{NAMESPACE}/{PROVIDER}"' in provider_snippet
    assert 'version = "~> 0.4"' in provider_snippet
    shot(site, page, "provider")
    tab(page, "Documentation")
    expect(page.get_by_role("main")).to_contain_text("Widgets")  # the sidebar groups pages by subcategory
    page.get_by_role("main").get_by_role("link", name="toolbox_widget Resource").click()
    page.wait_for_url(f"**/providers/{NAMESPACE}/{PROVIDER}/**/docs/resources/widget")
    expect(page.get_by_role("main").get_by_role("heading", name="toolbox_widget", exact=True)).to_be_visible()
    tab(page, "Versions")
    expect(page.get_by_role("row", name=re.compile(rf"^{re.escape(PROVIDER_VERSION)}\b.*latest"))).to_be_visible()
    tab(page, "Signing keys")
    expect(page.get_by_role("table")).to_contain_text("registry-managed")


def test_namespace_page(page: Page):
    page.goto(MODULE)
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name=NAMESPACE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Namespace {NAMESPACE}")
    expect(page.get_by_role("region", name="Modules").get_by_role("listitem")).to_have_count(2)
    expect(page.get_by_role("link", name=ADDRESS)).to_be_visible()
    expect(page.get_by_role("link", name=f"{NAMESPACE}/{PROVIDER}")).to_be_visible()


def test_missing_module_is_the_404_page(page: Page):
    response = page.goto(f"/modules/{NAMESPACE}/nothing/generic")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    expect(page.get_by_role("main")).to_contain_text("There is nothing here, or you may not see it.")


# --- every kind of page: axe-core light and dark, under 200 KB, nothing off-site ------------------------------

PART_TABS = ["", "/inputs", "/outputs", "/dependencies", "/resources"]
PAGES: list[tuple[str, str, int, str | None]] = [
    ("home", "/", 200, None),
    ("module list", "/modules", 200, None),
    ("search results", "/modules?q=web+tier", 200, "search-results"),
    ("module readme", MODULE, 200, "module-readme"),
    *[(f"module tab {t}", f"{LATEST}/{t}", 200, {"inputs": "module-inputs", "usage": "module-usage"}.get(t))
      for t in ("inputs", "outputs", "dependencies", "resources", "submodules", "examples", "changelog",
                "versions", "usage")],
    ("older version", f"{MODULE}/1.0.0", 200, None),
    *[(f"submodule{t or ' readme'}", f"{LATEST}/submodules/network{t}", 200, None) for t in PART_TABS],
    *[(f"example{t or ' readme'}", f"{LATEST}/examples/basic{t}", 200, None) for t in [*PART_TABS, "/code"]],
    ("compare", f"{MODULE}/compare/1.0.0...1.1.0", 200, None),
    ("provider list", "/providers", 200, None),
    *[(f"provider {t or 'overview'}", f"/providers/{NAMESPACE}/{PROVIDER}{t}", 200, None)
      for t in ("", f"/{PROVIDER_VERSION}/docs", f"/{PROVIDER_VERSION}/versions", f"/{PROVIDER_VERSION}/keys")],
    ("provider documentation page", f"/providers/{NAMESPACE}/{PROVIDER}/{PROVIDER_VERSION}/docs/resources/widget",
     200, None),
    ("namespace", f"/namespaces/{NAMESPACE}", 200, None),
    ("404", f"/modules/{NAMESPACE}/nothing/generic", 404, None),
    ("400", "/modules?offset=-1", 400, None),
    ("sign-in (token form)", "/sign-in", 200, None),
]


def readme_image(url: str) -> bool:
    """README images and linked files of the archive, which do not count towards the page weight."""
    return "/files/" in url


@pytest.mark.parametrize(("label", "path", "status", "name"), PAGES, ids=[p[0] for p in PAGES])
def test_every_page_is_accessible_light_and_dark_small_and_local(page: Page, site: RegistryServer, label: str,
                                                                 path: str, status: int, name: str | None):
    weight = check_page(page, path, label, status=status, exclude=readme_image)
    assert all(url.startswith(site.url) for url in weight.resources), weight
    if name:
        shot(site, page, name)
    if name == "module-readme":
        shot(site, page, "module-readme-dark", dark=True)


def test_screenshots_are_small_enough_for_the_docs():
    """The committed screenshots stay under 250 KB each (docs/ui.md shows them)."""
    shots = sorted((Path(__file__).resolve().parents[2] / "docs" / "img" / "ui").glob("*.png"))
    assert {p.stem for p in shots} >= {"home", "search-results", "module-readme", "module-readme-dark",
                                       "module-inputs", "module-usage", "compare", "provider", "provider-docs",
                                       "provider-doc-page", "provider-docs-preview", "sign-in", "my-tokens",
                                       "publish-module", "module-deprecated"}
    assert all(p.stat().st_size < 250 * 1024 for p in shots), {p.name: p.stat().st_size for p in shots}
