"""SCM publishing end to end in the application: real git repositories served by ``git http-backend``,
the ``git`` provider (tfregistry-scm-git) and the skeleton's signed-webhook provider (``example-dir``)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import tarfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import tfregistry_scm_git.plugin as git_plugin
from sqlalchemy import select

import tfregistry_example.plugin as example_plugin
from tests.conftest import bearer, new_token
from tfregistry import hookimpl
from tfregistry.models import AuditEntry, ScmConnection, ScmDelivery, ScmLink, ScmProvenance
from tfregistry.services import scm as scm_svc
from tfregistry.testing.git import GitHttpServer, GitRepo, GitSshServer


class Site:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.registry = app.extensions["tfregistry"]
        self.client = app.test_client()
        self.token = new_token(app, "admin", name="admin")

    def call(self, method: str, path: str, expect: int | None = None, **kw: Any) -> Any:
        r = self.client.open(path, method=method, headers=bearer(self.token), **kw)
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.get_json())
        return r

    def connection(self, **fields: Any) -> int:
        return self.call("POST", "/api/v1/scm/connections", 201, json={"name": "c" + uuid.uuid4().hex[:6],
                                                                       **fields}).get_json()["id"]

    def link(self, connection_id: int, repository: str, name: str, **fields: Any) -> dict[str, Any]:
        return self.call("POST", "/api/v1/scm/links", 201, json={
            "connection_id": connection_id, "repository": repository, "namespace": "acme", "name": name,
            "system": "generic", **fields}).get_json()

    def sync(self, link_id: int) -> None:
        self.call("POST", f"/api/v1/scm/links/{link_id}/sync", 202)
        self.registry.jobs.wait_idle()

    def archive(self, name: str, version: str) -> bytes:
        r = self.client.get(f"/v1/modules/acme/{name}/generic/{version}/download",
                            headers={**bearer(self.token), "User-Agent": "Terraform/1.15.5"})
        assert r.status_code == 204, r.status_code
        parts = urlsplit(r.headers["X-Terraform-Get"])
        got = self.client.get(parts.path + "?" + parts.query)
        assert got.status_code == 200
        return got.data

    def files(self, name: str, version: str) -> dict[str, bytes]:
        with tarfile.open(fileobj=io.BytesIO(self.archive(name, version)), mode="r:gz") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]

    def versions(self, name: str) -> list[str]:
        r = self.client.get(f"/v1/modules/acme/{name}/generic/versions", headers=bearer(self.token))
        return [] if r.status_code == 404 else sorted(v["version"] for v in r.get_json()["modules"][0]["versions"])

    def audit(self, action: str) -> list[AuditEntry]:
        with self.registry.db.session() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


class Observed:
    """A ``tfr_observers`` plugin keeping what the core observes (as the metrics plugin would count it)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    def observe(self, name: str, value: float, labels: dict[str, str]) -> None:
        self.seen.append((name, dict(labels)))

    @hookimpl
    def tfr_observers(self, registry: Any) -> Any:
        return self

    @hookimpl
    def tfr_event(self, event: Any) -> None:
        self.seen.append(("event:" + event.type, dict(event.data)))


@pytest.fixture
def observed() -> Observed:
    return Observed()


@pytest.fixture
def site(app_factory: Any, observed: Observed) -> Site:
    return Site(app_factory({"scm.reconcile_interval": 0}, plugins=(git_plugin, example_plugin, observed)))


@pytest.fixture
def server(tmp_path: Path) -> Any:
    with GitHttpServer(tmp_path / "served", credentials=("bot", "s3cret-token")) as srv:
        yield srv


