"""OAuth 2.0 connections to GitLab (gitlab.com and self-managed) through the core's flow, against the fake
GitLab's documented ``/oauth/authorize`` and ``/oauth/token`` (https://docs.gitlab.com/api/oauth2/): authorize
-> callback -> the connection lists projects and publishes a tag with real git -> the two-hour token nears
expiry -> the refresh token is used; a wrong state or a PKCE mismatch is refused."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import tfregistry_scm_gitlab.plugin as gitlab_plugin
from tfregistry_scm_gitlab.testing import FakeGitLab

from tests.integration.test_scm_oauth import approve, expire_soon, scm_key
from tests.integration.test_scm_publish import Site
from tfregistry.models import ScmConnection, utcnow
from tfregistry.services import scm

CLIENT = ("gitlab-application-id", "gloas-client-secret-xyz")


@pytest.fixture
def gl(tmp_path: Path) -> Any:
    with FakeGitLab(tmp_path, token="glpat-test", oauth_client=CLIENT) as fake:
        yield fake


@pytest.fixture
def site(app_factory: Any) -> Site:
    return Site(app_factory({"scm.reconcile_interval": 0, "public_url": "https://registry.example",
                             "scm.gitlab.oauth_client_id": CLIENT[0],
                             "scm.gitlab.oauth_client_secret": CLIENT[1]}, plugins=(gitlab_plugin,)))


def start(site: Site, gl: FakeGitLab) -> dict[str, Any]:
    conn = site.call("POST", "/api/v1/scm/connections", 201, json={
        "name": "gl-oauth", "provider": "gitlab", "auth_method": "oauth", "base_url": gl.api_url}).get_json()
    assert conn["oauth_status"] == "pending" and not conn["has_secret"]
    return conn


def token_posts(gl: FakeGitLab) -> int:
    return len([c for c in gl.calls if c == ("POST", "/oauth/token")])


def test_authorize_publish_then_refresh(site: Site, gl: FakeGitLab, caplog: Any):
    caplog.set_level(logging.DEBUG)
    repo = gl.create_repo("terraform-net")
    first = repo.commit({"main.tf": "# one\n"})
    repo.tag("v1.0.0")
    conn = start(site, gl)
    url = urlsplit(conn["authorize_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{gl.site_url}/oauth/authorize"  # self-managed site
    query = parse_qs(url.query)
    assert query["client_id"] == [CLIENT[0]] and query["code_challenge_method"] == ["S256"]
    assert query["scope"] == ["api read_repository"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["https://registry.example/api/v1/scm/oauth/callback"]

    done = site.client.get(approve(conn["authorize_url"]))
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["oauth_status"] == "active"
    [access] = gl.tokens - {"glpat-test"}
    repos = site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 200).get_json()
    assert [r["id"] for r in repos] == ["acme/terraform-net"]
    with site.registry.db.session() as session:
        row = session.get(ScmConnection, conn["id"])
        assert timedelta(minutes=110) < row.expires_at - utcnow() <= timedelta(hours=2)

    link = site.link(conn["id"], "acme/terraform-net", "net", create_webhook=False)
    site.sync(link["id"])  # the tree is fetched with real git, as oauth2:<access token>
    assert site.versions("net") == ["1.0.0"]
    assert site.files("net", "1.0.0")["main.tf"] == b"# one\n"
    provenance = site.call("GET", f"/api/v1/scm/links/{link['id']}", 200).get_data(as_text=True)
    assert access not in provenance

    expire_soon(site, conn["id"])
    [old_refresh] = gl.refresh_tokens
    posts = token_posts(gl)
    repo.commit({"main.tf": "# two\n"})
    repo.tag("v1.1.0")
    site.sync(link["id"])
    assert token_posts(gl) == posts + 1  # refreshed once, before use
    assert old_refresh not in gl.refresh_tokens and len(gl.refresh_tokens) == 1  # rotated
    new_access = (gl.tokens - {"glpat-test", access}).pop()
    with site.registry.db.session() as session:
        row = session.get(ScmConnection, conn["id"])
        assert scm.credentials(row, scm_key(site)).token == new_access
        assert row.expires_at - utcnow() > timedelta(minutes=110)
    assert site.versions("net") == ["1.0.0", "1.1.0"]
    assert site.files("net", "1.1.0")["main.tf"] == b"# two\n"
    assert site.files("net", "1.0.0")["main.tf"] == b"# one\n"
    assert first

    gl.tokens.discard(access)  # the old access token no longer works: the new one is what is used
    site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 200)
    listed = site.call("GET", "/api/v1/scm/connections", 200).get_data(as_text=True)
    for secret in (access, new_access, old_refresh, *gl.refresh_tokens, CLIENT[1]):
        assert secret not in caplog.text and secret not in listed


def test_wrong_state_and_pkce_mismatch_are_refused(site: Site, gl: FakeGitLab):
    gl.create_repo("terraform-net")
    conn = start(site, gl)
    callback = approve(conn["authorize_url"])
    code = parse_qs(urlsplit(callback).query)["code"][0]
    r = site.client.get(f"/api/v1/scm/oauth/callback?code={code}&state={conn['id']}.forged")
    assert r.status_code == 400 and "OAuth state" in r.get_json()["message"]
    assert gl.tokens == {"glpat-test"}

    # the person comes back from an authorization whose code_challenge is not the registry's
    url = site.call("POST", f"/api/v1/scm/connections/{conn['id']}/oauth/authorize", 200).get_json()["authorize_url"]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"code_challenge": "A" * 43}
    r = site.client.get(approve(urlunsplit(parts._replace(query=urlencode(query)))))
    assert r.status_code == 502 and "invalid_grant" in r.get_json()["message"]
    assert gl.tokens == {"glpat-test"}
    assert site.call("GET", f"/api/v1/scm/connections/{conn['id']}", 200).get_json()["oauth_status"] == "pending"


def test_refused_refresh_needs_reauthorization(site: Site, gl: FakeGitLab):
    gl.create_repo("terraform-net")
    conn = start(site, gl)
    assert site.client.get(approve(conn["authorize_url"])).status_code == 200
    gl.refresh_tokens.clear()  # revoked at GitLab
    expire_soon(site, conn["id"])
    failed = site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 409).get_json()
    assert "needs re-authorization" in failed["message"] and "invalid_grant" in failed["message"]


def test_oauth_refused_without_a_client(app_factory: Any, gl: FakeGitLab):
    site = Site(app_factory({"scm.reconcile_interval": 0}, plugins=(gitlab_plugin,)))
    r = site.call("POST", "/api/v1/scm/connections", json={"name": "x", "provider": "gitlab",
                                                           "auth_method": "oauth", "base_url": gl.api_url})
    assert r.status_code == 400 and "token" in r.get_json()["message"]
