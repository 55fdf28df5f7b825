"""OAuth 2.0 connections to Azure DevOps Services through the core's flow and the Microsoft identity platform
(Entra ID) v2.0 endpoints, against the fake's documented ``/{tenant}/oauth2/v2.0/authorize`` and ``.../token``
(https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow): authorize -> callback ->
the connection lists repositories and publishes a tag with real git (``Authorization: Bearer``) -> the
one-hour token nears expiry -> the refresh token is used; a wrong state or a PKCE mismatch is refused; Azure
DevOps Server refuses ``oauth``."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import tfregistry_scm_azuredevops.plugin as azure_plugin
import tfregistry_scm_azuredevops.provider as azure_provider
from tfregistry_scm_azuredevops.testing import FakeAzureDevOps

from tests.integration.test_scm_oauth import approve, expire_soon, scm_key
from tests.integration.test_scm_publish import Site
from tfregistry.models import ScmConnection, utcnow
from tfregistry.services import scm

CLIENT = ("00000000-aaaa-bbbb-cccc-000000000001", "entra-client-secret-xyz")
TENANT = "contoso.onmicrosoft.com"
SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default offline_access"


@pytest.fixture
def az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # the fake organization is served on 127.0.0.1: count that host as Azure DevOps Services
    monkeypatch.setattr(azure_provider, "SERVICES_HOSTS", ("dev.azure.com", ".visualstudio.com", "127.0.0.1"))
    with FakeAzureDevOps(tmp_path, token="pat-test", oauth_client=CLIENT) as fake:
        yield fake


@pytest.fixture
def site(app_factory: Any, az: FakeAzureDevOps) -> Site:
    return Site(app_factory({"scm.reconcile_interval": 0, "public_url": "https://registry.example",
                             "scm.azuredevops.oauth_client_id": CLIENT[0],
                             "scm.azuredevops.oauth_client_secret": CLIENT[1],
                             "scm.azuredevops.oauth_tenant": TENANT,
                             "scm.azuredevops.oauth_authority": az.authority}, plugins=(azure_plugin,)))


def start(site: Site, az: FakeAzureDevOps) -> dict[str, Any]:
    conn = site.call("POST", "/api/v1/scm/connections", 201, json={
        "name": "az-oauth", "provider": "azuredevops", "auth_method": "oauth", "base_url": az.url}).get_json()
    assert conn["oauth_status"] == "pending" and not conn["has_secret"]
    return conn


def token_posts(az: FakeAzureDevOps) -> list[tuple[str, str]]:
    return [c for c in az.calls if c == ("POST", f"/{TENANT}/oauth2/v2.0/token")]


def test_authorize_publish_then_refresh(site: Site, az: FakeAzureDevOps, caplog: Any):
    caplog.set_level(logging.DEBUG)
    repo = az.create_repo("terraform-net")
    repo.commit({"main.tf": "# one\n"})
    repo.tag("v1.0.0")
    conn = start(site, az)
    url = urlsplit(conn["authorize_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{az.authority}/{TENANT}/oauth2/v2.0/authorize"
    query = parse_qs(url.query)
    assert query["client_id"] == [CLIENT[0]] and query["code_challenge_method"] == ["S256"]
    assert query["scope"] == [SCOPE] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["https://registry.example/api/v1/scm/oauth/callback"]

    done = site.client.get(approve(conn["authorize_url"]))
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["oauth_status"] == "active"
    [access] = az.oauth_tokens
    repos = site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 200).get_json()
    assert [r["id"] for r in repos] == ["Infra/terraform-net"]
    with site.registry.db.session() as session:
        row = session.get(ScmConnection, conn["id"])
        assert timedelta(minutes=55) < row.expires_at - utcnow() <= timedelta(hours=1)

    link = site.link(conn["id"], "Infra/terraform-net", "net", create_webhook=False)
    site.sync(link["id"])  # the tree is fetched with real git, Authorization: Bearer <access token>
    assert site.versions("net") == ["1.0.0"]
    assert site.files("net", "1.0.0")["main.tf"] == b"# one\n"

    expire_soon(site, conn["id"])
    [old_refresh] = az.refresh_tokens
    posts = len(token_posts(az))
    repo.commit({"main.tf": "# two\n"})
    repo.tag("v1.1.0")
    site.sync(link["id"])
    assert len(token_posts(az)) == posts + 1  # refreshed once, before use
    assert old_refresh not in az.refresh_tokens and len(az.refresh_tokens) == 1
    new_access = (az.oauth_tokens - {access}).pop()
    with site.registry.db.session() as session:
        row = session.get(ScmConnection, conn["id"])
        assert scm.credentials(row, scm_key(site)).token == new_access
        assert row.expires_at - utcnow() > timedelta(minutes=55)
    assert site.versions("net") == ["1.0.0", "1.1.0"]
    assert site.files("net", "1.1.0")["main.tf"] == b"# two\n"

    az.oauth_tokens.discard(access)  # the old access token no longer works: the new one is what is used
    site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 200)
    listed = site.call("GET", "/api/v1/scm/connections", 200).get_data(as_text=True)
    for secret in (access, new_access, old_refresh, *az.refresh_tokens, CLIENT[1]):
        assert secret not in caplog.text and secret not in listed


def test_wrong_state_and_pkce_mismatch_are_refused(site: Site, az: FakeAzureDevOps):
    conn = start(site, az)
    callback = approve(conn["authorize_url"])
    code = parse_qs(urlsplit(callback).query)["code"][0]
    r = site.client.get(f"/api/v1/scm/oauth/callback?code={code}&state={conn['id']}.forged")
    assert r.status_code == 400 and "OAuth state" in r.get_json()["message"]
    assert az.oauth_tokens == set()

    url = site.call("POST", f"/api/v1/scm/connections/{conn['id']}/oauth/authorize", 200).get_json()["authorize_url"]
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"code_challenge": "A" * 43}
    r = site.client.get(approve(urlunsplit(parts._replace(query=urlencode(query)))))
    assert r.status_code == 502 and "invalid_grant" in r.get_json()["message"]
    assert az.oauth_tokens == set()
    assert site.call("GET", f"/api/v1/scm/connections/{conn['id']}", 200).get_json()["oauth_status"] == "pending"


def test_refused_refresh_needs_reauthorization(site: Site, az: FakeAzureDevOps):
    conn = start(site, az)
    assert site.client.get(approve(conn["authorize_url"])).status_code == 200
    az.refresh_tokens.clear()  # revoked in Entra ID
    expire_soon(site, conn["id"])
    failed = site.call("GET", f"/api/v1/scm/connections/{conn['id']}/repositories", 409).get_json()
    assert "needs re-authorization" in failed["message"] and "invalid_grant" in failed["message"]


def test_azure_devops_server_refuses_oauth(site: Site, az: FakeAzureDevOps):
    r = site.call("POST", "/api/v1/scm/connections", json={
        "name": "onprem", "provider": "azuredevops", "auth_method": "oauth",
        "base_url": "https://tfs.example.internal/DefaultCollection"})
    assert r.status_code == 400 and "Azure DevOps Server" in r.get_json()["message"]
    assert "personal access token" in r.get_json()["message"]
    assert all(c["name"] != "onprem" for c in site.call("GET", "/api/v1/scm/connections", 200).get_json())


def test_the_authorize_endpoints_of_azure_devops_services() -> None:
    scm_provider = azure_provider.AzureDevOpsScm(oauth_client_id=CLIENT[0], oauth_client_secret=CLIENT[1])
    endpoints = scm_provider.oauth_endpoints("https://dev.azure.com/acme")
    assert endpoints.authorize_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize"
    assert endpoints.token_url == "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
    assert " ".join(endpoints.scopes) == SCOPE and endpoints.pkce
    assert scm_provider.oauth_endpoints("https://acme.visualstudio.com") is not None
    assert azure_provider.AzureDevOpsScm().oauth_endpoints("https://dev.azure.com/acme") is None  # no client