def test_publish_from_a_git_url_pinned_to_the_commit(site: Site, server: GitHttpServer):
    repo = server.create_repo("net")
    first = repo.commit({"main.tf": 'variable "cidr" {}\n', "README.md": "# net\n", "notes/secret.txt": "x\n",
                         ".terraformignore": "notes/\n"})
    repo.tag("v1.0.0")
    repo.tag("latest-build", annotated=False)  # does not match v{version}: ignored
    url = server.repo_url("net")

    bad = site.connection(provider="git", auth_method="token", username="bot", token="wrong")
    refused = site.call("POST", "/api/v1/scm/links", json={"connection_id": bad, "repository": url,
                                                           "namespace": "acme", "name": "net", "system": "generic"})
    assert refused.status_code == 502 and "wrong" not in refused.get_data(as_text=True)
    conn = site.connection(provider="git", auth_method="token", username="bot", token="s3cret-token")
    shown = site.call("GET", f"/api/v1/scm/connections/{conn}", 200).get_json()
    assert shown["has_secret"] is True and "token" not in shown
    with site.registry.db.session() as s:
        assert "s3cret-token" not in (s.get(ScmConnection, conn).secrets_encrypted or "")  # encrypted at rest
    for path in ("file:///etc", "/srv/repo.git", "https://bot:pw@example.com/x.git"):
        r = site.call("POST", "/api/v1/scm/links", json={"connection_id": conn, "repository": path,
                                                         "namespace": "acme", "name": "net", "system": "generic"})
        assert r.status_code in (400, 502), path

    link = site.link(conn, url, "net")
    assert link["webhook_secret"] and link["hook_id"] is None  # plain git: no webhook, polled
    preview = site.call("GET", f"/api/v1/scm/links/{link['id']}/tags", 200).get_json()
    assert preview == [{"name": "v1.0.0", "commit_sha": first, "version": "1.0.0"}]

    site.sync(link["id"])
    assert site.versions("net") == ["1.0.0"]
    assert site.files("net", "1.0.0") == {"main.tf": b'variable "cidr" {}\n', "README.md": b"# net\n",
                                          ".terraformignore": b"notes/\n"}
    details = site.call("GET", "/v1/modules/acme/net/generic/1.0.0", 200).get_json()
    assert details["source"] == url
    prov = site.call("GET", "/api/v1/scm/provenance/acme/net/generic/1.0.0", 200).get_json()
    assert (prov["commit_sha"], prov["tag"], prov["repository_url"]) == (first, "v1.0.0", url)
    original = hashlib.sha256(site.archive("net", "1.0.0")).hexdigest()

    # The tag is moved: the reconcile records a violation, never republishes.
    moved_to = repo.commit({"main.tf": 'variable "evil" {}\n'})
    repo.tag("v1.0.0", force=True)
    # A tag pushed while nobody was told: the same reconcile publishes it.
    repo.tag("v1.1.0")
    site.sync(link["id"])
    assert site.versions("net") == ["1.0.0", "1.1.0"]
    assert hashlib.sha256(site.archive("net", "1.0.0")).hexdigest() == original
    violations = site.call("GET", "/api/v1/scm/violations", 200).get_json()
    assert [(v["module_version"], v["published_sha"], v["current_sha"], v["detected_by"]) for v in violations] == [
        ("acme/net/generic/1.0.0", first, moved_to, "reconcile")]
    assert [e.details["current_sha"] for e in site.audit("scm.tag_moved")] == [moved_to]
    site.sync(link["id"])  # seen again: recorded once
    assert len(site.call("GET", "/api/v1/scm/violations", 200).get_json()) == 1


