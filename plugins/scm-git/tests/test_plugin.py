"""tfregistry-scm-git against a real repository served by ``git http-backend`` with Basic authentication."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tfregistry_scm_git import GitScm, check_url, plugin

from tfregistry.interfaces import ScmCredentials, ScmError, ScmTag
from tfregistry.testing.git import GitHttpServer, GitSshServer
from tfregistry.testing.plugin import BackendCollector, plugin_manager


def test_plugin_registers_the_git_provider() -> None:
    register = BackendCollector()
    plugin_manager(plugin).hook.tfr_register_scm_providers(register=register)
    factory, description = register.added["git"]
    assert isinstance(factory({}), GitScm) and description


@pytest.mark.parametrize("url", ["file:///srv/x.git", "/srv/x.git", "ext::sh -c id", "https://u:pw@h/x.git",
                                 "https:///x.git"])
def test_local_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(ScmError):
        check_url(url)


def test_ssh_and_scp_like_urls_are_accepted() -> None:
    assert check_url("git@example.com:acme/net.git") == "git@example.com:acme/net.git"
    assert check_url("ssh://git@example.com/acme/net.git")


def test_tags_and_tree_over_http_with_a_token(tmp_path: Path) -> None:
    with GitHttpServer(tmp_path / "srv", credentials=("bot", "tok")) as server:
        repo = server.create_repo("net")
        first = repo.commit({"main.tf": "# one\n"})
        repo.tag("v1.0.0")  # annotated: ls-remote's peeled ^{} line gives the commit
        second = repo.commit({"main.tf": "# two\n"})
        repo.tag("v1.1.0", annotated=False)
        scm = GitScm()
        url = server.repo_url("net")
        creds = ScmCredentials("token", username="bot", token="tok")
        assert scm.list_tags(creds, url) == [ScmTag("v1.0.0", first), ScmTag("v1.1.0", second)]
        assert scm.resolve_tag(creds, url, "v1.0.0") == first
        assert scm.get_repository(creds, url).web_url == url
        scm.fetch_tree(creds, url, first, tmp_path / "tree")
        assert (tmp_path / "tree" / "main.tf").read_text() == "# one\n"
        with pytest.raises(ScmError, match="git ls-remote failed") as refused:
            scm.list_tags(ScmCredentials("token", username="bot", token="wrong"), url)
        assert "wrong" not in str(refused.value)
        with pytest.raises(ScmError):
            scm.list_tags(ScmCredentials("none"), url)


def test_tags_and_tree_over_ssh_with_a_deploy_key_and_pinned_host_key(tmp_path: Path) -> None:
    with GitSshServer(tmp_path / "srv") as server:
        repo = server.create_repo("net")
        first = repo.commit({"main.tf": "# over ssh\n"})
        repo.tag("v2.0.0")
        scm = GitScm()
        url = server.repo_url("net")
        creds = ScmCredentials("ssh_key", ssh_private_key=server.client_key, ssh_known_hosts=server.known_hosts)
        assert scm.list_tags(creds, url) == [ScmTag("v2.0.0", first)]
        scm.fetch_tree(creds, url, first, tmp_path / "tree")
        assert (tmp_path / "tree" / "main.tf").read_text() == "# over ssh\n"
        assert scm.fetch_branch_tree(creds, url, "main", None, tmp_path / "branch") == first

        # Another key (not the deploy key) is refused by the server.
        other = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        with pytest.raises(ScmError, match="git ls-remote failed"):
            scm.list_tags(ScmCredentials("ssh_key", ssh_private_key=other.read_text(),
                                         ssh_known_hosts=server.known_hosts), url)
        # A server showing a host key other than the pinned one is refused before git talks to it.
        impostor = f"[127.0.0.1]:{server.port} " + " ".join(other.with_suffix(".pub").read_text().split()[:2])
        with pytest.raises(ScmError, match="(?i)host key verification failed"):
            scm.list_tags(ScmCredentials("ssh_key", ssh_private_key=server.client_key, ssh_known_hosts=impostor), url)
        with pytest.raises(ScmError, match="host keys"):
            scm.fetch_tree(ScmCredentials("ssh_key", ssh_private_key=server.client_key), url, first,
                           tmp_path / "unpinned")
        assert not any((tmp_path / "unpinned").iterdir())
