"""Signing keys and mirrors administration in headless chromium against real servers (SQLite and PostgreSQL).

Issue 13's proof for this area: a key added in the UI lets the real Terraform CLI install a provider signed by it;
a mirror configuration made in the UI syncs from a second registry process (the upstream of the mirroring tests)
and its history shows the run.  Every page of the area passes :func:`check_page` (axe light and dark, weight,
nothing off-site)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import (
    RegistryServer,
    Terraform,
    unique,
    upstream,  # noqa: F401  (the fixture: a second registry to mirror from)
)
from tests.providers_kit import build_release
from tests.webui.harness import check_page, screenshot


@pytest.fixture(scope="module")
def registry_env(upstream: RegistryServer) -> dict[str, str]:  # noqa: F811
    """The registry under test trusts the upstream's CA, as a site trusts the public registry's."""
    return {"SSL_CERT_FILE": str(upstream.bundle), "TFR_JOBS__BACKOFF_SECONDS": "0", "TFR_JOBS__RETRIES": "0",
            # read-only callers may request mirrors (the approval queue); managers' configurations are approved
            "TFR_MIRROR__REQUIRE_APPROVAL": "true"}


def signed_in(open_page: Callable[..., Page], server: RegistryServer) -> Page:
    """A page signed in with the server's admin token through the sign-in page's token form."""
    page = open_page(server)
    page.goto("/sign-in")
    page.get_by_label("API token", exact=True).fill(server.admin_token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(lambda url: "/sign-in" not in url)
    return page


def provider_config(source: str) -> str:
    return (f'terraform {{\n  required_providers {{\n    foo = {{\n      source  = "{source}"\n'
            f'      version = "1.0.0"\n    }}\n  }}\n}}\n')


def test_a_key_added_in_the_ui_signs_a_provider_terraform_installs(open_page, registry, signer, tmp_path):
    ns = unique("uikey")
    page = signed_in(open_page, registry)
    page.goto("/admin/keys")
    page.get_by_role("textbox", name="Namespace").fill(ns)
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", name=f"Signing keys of {ns}")).to_be_visible()
    page.get_by_label("ASCII-armoured public key", exact=True).fill(signer.public_armor)
    page.get_by_label("Source (optional)", exact=True).fill("release pipeline")
    page.get_by_role("button", name="Add key").click()
    expect(page.get_by_role("status")).to_contain_text(f"Key {signer.key_id} added to {ns}.")
    expect(page.locator(".key-table")).to_contain_text(signer.fingerprint)

    registry.publish_provider(build_release(tmp_path / "dist", "foo", "1.0.0", key=signer).dist, ns)
    terraform = Terraform(registry, tmp_path / "tf")
    address = f"{registry.host}/{ns}/foo"
    result = terraform.init(terraform.workdir(provider_config(address)), token=registry.admin_token)
    assert result.rc == 0, str(result)
    assert f"Installed {address} v1.0.0 (self-signed, key ID {signer.key_id})" in result.stdout, str(result)

    page.reload()
    expect(page.locator(".key-table")).to_contain_text("foo 1.0.0")
    revoke = page.get_by_role("link", name=f"Revoke key {signer.key_id}").get_attribute("href")
    check_page(page, f"/admin/keys/{ns}", "signing keys of a namespace", shot="admin-keys")
    check_page(page, "/admin/keys", "signing keys")
    check_page(page, revoke, "revoke a key")


def wait_for_run(page: Page, server: RegistryServer) -> None:
    """Reload the mirror page until its newest run has finished (the sync runs in the server's job runner)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        page.reload()
        if page.locator("section.run").count() and "running" not in page.locator("section.run").first.inner_text():
            return
        time.sleep(0.5)
    pytest.fail(f"the sync did not finish\n{server.output()}")


def test_a_mirror_made_in_the_ui_syncs_from_another_registry(open_page, registry, upstream, signer,  # noqa: F811
                                                             tmp_path: Path):
    ns = unique("uimirror")
    upstream.register_key(ns, signer.public_armor, tmp_path)
    for version in ("1.0.0", "1.1.0"):
        upstream.publish_provider(build_release(tmp_path / version, "foo", version, key=signer).dist, ns)

    page = signed_in(open_page, registry)
    page.goto("/admin/mirrors")
    page.get_by_role("link", name="New mirror").click()
    page.get_by_label("Origin host").fill("upstream.example.test")
    page.get_by_label("Namespace").fill(ns)
    page.get_by_label("Type", exact=False).first.fill("foo")
    page.get_by_label("Upstream URL (optional)", exact=True).fill(upstream.url)
    page.get_by_label("Upstream token (optional)", exact=True).fill(upstream.create_token("read"))
    page.get_by_label("Version constraint (optional)", exact=True).fill("~> 1.0")
    page.get_by_label("Platforms (optional)", exact=True).fill("linux_amd64")
    page.get_by_role("button", name="Create mirror").click()
    expect(page.get_by_role("heading", name=f"Mirror upstream.example.test/{ns}/foo")).to_be_visible()
    expect(page.get_by_text("Never synced.")).to_be_visible()
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("status")).to_contain_text("Sync of mirror")
    wait_for_run(page, registry)
    run = page.locator("section.run").first
    expect(run).to_contain_text("succeeded")
    expect(run).to_contain_text("2 versions copied, 2 packages")
    for version in ("1.0.0", "1.1.0"):
        expect(run.get_by_role("row", name=version)).to_contain_text("copied")
    screenshot(page, "admin-mirror")
    # what it copied is served: the downstream offers both versions under its own host
    listed = registry.get(f"/v1/providers/{ns}/foo/versions", token=registry.admin_token).json()
    assert sorted(v["version"] for v in listed["versions"]) == ["1.0.0", "1.1.0"]

    mirror_url = page.url.removeprefix(registry.url)
    check_page(page, mirror_url, "a mirror with its run history")
    check_page(page, "/admin/mirrors", "mirrors", shot="admin-mirrors")
    check_page(page, "/admin/mirrors/new", "new mirror")
    check_page(page, f"{mirror_url}/edit", "edit a mirror")
    check_page(page, f"{mirror_url}/delete", "delete a mirror")
    check_page(page, "/admin/mirrors/pull-through", "pull-through statistics")