def test_publish_over_ssh_with_a_deploy_key_and_the_pinned_host_key(site: Site, tmp_path: Path):
    with GitSshServer(tmp_path / "ssh") as server:
        repo = server.create_repo("vpc")
        sha = repo.commit({"main.tf": "# from ssh\n"})
        repo.tag("v3.1.0")
        url = server.repo_url("vpc")
        base = {"name": "ssh-" + uuid.uuid4().hex[:6], "provider": "git", "auth_method": "ssh_key",
                "ssh_private_key": server.client_key}
        for known_hosts, says in ((None, "ssh_known_hosts"), ("127.0.0.1 not-a-key", "line 1")):
            r = site.call("POST", "/api/v1/scm/connections", json={**base, "ssh_known_hosts": known_hosts})
            assert r.status_code == 400 and says in r.get_json()["message"], r.get_json()
        conn = site.call("POST", "/api/v1/scm/connections", 201,
                         json={**base, "ssh_known_hosts": f"# ssh-keyscan\n{server.known_hosts}\n"}).get_json()
        assert "ssh_private_key" not in conn and "ssh_known_hosts" not in conn and conn["has_secret"]
        with site.registry.db.session() as s:
            assert "OPENSSH" not in (s.get(ScmConnection, conn["id"]).secrets_encrypted or "")
        link = site.link(conn["id"], url, "vpc")
        site.sync(link["id"])
        assert site.versions("vpc") == ["3.1.0"]
        assert site.files("vpc", "3.1.0") == {"main.tf": b"# from ssh\n"}
        prov = site.call("GET", "/api/v1/scm/provenance/acme/vpc/generic/3.1.0", 200).get_json()
        assert (prov["commit_sha"], prov["repository_url"]) == (sha, url)


def test_archive_rules_refuse_a_symlink_outside_the_tree(site: Site, server: GitHttpServer):
    repo = server.create_repo("sneaky")
    repo.commit({"main.tf": "# ok\n", "passwd": "->/etc/passwd"})
    repo.tag("v1.0.0")
    conn = site.connection(provider="git", auth_method="token", username="bot", token="s3cret-token")
    link = site.link(conn, server.repo_url("sneaky"), "sneaky")
    site.sync(link["id"])
    assert site.versions("sneaky") == []
    job = [j for j in site.registry.jobs.jobs.values() if j.func == "tfregistry.jobs:scm_reconcile"][-1]
    assert "points outside" in json.dumps(job.result)


def test_archive_rules_refuse_an_oversize_module(app_factory: Any, server: GitHttpServer):
    site = Site(app_factory({"scm.reconcile_interval": 0, "limits.module_uncompressed_max_bytes": "64KiB"},
                            plugins=(git_plugin,)))
    repo = server.create_repo("big")
    repo.commit({"main.tf": "# ok\n", "blob.bin": bytes(range(256)) * 1024})  # 256 KiB
    repo.tag("v1.0.0")
    conn = site.connection(provider="git", auth_method="token", username="bot", token="s3cret-token")
    link = site.link(conn, server.repo_url("big"), "big")
    site.sync(link["id"])
    assert site.versions("big") == []
    job = [j for j in site.registry.jobs.jobs.values() if j.func == "tfregistry.jobs:scm_reconcile"][-1]
    [error] = job.result["errors"]
    assert error == ("v1.0.0: invalid module archive: archive is larger than 65536 bytes uncompressed "
                     "(at member 'blob.bin')")


def test_monorepo_publishes_each_module_alone(site: Site, server: GitHttpServer):
    repo = server.create_repo("mono")
    repo.commit({f"modules/{m}/main.tf": f"# {m}\n" for m in ("network", "compute", "storage")}
                | {"README.md": "# all\n"})
    for tag in ("network-v1.2.0", "compute-v1.0.0", "storage-v2.0.0", "v9.9.9"):
        repo.tag(tag)
    conn = site.connection(provider="git", auth_method="token", username="bot", token="s3cret-token")
    for m in ("network", "compute", "storage"):
        link = site.link(conn, server.repo_url("mono"), m, subdirectory=f"modules/{m}",
                         tag_pattern="{name}-v{version}", import_tags=True)  # no sync: linking imports
        assert link["import_job"] == f"scm-reconcile-{link['id']}"
    site.registry.jobs.wait_idle()
    assert [site.versions(m) for m in ("network", "compute", "storage")] == [["1.2.0"], ["1.0.0"], ["2.0.0"]]
    for m, v in (("network", "1.2.0"), ("compute", "1.0.0"), ("storage", "2.0.0")):
        assert site.files(m, v) == {"main.tf": f"# {m}\n".encode()}


