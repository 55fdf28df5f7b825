"""An example source-control provider: bare git repositories in a local directory.

A real provider talks to a vendor's REST API; this one reads the repositories directly so
the skeleton runs anywhere ``git`` is installed.  It still shows every part of
:class:`tfregistry.interfaces.ScmProvider`: listing repositories and tags, fetching a commit's
tree with the core's :func:`~tfregistry.interfaces.fetch_git_tree`, and verifying and reading a
webhook (an ``X-Example-Signature: sha256=<hex HMAC-SHA256 of the body>`` header, a JSON body
``{"repository": ..., "ref": "refs/tags/v1.0.0", "before": <sha>, "after": <sha>}``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

from tfregistry.interfaces import (
    ScmCredentials,
    ScmError,
    ScmProvider,
    ScmRepository,
    ScmTag,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    fetch_git_tree,
    ref_update_event,
)


class DirectoryScm(ScmProvider):
    """Repositories are the ``*.git`` directories under the connection's ``base_url`` (a local path)."""

    name = "example-dir"
    label = "Local directory (example)"
    auth_methods = ("none",)
    supports_webhooks = True
    secret_headers = ("x-example-signature",)

    def _root(self, credentials: ScmCredentials) -> Path:
        if not credentials.base_url:
            raise ScmError("an example-dir connection needs base_url: a directory of bare git repositories")
        return Path(credentials.base_url)

    def _repo_path(self, credentials: ScmCredentials, repository: str) -> Path:
        path = self._root(credentials) / repository
        if "/" in repository or repository.startswith(".") or not (path / "HEAD").exists():
            raise ScmError(f"no repository {repository!r} under {self._root(credentials)}")
        return path

    def list_repositories(self, credentials: ScmCredentials) -> list[ScmRepository]:
        return [
            ScmRepository(id=p.name, name=p.name.removesuffix(".git"), clone_url=p.as_uri())
            for p in sorted(self._root(credentials).glob("*.git")) if (p / "HEAD").exists()
        ]

    def list_tags(self, credentials: ScmCredentials, repository: str) -> list[ScmTag]:
        out = subprocess.run(
            ["git", "--git-dir", str(self._repo_path(credentials, repository)), "for-each-ref",
             "--format=%(refname:strip=2) %(objectname) %(*objectname)", "refs/tags"],
            capture_output=True, text=True, check=True,
        ).stdout
        tags = []
        for line in out.splitlines():
            name, sha, *peeled = line.split(" ")
            tags.append(ScmTag(name, peeled[0] if peeled and peeled[0] else sha))  # annotated: the commit
        return tags

    def clone_url(self, credentials: ScmCredentials, repository: str) -> str:
        return self._repo_path(credentials, repository).as_uri()

    def fetch_tree(self, credentials: ScmCredentials, repository: str, commit_sha: str, dest: Path) -> None:
        # file:// URLs are refused by default (a link must not read the server's disk); this
        # provider exists to read local repositories, so it allows them.
        fetch_git_tree(self.clone_url(credentials, repository), commit_sha, dest, allowed_protocols="file")

    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        sent = request.header("X-Example-Signature")
        if not sent:
            raise WebhookRejected("X-Example-Signature header missing")
        expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sent, expected):
            raise WebhookRejected("X-Example-Signature does not match the body")

    def delivery_id(self, request: WebhookRequest) -> str | None:
        return request.header("X-Example-Delivery")

    def parse_webhook(self, request: WebhookRequest) -> list[WebhookEvent]:
        payload = json.loads(request.body)
        event = ref_update_event(payload["repository"], payload["ref"], payload.get("before"), payload.get("after"),
                                 delivery_id=self.delivery_id(request))
        return [event] if event is not None else []
