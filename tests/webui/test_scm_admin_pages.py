"""Source control pages through the Flask test client: connections (list, create with errors kept next to
the field, delete after confirmation), the link wizard (connection, repository, module and tag pattern, preview
of the matching tags, create, webhook URL and secret shown once, import), a link's page (sync now, delivery
log, redeliver, delete) and the moved-tag list, against real repositories served by ``git http-backend``.

Multi tenancy: ``ann`` administers blue, ``vic`` is a viewer in blue, ``rob`` administers red.  A viewer gets
403, another organization's administrator 404, and nothing changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tfregistry_scm_git.plugin as git_plugin
from sqlalchemy import func, select

from tests.webui.conftest import assert_page
from tests.webui.test_account import form_csrf, personal_token, sign_in
from tfregistry.models import AuditEntry, ModuleVersion, ScmConnection, ScmLink, ScmViolation
from tfregistry.services import identity as identity_svc
from tfregistry.services.audit import CLI_ACTOR
from tfregistry.testing.git import GitHttpServer


@dataclass
class Site:
    app: Any
    users: dict[str, int]

    @property
    def registry(self) -> Any:
        return self.app.extensions["tfregistry"]

    def client(self, who: str | None) -> Any:
        client = self.app.test_client()
        if who is not None:
            assert sign_in(client, personal_token(self.app, self.users[who])).status_code == 303
        return client

    def count(self, model: Any) -> int:
        with self.registry.db.session() as s:
            return s.scalar(select(func.count()).select_from(model))

    def audit(self, action: str) -> list[AuditEntry]:
        with self.registry.db.session() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)))

    def versions(self, name: str) -> list[str]:
        with self.registry.db.session() as s:
            return sorted(mv.version for mv in s.scalars(select(ModuleVersion)) if mv.module.name == name)


def make_site(ui_factory: Any, plugins: tuple[Any, ...] = (git_plugin,)) -> Site:
    app = ui_factory({"tenancy": "multi", "scm.reconcile_interval": 0}, plugins=plugins)
    users = {}
    with app.extensions["tfregistry"].db.session() as s:
        blue = identity_svc.create_organization(s, CLI_ACTOR, "blue", "Blue team")
        red = identity_svc.create_organization(s, CLI_ACTOR, "red")
        for name, org, role in (("ann", blue, "admin"), ("vic", blue, "viewer"), ("rob", red, "admin")):
            user = identity_svc.create_user(s, CLI_ACTOR, f"{name}@example.com", name.title())
            identity_svc.set_membership(s, CLI_ACTOR, user, org, identity_svc.get_role(s, role))
            users[name] = user.id
        identity_svc.save_namespace(s, CLI_ACTOR, blue, "blue-apps", "private")
        identity_svc.save_namespace(s, CLI_ACTOR, red, "red-apps", "private")
        s.commit()
    return Site(app, users)


@pytest.fixture
def site(ui_factory: Any) -> Site:
    return make_site(ui_factory)


def post(client: Any, path: str, data: dict[str, Any] | None = None, form_page: str = "/scm") -> Any:
    """POST a form as a browser does: with the CSRF token of the page holding it."""
    token = form_csrf(client.get(form_page).get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **(data or {})})


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="f-{re.escape(field)}-error">([^<]*)</p>', html)
    assert found, f"no error next to {field}"
    return found.group(1)


def create_connection(client: Any, name: str = "plain", org: str = "blue") -> int:
    r = post(client, "/scm/connections", {"organization": org, "name": name, "provider": "git",
                                          "auth_method": "none", "verify": "on"})
    assert r.status_code == 303, r.get_data(as_text=True)[:3000]
    with client.application.extensions["tfregistry"].db.session() as s:
        return s.scalar(select(ScmConnection.id).where(ScmConnection.name == name))


def test_pages_absent_without_scm_providers(ui_factory: Any):
    site = make_site(ui_factory, plugins=())
    ann = site.client("ann")
    assert ">Source control<" not in assert_page(ann.get("/modules"))
    assert ann.get("/scm").status_code == 404
    assert ann.get("/scm/violations").status_code == 404


def test_connections_create_errors_and_delete(site: Site):
    ann = site.client("ann")
    home = assert_page(ann.get("/scm"))
    assert '>Source control</a>' in home and "No connection yet." in home

    r = post(ann, "/scm/connections", {"organization": "blue", "name": "", "provider": "git", "auth_method": "none",
                                       "base_url": "https://git.example.com"})
    html = assert_page(r, 400)
    assert field_error(html, "name") == "Enter a name, e.g. github."
    assert 'value="https://git.example.com"' in html  # what was typed is kept
    r = post(ann, "/scm/connections", {"organization": "blue", "name": "bad name", "provider": "git",
                                       "auth_method": "none"})
    assert "letters, digits" in field_error(assert_page(r, 400), "name")
    r = post(ann, "/scm/connections", {"organization": "blue", "name": "x", "provider": "git", "auth_method": "oauth"})
    assert "accept" in field_error(assert_page(r, 400), "auth_method")
    r = post(ann, "/scm/connections", {"organization": "blue", "name": "tok", "provider": "git",
                                       "auth_method": "token", "token": ""})
    assert "needs a token" in field_error(assert_page(r, 400), "token")
    r = post(ann, "/scm/connections", {"organization": "blue", "name": "ssh", "provider": "git",
                                       "auth_method": "ssh_key", "ssh_private_key": "-----BEGIN KEY-----",
                                       "ssh_known_hosts": "not a host key"})
    html = assert_page(r, 400)
    assert "known_hosts entry" in field_error(html, "ssh_known_hosts")
    assert "not a host key" in html and "-----BEGIN KEY-----" not in html  # the key is never echoed
    assert site.count(ScmConnection) == 0

    r = post(ann, "/scm/connections", {"organization": "blue", "name": "tok", "provider": "git",
                                       "auth_method": "token", "token": "s3cr3t-t0ken"})
    assert r.status_code == 303
    home = assert_page(ann.get("/scm"))
    assert "<th scope=\"row\">tok</th>" in home and "s3cr3t-t0ken" not in home  # never shown back
    assert len(site.audit("scm.connection.create")) == 1
    r = post(ann, "/scm/connections", {"organization": "blue", "name": "tok", "provider": "git",
                                       "auth_method": "token", "token": "again"})
    assert "already exists" in field_error(assert_page(r, 409), "name")

    with site.registry.db.session() as s:
        conn_id = s.scalar(select(ScmConnection.id))
    confirm = assert_page(ann.get(f"/scm/connections/{conn_id}/delete"))
    assert "Delete connection “tok”?" in confirm
    assert site.count(ScmConnection) == 1  # the GET changes nothing
    r = post(ann, f"/scm/connections/{conn_id}/delete", form_page=f"/scm/connections/{conn_id}/delete")
    assert r.status_code == 303 and site.count(ScmConnection) == 0
    assert len(site.audit("scm.connection.delete")) == 1


def test_post_without_csrf_is_refused(site: Site):
    ann = site.client("ann")
    r = ann.post("/scm/connections", data={"organization": "blue", "name": "n", "provider": "git",
                                           "auth_method": "none"})
    assert r.status_code == 403 and site.count(ScmConnection) == 0


def test_wizard_preview_create_import_sync_and_delete(site: Site, tmp_path: Path):
    ann = site.client("ann")
    with GitHttpServer(tmp_path / "srv") as server:
        repo = server.create_repo("net")
        repo.commit({"main.tf": "# one\n"})
        repo.tag("v1.0.0")
        repo.commit({"main.tf": "# two\n"})
        repo.tag("v1.1.0")
        repo.tag("release-2")  # does not match v{version}
        url = server.repo_url("net")
        conn = create_connection(ann)

        step1 = assert_page(ann.get("/scm/link"))
        assert f'<option value="{conn}">plain (git)</option>' in step1
        step2 = assert_page(ann.get(f"/scm/link?connection={conn}"))
        assert 'id="f-repository" name="repository" type="text"' in step2  # plain git lists no repositories
        step3 = assert_page(ann.get("/scm/link", query_string={"connection": conn, "repository": url}))
        assert 'value="v{version}"' in step3 and "Matching tags" not in step3
        missing = assert_page(ann.get("/scm/link", query_string={"connection": conn, "repository": url,
                                                                 "preview": "1", "namespace": "", "name": "net"}), 400)
        assert field_error(missing, "namespace") == "Required." and 'value="net"' in missing
        bad = assert_page(ann.get("/scm/link", query_string={
            "connection": conn, "repository": url, "preview": "1", "namespace": "blue-apps", "name": "net",
            "system": "generic", "tag_pattern": "v{major}"}), 400)
        assert "{version}" in field_error(bad, "tag_pattern") and 'value="v{major}"' in bad
        preview = assert_page(ann.get("/scm/link", query_string={
            "connection": conn, "repository": url, "preview": "1", "namespace": "blue-apps", "name": "net",
            "system": "generic", "tag_pattern": "v{version}"}))
        assert "<code>v1.0.0</code>" in preview and "<code>v1.1.0</code>" in preview and "release-2" not in preview
        assert "Import the 2 existing matching tags now" in preview
        assert site.count(ScmLink) == 0  # previews change nothing

        values = {"connection": conn, "repository": url, "namespace": "blue-apps", "name": "net",
                  "system": "generic", "subdirectory": "", "tag_pattern": "v{version}", "import_tags": "on"}
        created = ann.post("/scm/links", data={"csrf_token": form_csrf(preview), **values})
        html = assert_page(created)
        assert created.headers["Cache-Control"].startswith("no-store")
        with site.registry.db.session() as s:
            link = s.scalar(select(ScmLink))
            link_id = link.id
        assert f"/api/v1/scm/links/{link_id}/webhook</code>" in html
        secret = re.search(r'<pre id="webhook-secret" tabindex="0"><code>([^<]+)</code>', html).group(1)
        assert len(secret) >= 32 and 'data-copy="webhook-secret"' in html
        site.registry.jobs.wait_idle()
        assert site.versions("net") == ["1.0.0", "1.1.0"]
        assert len(site.audit("scm.link.create")) == 1

        page = assert_page(ann.get(f"/scm/links/{link_id}"))
        assert secret not in page and url in page and "No webhook delivery yet." in page
        assert "this system sends no webhooks" in page
        repo.commit({"main.tf": "# three\n"})
        repo.tag("v1.2.0")
        r = post(ann, f"/scm/links/{link_id}/sync", form_page=f"/scm/links/{link_id}")
        assert r.status_code == 303
        site.registry.jobs.wait_idle()
        assert site.versions("net") == ["1.0.0", "1.1.0", "1.2.0"]
        assert "Sync queued" in assert_page(ann.get(f"/scm/links/{link_id}"))

        # a moved tag: recorded by the sync, listed on the violations page
        repo.commit({"main.tf": "# moved\n"})
        repo.tag("v1.0.0", force=True)
        post(ann, f"/scm/links/{link_id}/sync", form_page=f"/scm/links/{link_id}")
        site.registry.jobs.wait_idle()
        moved = assert_page(ann.get("/scm/violations"))
        assert "blue-apps/net/generic/1.0.0</a>" in moved and "<code>v1.0.0</code>" in moved
        assert "No tag has moved." in assert_page(site.client(None).get("/scm/violations"))  # private namespace
        assert "No tag has moved." in assert_page(site.client("rob").get("/scm/violations"))

    assert "Delete link" in assert_page(ann.get(f"/scm/links/{link_id}/delete"))
    assert site.count(ScmLink) == 1
    r = post(ann, f"/scm/links/{link_id}/delete", form_page=f"/scm/links/{link_id}/delete")
    assert r.status_code == 303 and site.count(ScmLink) == 0
    assert site.versions("net") == ["1.0.0", "1.1.0", "1.2.0"]  # published versions stay
    assert len(site.audit("scm.link.delete")) == 1


def test_link_to_another_organizations_namespace_is_refused(site: Site, tmp_path: Path):
    ann = site.client("ann")
    with GitHttpServer(tmp_path / "srv") as server:
        server.create_repo("net").commit({"main.tf": "# one\n"})
        conn = create_connection(ann)
        r = post(ann, "/scm/links", {"connection": conn, "repository": server.repo_url("net"),
                                     "namespace": "red-apps", "name": "net", "system": "generic"})
        assert r.status_code in (403, 404) and site.count(ScmLink) == 0


def test_viewer_and_other_organization_change_nothing(site: Site, tmp_path: Path):
    ann = site.client("ann")
    with GitHttpServer(tmp_path / "srv") as server:
        repo = server.create_repo("net")
        repo.commit({"main.tf": "# one\n"})
        repo.tag("v1.0.0")
        conn = create_connection(ann)
        preview = assert_page(ann.get("/scm/link", query_string={
            "connection": conn, "repository": server.repo_url("net"), "preview": "1", "namespace": "blue-apps",
            "name": "net", "system": "generic"}))
        assert_page(ann.post("/scm/links", data={
            "csrf_token": form_csrf(preview), "connection": conn, "repository": server.repo_url("net"),
            "namespace": "blue-apps", "name": "net", "system": "generic", "tag_pattern": "v{version}"}))
        with site.registry.db.session() as s:
            link_id = s.scalar(select(ScmLink.id))

        vic = site.client("vic")
        assert ">Source control</a>" not in assert_page(vic.get("/modules"))
        for path in ("/scm", "/scm/link", f"/scm/links/{link_id}"):
            assert vic.get(path).status_code == 403, path
        token = form_csrf(vic.get("/modules").get_data(as_text=True))
        assert vic.post(f"/scm/links/{link_id}/delete", data={"csrf_token": token}).status_code == 403
        assert vic.post("/scm/connections", data={"csrf_token": token, "organization": "blue", "name": "v",
                                                  "provider": "git", "auth_method": "none"}).status_code == 403

        rob = site.client("rob")
        home = assert_page(rob.get("/scm"))
        assert "plain" not in home and "blue-apps" not in home  # another organization's connections and links
        assert rob.get(f"/scm/links/{link_id}").status_code == 404
        assert rob.get(f"/scm/connections/{conn}/delete").status_code == 404
        assert rob.get(f"/scm/link?connection={conn}").status_code == 404
        token = form_csrf(home)
        for path in (f"/scm/links/{link_id}/sync", f"/scm/links/{link_id}/delete", f"/scm/connections/{conn}/delete",
                     f"/scm/links/{link_id}/deliveries/1/redeliver"):
            assert rob.post(path, data={"csrf_token": token}).status_code == 404, path
        r = rob.post("/scm/connections", data={"csrf_token": token, "organization": "blue", "name": "mine",
                                               "provider": "git", "auth_method": "none"})
        assert r.status_code in (403, 404)
        r = rob.post("/scm/links", data={"csrf_token": token, "connection": conn, "repository": server.repo_url("net"),
                                         "namespace": "red-apps", "name": "x", "system": "generic"})
        assert r.status_code == 404

    assert site.count(ScmLink) == 1 and site.count(ScmConnection) == 1
    assert site.versions("net") == [] and site.count(ScmViolation) == 0
    assert len(site.audit("scm.link.delete")) == 0 and len(site.audit("scm.connection.delete")) == 0


def test_github_wizard_lists_repositories_delivery_log_and_redeliver(ui_factory: Any, tmp_path: Path):
    import tfregistry_scm_github.plugin as github_plugin
    from tfregistry_scm_github.testing import FakeGitHub

    from tfregistry.interfaces import ZERO_SHA

    site = make_site(ui_factory, plugins=(github_plugin,))
    ann = site.client("ann")
    with FakeGitHub(tmp_path, token="ghp_test") as gh:
        repo = gh.create_repo("terraform-net")
        repo.commit({"main.tf": "# one\n"})
        r = post(ann, "/scm/connections", {"organization": "blue", "name": "gh", "provider": "github",
                                           "auth_method": "token", "base_url": gh.api_url, "token": "ghp_wrong",
                                           "verify": "on"})
        html = assert_page(r, 502)
        assert "refused the credentials" in field_error(html, "token") and "ghp_wrong" not in html
        assert f'value="{gh.api_url}"' in html and site.count(ScmConnection) == 0
        r = post(ann, "/scm/connections", {"organization": "blue", "name": "gh", "provider": "github",
                                           "auth_method": "token", "base_url": gh.api_url, "token": "ghp_test",
                                           "verify": "on"})
        assert r.status_code == 303
        with site.registry.db.session() as s:
            conn = s.scalar(select(ScmConnection.id))
        step2 = assert_page(ann.get(f"/scm/link?connection={conn}"))
        assert '<option value="acme/terraform-net">' in step2  # from list_repositories
        preview = assert_page(ann.get("/scm/link", query_string={
            "connection": conn, "repository": "acme/terraform-net", "preview": "1", "namespace": "blue-apps",
            "name": "net", "system": "generic"}))
        assert "create_webhook" in preview and "No tag of" in preview
        created = assert_page(ann.post("/scm/links", data={
            "csrf_token": form_csrf(preview), "connection": conn, "repository": "acme/terraform-net",
            "namespace": "blue-apps", "name": "net", "system": "generic", "tag_pattern": "v{version}",
            "create_webhook": "on"}))
        secret = re.search(r'<pre id="webhook-secret" tabindex="0"><code>([^<]+)</code>', created).group(1)
        [hook] = gh.hooks.values()
        assert hook["secret"] == secret and "The webhook is created in the system" in created
        with site.registry.db.session() as s:
            link_id = s.scalar(select(ScmLink.id))

        repo.tag("v1.0.0")
        sha = repo.git("rev-parse", "refs/tags/v1.0.0")
        hook_url = f"/api/v1/scm/links/{link_id}/webhook"
        headers, body = gh.push_delivery(secret, "terraform-net", "v1.0.0", ZERO_SHA, sha, delivery="gh-1")
        bad = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
        assert site.app.test_client().post(hook_url, data=body, headers=bad).status_code == 401
        assert site.app.test_client().post(hook_url, data=body, headers=headers).status_code == 202
        site.registry.jobs.wait_idle()
        assert site.versions("net") == ["1.0.0"]

        page = assert_page(ann.get(f"/scm/links/{link_id}"))
        assert "gh-1" in page and "x-github-event: push" in page
        assert "x-hub-signature-256:" not in page.lower() and headers["X-Hub-Signature-256"] not in page
        assert secret not in page
        assert page.count(">Redeliver<") == 1  # the accepted one only, not the 401
        with site.registry.db.session() as s:
            from tfregistry.models import ScmDelivery

            rows = {d.status_code: d.id for d in s.scalars(select(ScmDelivery))}
        r = post(ann, f"/scm/links/{link_id}/deliveries/{rows[401]}/redeliver", form_page=f"/scm/links/{link_id}")
        assert r.status_code == 409 and site.count(ScmDelivery) == 2
        r = post(ann, f"/scm/links/{link_id}/deliveries/{rows[202]}/redeliver", form_page=f"/scm/links/{link_id}")
        assert r.status_code == 303
        again = assert_page(ann.get(f"/scm/links/{link_id}"))
        assert f"Delivery {rows[202]} redelivered" in again and f"redelivery of {rows[202]}" in again
        assert site.count(ScmDelivery) == 3 and site.versions("net") == ["1.0.0"]

        r = post(ann, f"/scm/links/{link_id}/delete", form_page=f"/scm/links/{link_id}/delete")
        assert r.status_code == 303 and gh.hooks == {}  # the webhook is removed from the system


def test_oauth_connection_sends_the_browser_to_the_system(ui_factory: Any, tmp_path: Path):
    from urllib.parse import urlsplit

    import requests
    import tfregistry_scm_github.plugin as github_plugin
    from tfregistry_scm_github.testing import FakeGitHub

    client_id, client_secret = "Iv1.testclient", "oauth-client-secret-xyz"
    app = ui_factory({"tenancy": "multi", "scm.reconcile_interval": 0, "public_url": "https://registry.example",
                      "scm.github.oauth_client_id": client_id, "scm.github.oauth_client_secret": client_secret},
                     plugins=(github_plugin,))
    with app.extensions["tfregistry"].db.session() as s:
        blue = identity_svc.create_organization(s, CLI_ACTOR, "blue")
        user = identity_svc.create_user(s, CLI_ACTOR, "ann@example.com", "Ann")
        identity_svc.set_membership(s, CLI_ACTOR, user, blue, identity_svc.get_role(s, "admin"))
        s.commit()
        site = Site(app, {"ann": user.id})
    ann = site.client("ann")
    with FakeGitHub(tmp_path, token="ghp_test", oauth_client=(client_id, client_secret)) as gh:
        gh.create_repo("terraform-net")
        r = post(ann, "/scm/connections", {"organization": "blue", "name": "gh-oauth", "provider": "github",
                                           "auth_method": "oauth", "base_url": gh.api_url})
        assert r.status_code == 303 and r.headers["Location"].startswith(gh.api_url.rstrip("/").rsplit("/api", 1)[0])
        home = assert_page(ann.get("/scm"))
        assert "(pending)" in home and ">Authorize<span" in home
        again = post(ann, "/scm/connections/1/authorize")
        assert again.status_code == 303 and "state=1." in again.headers["Location"]
        back = requests.get(again.headers["Location"], allow_redirects=False, timeout=10)
        assert back.status_code == 302
        parts = urlsplit(back.headers["Location"])
        returned = ann.get(f"{parts.path}?{parts.query}")  # the browser, back from the system
        assert returned.status_code == 303 and returned.headers["Location"] == "/scm#connections"
        home = assert_page(ann.get("/scm"))
        assert "(active)" in home and ">Authorize again<span" in home
        assert "Connection “gh-oauth” is authorized." in home
        # The person says no at the system: it sends the browser back with error=access_denied and the state.
        from urllib.parse import parse_qs

        state = parse_qs(urlsplit(post(ann, "/scm/connections/1/authorize").headers["Location"]).query)["state"][0]
        failed = ann.get(f"/api/v1/scm/oauth/callback?error=access_denied&state={state}")
        assert failed.status_code == 303 and failed.headers["Location"] == "/scm#connections"
        assert "The authorization failed: the authorization was not granted: access_denied" in assert_page(
            ann.get("/scm"))
        assert len(site.audit("scm.connection.create")) == 1
