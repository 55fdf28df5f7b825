"""``tfr publish provider DIST --docs DIR`` and ``tfr provider-docs preview DIR`` against a real HTTPS server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import bearer
from tests.integration.test_cli import live_server, run  # noqa: F401 - fixtures
from tests.providers_kit import build_release
from tests.unit.test_provider_docs import INDEX, THING


def docs_folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "resources").mkdir(parents=True)
    (docs / "guides").mkdir()
    (docs / "index.md").write_bytes(INDEX)
    (docs / "resources" / "thing.md").write_bytes(THING)
    (docs / "guides" / "start.md").write_text("---\npage_title: Getting started\n---\nHello\n")
    (docs / "notes.txt").write_text("not a page\n")
    return docs


def test_publish_provider_with_docs(run: Any, live_server: str, admin_token: str, client: Any,  # noqa: F811
                                    tmp_path: Path) -> None:
    assert client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"},
                       headers=bearer(admin_token)).status_code == 201
    release = build_release(tmp_path / "dist", "foo", "1.0.0")
    docs = docs_folder(tmp_path / "checkout")
    result = run("publish", "provider", str(release.dist), "--namespace", "acme", "--docs", str(tmp_path / "checkout"),
                 "--url", live_server, "--token", admin_token)
    assert result.exit_code == 0, result.output
    assert "published acme/foo/1.0.0" in result.output and "docs: 3 pages" in result.output
    assert "1 files skipped:" in result.output and "'notes.txt' is not a Markdown page" in result.output
    index = client.get("/api/v1/providers/acme/foo/1.0.0/docs", headers=bearer(admin_token)).get_json()
    assert index["page_count"] == 3

    (docs / "guides" / "start.md").unlink()
    again = run("publish", "provider", str(release.dist), "--namespace", "acme", "--docs", str(docs),
                "--url", live_server, "--token", admin_token)
    assert again.exit_code == 0, again.output
    assert "nothing new" in again.output and "docs: 2 pages (replacing 3)" in again.output


def test_publish_provider_reports_refused_docs(run: Any, live_server: str, admin_token: str,  # noqa: F811
                                               client: Any, tmp_path: Path) -> None:
    client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"}, headers=bearer(admin_token))
    release = build_release(tmp_path / "dist", "foo", "1.0.0")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("x")
    result = run("publish", "provider", str(release.dist), "--namespace", "acme", "--docs", str(empty),
                 "--url", live_server, "--token", admin_token)
    assert result.exit_code == 1
    assert "the release is published, but the registry refused its docs (400)" in result.output
    assert "no documentation pages found" in result.output


def test_preview_locally_and_against_the_registry(run: Any, live_server: str, admin_token: str,  # noqa: F811
                                                  tmp_path: Path) -> None:
    docs = docs_folder(tmp_path)
    for extra in ([], ["--url", live_server, "--token", admin_token]):
        result = run("provider-docs", "preview", str(docs), *extra)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert "3 pages" in lines
        assert lines.index("Overview") < lines.index("Guides") < lines.index("Resources")
        assert "    resources/thing  foo_thing Resource - terraform-provider-foo" in lines  # under "  Compute"
        assert "  Compute" in lines and "  guides/start  Getting started" in lines
        assert "  - 'notes.txt' is not a Markdown page (.md); skipped" in lines
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.go").write_text("package main\n")
    refused = run("provider-docs", "preview", str(tmp_path / "bad"))
    assert refused.exit_code == 1 and "the registry would refuse this folder: no documentation pages" in refused.output
