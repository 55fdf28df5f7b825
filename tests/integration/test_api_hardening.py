"""The answers issue #11 measured as server errors or wrong shapes, one by one (schemathesis finds the rest)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import bearer, post_module

TOO_LARGE = str(2**63)  # past SQLite's integer range (OverflowError) and PostgreSQL's INTEGER ids

ID_OPERATIONS = [
    ("GET", "/api/v1/gpg-keys/{}"), ("DELETE", "/api/v1/gpg-keys/{}"), ("PATCH", "/api/v1/users/{}"),
    ("POST", "/api/v1/mirrors/{}/sync"), ("POST", "/api/v1/mirrors/{}/reject"), ("GET", "/api/v1/mirrors/{}/status"),
    ("GET", "/api/v1/tokens/{}"), ("DELETE", "/api/v1/tokens/{}"),
]


@pytest.mark.parametrize(("method", "path"), ID_OPERATIONS)
@pytest.mark.parametrize("value", [TOO_LARGE, str(2**31)])
def test_ids_past_the_database_range_are_404(client: Any, admin_token: str, method: str, path: str,
                                             value: str) -> None:
    r = client.open(path.format(value), method=method, json={}, headers=bearer(admin_token))
    assert r.status_code == 404
    assert r.get_json()["code"] == 404 and r.get_json()["status"] == "Not Found"


def test_managed_key_with_an_empty_namespace_is_422(client: Any, admin_token: str) -> None:
    r = client.post("/api/v1/gpg-keys/managed", json={"namespace": ""}, headers=bearer(admin_token))
    assert r.status_code == 422
    assert "namespace" in r.get_json()["errors"]["json"]


def test_a_100000_character_version_is_refused_naming_the_field(client: Any, admin_token: str) -> None:
    r = post_module(client, admin_token, version="1.0.0-" + "a" * 100_000)
    assert r.status_code == 422
    assert list(r.get_json()["errors"]["form"]) == ["version"]


def test_405_names_the_allowed_methods(client: Any) -> None:
    r = client.put("/api/v1/providers")
    assert r.status_code == 405
    assert sorted(r.headers["Allow"].replace(" ", "").split(",")) == ["OPTIONS", "POST"]
    assert r.get_json()["code"] == 405
    r = client.delete("/v1/modules/acme/network/aws/versions")  # a protocol route: the same header
    assert r.status_code == 405 and "GET" in r.headers["Allow"]


def test_nul_in_bodies_paths_and_queries_is_refused(client: Any, admin_token: str) -> None:
    r = client.post("/api/v1/organizations", json={"name": "acme", "display_name": "a\x00b"},
                    headers=bearer(admin_token))
    assert r.status_code == 422 and "display_name" in r.get_json()["errors"]["json"]
    assert client.get("/v1/modules/acme%00").status_code == 404
    assert client.get("/v1/modules/search?q=a%00b").status_code == 400