def test_policies_and_their_tester(open_page, registry):
    page = signed_in(open_page, registry)
    page.goto("/admin/mirrors/policies")
    page.get_by_label("Effect", exact=True).select_option("deny")
    page.get_by_label("Pattern").fill("registry.terraform.io/evilcorp")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_role("status").first).to_contain_text("deny registry.terraform.io/evilcorp/*")
    page.get_by_label("Provider address", exact=True).fill("registry.terraform.io/evilcorp/thing")
    page.get_by_role("button", name="Test").click()
    expect(page.locator("#verdict")).to_contain_text("Refused: mirror policy")
    delete = page.get_by_role("link", name="Delete policy").first.get_attribute("href")
    check_page(page, page.url.removeprefix(registry.url), "mirror policies with a verdict",
               shot="admin-mirror-policies")
    check_page(page, delete, "delete a mirror policy")


def test_a_requested_mirror_is_approved_from_the_queue(open_page, registry):
    """A read-only caller requests a mirror through the API; it waits in the queue (checked by axe with the
    request in it), and the administrator approves it with a note."""
    ns = unique("uirequest")
    body = json.dumps({"upstream_host": "registry.terraform.io", "namespace": ns, "type": "foo"}).encode()
    requested = registry.request("POST", "/api/v1/mirrors", token=registry.create_token("read"), body=body,
                                 headers={"Content-Type": "application/json"})
    assert requested.status == 201, requested.body
    mirror_id = requested.json()["id"]
    assert requested.json()["status"] == "pending"

    page = signed_in(open_page, registry)
    check_page(page, "/admin/mirrors", "mirrors with a request in the approval queue")
    request = page.locator("li.form-panel").filter(has_text=f"registry.terraform.io/{ns}/foo")
    expect(request).to_contain_text("requested by")
    request.get_by_label(f"Note on request {mirror_id}").fill("fine for the platform team")
    request.get_by_role("button", name=f"Approve request {mirror_id}").click()
    expect(page.get_by_role("status").first).to_contain_text("approved")
    expect(page.locator("li.form-panel").filter(has_text=f"registry.terraform.io/{ns}/foo")).to_have_count(0)
    shown = registry.get(f"/api/v1/mirrors/{mirror_id}", token=registry.admin_token).json()
    assert (shown["status"], shown["decision_note"]) == ("approved", "fine for the platform team")
