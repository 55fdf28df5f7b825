"""SCM publishing end to end: a real ``tfr serve`` (with tfregistry-scm-git loaded from its entry point),
a real repository served by ``git http-backend``, and the real Terraform CLI installing the version."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import RegistryServer, Terraform, unique
from tests.e2e.test_terraform_modules import apply_outputs, assert_ok, installed, module_config
from tfregistry.testing.git import GitHttpServer

pytestmark = pytest.mark.e2e
SYSTEM = "generic"


def _api(server: RegistryServer, method: str, path: str, body: dict | None = None, expect: int = 200) -> dict:
    r = server.request(method, "/api/v1/scm" + path, token=server.admin_token,
                       body=json.dumps(body).encode() if body is not None else None,
                       headers={"Content-Type": "application/json"})
    assert r.status == expect, (r.status, r.body[:500])
    return r.json() if r.body else {}


def test_terraform_installs_the_version_published_from_a_tag(server: RegistryServer, terraform: Terraform,
                                                             tmp_path: Path) -> None:
    ns = unique("scm")
    with GitHttpServer(tmp_path / "git", credentials=("bot", "e2e-token")) as git:
        repo = git.create_repo("mono")
        sha = repo.commit({
            "modules/hello/version.tf": 'output "version" {\n  value = "from git"\n}\n',
            "modules/hello/notes.secret": "not shipped\n",
            "modules/hello/.terraformignore": "*.secret\n",
            "other/main.tf": "# another module\n",
        })
        repo.tag("hello-v1.4.0")
        assert {p["name"] for p in _api(server, "GET", "/providers")} >= {"git", "github"}
        conn = _api(server, "POST", "/connections", {"name": unique("c"), "provider": "git", "auth_method": "token",
                                                     "username": "bot", "token": "e2e-token"}, 201)
        link = _api(server, "POST", "/links", {
            "connection_id": conn["id"], "repository": git.repo_url("mono"), "namespace": ns, "name": "hello",
            "system": SYSTEM, "subdirectory": "modules/hello", "tag_pattern": "{name}-v{version}"}, 201)
        _api(server, "POST", f"/links/{link['id']}/sync", {}, 202)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = server.get(f"/v1/modules/{ns}/hello/{SYSTEM}/1.4.0", token=server.admin_token)
            if r.status == 200:
                break
            time.sleep(0.5)
        assert r.status == 200, server.output()
        assert r.json()["source"] == git.repo_url("mono")
        assert _api(server, "GET", f"/provenance/{ns}/hello/{SYSTEM}/1.4.0")["commit_sha"] == sha

    token = server.create_token("read", namespace=ns)  # the git server is gone: the registry serves its copy
    source = f"{server.host}/{ns}/hello/{SYSTEM}"
    work = terraform.workdir(module_config(source, "1.4.0", {"module_version": "version"}))
    result = terraform.init(work, token=token)
    assert_ok(result)
    assert installed(work)["m"]["Version"] == "1.4.0"
    files = sorted(p.name for p in (work / ".terraform" / "modules" / "m").iterdir())
    assert files == [".terraformignore", "version.tf"]  # the subdirectory only, .terraformignore honoured
    applied = terraform.apply(work)
    assert_ok(applied)
    assert apply_outputs(applied) == {"module_version": "from git"}


def test_terraform_installs_the_version_a_signed_github_webhook_published(
        server: RegistryServer, terraform: Terraform, tmp_path: Path) -> None:
    from tfregistry_scm_github.testing import FakeGitHub

    from tfregistry.interfaces import ZERO_SHA

    ns = unique("gh")
    with FakeGitHub(tmp_path / "gh", token="ghp_e2e") as gh:
        repo = gh.create_repo("terraform-hello")
        sha = repo.commit({"version.tf": 'output "version" {\n  value = "from github"\n}\n'})
        conn = _api(server, "POST", "/connections", {"name": unique("gh"), "provider": "github",
                                                     "base_url": gh.api_url, "token": "ghp_e2e"}, 201)
        link = _api(server, "POST", "/links", {"connection_id": conn["id"], "repository": "acme/terraform-hello",
                                               "namespace": ns, "name": "hello", "system": SYSTEM}, 201)
        [hook] = gh.hooks.values()
        assert hook["url"] == f"{server.url}/api/v1/scm/links/{link['id']}/webhook"
        repo.tag("v2.0.0")
        headers, body = gh.push_delivery(link["webhook_secret"], "terraform-hello", "v2.0.0", ZERO_SHA,
                                         repo.git("rev-parse", "refs/tags/v2.0.0"))
        path = f"/api/v1/scm/links/{link['id']}/webhook"
        forged = server.request("POST", path, body=body, headers={**headers, "X-Hub-Signature-256": "sha256=00"})
        assert forged.status == 401
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

    token = server.create_token("read", namespace=ns)
    work = terraform.workdir(module_config(f"{server.host}/{ns}/hello/{SYSTEM}", "2.0.0",
                                           {"module_version": "version"}))
    assert_ok(terraform.init(work, token=token))
    applied = terraform.apply(work)
    assert_ok(applied)
    assert apply_outputs(applied) == {"module_version": "from github"}
