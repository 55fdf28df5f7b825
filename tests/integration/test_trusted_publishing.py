"""Trusted publishing over the API, on SQLite and PostgreSQL: the exchange, every refusal, what the minted
token may do, and the management of publishers.  Issuers are real HTTP servers (IDTokenProxy in front of
oidc-provider-mock, one per issuer); tokens are shaped like each platform's (tests/trusted_publishing_kit.py)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import select
from tfregistry_auth_oidc.testing import IDTokenProxy, OIDCMock

import tfregistry.oidc
from tests.conftest import bearer, post_module
from tests.trusted_publishing_kit import AUDIENCE, azure_devops_claims, github_claims, gitlab_claims
from tfregistry.models import ApiToken, AuditEntry
from tfregistry.services.modules import get_or_create_namespace

GITHUB_CONDITIONS = {"repository": "acme/infra", "workflow": "release.yml", "ref": "refs/tags/v*"}


@pytest.fixture(scope="module")
def oidc_mock() -> Iterator[OIDCMock]:
    with OIDCMock() as mock:
        yield mock


@pytest.fixture
def issuers(oidc_mock: OIDCMock) -> Iterator[Callable[[], IDTokenProxy]]:
    """Start issuers (each its own discovery document, JWKS and key); stopped after the test."""
    started: list[IDTokenProxy] = []

    def make() -> IDTokenProxy:
        proxy = IDTokenProxy(oidc_mock).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def github(issuers: Callable[[], IDTokenProxy]) -> IDTokenProxy:
    return issuers()


@pytest.fixture
def app(app_factory: Callable[..., Any]) -> Any:
    app = app_factory({"trusted_publishing.audience": AUDIENCE})
    with app.extensions["tfregistry"].db.session() as session:
        get_or_create_namespace(session, "acme")
        get_or_create_namespace(session, "beta")
        session.commit()
    return app


def add_publisher(client: Any, token: str, namespace: str = "acme", **body: Any) -> Any:
    return client.post(f"/api/v1/namespaces/{namespace}/trusted-publishers", json=body, headers=bearer(token))


@pytest.fixture
def publisher(client: Any, admin_token: str, github: IDTokenProxy) -> dict[str, Any]:
    response = add_publisher(client, admin_token, platform="github", issuer=github.issuer,
                             conditions=GITHUB_CONDITIONS, packages=["module:network/aws"])
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def exchange(client: Any, token: str) -> Any:
    return client.post("/api/v1/trusted-publishing/token", json={"token": token})


def exchanged_token(client: Any, token: str) -> str:
    response = exchange(client, token)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def refused(client: Any, token: str, reason: str) -> None:
    response = exchange(client, token)
    assert response.status_code == 401, response.get_json()
    message = response.get_json()["message"]
    assert reason in message
    assert token not in response.get_data(as_text=True)


# --- the exchange ---------------------------------------------------------------------------------


def test_a_github_token_is_exchanged_for_a_token_that_publishes_the_allowed_module(client, app, github, publisher):
    claims = github_claims(github.issuer)
    response = exchange(client, github.sign(claims))
    assert response.status_code == 201
    body = response.get_json()
    assert body["namespace"] == "acme" and body["packages"] == ["module:network/aws"]
    assert body["publisher"] == publisher["id"]
    assert post_module(client, body["token"], version="1.0.0").status_code == 201
    with app.extensions["tfregistry"].db.session() as session:
        token = session.get(ApiToken, session.scalar(select(ApiToken.id).where(ApiToken.namespace == "acme")))
        lifetime = token.expires_at - token.created_at
        assert 14 * 60 < lifetime.total_seconds() <= 15 * 60
        assert token.kind == "service" and token.scopes == ["modules:write"]
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "trusted_publishing.exchange"))
        assert entry.details["claims"]["repository"] == "acme/infra"
        assert entry.details["claims"]["ref"] == "refs/tags/v1.0.0"
        assert entry.details["claims"]["run_id"] == claims["run_id"]
        assert entry.details["claims"]["workflow"] == "release.yml"
        assert entry.details["publisher"] == publisher["id"]


def test_the_minted_token_publishes_nothing_else(client, github, publisher, admin_token):
    secret = exchanged_token(client, github.sign(github_claims(github.issuer)))
    other_module = post_module(client, secret, name="storage")
    assert other_module.status_code == 403
    assert "may publish only module:network/aws" in other_module.get_json()["message"]
    assert post_module(client, secret, system="azurerm").status_code == 403
    # namespace B: the token is limited to namespace A
    assert post_module(client, secret, namespace="beta").status_code == 403
    # no provider scope, no deprecation of other modules
    assert post_module(client, admin_token, name="storage").status_code == 201
    deprecate = client.patch("/api/v1/modules/acme/storage/aws/1.0.0", json={"deprecated": True},
                             headers=bearer(secret))
    assert deprecate.status_code == 403
    assert client.get("/api/v1/tokens", headers=bearer(secret)).get_json() == []
    made = client.post("/api/v1/tokens", json={"name": "more", "kind": "service", "organization": "default",
                                               "scopes": ["modules:write"]}, headers=bearer(secret))
    assert made.status_code == 403


def test_the_minted_token_stops_working_when_it_expires(client, app, github, publisher):
    secret = exchanged_token(client, github.sign(github_claims(github.issuer)))
    from datetime import timedelta

    from tfregistry.models import utcnow

    with app.extensions["tfregistry"].db.session() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.namespace == "acme"))
        token.expires_at = utcnow() + timedelta(seconds=2)  # the same token, with less time left
        session.commit()
    assert post_module(client, secret, version="1.0.0").status_code == 201
    time.sleep(2.5)
    late = post_module(client, secret, version="1.0.1")
    assert late.status_code == 401
    assert "not valid" in late.get_json()["message"]


def test_a_token_minted_for_namespace_a_cannot_publish_in_namespace_b(client, admin_token, issuers):
    issuer = issuers()
    for namespace in ("acme", "beta"):
        assert add_publisher(client, admin_token, namespace, platform="github", issuer=issuer.issuer,
                             conditions={"repository": f"{namespace}/infra"},
                             packages=["module:network/*"]).status_code == 201
    secret = exchanged_token(client, issuer.sign(github_claims(issuer.issuer, repository="acme/infra")))
    assert post_module(client, secret, namespace="beta").status_code == 403
    assert post_module(client, secret, namespace="acme").status_code == 201


def test_gitlab_and_azure_devops_tokens_are_exchanged(client, admin_token, issuers):
    gitlab, azure = issuers(), issuers()
    assert add_publisher(client, admin_token, platform="gitlab", issuer=gitlab.issuer,
                         conditions={"project_path": "acme/infra", "ref": "v*"},
                         packages=["module:network/aws"]).status_code == 201
    assert add_publisher(client, admin_token, platform="azure-devops", issuer=azure.issuer,
                         conditions={"organization": "acme", "project": "infra", "service_connection": "tfregistry"},
                         packages=["provider:*"]).status_code == 201
    body = exchange(client, gitlab.sign(gitlab_claims(gitlab.issuer))).get_json()
    assert body["packages"] == ["module:network/aws"]
    body = exchange(client, azure.sign(azure_devops_claims(azure.issuer))).get_json()
    assert body["packages"] == ["provider:*"]
    # an Azure DevOps token for another service connection matches nothing
    refused(client, azure.sign(azure_devops_claims(azure.issuer, connection="other")),
            "service_connection: 'other' does not match 'tfregistry'")
    # GitLab: a branch that is not a v* tag
    refused(client, gitlab.sign(gitlab_claims(gitlab.issuer, ref="main", ref_type="branch")),
            "ref: 'main' does not match 'v*'")


def test_the_jwks_is_fetched_again_for_an_unknown_key_id(client, github, publisher, monkeypatch):
    assert exchange(client, github.sign(github_claims(github.issuer))).status_code == 201  # keys now cached
    monkeypatch.setattr(tfregistry.oidc, "JWKS_MIN_REFRESH", 0)
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rotated-key", "use": "sig", "alg": "RS256"})
    github.published_keys = [github.key, rotated]
    assert exchange(client, github.sign(github_claims(github.issuer), rotated)).status_code == 201


# --- refusals ---------------------------------------------------------------------------------------


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_refusals_name_the_condition_that_failed(client, github, publisher, issuers):
    iss = github.issuer
    now = int(time.time())
    refused(client, github.sign(github_claims(iss, iss="https://token.actions.example.com")),
            "no trusted publisher trusts the issuer 'https://token.actions.example.com'")
    other = issuers()  # a real issuer that nobody trusts
    refused(client, other.sign(github_claims(other.issuer)), f"no trusted publisher trusts the issuer '{other.issuer}'")
    refused(client, github.sign(github_claims(iss, aud="https://github.com/acme")),
            "audience 'https://github.com/acme' is not this registry's audience 'tfregistry-tests'")
    refused(client, github.sign(github_claims(iss, exp=now - 120, iat=now - 420, nbf=now - 420)), "has expired")
    refused(client, github.sign(github_claims(iss, nbf=now + 600)), "not valid yet (nbf")
    refused(client, github.sign(github_claims(iss, iat=now + 600, nbf=now - 5)), "issued in the future")
    refused(client, _unsigned(github_claims(iss)), "unsigned (alg 'none')")
    refused(client, github.sign({k: v for k, v in github_claims(iss).items() if k != "jti"}),
            "lacks the required claim 'jti'")
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    refused(client, github.sign(github_claims(iss), stranger), "signed with a key its issuer does not publish")
    impostor = RSAKey.generate_key(2048, parameters={"kid": github.key.kid})
    refused(client, github.sign(github_claims(iss), impostor), "signature does not verify")
    refused(client, github.sign(github_claims(iss, repository="evil/infra")),
            "repository: 'evil/infra' does not match 'acme/infra'")
    refused(client, github.sign(github_claims(iss, ref="refs/heads/main")),
            "ref: 'refs/heads/main' does not match 'refs/tags/v*'")
    refused(client, github.sign(github_claims(iss, workflow="other.yml")),
            "workflow: 'other.yml' does not match 'release.yml'")
    refused(client, "not-a-jwt", "not a signed JWT")


def test_a_token_is_exchanged_once_only(client, app, github, publisher):
    token = github.sign(github_claims(github.issuer))
    assert exchange(client, token).status_code == 201
    refused(client, token, "already exchanged once (its jti was seen before): a replay")
    with app.extensions["tfregistry"].db.session() as session:
        refusals = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "trusted_publishing.refused")))
        assert [e.details["reason"] for e in refusals][-1].endswith("a replay")
        assert all(token not in json.dumps(e.details) for e in refusals)


def test_an_hmac_signed_token_is_refused(client, github, publisher):
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import OctKey

    forged = jose_jwt.encode({"alg": "HS256"}, github_claims(github.issuer), OctKey.import_key("x" * 32))
    refused(client, forged, "algorithm 'HS256', which is not accepted")


# --- managing publishers ------------------------------------------------------------------------------


def test_publishers_are_listed_and_removed(client, admin_token, publisher):
    listed = client.get("/api/v1/namespaces/acme/trusted-publishers", headers=bearer(admin_token)).get_json()
    assert [p["id"] for p in listed] == [publisher["id"]]
    assert listed[0]["conditions"] == GITHUB_CONDITIONS
    response = client.delete(f"/api/v1/namespaces/acme/trusted-publishers/{publisher['id']}",
                             headers=bearer(admin_token))
    assert response.status_code == 204
    assert client.get("/api/v1/namespaces/acme/trusted-publishers", headers=bearer(admin_token)).get_json() == []
    assert client.get(f"/api/v1/namespaces/beta/trusted-publishers/{publisher['id']}",
                      headers=bearer(admin_token)).status_code == 404


def test_managing_publishers_needs_tokens_manage(client, make_token, github):
    publisher_token = make_token("publish")
    response = add_publisher(client, publisher_token, platform="github", issuer=github.issuer,
                             conditions={"repository": "acme/infra"}, packages=["module:network/aws"])
    assert response.status_code == 403
    assert client.get("/api/v1/namespaces/acme/trusted-publishers").status_code == 401


@pytest.mark.parametrize(("body", "message"), [
    ({"platform": "github", "conditions": {"ref": "refs/tags/*"}, "packages": ["module:network/aws"]},
     "GitHub Actions publishers need the condition 'repository'"),
    ({"platform": "github", "conditions": {"repository": "acme/infra", "branch": "main"},
      "packages": ["module:network/aws"]}, "GitHub Actions publishers have no condition 'branch'"),
    ({"platform": "github", "conditions": {"repository": "acme/infra"}, "packages": ["network"]},
     "package 'network' is not module:NAME/SYSTEM or provider:TYPE"),
    ({"platform": "azure-devops", "conditions": {"organization": "a", "project": "b", "service_connection": "c"},
      "packages": ["provider:x"]}, "Azure DevOps (workload identity federation) publishers need an issuer"),
    ({"platform": "oidc", "issuer": "http://issuer.example.com", "conditions": {"sub": "x"},
      "packages": ["provider:x"]}, "is not an https URL"),
    ({"platform": "oidc", "issuer": "https://issuer.example.com", "packages": ["provider:x"]},
     "needs at least one claim condition"),
])
def test_bad_publishers_are_refused_with_a_reason(client, admin_token, body, message):
    response = add_publisher(client, admin_token, **body)
    assert response.status_code == 400
    assert message in response.get_json()["message"]
    assert client.get("/api/v1/namespaces/acme/trusted-publishers", headers=bearer(admin_token)).get_json() == []


def test_a_generic_oidc_publisher_matches_claim_patterns(client, admin_token, issuers):
    issuer = issuers()
    assert add_publisher(client, admin_token, platform="oidc", issuer=issuer.issuer,
                         conditions={"sub": "deploy:*", "team": "platform"},
                         packages=["module:network/aws"]).status_code == 201
    claims = {"iss": issuer.issuer, "aud": AUDIENCE, "sub": "deploy:prod", "team": "platform", "jti": "j-1",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    assert exchange(client, issuer.sign(claims)).status_code == 201
    refused(client, issuer.sign({**claims, "jti": "j-2", "team": "other"}), "team: 'other' does not match 'platform'")


def test_publishers_of_several_namespaces_matching_need_the_namespace_named(client, admin_token, issuers):
    issuer = issuers()
    for namespace in ("acme", "beta"):
        response = add_publisher(client, admin_token, namespace, platform="github", issuer=issuer.issuer,
                                 conditions={"repository": "acme/infra"}, packages=["module:network/aws"])
        assert response.status_code == 201
    refused(client, issuer.sign(github_claims(issuer.issuer)),
            "trusted publishers of several namespaces match the OIDC token (acme, beta): name the namespace")
    response = client.post("/api/v1/trusted-publishing/token",
                           json={"token": issuer.sign(github_claims(issuer.issuer)), "namespace": "beta"})
    assert response.status_code == 201
    secret = response.get_json()["token"]
    assert response.get_json()["namespace"] == "beta"
    assert post_module(client, secret, namespace="acme").status_code == 403
    assert post_module(client, secret, namespace="beta").status_code == 201
    wrong = client.post("/api/v1/trusted-publishing/token",
                        json={"token": issuer.sign(github_claims(issuer.issuer)), "namespace": "gamma"})
    assert wrong.status_code == 401
    assert "no trusted publisher in namespace 'gamma' trusts the issuer" in wrong.get_json()["message"]


def test_an_issuer_that_cannot_be_reached_fails_the_exchange_with_503(client, admin_token, issuers):
    issuer = issuers()
    assert add_publisher(client, admin_token, platform="github", issuer=issuer.issuer,
                         conditions={"repository": "acme/infra"}, packages=["module:network/aws"]).status_code == 201
    token = issuer.sign(github_claims(issuer.issuer))
    issuer.stop()
    response = exchange(client, token)
    assert response.status_code == 503
    assert "signing keys cannot be fetched" in response.get_json()["message"]
    assert token not in response.get_data(as_text=True)
