"""tfregistry-scm-azuredevops against the fake Azure DevOps API (tfregistry_scm_azuredevops.testing) over real git."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tfregistry_scm_azuredevops import AzureDevOpsScm, plugin
from tfregistry_scm_azuredevops.testing import FakeAzureDevOps

from tfregistry.interfaces import ZERO_SHA, ScmCredentials, ScmError, ScmTag, WebhookRejected, WebhookRequest
from tfregistry.testing.plugin import BackendCollector, plugin_manager


@pytest.fixture
def az(tmp_path: Path) -> Any:
    with FakeAzureDevOps(tmp_path, token="pat-test") as fake:
        yield fake


def _creds(az: FakeAzureDevOps, token: str = "pat-test") -> ScmCredentials:
    return ScmCredentials("token", base_url=az.url, token=token)


def test_plugin_registers_the_azuredevops_provider() -> None:
    register = BackendCollector()
    plugin_manager(plugin).hook.tfr_register_scm_providers(register=register)
    factory, _ = register.added["azuredevops"]
    assert isinstance(factory({}), AzureDevOpsScm)


def test_repositories_tags_tree_and_hooks(az: FakeAzureDevOps, tmp_path: Path) -> None:
    repo = az.create_repo("net")
    first = repo.commit({"main.tf": "# one\n"})
    repo.tag("v1.0.0")  # annotated: peeledObjectId
    repo.tag("v1.0.1", annotated=False)  # lightweight: objectId
    az.create_repo("other")
    scm = AzureDevOpsScm()
    creds = _creds(az)
    assert scm.check_credentials(creds) == ""
    with pytest.raises(ScmError, match="base_url"):
        scm.check_credentials(ScmCredentials("token", token="pat-test"))
    assert [r.id for r in scm.list_repositories(creds)] == ["Infra/net", "Infra/other"]
    got = scm.get_repository(creds, "Infra/net")
    assert (got.web_url, got.default_branch) == ("https://dev.azure.example/acme/Infra/_git/net", "main")
    assert scm.list_tags(creds, "Infra/net") == [ScmTag("v1.0.0", first), ScmTag("v1.0.1", first)]
    assert scm.resolve_tag(creds, "Infra/net", "v1.0.0") == first
    scm.fetch_tree(creds, "Infra/net", first, tmp_path / "tree")  # git over https, Basic :PAT
    assert (tmp_path / "tree" / "main.tf").read_text() == "# one\n"
    hook = scm.create_webhook(creds, "Infra/net", "https://reg.example/api/v1/scm/links/1/webhook", "whsec")
    sub = az.hooks[hook]
    assert (sub["eventType"], sub["consumerInputs"]["basicAuthPassword"]) == ("git.push", "whsec")
    assert sub["consumerInputs"]["httpHeaders"] == "X-Tfr-Webhook-Secret: whsec"
    scm.delete_webhook(creds, "Infra/net", hook)
    scm.delete_webhook(creds, "Infra/net", hook)  # already gone: not an error
    assert az.hooks == {}
    with pytest.raises(ScmError, match="404"):
        scm.list_tags(creds, "Infra/missing")
    with pytest.raises(ScmError, match="project/repository"):
        scm.list_tags(creds, "net")
    with pytest.raises(ScmError, match="401") as refused:
        scm.list_tags(_creds(az, token="pat-wrong"), "Infra/net")
    assert "pat-wrong" not in str(refused.value)


def test_many_tags_are_continued(az: FakeAzureDevOps) -> None:
    repo = az.create_repo("many")
    repo.commit({"main.tf": "#\n"})
    for i in range(105):
        repo.git("tag", f"v0.0.{i}")
    repo.git("push", "-q", "--tags", "origin")
    assert len(AzureDevOpsScm().list_tags(_creds(az), "Infra/many")) == 105
    assert sum(1 for call in az.calls if call[1].endswith("/refs")) == 2


def _request(headers: dict[str, str], body: bytes) -> WebhookRequest:
    return WebhookRequest({k.lower(): v for k, v in headers.items()}, body, datetime.now(UTC))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_authentication_matrix_and_events(az: FakeAzureDevOps) -> None:
    scm = AzureDevOpsScm()
    sub = {"id": "sub-1", "consumerInputs": {"basicAuthUsername": "tfregistry", "basicAuthPassword": "whsec",
                                             "httpHeaders": "X-Tfr-Webhook-Secret: whsec"}}
    headers, body = az.push_delivery(sub, "net", "v1.0.0", ZERO_SHA, "a" * 40, notification_id=7)
    scm.verify_webhook(_request(headers, body), "whsec")
    assert scm.delivery_id(_request(headers, body)) == "sub-1/7"
    basic_only = {k: v for k, v in headers.items() if k != "X-Tfr-Webhook-Secret"}
    header_only = {k: v for k, v in headers.items() if k != "Authorization"}
    scm.verify_webhook(_request(basic_only, body), "whsec")
    scm.verify_webhook(_request(header_only, body), "whsec")
    for h, reason in (
        ({k: v for k, v in headers.items() if k not in ("Authorization", "X-Tfr-Webhook-Secret")}, "no credentials"),
        (basic_only | {"Authorization": _basic("tfregistry", "nope")}, "Basic auth password does not match"),
        (header_only | {"X-Tfr-Webhook-Secret": "nope"}, "X-Tfr-Webhook-Secret does not match"),
        (headers | {"Authorization": "Bearer whsec"}, "not HTTP Basic|does not match"),
    ):
        with pytest.raises(WebhookRejected, match=reason) as rejected:
            scm.verify_webhook(_request(h, body), "whsec")
        assert "whsec" not in str(rejected.value)
    [created] = scm.parse_webhook(_request(headers, body))
    assert (created.kind, created.repository, created.tag, created.sha, created.delivery_id) == (
        "tag_created", "Infra/net", "v1.0.0", "a" * 40, "sub-1/7")
    moved_h, moved_b = az.push_delivery(sub, "net", "v1.0.0", "a" * 40, "b" * 40)
    [moved] = scm.parse_webhook(_request(moved_h, moved_b))
    assert (moved.kind, moved.before_sha, moved.sha) == ("tag_moved", "a" * 40, "b" * 40)
    gone_h, gone_b = az.push_delivery(sub, "net", "v1.0.0", "a" * 40, ZERO_SHA)
    assert scm.parse_webhook(_request(gone_h, gone_b))[0].kind == "tag_deleted"
    assert scm.parse_webhook(_request(headers, b'{"eventType": "git.pullrequest.created"}')) == []
