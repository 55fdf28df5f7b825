"""The OpenAPI document is the contract: it validates, declares the errors the handlers emit, and the
error bodies the handlers send match its error schema (405 with ``Allow``, 429 as the error object)."""

from __future__ import annotations

from typing import Any

import jsonschema
from openapi_spec_validator import validate

from tests.conftest import bearer

METHODS = ("get", "put", "post", "patch", "delete")


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
            if method in METHODS]


def _error_schema(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["components"]["schemas"]["Error"]


def test_document_is_valid_and_declares_errors(client: Any) -> None:
    doc = client.get("/api/openapi.json").get_json()
    validate(doc)
    operations = _operations(doc)
    assert len(operations) > 50
    for path, method, op in operations:
        label = f"{method.upper()} {path}"
        responses = op["responses"]
        public = op.get("security") == [{}, {"bearer": []}]
        expected = {"401", "429", "503"}
        if not public:
            expected |= {"403", "404"}
        if "{" in path:
            expected |= {"404", "400", "422"}
        body = op.get("requestBody", {}).get("content", {})
        if body:
            assert op["requestBody"].get("required") is True, label
            expected |= {"400", "422"}
        if "multipart/form-data" in body:
            expected.add("413")
            schema = body["multipart/form-data"]["schema"]
            ref = schema["$ref"].rsplit("/", 1)[1]
            assert doc["components"]["schemas"][ref].get("required"), f"{label}: multipart fields not required"
        missing = expected - set(responses)
        assert not missing, f"{label} does not declare {sorted(missing)}"
        for code, response in responses.items():
            if code.startswith(("4", "5")) and "$ref" not in response:
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}, f"{label} {code}"
        assert "401" in responses and "WWW-Authenticate" in responses["401"]["headers"], label
        assert "Retry-After" in responses["429"]["headers"], label


def test_gpg_keys_list_is_public(client: Any) -> None:
    doc = client.get("/api/openapi.json").get_json()
    assert doc["paths"]["/api/v1/gpg-keys"]["get"]["security"] == [{}, {"bearer": []}]
    assert client.get("/api/v1/gpg-keys").status_code == 200


def test_error_bodies_match_the_declared_schema(client: Any, admin_token: str) -> None:
    doc = client.get("/api/openapi.json").get_json()
    schema = _error_schema(doc)
    answers = {
        401: client.get("/api/v1/me"),
        404: client.get("/api/v1/gpg-keys/2147483648", headers=bearer(admin_token)),  # past the id range
        405: client.put("/api/v1/gpg-keys", headers=bearer(admin_token)),
        422: client.post("/api/v1/organizations", json={"name": ""}, headers=bearer(admin_token)),
    }
    for status, response in answers.items():
        assert response.status_code == status, (status, response.get_data(as_text=True))
        jsonschema.validate(response.get_json(), schema)
        assert response.get_json()["code"] == status
    assert set(answers[405].headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_429_under_api_is_the_error_object(app_factory: Any) -> None:
    app = app_factory({"limits.auth_failures": "2/minute"})
    client = app.test_client()
    doc = client.get("/api/openapi.json").get_json()
    answers = [client.get("/api/v1/me", headers=bearer("tfr_wrong")) for _ in range(3)]
    assert [r.status_code for r in answers] == [401, 401, 429]
    jsonschema.validate(answers[-1].get_json(), _error_schema(doc))
    assert int(answers[-1].headers["Retry-After"]) > 0
    protocol = client.get("/v1/modules/acme", headers=bearer("tfr_wrong"))
    assert protocol.status_code == 429
    assert isinstance(protocol.get_json()["errors"], list)
