"""The web UI's view of SCM publishing: the "Source" tab and the moved-tag banner on a version's page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tfregistry_scm_git.plugin as git_plugin

from tests.conftest import post_module
from tests.integration.test_scm_publish import Site
from tests.webui.conftest import assert_page
from tfregistry.testing.git import GitHttpServer


def test_source_tab_and_tag_moved_banner(ui_factory: Any, tmp_path: Path):
    site = Site(ui_factory({"scm.reconcile_interval": 0}, plugins=(git_plugin,)))
    with GitHttpServer(tmp_path / "srv") as server:
        repo = server.create_repo("net")
        first = repo.commit({"main.tf": "# one\n"})
        repo.tag("v1.0.0")
        conn = site.connection(provider="git", auth_method="none")
        link = site.link(conn, server.repo_url("net"), "net")
        site.sync(link["id"])
        page = "/modules/acme/net/generic/1.0.0"
        html = assert_page(site.call("GET", page))
        assert ">Source</a>" in html and "moved after version" not in html
        source = assert_page(site.call("GET", page + "/source"))
        assert f"<code>{first}</code>" in source and server.repo_url("net") in source and "v1.0.0" in source

        moved = repo.commit({"main.tf": "# two\n"})
        repo.tag("v1.0.0", force=True)
        site.sync(link["id"])
        banner = assert_page(site.call("GET", page))
        assert "Tag v1.0.0 moved after version 1.0.0 was published." in banner
        assert f"<code>{first[:12]}</code>" in banner and f"<code>{moved[:12]}</code>" in banner

    assert ">Source</a>" in assert_page(site.call("GET", page))  # stored provenance: no server needed
    assert post_module(site.client, site.token, name="plain").status_code == 201
    uploaded = assert_page(site.call("GET", "/modules/acme/plain/aws/1.0.0"))
    assert ">Source</a>" not in uploaded and "moved after" not in uploaded  # uploaded: no provenance
