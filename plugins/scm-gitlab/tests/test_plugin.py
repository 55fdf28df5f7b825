"""tfregistry-scm-gitlab against the fake GitLab API (tfregistry_scm_gitlab.testing) over real git."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tfregistry_scm_gitlab import GitLabScm, plugin
from tfregistry_scm_gitlab.provider import signing_token
from tfregistry_scm_gitlab.testing import FakeGitLab

from tfregistry.interfaces import ZERO_SHA, ScmCredentials, ScmError, ScmTag, WebhookRejected, WebhookRequest
from tfregistry.testing.plugin import BackendCollector, plugin_manager


@pytest.fixture
def gl(tmp_path: Path) -> Any:
    with FakeGitLab(tmp_path, token="glpat-test") as fake:
        yield fake


def test_plugin_registers_the_gitlab_provider() -> None:
    register = BackendCollector()
    plugin_manager(plugin).hook.tfr_register_scm_providers(register=register)
    factory, _ = register.added["gitlab"]
    assert isinstance(factory({}), GitLabScm)


def test_projects_tags_tree_and_hooks(gl: FakeGitLab, tmp_path: Path) -> None:
    repo = gl.create_repo("net")
    first = repo.commit({"main.tf": "# one\n"})
    repo.tag("v1.0.0")
    gl.create_repo("other")
    scm = GitLabScm()
    creds = ScmCredentials("token", base_url=gl.api_url, token="glpat-test")
    assert scm.check_credentials(creds) == "bot"
    assert [r.id for r in scm.list_repositories(creds)] == ["acme/net", "acme/other"]
    assert scm.get_repository(creds, "acme/net").web_url == "https://gitlab.example/acme/net"
    assert scm.list_tags(creds, "acme/net") == [ScmTag("v1.0.0", first)]  # annotated: the commit
    assert scm.resolve_tag(creds, "acme/net", "v1.0.0") == first
    assert scm.resolve_tag(creds, "acme/net", "v9.9.9") is None
    scm.fetch_tree(creds, "acme/net", first, tmp_path / "tree")  # git over https, user oauth2
    assert (tmp_path / "tree" / "main.tf").read_text() == "# one\n"
    hook = scm.create_webhook(creds, "acme/net", "https://reg.example/api/v1/scm/links/1/webhook", "whsec")
    created = gl.hooks[int(hook)]
    assert (created["token"], created["signing_token"]) == ("whsec", signing_token("whsec"))
    assert created["tag_push_events"] is True and created["push_events"] is False
    scm.delete_webhook(creds, "acme/net", hook)
    scm.delete_webhook(creds, "acme/net", hook)  # already gone: not an error
    assert gl.hooks == {}
    with pytest.raises(ScmError, match="404"):
        scm.list_tags(creds, "acme/missing")
    with pytest.raises(ScmError, match="project is its path"):
        scm.list_tags(creds, "net")
    with pytest.raises(ScmError, match="401") as refused:
        scm.list_tags(ScmCredentials("token", base_url=gl.api_url, token="glpat-wrong"), "acme/net")
    assert "glpat-wrong" not in str(refused.value)


def test_many_tags_are_paginated(gl: FakeGitLab) -> None:
    repo = gl.create_repo("many")
    repo.commit({"main.tf": "#\n"})
    for i in range(105):
        repo.git("tag", f"v0.0.{i}")
    repo.git("push", "-q", "--tags", "origin")
    tags = GitLabScm().list_tags(ScmCredentials("token", base_url=gl.api_url, token="glpat-test"), "acme/many")
    assert len(tags) == 105
    assert sum(1 for call in gl.calls if call[1].endswith("/tags")) == 2


def _request(headers: dict[str, str], body: bytes, at: datetime | None = None) -> WebhookRequest:
    return WebhookRequest({k.lower(): v for k, v in headers.items()}, body, at or datetime.now(UTC))


def test_token_and_signature_matrix_and_events(gl: FakeGitLab) -> None:
    scm = GitLabScm()
    sign = signing_token("whsec")
    headers, body = gl.tag_push_delivery("whsec", "net", "v1.0.0", ZERO_SHA, "a" * 40, signing_token=sign,
                                         delivery="d-1")
    scm.verify_webhook(_request(headers, body), "whsec")
    assert scm.delivery_id(_request(headers, body)) == "d-1"
    unsigned_h, unsigned_b = gl.tag_push_delivery("whsec", "net", "v1.0.0", ZERO_SHA, "a" * 40, delivery="d-2")
    scm.verify_webhook(_request(unsigned_h, unsigned_b), "whsec")  # a hook without a signing token
    assert scm.delivery_id(_request(unsigned_h, unsigned_b)) == "d-2"  # Idempotency-Key
    stale = int(time.time()) - 301
    for h, b, at, reason in (
        ({k: v for k, v in headers.items() if k != "X-Gitlab-Token"}, body, None, "X-Gitlab-Token header missing"),
        (headers | {"X-Gitlab-Token": "other"}, body, None, "does not match the link's secret"),
        (gl.tag_push_delivery("whsec", "net", "v1.0.0", ZERO_SHA, "a" * 40, signing_token=signing_token("x"),
                              delivery="d-1")[0], body, None, "webhook-signature does not match"),
        (headers, body.replace(b"v1.0.0", b"v1.0.1"), None, "webhook-signature does not match"),  # tampered
        (gl.tag_push_delivery("whsec", "net", "v1.0.0", ZERO_SHA, "a" * 40, signing_token=sign, delivery="d-1",
                              timestamp=stale)[0], body, None, "stale"),
        (headers, body, datetime.now(UTC) + timedelta(minutes=6), "stale"),
        ({k: v for k, v in headers.items() if k != "webhook-signature"}, body, None, "must come together"),
        (headers | {"webhook-timestamp": "soon"}, body, None, "not a Unix time"),
    ):
        with pytest.raises(WebhookRejected, match=reason) as rejected:
            scm.verify_webhook(_request(h, b, at), "whsec")
        assert "whsec" not in str(rejected.value)
    [created] = scm.parse_webhook(_request(headers, body))
    assert (created.kind, created.repository, created.tag, created.sha, created.delivery_id) == (
        "tag_created", "acme/net", "v1.0.0", "a" * 40, "d-1")
    moved_h, moved_b = gl.tag_push_delivery("whsec", "net", "v1.0.0", "a" * 40, "b" * 40)
    [moved] = scm.parse_webhook(_request(moved_h, moved_b))
    assert (moved.kind, moved.before_sha, moved.sha) == ("tag_moved", "a" * 40, "b" * 40)
    gone_h, gone_b = gl.tag_push_delivery("whsec", "net", "v1.0.0", "a" * 40, ZERO_SHA)
    assert scm.parse_webhook(_request(gone_h, gone_b))[0].kind == "tag_deleted"
    assert scm.parse_webhook(_request(headers | {"X-Gitlab-Event": "Issue Hook"}, b"{}")) == []
