"""The ``git`` SCM provider: a repository is its URL; tags come from ``git ls-remote``.

There is no vendor API, so there are no webhooks and no repository list: the registry finds new
and moved tags by polling (the reconcile job, every ``scm.reconcile_interval``, and "sync now").
"""

from __future__ import annotations

import re
import shutil
from urllib.parse import urlsplit

from tfregistry.interfaces import (
    ScmCredentials,
    ScmError,
    ScmProvider,
    ScmRepository,
    ScmTag,
    git_environment,
    run_git,
)

#: ``user@host:path`` (scp-like ssh syntax).
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/\\][^\s]*$")
SCHEMES = ("https", "http", "ssh", "git")


def check_url(url: str) -> str:
    """``url`` if it is a remote git URL (https, http, ssh, git or ``user@host:path``) without a
    password in it; local paths and ``file://`` are refused (a link must not read the server's disk)."""
    if _SCP_LIKE.match(url):
        return url
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname or any(c.isspace() for c in url):
        raise ScmError(f"{url!r} is not a remote git URL (https://, ssh://, git:// or user@host:path)")
    if parts.password:
        raise ScmError("put the token in the connection, not in the repository URL")
    return url


class GitScm(ScmProvider):
    """Any git repository reachable over https (token: HTTP Basic), ssh (deploy key) or git://."""

    name = "git"
    label = "Git"
    auth_methods = ("none", "token", "ssh_key")
    supports_webhooks = False

    def _ls_remote(self, credentials: ScmCredentials, url: str, *args: str) -> str:
        headers = self.git_http_headers(credentials) if credentials.method == "token" else {}
        with git_environment(http_headers=headers, **credentials.git_ssh()) as env:
            return run_git(env, "ls-remote", *args, "--", check_url(url), timeout=120)

    def get_repository(self, credentials: ScmCredentials, repository: str) -> ScmRepository:
        self._ls_remote(credentials, repository, "--heads")  # reachable with these credentials?
        web_url = repository if repository.startswith(("https://", "http://")) else None
        return ScmRepository(id=repository, name=repository, clone_url=repository, web_url=web_url)

    def list_tags(self, credentials: ScmCredentials, repository: str) -> list[ScmTag]:
        out = self._ls_remote(credentials, repository, "--tags")
        direct: dict[str, str] = {}
        peeled: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            name = ref.removeprefix("refs/tags/")
            if name.endswith("^{}"):
                peeled[name[:-3]] = sha  # an annotated tag's commit
            else:
                direct[name] = sha
        return [ScmTag(name, peeled.get(name, sha)) for name, sha in sorted(direct.items())]

    def clone_url(self, credentials: ScmCredentials, repository: str) -> str:
        return check_url(repository)

    def check(self) -> list[str]:
        return [] if shutil.which("git") else ["the git command is not installed"]
