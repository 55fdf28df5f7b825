"""GitHub end to end in the application, against the fake GitHub API over real git repositories."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import tfregistry_scm_github.plugin as github_plugin
from tfregistry_scm_github.testing import FakeGitHub

from tests.integration.test_scm_publish import Site
from tfregistry.interfaces import ZERO_SHA


@pytest.fixture
def gh(tmp_path: Path) -> Any:
    with FakeGitHub(tmp_path, token="ghp_test") as fake:
        yield fake


@pytest.fixture
def site(app_factory: Any) -> Site:
    return Site(app_factory({"scm.reconcile_interval": 0, "public_url": "https://registry.example"},
                            plugins=(github_plugin,)))


def test_connect_link_webhook_publish_and_moved_tag(site: Site, gh: FakeGitHub):
    repo = gh.create_repo("terraform-net")
    first = repo.commit({"main.tf": 'output "v" { value = 1 }\n'})
    bad = site.call("POST", "/api/v1/scm/connections", json={"name": "gh-bad", "provider": "github",
                                                             "base_url": gh.api_url, "token": "ghp_wrong"})
    assert bad.status_code == 502 and "ghp_wrong" not in bad.get_data(as_text=True)
    conn = site.connection(provider="github", base_url=gh.api_url, token="ghp_test")
    repos = site.call("GET", f"/api/v1/scm/connections/{conn}/repositories", 200).get_json()
    assert [r["id"] for r in repos] == ["acme/terraform-net"]

    link = site.link(conn, "acme/terraform-net", "net")
    [hook] = gh.hooks.values()
    assert hook["url"] == f"https://registry.example/api/v1/scm/links/{link['id']}/webhook"
    assert hook["secret"] == link["webhook_secret"] and link["hook_id"]
    assert link["repository_url"] == "https://github.example/acme/terraform-net"

    repo.tag("v1.0.0")  # annotated: the delivery's "after" is the tag object, the core resolves the commit
    tag_object = repo.git("rev-parse", "refs/tags/v1.0.0")
    hook_url = f"/api/v1/scm/links/{link['id']}/webhook"
    headers, body = gh.push_delivery(link["webhook_secret"], "terraform-net", "v1.0.0", ZERO_SHA, tag_object,
                                     delivery="gh-1")
    for label, (h, b) in {
        "missing": ({k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}, body),
        "wrong": (gh.push_delivery("nope", "terraform-net", "v1.0.0", ZERO_SHA, tag_object, "gh-1")[0], body),
        "tampered": (headers, body.replace(b"refs/tags/v1.0.0", b"refs/tags/v1.0.9")),
    }.items():
        assert site.client.post(hook_url, data=b, headers=h).status_code == 401, label
    assert site.registry.jobs.jobs == {}

    assert site.client.post(hook_url, data=body, headers=headers).status_code == 202
    site.registry.jobs.wait_idle()
    assert site.client.post(hook_url, data=body, headers=headers).status_code == 200  # duplicate
    site.registry.jobs.wait_idle()
    assert site.versions("net") == ["1.0.0"]
    assert site.files("net", "1.0.0") == {"main.tf": b'output "v" { value = 1 }\n'}
    prov = site.call("GET", "/api/v1/scm/provenance/acme/net/generic/1.0.0", 200).get_json()
    assert (prov["commit_sha"], prov["delivery_id"]) == (first, "gh-1")
    assert site.call("GET", "/v1/modules/acme/net/generic/1.0.0", 200).get_json()["source"] == \
        "https://github.example/acme/terraform-net"
    original = hashlib.sha256(site.archive("net", "1.0.0")).hexdigest()

    moved_to = repo.commit({"main.tf": 'output "v" { value = 2 }\n'})
    repo.tag("v1.0.0", force=True)
    headers, body = gh.push_delivery(link["webhook_secret"], "terraform-net", "v1.0.0", tag_object,
                                     repo.git("rev-parse", "refs/tags/v1.0.0"), delivery="gh-2")
    r = site.client.post(hook_url, data=body, headers=headers)
    assert r.status_code == 200 and "moved" in r.get_json()["outcome"]
    [violation] = site.call("GET", "/api/v1/scm/violations", 200).get_json()
    assert (violation["published_sha"], violation["current_sha"], violation["detected_by"]) == (
        first, moved_to, "webhook")
    site.registry.jobs.wait_idle()
    assert hashlib.sha256(site.archive("net", "1.0.0")).hexdigest() == original

    unlinked = gh.create_repo("elsewhere")
    sha = unlinked.commit({"main.tf": "#\n"})
    unlinked.tag("v3.0.0", annotated=False)
    h, b = gh.push_delivery(link["webhook_secret"], "elsewhere", "v3.0.0", ZERO_SHA, sha, delivery="gh-3")
    assert site.client.post(hook_url, data=b, headers=h).get_json()["outcome"].endswith("ignored")
    nomatch_h, nomatch_b = gh.push_delivery(link["webhook_secret"], "terraform-net", "release-7", ZERO_SHA, sha,
                                            delivery="gh-4")
    assert "not a matching tag" in site.client.post(hook_url, data=nomatch_b, headers=nomatch_h).get_json()["outcome"]

    site.call("DELETE", f"/api/v1/scm/links/{link['id']}", 204)
    assert gh.hooks == {}
    assert site.versions("net") == ["1.0.0"]  # published versions stay