def test_monorepo_discovers_module_folders(site: Site, server: GitHttpServer):
    repo = server.create_repo("disco")
    repo.commit({"modules/network/main.tf": "# network\n", "modules/network/.terraformignore": "scratch/\n",
                 "modules/network/scratch/x.txt": "x\n",
                 "modules/compute/main.tofu": "# compute\n", "modules/compute/nested/extra.tf": "# nested\n",
                 "modules/docs/README.md": "# not a module\n", "README.md": "# all\n", "main.tf": "# root\n"})
    for tag in ("network-v1.2.0", "compute-v1.0.0", "docs-v1.0.0", "ghost-v1.0.0", "v9.9.9"):
        repo.tag(tag)
    conn = site.connection(provider="git", auth_method="token", username="bot", token="s3cret-token")
    url = server.repo_url("disco")
    base = {"connection_id": conn, "repository": url, "namespace": "acme", "system": "generic",
            "subdirectory": "modules", "discover_modules": True}
    for extra, message in (({"tag_pattern": "v{version}"}, "needs {name} in its tag pattern"),
                           ({"tag_pattern": "{name}-v{version}", "name": "network"}, "leave name out"),
                           ({"tag_pattern": "{name}-v{version}", "branch_mode": True}, "branch mode is not supported")):
        r = site.call("POST", "/api/v1/scm/links", 400, json=base | extra)
        assert message in r.get_json()["message"]
    assert site.call("POST", "/api/v1/scm/links", 400, json=base | {"discover_modules": False}).status_code == 400
    assert site.audit("scm.link.create") == []  # refused: nothing linked

    link = site.call("POST", "/api/v1/scm/links", 201, json=base | {"tag_pattern": "{name}-v{version}"}).get_json()
    assert (link["module"], link["discover_modules"]) == ("acme/*/generic", True)
    preview = site.call("GET", f"/api/v1/scm/links/{link['id']}/tags", 200).get_json()
    assert sorted((t["name"], t["module"], t["version"]) for t in preview) == [
        ("compute-v1.0.0", "compute", "1.0.0"), ("docs-v1.0.0", "docs", "1.0.0"),
        ("ghost-v1.0.0", "ghost", "1.0.0"), ("network-v1.2.0", "network", "1.2.0")]
    site.sync(link["id"])
    job = [j for j in site.registry.jobs.jobs.values() if j.func == "tfregistry.jobs:scm_reconcile"][-1]
    assert sorted(job.result["published"]) == ["compute 1.0.0", "network 1.2.0"]
    assert sorted(job.result["errors"]) == [
        "docs-v1.0.0: 'modules/docs' at commit " + repo.git("rev-parse", "HEAD") + " is not a module folder "
        "(no *.tf or *.tofu file)",
        "ghost-v1.0.0: commit " + repo.git("rev-parse", "HEAD") + " has no directory 'modules/ghost'"]
    assert [site.versions(m) for m in ("network", "compute", "docs", "ghost")] == [["1.2.0"], ["1.0.0"], [], []]
    assert site.files("network", "1.2.0") == {"main.tf": b"# network\n", ".terraformignore": b"scratch/\n"}
    assert site.files("compute", "1.0.0") == {"main.tofu": b"# compute\n", "nested/extra.tf": b"# nested\n"}
    prov = site.call("GET", "/api/v1/scm/provenance/acme/compute/generic/1.0.0", 200).get_json()
    assert (prov["tag"], prov["subdirectory"], prov["link_id"]) == ("compute-v1.0.0", "modules/compute", link["id"])

    # A new tag for one module publishes only that module; a moved tag is a violation of that module only.
    changed = repo.commit({"modules/network/main.tf": "# network 2\n", "modules/compute/main.tofu": "# moved\n"})
    repo.tag("network-v1.3.0")
    repo.tag("compute-v1.0.0", force=True)
    site.sync(link["id"])
    assert [site.versions(m) for m in ("network", "compute")] == [["1.2.0", "1.3.0"], ["1.0.0"]]
    assert site.files("network", "1.3.0") == {"main.tf": b"# network 2\n", ".terraformignore": b"scratch/\n"}
    assert site.files("compute", "1.0.0") == {"main.tofu": b"# compute\n", "nested/extra.tf": b"# nested\n"}
    violations = site.call("GET", "/api/v1/scm/violations", 200).get_json()
    assert [(v["module_version"], v["current_sha"]) for v in violations] == [("acme/compute/generic/1.0.0", changed)]


