"""Provider documentation pages in headless chromium against a real ``tfr serve`` (SQLite and PostgreSQL):
accessibility (axe-core, light and dark), weight, nothing off-site; the preview form used as a person does."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page

from tests.e2e.conftest import RegistryServer
from tests.integration.test_provider_docs import FULL
from tests.providers_kit import build_release
from tests.unit.test_provider_docs import tgz
from tests.webui.harness import assert_accessible, check_page, screenshot


def upload_docs(server: RegistryServer, path: str, archive: bytes) -> int:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="docs.tar.gz"\r\n'
            "Content-Type: application/gzip\r\n\r\n").encode() + archive + f"\r\n--{boundary}--\r\n".encode()
    return server.request("POST", path, token=server.admin_token, body=body,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}).status


def sign_in_with_token(page: Page, token: str) -> None:
    page.goto("/sign-in")
    page.get_by_label("API token", exact=True).fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


def test_docs_pages_and_preview_in_the_browser(open_page: Callable[..., Page], registry: RegistryServer,
                                               tmp_path: Path):
    ns = f"docs{uuid.uuid4().hex[:6]}"
    registry.cli("gpg", "create-key", "--namespace", ns)
    registry.publish_provider(build_release(tmp_path / "dist", "foo", "1.0.0", platforms=("linux_amd64",)).dist, ns)
    archive = tgz(FULL).getvalue()
    assert upload_docs(registry, f"/api/v1/providers/{ns}/foo/1.0.0/docs", archive) == 201
    page = open_page(registry)
    sign_in_with_token(page, registry.admin_token)
    base = f"/providers/{ns}/foo/1.0.0/docs"
    check_page(page, base, "provider documentation index", shot="provider-docs")
    check_page(page, f"{base}/resources/thing", "provider documentation page", shot="provider-doc-page")
    assert page.get_by_role("navigation", name="Documentation pages").get_by_role(
        "link", name="foo_thing Resource - terraform-provider-foo").get_attribute("aria-current") == "page"
    check_page(page, f"{base}/upload", "provider docs upload form")
    check_page(page, "/publish/provider-docs/preview", "provider docs preview form")
    docs = tmp_path / "docs.tar.gz"
    docs.write_bytes(archive)
    page.get_by_label("Docs archive (.tar.gz or .zip)").set_input_files(str(docs))
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="8 pages").is_visible()
    assert page.get_by_role("navigation", name="Pages in the archive").is_visible()
    assert_accessible(page, "provider docs preview result")
    screenshot(page, "provider-docs-preview")
