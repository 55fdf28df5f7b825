"""``tfr scm``: the SCM API from the command line, against a live registry and a real git server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tfregistry_scm_git.plugin as git_plugin

from tests.integration.test_cli import live_server, run  # noqa: F401 - fixtures
from tfregistry.testing.git import GitHttpServer


@pytest.fixture
def app(app_factory: Any) -> Any:
    return app_factory({"scm.reconcile_interval": 0}, plugins=(git_plugin,))


def test_tfr_scm_connect_link_sync_provenance(run: Any, live_server: str, app: Any, admin_token: str,  # noqa: F811
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with GitHttpServer(tmp_path / "srv", credentials=("bot", "cli-token")) as server:
        repo = server.create_repo("net")
        sha = repo.commit({"main.tf": "# cli\n"})
        repo.tag("v0.3.0")
        common = ["--url", live_server, "--token", admin_token]

        missing = run("scm", "connect", "gitc", "--provider", "git", "--username", "bot", *common)
        assert missing.exit_code == 1 and "set TFR_SCM_SECRET" in missing.output
        monkeypatch.setenv("TFR_SCM_SECRET", "cli-token")
        made = run("scm", "connect", "gitc", "--provider", "git", "--username", "bot", *common)
        assert made.exit_code == 0, made.output
        assert "cli-token" not in made.output
        conn = json.loads(made.output)["id"]

        linked = run("scm", "link", "acme/net/generic", "--connection", str(conn), "--repository",
                     server.repo_url("net"), *common)
        assert linked.exit_code == 0, linked.output
        link = json.loads(linked.output)["id"]
        tags = run("scm", "tags", str(link), *common)
        assert json.loads(tags.output) == [{"name": "v0.3.0", "commit_sha": sha, "version": "0.3.0"}]
        assert run("scm", "sync", str(link), *common).exit_code == 0
        app.extensions["tfregistry"].jobs.wait_idle()
        prov = run("scm", "provenance", "acme/net/generic/0.3.0", *common)
        assert json.loads(prov.output)["commit_sha"] == sha
        refused = run("scm", "provenance", "acme/net/generic/9.9.9", *common)
        assert refused.exit_code == 1 and "404" in refused.output


def test_tfr_scm_publish_branch_mode(run: Any, live_server: str, app: Any, admin_token: str,  # noqa: F811
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with GitHttpServer(tmp_path / "srv", credentials=("bot", "cli-token")) as server:
        repo = server.create_repo("web")
        first = repo.commit({"main.tf": "# first\n"})
        head = repo.commit({"main.tf": "# head\n"})
        common = ["--url", live_server, "--token", admin_token]
        monkeypatch.setenv("TFR_SCM_SECRET", "cli-token")
        conn = json.loads(run("scm", "connect", "gitb", "--provider", "git", "--username", "bot", *common).output)["id"]
        linked = run("scm", "link", "acme/web/generic", "--connection", str(conn), "--repository",
                     server.repo_url("web"), "--branch-mode", *common)
        assert linked.exit_code == 0, linked.output
        link = str(json.loads(linked.output)["id"])
        done = run("scm", "publish", link, "--branch", "main", "--commit", first, "--version", "0.1.0", *common)
        assert done.exit_code == 0, done.output
        assert json.loads(done.output)["commit_sha"] == first
        done = run("scm", "publish", link, "--branch", "main", "--version", "0.2.0", *common)
        assert json.loads(done.output)["commit_sha"] == head
        again = run("scm", "publish", link, "--branch", "main", "--commit", head, "--version", "0.2.0", *common)
        assert again.exit_code == 1 and "409" in again.output and "never reused" in again.output
        prov = json.loads(run("scm", "provenance", "acme/web/generic/0.1.0", *common).output)
        assert (prov["branch"], prov["tag"], prov["commit_sha"]) == ("main", None, first)


def test_tfr_scm_link_discover_modules(run: Any, live_server: str, app: Any, admin_token: str,  # noqa: F811
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with GitHttpServer(tmp_path / "srv", credentials=("bot", "cli-token")) as server:
        repo = server.create_repo("mono")
        repo.commit({"modules/net/main.tf": "# net\n", "modules/db/main.tf": "# db\n"})
        repo.tag("net-v0.1.0")
        common = ["--url", live_server, "--token", admin_token]
        monkeypatch.setenv("TFR_SCM_SECRET", "cli-token")
        conn = json.loads(run("scm", "connect", "gitd", "--provider", "git", "--username", "bot", *common).output)["id"]
        args = ["--connection", str(conn), "--repository", server.repo_url("mono"), "--subdirectory", "modules",
                "--tag-pattern", "{name}-v{version}", "--discover-modules", *common]
        named = run("scm", "link", "acme/net/generic", *args)
        assert named.exit_code == 1 and "NAMESPACE/*/SYSTEM" in named.output
        linked = run("scm", "link", "acme/*/generic", *args)
        assert linked.exit_code == 0, linked.output
        assert json.loads(linked.output)["module"] == "acme/*/generic"
        tags = run("scm", "tags", str(json.loads(linked.output)["id"]), *common)
        assert [(t["name"], t["module"], t["version"]) for t in json.loads(tags.output)] == [
            ("net-v0.1.0", "net", "0.1.0")]