def _signed(secret: str, payload: dict[str, Any], delivery: str) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"data": body, "headers": {"X-Example-Signature": sig, "X-Example-Delivery": delivery,
                                      "Content-Type": "application/json"}}


def test_webhook_signature_matrix_dedup_and_moved_tag(site: Site, tmp_path: Path, observed: Observed):
    repo = GitRepo(tmp_path / "dir", "app")
    sha = repo.commit({"main.tf": "# app\n"})
    repo.tag("v1.0.0")
    conn = site.connection(provider="example-dir", auth_method="none", base_url=str(tmp_path / "dir"))
    link = site.link(conn, "app.git", "app")
    hook = f"/api/v1/scm/links/{link['id']}/webhook"
    secret = link["webhook_secret"]
    event = {"repository": "app.git", "ref": "refs/tags/v1.0.0", "before": "0" * 40, "after": sha}
    good = _signed(secret, event, "d-1")

    def unsent(**override: Any) -> Any:
        return site.client.post(hook, **(good | override))

    tampered = good["data"].replace(b"v1.0.0", b"v1.0.1")
    cases = {"missing": {"headers": {"X-Example-Delivery": "d-1"}},
             "wrong": {"headers": good["headers"] | {"X-Example-Signature": "sha256=" + "0" * 64}},
             "tampered": {"data": tampered}}
    for label, override in cases.items():
        r = unsent(**override)
        assert r.status_code == 401, label
        assert "s3cret" not in r.get_data(as_text=True)
    assert site.registry.jobs.jobs == {} and site.versions("app") == []  # nothing queued
    assert [labels for name, labels in observed.seen if name == "scm_webhook_rejected"] == [
        {"provider": "example-dir", "reason": "signature"}] * 3

    r = site.client.post(hook, **good)
    assert r.status_code == 202, r.get_json()
    site.registry.jobs.wait_idle()
    assert site.versions("app") == ["1.0.0"]
    again = site.client.post(hook, **good)  # the same delivery again
    assert again.status_code == 200 and "duplicate" in again.get_json()["outcome"]
    site.registry.jobs.wait_idle()
    assert site.versions("app") == ["1.0.0"]
    prov = site.call("GET", "/api/v1/scm/provenance/acme/app/generic/1.0.0", 200).get_json()
    assert (prov["delivery_id"], prov["commit_sha"]) == ("d-1", sha)
    original = hashlib.sha256(site.archive("app", "1.0.0")).hexdigest()

    # moved at webhook time: a violation at once, nothing queued, the stored archive unchanged
    new_sha = repo.commit({"main.tf": "# changed\n"})
    repo.tag("v1.0.0", force=True)
    moved = site.client.post(hook, **_signed(secret, event | {"before": sha, "after": new_sha}, "d-2"))
    assert moved.status_code == 200 and "moved" in moved.get_json()["outcome"]
    violations = site.call("GET", "/api/v1/scm/violations", 200).get_json()
    assert [(v["detected_by"], v["delivery_id"], v["current_sha"]) for v in violations] == [
        ("webhook", "d-2", new_sha)]
    assert hashlib.sha256(site.archive("app", "1.0.0")).hexdigest() == original
    # ...raised as the event scm.tag_moved (for notifications) and counted
    assert [labels for name, labels in observed.seen if name == "event:scm.tag_moved"] == [
        {"namespace": "acme", "name": "app", "system": "generic", "version": "1.0.0",
         "repository": link["repository_url"], "tag": "v1.0.0", "old_commit": sha, "new_commit": new_sha}]
    assert [labels for name, labels in observed.seen if name == "scm_tag_moved"] == [{"provider": "example-dir"}]

    log = site.call("GET", f"/api/v1/scm/links/{link['id']}/deliveries", 200).get_json()
    assert [d["status_code"] for d in log] == [200, 200, 202, 401, 401, 401]
    assert all("x-example-signature" not in d["headers"] for d in log)  # secrets never logged
    assert log[-1]["outcome"] == "rejected: X-Example-Signature header missing"
    refused = site.call("POST", f"/api/v1/scm/links/{link['id']}/deliveries/{log[-1]['id']}/redeliver")
    assert refused.status_code == 409  # a rejected delivery is never processed
    redone = site.call("POST", f"/api/v1/scm/links/{link['id']}/deliveries/{log[2]['id']}/redeliver")
    assert redone.status_code == 200 and "already published" in redone.get_json()["outcome"]
    with site.registry.db.session() as s:
        assert s.scalar(select(ScmDelivery).where(ScmDelivery.redelivery_of == log[2]["id"])) is not None
        assert secret not in s.get(ScmLink, link["id"]).webhook_secret_encrypted

    unlinked = site.client.post("/api/v1/scm/links/999999/webhook", **good)
    assert unlinked.status_code == 404


