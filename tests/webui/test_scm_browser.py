"""Source control pages in headless chromium against a real ``tfr serve`` (SQLite and PostgreSQL) and a real
repository served by ``git http-backend``: a scm-git connection made in the UI, the link wizard with its tag
preview, the import publishing the version, "sync now" on the link page, then a tag moved in the repository
caught by a sync and shown as the version page's banner and on the Source tab.  Every page passes
:func:`check_page` (axe light and dark, weight, nothing off-site); screenshots go to docs/img/ui/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import unique
from tests.webui.harness import assert_accessible, check_page, screenshot
from tests.webui.test_admin_supply_browser import signed_in
from tfregistry.testing.git import GitHttpServer


def wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_connect_link_import_sync_and_moved_tag(open_page, registry, tmp_path: Path):
    ns, conn = unique("uiscm"), unique("git")
    registry.cli("namespace", ns)
    with GitHttpServer(tmp_path / "git") as git:
        repo = git.create_repo("net")
        first = repo.commit({"main.tf": 'output "v" {\n  value = "one"\n}\n'})
        repo.tag("v1.0.0")
        repo.tag("notes")  # matches no pattern
        url = git.repo_url("net")

        page = signed_in(open_page, registry)
        page.goto("/modules")
        page.get_by_role("link", name="Source control").click()
        expect(page.get_by_role("heading", name="Source control", exact=True)).to_be_visible()
        page.locator("#f-name").fill("bad name")
        page.get_by_label("System", exact=True).select_option("git")
        page.get_by_label("Authentication").select_option("none")
        page.get_by_label("Base URL").fill("https://kept.example")
        page.get_by_role("button", name="Add connection").click()
        expect(page.locator("#f-name-error")).to_contain_text("letters, digits")
        expect(page.get_by_label("Base URL")).to_have_value("https://kept.example")
        page.locator("#f-name").fill(conn)
        page.get_by_label("Base URL").fill("")
        page.get_by_role("button", name="Add connection").click()
        expect(page.get_by_role("status")).to_contain_text(f"Connection “{conn}” is created.")
        check_page(page, "/scm", "source control", shot="scm-connections")

        page.get_by_role("link", name=f"Link a repository with {conn}").click()
        page.get_by_role("textbox", name="Repository").fill(url)
        page.get_by_role("button", name="Next").click()
        expect(page.get_by_role("textbox", name="Tag pattern")).to_have_value("v{version}")
        page.get_by_role("textbox", name="Namespace").fill(ns)
        page.get_by_role("textbox", name="Module name").fill("net")
        page.get_by_role("button", name="Preview matching tags").click()
        preview = page.get_by_role("region", name="Matching tags")
        expect(preview).to_contain_text("v1.0.0")
        expect(preview).not_to_contain_text("notes")
        check_page(page, page.url, "link wizard preview", shot="scm-link-wizard")
        expect(page.get_by_label("Import the 1 existing matching tag now")).to_be_checked()
        page.get_by_role("button", name=f"Create link of {ns}/net/generic").click()
        expect(page.get_by_role("heading", name=f"{ns}/net/generic is linked")).to_be_visible()
        expect(page.locator("#webhook-url")).to_contain_text("/api/v1/scm/links/")
        assert len(page.locator("#webhook-secret").inner_text().strip()) >= 32
        assert_accessible(page, "link created")
        screenshot(page, "scm-link-created")

        wait_for(lambda: registry.get(f"/v1/modules/{ns}/net/generic/1.0.0", token=registry.admin_token).status
                 == 200, "the imported version")

        page.get_by_role("link", name="Go to the link").click()
        link_url = page.url
        page.get_by_role("button", name="Sync now").click()
        expect(page.get_by_role("status")).to_contain_text("Sync queued")
        check_page(page, link_url, "link page", shot="scm-link")

        moved = repo.commit({"main.tf": 'output "v" {\n  value = "moved"\n}\n'})
        repo.tag("v1.0.0", force=True)
        page.goto(link_url)
        page.get_by_role("button", name="Sync now").click()
        expect(page.get_by_role("status")).to_contain_text("Sync queued")

        def violations() -> list[Any]:
            r = registry.get("/api/v1/scm/violations", token=registry.admin_token)
            return [v for v in r.json() if v["module_version"] == f"{ns}/net/generic/1.0.0"]

        wait_for(violations, "the moved tag's violation")

    version_page = f"/modules/{ns}/net/generic/1.0.0"
    check_page(page, version_page, "version with a moved tag", shot="scm-moved-tag")
    expect(page.get_by_text("Tag v1.0.0 moved after version 1.0.0 was published.")).to_be_visible()
    expect(page.locator("main")).to_contain_text(moved[:12])
    page.get_by_role("link", name="Source", exact=True).click()
    expect(page.locator("main")).to_contain_text(first)
    check_page(page, version_page + "/source", "source tab", shot="scm-source")
    check_page(page, "/scm/violations", "moved tags", shot="scm-violations")
    expect(page.get_by_role("link", name=f"{ns}/net/generic/1.0.0")).to_be_visible()
