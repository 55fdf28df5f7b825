"""GitLab, Bitbucket Data Center and Azure DevOps end to end in the application, each against its vendor's
fake REST API over real git repositories: connect, list, link (the hook is created), the authentication
matrix of webhook deliveries (nothing queued on a 401), publish once for a repeated delivery, a moved tag
detected at webhook time, unlink."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tfregistry_scm_azuredevops.plugin as azure_plugin
import tfregistry_scm_bitbucket_dc.plugin as bitbucket_plugin
import tfregistry_scm_gitlab.plugin as gitlab_plugin
from tfregistry_scm_azuredevops.testing import FakeAzureDevOps
from tfregistry_scm_bitbucket_dc.testing import FakeBitbucketDC
from tfregistry_scm_gitlab.provider import signing_token
from tfregistry_scm_gitlab.testing import FakeGitLab

from tests.integration.test_scm_publish import Site
from tfregistry.interfaces import ZERO_SHA

Delivery = tuple[dict[str, str], bytes]


@dataclass
class Vendor:
    fake: Any
    connection: dict[str, Any]
    repository: str
    web_url: str
    #: deliver(secret, tag, before, after, delivery_id) -> a correct delivery
    deliver: Callable[[str, str, str, str, str], Delivery]
    #: rejected(secret, tag, after, delivery_id) -> label: a delivery that must be refused with 401
    rejected: Callable[[str, str, str, str], dict[str, Delivery]]
    #: hook_ok(hook, url, secret) -> whether the fake's hook record is the one the registry should create
    hook_ok: Callable[[dict[str, Any], str, str], bool]
    #: the delivery id the registry records for delivery ``d-N`` (the vendor's own form)
    delivery_id: Callable[[str], str] = str


def _without(delivery: Delivery, *names: str) -> Delivery:
    headers, body = delivery
    return {k: v for k, v in headers.items() if k.lower() not in {n.lower() for n in names}}, body


def _tampered(delivery: Delivery, tag: str) -> Delivery:
    headers, body = delivery
    return headers, body.replace(f"refs/tags/{tag}".encode(), f"refs/tags/{tag}9".encode())


def _gitlab(root: Path) -> Vendor:
    fake = FakeGitLab(root, token="glpat-test")

    def deliver(secret: str, tag: str, before: str, after: str, delivery: str, **kw: Any) -> Delivery:
        kw.setdefault("signing_token", signing_token(secret))
        return fake.tag_push_delivery(secret, "terraform-net", tag, before, after, delivery=delivery, **kw)

    def rejected(secret: str, tag: str, after: str, delivery: str) -> dict[str, Delivery]:
        good = deliver(secret, tag, ZERO_SHA, after, delivery)
        return {"missing token": _without(good, "X-Gitlab-Token"),
                "wrong token": deliver("nope", tag, ZERO_SHA, after, delivery, signing_token=signing_token(secret)),
                "wrong signing key": deliver(secret, tag, ZERO_SHA, after, delivery,
                                             signing_token=signing_token("nope")),
                "signature dropped, timestamp kept": _without(good, "webhook-signature"),
                "tampered": _tampered(good, tag),
                "stale": deliver(secret, tag, ZERO_SHA, after, delivery, timestamp=int(time.time()) - 600)}

    return Vendor(fake, {"provider": "gitlab", "base_url": fake.api_url, "token": "glpat-test"},
                  "acme/terraform-net", "https://gitlab.example/acme/terraform-net", deliver, rejected,
                  lambda hook, url, secret: (hook["url"], hook["token"], hook["signing_token"],
                                             hook["tag_push_events"]) == (url, secret, signing_token(secret), True))


def _bitbucket(root: Path) -> Vendor:
    fake = FakeBitbucketDC(root, user="bot", token="BBDC-test")

    def deliver(secret: str, tag: str, before: str, after: str, delivery: str) -> Delivery:
        return fake.refs_changed_delivery(secret, "terraform-net", tag, before, after, delivery=delivery)

    def rejected(secret: str, tag: str, after: str, delivery: str) -> dict[str, Delivery]:
        good = deliver(secret, tag, ZERO_SHA, after, delivery)
        return {"missing": _without(good, "X-Hub-Signature"),
                "wrong": (deliver("nope", tag, ZERO_SHA, after, delivery)[0], good[1]),
                "tampered": _tampered(good, tag)}

    return Vendor(fake, {"provider": "bitbucket-dc", "base_url": fake.url, "username": "bot", "token": "BBDC-test"},
                  "ACME/terraform-net", "https://bitbucket.example/projects/ACME/repos/terraform-net/browse",
                  deliver, rejected,
                  lambda hook, url, secret: (hook["url"], hook["configuration"], hook["events"]) == (
                      url, {"secret": secret}, ["repo:refs_changed"]))


def _azure(root: Path) -> Vendor:
    fake = FakeAzureDevOps(root, token="pat-test")

    def subscription(secret: str, **inputs: str) -> dict[str, Any]:
        [sub] = fake.hooks.values()  # the live subscription, with the registry's own inputs unless overridden
        return {**sub, "consumerInputs": {**sub["consumerInputs"], **inputs}}

    def deliver(secret: str, tag: str, before: str, after: str, delivery: str, **inputs: str) -> Delivery:
        return fake.push_delivery(subscription(secret, **inputs), "terraform-net", tag, before, after,
                                  notification_id=int(delivery.removeprefix("d-")))

    def rejected(secret: str, tag: str, after: str, delivery: str) -> dict[str, Delivery]:
        good = deliver(secret, tag, ZERO_SHA, after, delivery)
        return {"no credentials at all": _without(good, "Authorization", "X-Tfr-Webhook-Secret"),
                "wrong Basic password": deliver(secret, tag, ZERO_SHA, after, delivery, basicAuthPassword="nope"),
                "wrong secret header": deliver(secret, tag, ZERO_SHA, after, delivery,
                                               httpHeaders="X-Tfr-Webhook-Secret: nope")}

    return Vendor(fake, {"provider": "azuredevops", "base_url": fake.url, "token": "pat-test"},
                  "Infra/terraform-net", "https://dev.azure.example/acme/Infra/_git/terraform-net", deliver, rejected,
                  lambda hook, url, secret: (hook["eventType"], hook["consumerInputs"]) == (
                      "git.push", {"url": url, "basicAuthUsername": "tfregistry", "basicAuthPassword": secret,
                                   "httpHeaders": f"X-Tfr-Webhook-Secret: {secret}"}),
                  lambda delivery: f"{next(iter(fake.hooks))}/{delivery.removeprefix('d-')}")


VENDORS: dict[str, tuple[Callable[[Path], Vendor], Any]] = {
    "gitlab": (_gitlab, gitlab_plugin),
    "bitbucket-dc": (_bitbucket, bitbucket_plugin),
    "azuredevops": (_azure, azure_plugin),
}


@pytest.fixture(params=sorted(VENDORS))
def vendor(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    make, plugin = VENDORS[request.param]
    v = make(tmp_path / request.param)
    with v.fake:
        yield v, plugin


def test_connect_link_webhook_publish_and_moved_tag(app_factory: Any, vendor: tuple[Vendor, Any]):
    v, plugin = vendor
    site = Site(app_factory({"scm.reconcile_interval": 0, "public_url": "https://registry.example"},
                            plugins=(plugin,)))
    repo = v.fake.create_repo("terraform-net")
    first = repo.commit({"main.tf": 'output "v" { value = 1 }\n'})
    bad = site.call("POST", "/api/v1/scm/connections", json={"name": "bad", **v.connection, "token": "wrong-tok"})
    assert bad.status_code == 502 and "wrong-tok" not in bad.get_data(as_text=True)
    conn = site.connection(**v.connection)
    repos = site.call("GET", f"/api/v1/scm/connections/{conn}/repositories", 200).get_json()
    assert [r["id"] for r in repos] == [v.repository]

    link = site.link(conn, v.repository, "net")
    secret = link["webhook_secret"]
    [hook] = v.fake.hooks.values()
    assert v.hook_ok(hook, f"https://registry.example/api/v1/scm/links/{link['id']}/webhook", secret), hook
    assert link["repository_url"] == v.web_url

    repo.tag("v1.0.0")
    tag_object = repo.git("rev-parse", "refs/tags/v1.0.0")
    hook_url = f"/api/v1/scm/links/{link['id']}/webhook"
    for label, (h, b) in v.rejected(secret, "v1.0.0", tag_object, "d-1").items():
        assert site.client.post(hook_url, data=b, headers=h).status_code == 401, label
    assert site.registry.jobs.jobs == {}

    headers, body = v.deliver(secret, "v1.0.0", ZERO_SHA, tag_object, "d-1")
    assert site.client.post(hook_url, data=body, headers=headers).status_code == 202
    site.registry.jobs.wait_idle()
    assert site.client.post(hook_url, data=body, headers=headers).status_code == 200  # duplicate
    site.registry.jobs.wait_idle()
    assert site.versions("net") == ["1.0.0"]
    assert site.files("net", "1.0.0") == {"main.tf": b'output "v" { value = 1 }\n'}
    prov = site.call("GET", "/api/v1/scm/provenance/acme/net/generic/1.0.0", 200).get_json()
    assert (prov["commit_sha"], prov["delivery_id"]) == (first, v.delivery_id("d-1"))
    assert site.call("GET", "/v1/modules/acme/net/generic/1.0.0", 200).get_json()["source"] == v.web_url
    original = hashlib.sha256(site.archive("net", "1.0.0")).hexdigest()

    moved_to = repo.commit({"main.tf": 'output "v" { value = 2 }\n'})
    repo.tag("v1.0.0", force=True)
    headers, body = v.deliver(secret, "v1.0.0", tag_object, repo.git("rev-parse", "refs/tags/v1.0.0"), "d-2")
    r = site.client.post(hook_url, data=body, headers=headers)
    assert r.status_code == 200 and "moved" in r.get_json()["outcome"]
    [violation] = site.call("GET", "/api/v1/scm/violations", 200).get_json()
    assert (violation["published_sha"], violation["current_sha"], violation["detected_by"]) == (
        first, moved_to, "webhook")
    site.registry.jobs.wait_idle()
    assert hashlib.sha256(site.archive("net", "1.0.0")).hexdigest() == original

    site.call("DELETE", f"/api/v1/scm/links/{link['id']}", 204)
    assert v.fake.hooks == {}
    assert site.versions("net") == ["1.0.0"]


def test_gitlab_hook_without_signing_token_needs_only_the_secret_token(app_factory: Any, tmp_path: Path):
    """GitLab sends the signing headers only where the signing token feature is on; without them the
    X-Gitlab-Token alone authenticates (and a wrong one is still refused)."""
    with FakeGitLab(tmp_path, token="glpat-test") as fake:
        site = Site(app_factory({"scm.reconcile_interval": 0}, plugins=(gitlab_plugin,)))
        repo = fake.create_repo("terraform-net")
        sha = repo.commit({"main.tf": "#\n"})
        link = site.link(site.connection(provider="gitlab", base_url=fake.api_url, token="glpat-test"),
                         "acme/terraform-net", "net")
        repo.tag("v0.1.0", annotated=False)
        url = f"/api/v1/scm/links/{link['id']}/webhook"
        h, b = fake.tag_push_delivery("nope", "terraform-net", "v0.1.0", ZERO_SHA, sha)
        assert site.client.post(url, data=b, headers=h).status_code == 401
        h, b = fake.tag_push_delivery(link["webhook_secret"], "terraform-net", "v0.1.0", ZERO_SHA, sha)
        assert site.client.post(url, data=b, headers=h).status_code == 202
        site.registry.jobs.wait_idle()
        assert site.versions("net") == ["0.1.0"]