def test_webhook_on_a_discovering_link_publishes_only_the_tagged_module(site: Site, tmp_path: Path):
    repo = GitRepo(tmp_path / "dir", "mono")
    sha = repo.commit({"modules/network/main.tf": "# network\n", "modules/compute/main.tf": "# compute\n"})
    repo.tag("network-v1.0.0")
    conn = site.connection(provider="example-dir", auth_method="none", base_url=str(tmp_path / "dir"))
    link = site.call("POST", "/api/v1/scm/links", 201, json={
        "connection_id": conn, "repository": "mono.git", "namespace": "acme", "system": "generic",
        "subdirectory": "modules", "tag_pattern": "{name}-v{version}", "discover_modules": True}).get_json()
    hook, secret = f"/api/v1/scm/links/{link['id']}/webhook", link["webhook_secret"]
    event = {"repository": "mono.git", "ref": "refs/tags/network-v1.0.0", "before": "0" * 40, "after": sha}
    r = site.client.post(hook, **_signed(secret, event, "m-1"))
    assert r.status_code == 202 and "publish of 1.0.0 queued" in r.get_json()["outcome"], r.get_json()
    site.registry.jobs.wait_idle()
    assert (site.versions("network"), site.versions("compute")) == (["1.0.0"], [])
    assert site.files("network", "1.0.0") == {"main.tf": b"# network\n"}

    new_sha = repo.commit({"modules/network/main.tf": "# moved\n"})
    repo.tag("network-v1.0.0", force=True)
    moved = site.client.post(hook, **_signed(secret, event | {"before": sha, "after": new_sha}, "m-2"))
    assert moved.status_code == 200 and "moved" in moved.get_json()["outcome"]
    violations = site.call("GET", "/api/v1/scm/violations", 200).get_json()
    assert [(v["module_version"], v["current_sha"], v["link_id"]) for v in violations] == [
        ("acme/network/generic/1.0.0", new_sha, link["id"])]
    assert site.files("network", "1.0.0") == {"main.tf": b"# network\n"}


# --- branch mode ---------------------------------------------------------------------------------------


