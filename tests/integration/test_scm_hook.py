"""The SCM hook family: ``tfr_register_scm_providers`` and the core's git tree fetcher."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tfregistry import StartupError, hookimpl
from tfregistry.interfaces import (
    ScmCredentials,
    ScmError,
    ScmNotSupported,
    ScmProvider,
    ScmTag,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    fetch_git_tree,
)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd),
                               "PATH": "/usr/bin:/bin"}).stdout.strip()


class MinimalScm(ScmProvider):
    """Only the two abstract methods: everything else falls back to the documented defaults."""

    name = "minimal"

    def list_tags(self, credentials: ScmCredentials, repository: str) -> list[ScmTag]:
        return [ScmTag("v1.0.0", "a" * 40)]

    def clone_url(self, credentials: ScmCredentials, repository: str) -> str:
        return repository


class MinimalPlugin:
    @hookimpl
    def tfr_register_scm_providers(self, register: Any) -> None:
        register.add("minimal", lambda settings: MinimalScm(), description="test provider")


def test_hook_tfr_register_scm_providers(app_factory: Any):
    registry = app_factory(plugins=(MinimalPlugin(),)).extensions["tfregistry"]
    provider = registry.scm_providers["minimal"]
    assert isinstance(provider, MinimalScm)
    creds = ScmCredentials("token", token="s3cret", username="bot")
    assert "s3cret" not in repr(creds)
    assert provider.resolve_tag(creds, "r", "v1.0.0") == "a" * 40
    assert provider.resolve_tag(creds, "r", "v2.0.0") is None
    assert provider.git_http_headers(creds) == {"Authorization": "Basic Ym90OnMzY3JldA=="}
    assert provider.git_http_headers(ScmCredentials("none")) == {}
    with pytest.raises(ScmNotSupported):
        provider.list_repositories(creds)
    with pytest.raises(ScmNotSupported):
        provider.create_webhook(creds, "r", "https://reg/hook", "secret")
    request = WebhookRequest({}, b"{}", datetime.now(UTC))
    with pytest.raises(WebhookRejected):  # a provider that does not verify accepts nothing
        provider.verify_webhook(request, "secret")
    assert provider.parse_webhook(request) == [] and provider.delivery_id(request) is None
    with pytest.raises(StartupError, match="scm backend 'minimal' is offered twice"):
        app_factory(plugins=(MinimalPlugin(), type("Again", (MinimalPlugin,), {})()))


def test_webhook_event_kinds_are_checked():
    assert WebhookEvent("tag_created", repository="r", tag="v1", sha="b" * 40).kind == "tag_created"
    with pytest.raises(ValueError, match="kind must be one of"):
        WebhookEvent("tag_renamed", repository="r")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A bare repository with two commits; ``v1.0.0`` on the first, a symlink in the second."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "main.tf").write_text('variable "x" {}\n')
    (work / "sub").mkdir()
    (work / "sub" / "a.tf").write_text("# a\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "one")
    first = git(work, "rev-parse", "HEAD")
    git(work, "tag", "-a", "v1.0.0", "-m", "release")
    (work / "main.tf").write_text('variable "y" {}\n')
    (work / "link").symlink_to("/etc/passwd")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "two")
    second = git(work, "rev-parse", "HEAD")
    bare = tmp_path / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare, first, second


def test_fetch_git_tree_checks_out_exactly_the_commit(repo: tuple[Path, str, str], tmp_path: Path):
    bare, first, second = repo
    one = tmp_path / "one"
    fetch_git_tree(bare.as_uri(), first, one, allowed_protocols="file")
    assert sorted(str(p.relative_to(one)) for p in one.rglob("*")) == ["main.tf", "sub", "sub/a.tf"]
    assert (one / "main.tf").read_text() == 'variable "x" {}\n'
    two = tmp_path / "two"
    fetch_git_tree(bare.as_uri(), second, two, allowed_protocols="file")
    assert (two / "main.tf").read_text() == 'variable "y" {}\n'
    assert (two / "link").is_symlink() and str((two / "link").readlink()) == "/etc/passwd"  # kept for the packer


def test_fetch_git_tree_refuses_what_it_cannot_pin(repo: tuple[Path, str, str], tmp_path: Path):
    bare, first, _ = repo
    with pytest.raises(ScmError, match="not a full commit SHA"):
        fetch_git_tree(bare.as_uri(), "v1.0.0", tmp_path / "a", allowed_protocols="file")
    with pytest.raises(ScmError, match=f"commit {'c' * 40} is not in"):
        fetch_git_tree(bare.as_uri(), "c" * 40, tmp_path / "b", allowed_protocols="file")
    with pytest.raises(ScmError, match="git clone failed"):  # file:// is refused unless allowed
        fetch_git_tree(bare.as_uri(), first, tmp_path / "c")
    with pytest.raises(ScmError, match="git clone failed") as err:
        fetch_git_tree("http://user:hunter2@127.0.0.1:9/x.git", first, tmp_path / "d")
    assert "hunter2" not in str(err.value)
