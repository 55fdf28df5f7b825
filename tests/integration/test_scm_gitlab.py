"""GitLab end to end in the application, against the fake GitLab API over real git repositories."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
import tfregistry_scm_gitlab.plugin as gitlab_plugin
from tfregistry_scm_gitlab.provider import signing_token
from tfregistry_scm_gitlab.testing import FakeGitLab

from tests.integration.test_scm_publish import Site
from tfregistry.interfaces import ZERO_SHA


@pytest.fixture
def gl(tmp_path: Path) -> Any:
    with FakeGitLab(tmp_path, token="glpat-test") as fake:
        yield fake


@pytest.fixture
def site(app_factory: Any) -> Site:
    return Site(app_factory({"scm.reconcile_interval": 0, "public_url": "https://registry.example"},
                            plugins=(gitlab_plugin,)))


def test_connect_link_webhook_publish_and_moved_tag(site: Site, gl: FakeGitLab):
    repo = gl.create_repo("terraform-net")
    first = repo.commit({"main.tf": 'output "v" { value = 1 }\n'})
    bad = site.call("POST", "/api/v1/scm/connections", json={"name": "gl-bad", "provider": "gitlab",
                                                             "base_url": gl.api_url, "token": "glpat-wrong"})
    assert bad.status_code == 502 and "glpat-wrong" not in bad.get_data(as_text=True)
    conn = site.connection(provider="gitlab", base_url=gl.api_url, token="glpat-test")
    repos = site.call("GET", f"/api/v1/scm/connections/{conn}/repositories", 200).get_json()
    assert [r["id"] for r in repos] == ["acme/terraform-net"]

    link = site.link(conn, "acme/terraform-net", "net")
    [hook] = gl.hooks.values()
    secret = link["webhook_secret"]
    assert hook["url"] == f"https://registry.example/api/v1/scm/links/{link['id']}/webhook"
    assert (hook["token"], hook["signing_token"], hook["tag_push_events"]) == (secret, signing_token(secret), True)
    assert link["repository_url"] == "https://gitlab.example/acme/terraform-net"

    repo.tag("v1.0.0")
    tag_object = repo.git("rev-parse", "refs/tags/v1.0.0")
    hook_url = f"/api/v1/scm/links/{link['id']}/webhook"

    def delivery(token: str | None, delivery_id: str, **kw: Any) -> tuple[dict[str, str], bytes]:
        kw.setdefault("signing_token", signing_token(secret))
        return gl.tag_push_delivery(token, "terraform-net", "v1.0.0", ZERO_SHA, tag_object, delivery=delivery_id,
                                    **kw)

    headers, body = delivery(secret, "gl-1")
    for label, (h, b) in {
        "missing": delivery(None, "gl-1"),
        "wrong token": delivery("nope", "gl-1"),
        "wrong signing key": delivery(secret, "gl-1", signing_token=signing_token("nope")),
        "tampered": (headers, body.replace(b"refs/tags/v1.0.0", b"refs/tags/v1.0.9")),
        "stale": delivery(secret, "gl-1", timestamp=int(time.time()) - 600),
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
    assert (prov["commit_sha"], prov["delivery_id"]) == (first, "gl-1")
    assert site.call("GET", "/v1/modules/acme/net/generic/1.0.0", 200).get_json()["source"] == \
        "https://gitlab.example/acme/terraform-net"
    original = hashlib.sha256(site.archive("net", "1.0.0")).hexdigest()

    moved_to = repo.commit({"main.tf": 'output "v" { value = 2 }\n'})
    repo.tag("v1.0.0", force=True)
    headers, body = gl.tag_push_delivery(secret, "terraform-net", "v1.0.0", tag_object,
                                         repo.git("rev-parse", "refs/tags/v1.0.0"), delivery="gl-2")
    r = site.client.post(hook_url, data=body, headers=headers)  # without a signing token: X-Gitlab-Token only
    assert r.status_code == 200 and "moved" in r.get_json()["outcome"]
    [violation] = site.call("GET", "/api/v1/scm/violations", 200).get_json()
    assert (violation["published_sha"], violation["current_sha"], violation["detected_by"]) == (
        first, moved_to, "webhook")
    site.registry.jobs.wait_idle()
    assert hashlib.sha256(site.archive("net", "1.0.0")).hexdigest() == original

    site.call("DELETE", f"/api/v1/scm/links/{link['id']}", 204)
    assert gl.hooks == {}
    assert site.versions("net") == ["1.0.0"]