def test_branch_mode_publishes_a_chosen_commit_of_a_branch(site: Site, server: GitHttpServer):
    repo = server.create_repo("bm")
    first = repo.commit({"modules/app/main.tf": "# one\n", "README.md": "# root\n"})
    second = repo.commit({"modules/app/main.tf": "# two\n", "modules/app/extra.tf": "# extra\n"})
    repo.git("checkout", "-q", "-b", "feature")
    off_main = repo.commit({"modules/app/main.tf": "# feature\n"}, message="feature work")
    repo.git("push", "-q", "origin", "feature")
    repo.git("checkout", "-q", "main")
    url = server.repo_url("bm")
    conn = site.connection(provider="git", auth_method="token", username="bot", token="s3cret-token")

    plain = site.link(conn, url, "plain", subdirectory="modules/app")
    assert plain["branch_mode"] is False
    r = site.call("POST", f"/api/v1/scm/links/{plain['id']}/publish", 400, json={"branch": "main", "version": "1.0.0"})
    assert "not in branch mode" in r.get_json()["message"]

    link = site.link(conn, url, "app", subdirectory="modules/app", branch_mode=True)
    assert link["branch_mode"] is True
    publish = f"/api/v1/scm/links/{link['id']}/publish"
    done = site.call("POST", publish, 201, json={"branch": "main", "commit": first, "version": "1.0.0"}).get_json()
    assert (done["status"], done["version"], done["commit_sha"]) == ("published", "1.0.0", first)
    head = site.call("POST", publish, 201, json={"branch": "main", "version": "1.1.0"}).get_json()
    assert head["commit_sha"] == second  # no commit: the branch head
    assert site.files("app", "1.0.0") == {"main.tf": b"# one\n"}
    assert site.files("app", "1.1.0") == {"main.tf": b"# two\n", "extra.tf": b"# extra\n"}
    prov = site.call("GET", "/api/v1/scm/provenance/acme/app/generic/1.0.0", 200).get_json()
    assert (prov["branch"], prov["commit_sha"], prov["tag"], prov["subdirectory"]) == ("main", first, None,
                                                                                      "modules/app")
    assert prov["triggered_by"] == "token:admin"  # the user who asked
    with site.registry.db.session() as s:  # the web UI's Source tab names the branch, not a tag
        [stored] = s.scalars(select(ScmProvenance).where(ScmProvenance.commit_sha == first))
        html = str(scm_svc.provenance_html(scm_svc.provenance_json(stored)))
    assert "<dt>Branch</dt><dd>main</dd>" in html and "<dt>Tag</dt>" not in html

    # Refused, and nothing published: a reused version (even from the same commit), a commit that is not
    # on the branch, an unknown branch, a commit that does not exist, a version that is not semver.
    refused = [
        ({"branch": "main", "commit": first, "version": "1.0.0"}, 409, "never reused"),
        ({"branch": "main", "commit": off_main, "version": "2.0.0"}, 400, f"commit {off_main} is not on branch 'main'"),
        ({"branch": "nope", "version": "2.0.0"}, 400, "branch 'nope' does not exist"),
        ({"branch": "main", "commit": "0" * 40, "version": "2.0.0"}, 400, "is not on branch 'main'"),
        ({"branch": "main", "version": "2.0"}, 400, "not a semantic version"),
        ({"branch": "--upload-pack=x", "version": "2.0.0"}, 400, "not a branch name"),
        ({"branch": "main", "commit": first[:12], "version": "2.0.0"}, 422, "full commit SHA"),
    ]
    for body, status, message in refused:
        r = site.call("POST", publish, status, json=body)
        assert message in json.dumps(r.get_json()), (body, r.get_json())
    assert site.versions("app") == ["1.0.0", "1.1.0"]
    assert site.files("app", "1.0.0") == {"main.tf": b"# one\n"}
    # The feature branch is a branch like any other: its own commit is on it.
    feat = site.call("POST", publish, 201, json={"branch": "feature", "commit": off_main, "version": "2.0.0"})
    assert feat.get_json()["commit_sha"] == off_main
    assert site.files("app", "2.0.0") == {"main.tf": b"# feature\n", "extra.tf": b"# extra\n"}
    assert [e.details["branch_mode"] for e in site.audit("scm.link.create")] == [False, True]
