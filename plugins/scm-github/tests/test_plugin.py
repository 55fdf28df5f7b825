"""tfregistry-scm-github against the fake GitHub API (tfregistry_scm_github.testing) over real git."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tfregistry_scm_github import GitHubScm, plugin
from tfregistry_scm_github.testing import FakeGitHub

from tfregistry.interfaces import ZERO_SHA, ScmCredentials, ScmError, ScmTag, WebhookRejected, WebhookRequest
from tfregistry.testing.plugin import BackendCollector, plugin_manager


@pytest.fixture
def gh(tmp_path: Path) -> Any:
    with FakeGitHub(tmp_path, token="ghp_test") as fake:
        yield fake


def test_plugin_registers_the_github_provider() -> None:
    register = BackendCollector()
    plugin_manager(plugin).hook.tfr_register_scm_providers(register=register)
    factory, _ = register.added["github"]
    assert isinstance(factory({}), GitHubScm)


def test_repositories_tags_tree_and_hooks(gh: FakeGitHub, tmp_path: Path) -> None:
    repo = gh.create_repo("net")
    first = repo.commit({"main.tf": "# one\n"})
    repo.tag("v1.0.0")
    gh.create_repo("other")
    scm = GitHubScm()
    creds = ScmCredentials("token", base_url=gh.api_url, token="ghp_test")
    assert scm.check_credentials(creds) == "acme"
    assert [r.id for r in scm.list_repositories(creds)] == ["acme/net", "acme/other"]
    assert scm.list_tags(creds, "acme/net") == [ScmTag("v1.0.0", first)]  # annotated: the commit
    scm.fetch_tree(creds, "acme/net", first, tmp_path / "tree")
    assert (tmp_path / "tree" / "main.tf").read_text() == "# one\n"
    hook = scm.create_webhook(creds, "acme/net", "https://reg.example/api/v1/scm/links/1/webhook", "whsec")
    assert gh.hooks[int(hook)]["secret"] == "whsec" and gh.hooks[int(hook)]["events"] == ["push"]
    scm.delete_webhook(creds, "acme/net", hook)
    scm.delete_webhook(creds, "acme/net", hook)  # already gone: not an error
    assert gh.hooks == {}
    with pytest.raises(ScmError, match="401") as refused:
        scm.list_tags(ScmCredentials("token", base_url=gh.api_url, token="ghp_wrong"), "acme/net")
    assert "ghp_wrong" not in str(refused.value)


def test_many_tags_are_paginated(gh: FakeGitHub) -> None:
    repo = gh.create_repo("many")
    repo.commit({"main.tf": "#\n"})
    for i in range(105):
        repo.git("tag", f"v0.0.{i}")
    repo.git("push", "-q", "--tags", "origin")
    tags = GitHubScm().list_tags(ScmCredentials("token", base_url=gh.api_url, token="ghp_test"), "acme/many")
    assert len(tags) == 105
    assert sum(1 for call in gh.calls if call[1].endswith("/tags")) == 2


def _request(headers: dict[str, str], body: bytes) -> WebhookRequest:
    return WebhookRequest({k.lower(): v for k, v in headers.items()}, body, datetime.now(UTC))


def test_signature_matrix_and_events(gh: FakeGitHub) -> None:
    scm = GitHubScm()
    headers, body = gh.push_delivery("whsec", "net", "v1.0.0", ZERO_SHA, "a" * 40, delivery="d-1")
    scm.verify_webhook(_request(headers, body), "whsec")
    assert scm.delivery_id(_request(headers, body)) == "d-1"
    for h, b, reason in (
        ({k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}, body, "missing"),
        (gh.push_delivery("other", "net", "v1.0.0", ZERO_SHA, "a" * 40, delivery="d-1")[0], body, "does not match"),
        (headers, body.replace(b"v1.0.0", b"v1.0.1"), "does not match"),  # tampered body
    ):
        with pytest.raises(WebhookRejected, match=reason):
            scm.verify_webhook(_request(h, b), "whsec")
    [created] = scm.parse_webhook(_request(headers, body))
    assert (created.kind, created.repository, created.tag, created.sha) == ("tag_created", "acme/net", "v1.0.0",
                                                                            "a" * 40)
    moved_h, moved_b = gh.push_delivery("whsec", "net", "v1.0.0", "a" * 40, "b" * 40)
    assert scm.parse_webhook(_request(moved_h, moved_b))[0].kind == "tag_moved"
    gone_h, gone_b = gh.push_delivery("whsec", "net", "v1.0.0", "a" * 40, ZERO_SHA)
    assert scm.parse_webhook(_request(gone_h, gone_b))[0].kind == "tag_deleted"
    assert scm.parse_webhook(_request(headers | {"X-GitHub-Event": "ping"}, b"{}")) == []
