"""tfregistry-scm-bitbucket-dc against the fake Bitbucket Data Center API over real git."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tfregistry_scm_bitbucket_dc import BitbucketDataCenterScm, plugin
from tfregistry_scm_bitbucket_dc.testing import FakeBitbucketDC

from tfregistry.interfaces import ZERO_SHA, ScmCredentials, ScmError, ScmTag, WebhookRejected, WebhookRequest
from tfregistry.testing.plugin import BackendCollector, plugin_manager


@pytest.fixture
def bb(tmp_path: Path) -> Any:
    with FakeBitbucketDC(tmp_path, user="bot", token="BBDC-test") as fake:
        yield fake


def _creds(bb: FakeBitbucketDC, token: str = "BBDC-test", username: str | None = "bot") -> ScmCredentials:
    return ScmCredentials("token", base_url=bb.url, username=username, token=token)


def test_plugin_registers_the_bitbucket_dc_provider() -> None:
    register = BackendCollector()
    plugin_manager(plugin).hook.tfr_register_scm_providers(register=register)
    factory, _ = register.added["bitbucket-dc"]
    assert isinstance(factory({}), BitbucketDataCenterScm)


def test_repositories_tags_tree_and_hooks(bb: FakeBitbucketDC, tmp_path: Path) -> None:
    repo = bb.create_repo("net")
    first = repo.commit({"main.tf": "# one\n"})
    repo.tag("v1.0.0")
    bb.create_repo("other")
    scm = BitbucketDataCenterScm()
    creds = _creds(bb)
    assert scm.check_credentials(creds) == "bot"
    with pytest.raises(ScmError, match="username"):
        scm.check_credentials(_creds(bb, username=None))
    with pytest.raises(ScmError, match="base_url"):
        scm.check_credentials(ScmCredentials("token", username="bot", token="BBDC-test"))
    assert [r.id for r in scm.list_repositories(creds)] == ["ACME/net", "ACME/other"]
    assert scm.get_repository(creds, "ACME/net").web_url == "https://bitbucket.example/projects/ACME/repos/net/browse"
    assert scm.list_tags(creds, "ACME/net") == [ScmTag("v1.0.0", first)]  # annotated: the commit
    assert scm.resolve_tag(creds, "ACME/net", "v1.0.0") == first
    assert scm.resolve_tag(creds, "ACME/net", "v9") is None
    scm.fetch_tree(creds, "ACME/net", first, tmp_path / "tree")  # git over https, Basic bot:token
    assert (tmp_path / "tree" / "main.tf").read_text() == "# one\n"
    hook = scm.create_webhook(creds, "ACME/net", "https://reg.example/api/v1/scm/links/1/webhook", "whsec")
    created = bb.hooks[int(hook)]
    assert created["configuration"] == {"secret": "whsec"} and created["events"] == ["repo:refs_changed"]
    scm.delete_webhook(creds, "ACME/net", hook)
    scm.delete_webhook(creds, "ACME/net", hook)  # already gone: not an error
    assert bb.hooks == {}
    with pytest.raises(ScmError, match="PROJECT/slug"):
        scm.list_tags(creds, "net")
    with pytest.raises(ScmError, match="401") as refused:
        scm.list_tags(_creds(bb, token="BBDC-wrong"), "ACME/net")
    assert "BBDC-wrong" not in str(refused.value)


def test_many_tags_are_paged(bb: FakeBitbucketDC) -> None:
    repo = bb.create_repo("many")
    repo.commit({"main.tf": "#\n"})
    for i in range(105):
        repo.git("tag", f"v0.0.{i}")
    repo.git("push", "-q", "--tags", "origin")
    assert len(BitbucketDataCenterScm().list_tags(_creds(bb), "ACME/many")) == 105
    assert sum(1 for call in bb.calls if call[1].endswith("/tags")) == 2


def _request(headers: dict[str, str], body: bytes) -> WebhookRequest:
    return WebhookRequest({k.lower(): v for k, v in headers.items()}, body, datetime.now(UTC))


def test_signature_matrix_and_events(bb: FakeBitbucketDC) -> None:
    scm = BitbucketDataCenterScm()
    headers, body = bb.refs_changed_delivery("whsec", "net", "v1.0.0", ZERO_SHA, "a" * 40, delivery="r-1")
    scm.verify_webhook(_request(headers, body), "whsec")
    assert scm.delivery_id(_request(headers, body)) == "r-1"
    for h, b, reason in (
        ({k: v for k, v in headers.items() if k != "X-Hub-Signature"}, body, "missing"),
        (bb.refs_changed_delivery("other", "net", "v1.0.0", ZERO_SHA, "a" * 40)[0], body, "does not match"),
        (headers, body.replace(b"v1.0.0", b"v1.0.1"), "does not match"),  # tampered body
    ):
        with pytest.raises(WebhookRejected, match=reason):
            scm.verify_webhook(_request(h, b), "whsec")
    [created] = scm.parse_webhook(_request(headers, body))
    assert (created.kind, created.repository, created.tag, created.sha) == ("tag_created", "ACME/net", "v1.0.0",
                                                                            "a" * 40)
    moved_h, moved_b = bb.refs_changed_delivery("whsec", "net", "v1.0.0", "a" * 40, "b" * 40)
    [moved] = scm.parse_webhook(_request(moved_h, moved_b))
    assert (moved.kind, moved.before_sha, moved.sha) == ("tag_moved", "a" * 40, "b" * 40)
    gone_h, gone_b = bb.refs_changed_delivery("whsec", "net", "v1.0.0", "a" * 40, ZERO_SHA)
    assert scm.parse_webhook(_request(gone_h, gone_b))[0].kind == "tag_deleted"
    assert scm.parse_webhook(_request(headers | {"X-Event-Key": "diagnostics:ping"}, b"{}")) == []
