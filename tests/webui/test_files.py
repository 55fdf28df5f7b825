"""``tfregistry_webui.files.serve_module_file``: archive files behind the read check, with safe headers."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint

from tests.conftest import bearer, new_token, post_module
from tests.integration.test_module_files import PNG, SVG, archive
from tfregistry.protocol import register_error_handlers
from tfregistry_webui.files import serve_module_file

URL = "/modules/acme/network/aws/1.0.0/files/"


@pytest.fixture
def files_app(app_factory: Any) -> Any:
    """An app with the view registered as the web UI's blueprint will (with the protocol's error handlers)."""

    def make(config: dict[str, Any] | None = None) -> Any:
        app = app_factory(config)
        bp = Blueprint("files_under_test", __name__)
        register_error_handlers(bp)
        bp.add_url_rule("/modules/<ns>/<name>/<system>/<version>/files/<path:path>", view_func=serve_module_file)
        app.register_blueprint(bp)
        return app

    return make


def test_files_have_safe_types_and_headers(files_app: Any) -> None:
    app = files_app({"auth.anonymous_read": True})
    client = app.test_client()
    assert post_module(client, new_token(app, "admin"), archive=archive()).status_code == 201
    png = client.get(URL + "docs/img/logo.png")
    assert png.status_code == 200 and png.data == PNG and png.mimetype == "image/png"
    svg = client.get(URL + "docs/img/diagram.svg")
    assert svg.status_code == 200 and svg.data == SVG
    assert svg.headers["Content-Type"] == "text/plain; charset=utf-8"
    for response in (png, svg):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"].startswith("sandbox")
    assert client.get(URL + "docs/link.md").status_code == 404
    assert client.get(URL + "docs/../../../etc/passwd").status_code == 404
    assert client.get(URL + "docs/big.txt").status_code == 413
    assert client.get("/modules/acme/network/aws/9.9.9/files/README.md").status_code == 404


def test_files_need_read_permission_and_hide_other_organizations(files_app: Any) -> None:
    app = files_app({"tenancy": "multi"})
    client = app.test_client()
    admin = new_token(app, "admin")
    org = client.post("/api/v1/organizations", json={"name": "acme-org"}, headers=bearer(admin))
    assert org.status_code == 201, org.get_json()
    ns = client.post("/api/v1/organizations/acme-org/namespaces", json={"name": "acme", "visibility": "private"},
                     headers=bearer(admin))
    assert ns.status_code == 201, ns.get_json()
    assert post_module(client, admin, archive=archive()).status_code == 201
    assert client.get(URL + "README.md").status_code == 401
    assert client.get(URL + "README.md", headers=bearer(admin)).status_code == 200
    other = client.post("/api/v1/organizations", json={"name": "other-org"}, headers=bearer(admin))
    assert other.status_code == 201
    outsider = client.post("/api/v1/tokens", json={"name": "t", "kind": "service", "organization": "other-org",
                                                   "scopes": ["read"]}, headers=bearer(admin))
    assert outsider.status_code == 201, outsider.get_json()
    secret = outsider.get_json()["secret"]
    hidden = client.get(URL + "README.md", headers=bearer(secret))
    missing = client.get("/modules/nosuchns/network/aws/1.0.0/files/README.md", headers=bearer(secret))
    assert hidden.status_code == missing.status_code == 404
