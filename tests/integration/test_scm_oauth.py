"""OAuth 2.0 connections end to end: the authorization-code flow (state, PKCE), token refresh before
expiry, the re-authorize state, against the fake GitHub's OAuth endpoints (GitHub's documented web flow)."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import tfregistry_scm_github.plugin as github_plugin
from tfregistry_scm_github.testing import FakeGitHub

from tests.integration.test_scm_publish import Site
from tfregistry.models import ScmConnection, utcnow
from tfregistry.services import scm

CLIENT = ("Iv1.testclient", "oauth-client-secret-xyz")


@pytest.fixture
def gh(tmp_path: Path) -> Any:
    with FakeGitHub(tmp_path, token="ghp_test", oauth_client=CLIENT) as fake:
        fake.create_repo("terraform-net")
        yield fake


@pytest.fixture
def site(app_factory: Any) -> Site:
    return Site(app_factory({"scm.reconcile_interval": 0, "public_url": "https://registry.example",
                             "scm.github.oauth_client_id": CLIENT[0],
                             "scm.github.oauth_client_secret": CLIENT[1]}, plugins=(github_plugin,)))


def approve(authorize_url: str) -> str:
    """The person approves at the fake GitHub: the callback path and query GitHub redirects to."""
    r = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    back = urlsplit(r.headers["Location"])
    assert f"{back.scheme}://{back.netloc}" == "https://registry.example"
    return f"{back.path}?{back.query}"


def start(site: Site, gh: FakeGitHub) -> dict[str, Any]:
    conn = site.call("POST", "/api/v1/scm/connections", 201, json={
        "name": "gh-oauth", "provider": "github", "auth_method": "oauth", "base_url": gh.api_url}).get_json()
    assert conn["oauth_status"] == "pending" and not conn["has_secret"]
    return conn


def expire_soon(site: Site, conn_id: int) -> None:
    with site.registry.db.session() as session:
        session.get(ScmConnection, conn_id).expires_at = utcnow() + timedelta(seconds=30)
        session.commit()


def test_authorization_code_flow_then_refresh_once(site: Site, gh: FakeGitHub, caplog: Any):
    caplog.set_level(logging.DEBUG)
    conn = start(site, gh)
    query = parse_qs(urlsplit(conn["authorize_url"]).query)
    assert query["client_id"] == [CLIENT[0]] and query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["https://registry.example/api/v1/scm/oauth/callback"]
    assert query["scope"] == ["repo admin:repo_hook"] and query["state"][0].startswith(f"{conn['id']}.")
    refused = site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 409).get_json()
    assert "waiting for its OAuth authorization" in refused["message"]

    callback = approve(conn["authorize_url"])
    done = site.client.get(callback)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["oauth_status"] == "active" and done.get_json()["has_secret"]
    assert site.client.get(callback).status_code == 400  # the state is single use
    [access] = gh.tokens - {"ghp_test"}

    repos = site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 200).get_json()
    assert [r["id"] for r in repos] == ["acme/terraform-net"]
    shown = site.call("GET", f"/api/v1/scm/connections/{conn['id']}", 200).get_json()
    assert shown["expires_at"] is not None

    expire_soon(site, conn["id"])
    [old_refresh] = gh.refresh_tokens
    # two callers at once: the token is refreshed once, both get the new one
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories").status_code)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200]
    refreshes = [c for c in gh.calls if c == ("POST", "/login/oauth/access_token")]
    assert len(refreshes) == 2  # the code exchange and exactly one refresh
    assert old_refresh not in gh.refresh_tokens and len(gh.refresh_tokens) == 1
    new_access = (gh.tokens - {"ghp_test", access}).pop()
    with site.registry.db.session() as session:
        row = session.get(ScmConnection, conn["id"])
        assert row.expires_at - utcnow() > timedelta(hours=7)
        assert scm.credentials(row, scm_key(site)).token == new_access
    site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 200)
    assert len([c for c in gh.calls if c == ("POST", "/login/oauth/access_token")]) == 2  # not refreshed again

    secrets = [access, new_access, old_refresh, *gh.refresh_tokens, CLIENT[1]]
    listed = site.call("GET", "/api/v1/scm/connections", 200).get_data(as_text=True)
    for secret in secrets:
        assert secret not in caplog.text and secret not in listed and secret not in done.get_data(as_text=True)


def scm_key(site: Site) -> bytes:
    from tfregistry.api.providers import encryption_key

    return encryption_key(site.registry)


def test_refresh_failure_needs_reauthorization(site: Site, gh: FakeGitHub, caplog: Any):
    caplog.set_level(logging.DEBUG)
    conn = start(site, gh)
    assert site.client.get(approve(conn["authorize_url"])).status_code == 200
    [refresh] = gh.refresh_tokens
    gh.refresh_tokens.clear()  # revoked at GitHub
    expire_soon(site, conn["id"])
    failed = site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 409).get_json()
    assert "needs re-authorization" in failed["message"] and "bad_refresh_token" in failed["message"]
    shown = site.call("GET", f"/api/v1/scm/connections/{conn['id']}", 200).get_json()
    assert shown["oauth_status"] == "reauthorize"
    again = site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 409).get_json()
    assert "needs re-authorization" in again["message"]

    url = site.call("POST", f"/api/v1/scm/connections/{conn['id']}/oauth/authorize", 200).get_json()["authorize_url"]
    assert site.client.get(approve(url)).get_json()["oauth_status"] == "active"
    site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 200)
    assert refresh not in caplog.text and CLIENT[1] not in caplog.text


def test_wrong_or_missing_state_is_refused(site: Site, gh: FakeGitHub):
    conn = start(site, gh)
    callback = approve(conn["authorize_url"])
    code = parse_qs(urlsplit(callback).query)["code"][0]
    for label, query in {"missing": f"code={code}", "wrong": f"code={code}&state={conn['id']}.forged",
                         "other id": f"code={code}&state=999999.x", "huge id": f"code={code}&state={'9' * 30}.x",
                         "garbage": f"code={code}&state=not-a-state"}.items():
        r = site.client.get(f"/api/v1/scm/oauth/callback?{query}")
        assert r.status_code == 400 and "OAuth state" in r.get_json()["message"], label
    assert site.call("GET", f"/api/v1/scm/connections/{conn['id']}", 200).get_json()["oauth_status"] == "pending"
    assert gh.tokens == {"ghp_test"}  # no code was exchanged
    assert site.client.get(callback).status_code == 200  # the real state still works once


def test_refused_code_and_denied_authorization(site: Site, gh: FakeGitHub):
    conn = start(site, gh)
    callback = approve(conn["authorize_url"])
    state = parse_qs(urlsplit(callback).query)["state"][0]
    r = site.client.get(f"/api/v1/scm/oauth/callback?code=not-issued&state={state}")
    assert r.status_code == 502 and "bad_verification_code" in r.get_json()["message"]
    url = site.call("POST", f"/api/v1/scm/connections/{conn['id']}/oauth/authorize", 200).get_json()["authorize_url"]
    state = parse_qs(urlsplit(url).query)["state"][0]
    r = site.client.get(f"/api/v1/scm/oauth/callback?error=access_denied&state={state}")
    assert r.status_code == 400 and "access_denied" in r.get_json()["message"]
    assert site.call("GET", f"/api/v1/scm/connections/{conn['id']}", 200).get_json()["oauth_status"] == "pending"


def test_oauth_refused_without_a_client(app_factory: Any, gh: FakeGitHub):
    site = Site(app_factory({"scm.reconcile_interval": 0}, plugins=(github_plugin,)))
    r = site.call("POST", "/api/v1/scm/connections", json={"name": "x", "provider": "github",
                                                           "auth_method": "oauth", "base_url": gh.api_url})
    assert r.status_code == 400
