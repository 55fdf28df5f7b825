"""SCM publishing from GitLab, Azure DevOps and Bitbucket Data Center end to end: a real ``tfr serve`` (the
vendor plugins loaded from their entry points), each vendor's fake REST API over a real repository served by
``git http-backend``, a signed (or token-authenticated) tag webhook, and the real Terraform CLI installing the
published version."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RegistryServer, Terraform, unique
from tests.e2e.test_terraform_modules import apply_outputs, assert_ok, module_config
from tests.e2e.test_terraform_scm import SYSTEM, _api
from tfregistry.interfaces import ZERO_SHA

pytestmark = pytest.mark.e2e


def _gitlab(tmp_path: Path) -> Any:
    from tfregistry_scm_gitlab.provider import signing_token
    from tfregistry_scm_gitlab.testing import FakeGitLab

    fake = FakeGitLab(tmp_path, token="glpat-e2e")

    def deliver(secret: str, repo: str, tag: str, sha: str) -> tuple[dict[str, str], bytes]:
        return fake.tag_push_delivery(secret, repo, tag, ZERO_SHA, sha, signing_token=signing_token(secret))

    def forge(headers: dict[str, str]) -> dict[str, str]:
        return headers | {"X-Gitlab-Token": "forged"}

    return fake, {"provider": "gitlab", "base_url": fake.api_url, "token": "glpat-e2e"}, "acme/{repo}", deliver, forge


def _bitbucket(tmp_path: Path) -> Any:
    from tfregistry_scm_bitbucket_dc.testing import FakeBitbucketDC

    fake = FakeBitbucketDC(tmp_path, user="bot", token="BBDC-e2e")

    def deliver(secret: str, repo: str, tag: str, sha: str) -> tuple[dict[str, str], bytes]:
        return fake.refs_changed_delivery(secret, repo, tag, ZERO_SHA, sha)

    def forge(headers: dict[str, str]) -> dict[str, str]:
        return headers | {"X-Hub-Signature": "sha256=" + "0" * 64}

    return (fake, {"provider": "bitbucket-dc", "base_url": fake.url, "username": "bot", "token": "BBDC-e2e"},
            "ACME/{repo}", deliver, forge)


def _azure(tmp_path: Path) -> Any:
    from tfregistry_scm_azuredevops.testing import FakeAzureDevOps

    fake = FakeAzureDevOps(tmp_path, token="pat-e2e")

    def deliver(secret: str, repo: str, tag: str, sha: str) -> tuple[dict[str, str], bytes]:
        [subscription] = fake.hooks.values()
        return fake.push_delivery(subscription, repo, tag, ZERO_SHA, sha)

    def forge(headers: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k not in ("Authorization", "X-Tfr-Webhook-Secret")}

    return fake, {"provider": "azuredevops", "base_url": fake.url, "token": "pat-e2e"}, "Infra/{repo}", deliver, forge


VENDORS: dict[str, Callable[[Path], Any]] = {"gitlab": _gitlab, "bitbucket-dc": _bitbucket, "azuredevops": _azure}


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_terraform_installs_the_version_a_vendor_webhook_published(
        vendor: str, server: RegistryServer, terraform: Terraform, tmp_path: Path) -> None:
    ns = unique(vendor[:2])
    fake, connection, repository, deliver, forge = VENDORS[vendor](tmp_path / vendor)
    with fake:
        repo = fake.create_repo("terraform-hello")
        sha = repo.commit({"version.tf": f'output "version" {{\n  value = "from {vendor}"\n}}\n'})
        conn = _api(server, "POST", "/connections", {"name": unique(vendor[:2]), **connection}, 201)
        link = _api(server, "POST", "/links", {"connection_id": conn["id"],
                                               "repository": repository.format(repo="terraform-hello"),
                                               "namespace": ns, "name": "hello", "system": SYSTEM}, 201)
        [hook] = fake.hooks.values()
        assert f"{server.url}/api/v1/scm/links/{link['id']}/webhook" in str(hook)
        repo.tag("v2.0.0")
        headers, body = deliver(link["webhook_secret"], "terraform-hello", "v2.0.0",
                                repo.git("rev-parse", "refs/tags/v2.0.0"))
        path = f"/api/v1/scm/links/{link['id']}/webhook"
        assert server.request("POST", path, body=body, headers=forge(headers)).status == 401
        accepted = server.request("POST", path, body=body, headers=headers)
        assert accepted.status == 202, accepted.body
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = server.get(f"/v1/modules/{ns}/hello/{SYSTEM}/2.0.0", token=server.admin_token)
            if r.status == 200:
                break
            time.sleep(0.5)
        assert r.status == 200, server.output()
        assert _api(server, "GET", f"/provenance/{ns}/hello/{SYSTEM}/2.0.0")["commit_sha"] == sha

    token = server.create_token("read", namespace=ns)  # the vendor is gone: the registry serves its copy
    work = terraform.workdir(module_config(f"{server.host}/{ns}/hello/{SYSTEM}", "2.0.0",
                                           {"module_version": "version"}))
    assert_ok(terraform.init(work, token=token))
    applied = terraform.apply(work)
    assert_ok(applied)
    assert apply_outputs(applied) == {"module_version": f"from {vendor}"}
