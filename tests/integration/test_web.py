"""Request ids, trusted proxies and absolute URLs."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import bearer, new_token, post_module
from tfregistry.models import AuditEntry


def test_request_id_is_generated_or_taken_from_a_trusted_proxy(app_factory):
    client = app_factory({"proxy.trusted": ["10.0.0.0/8"]}).test_client()
    generated = client.get("/.well-known/terraform.json").headers["X-Request-Id"]
    assert len(generated) == 32
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    given = client.get("/.well-known/terraform.json", headers={"X-Request-Id": "abc-123"}, environ_base=proxy)
    assert given.headers["X-Request-Id"] == "abc-123"
    odd = client.get("/.well-known/terraform.json", headers={"X-Request-Id": "<script>"}, environ_base=proxy)
    assert odd.headers["X-Request-Id"] != "<script>"
    # a caller that is not a trusted proxy cannot choose its id (it would forge log and audit correlation)
    direct = client.get("/.well-known/terraform.json", headers={"X-Request-Id": "abc-123"},
                        environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert direct.headers["X-Request-Id"] != "abc-123" and len(direct.headers["X-Request-Id"]) == 32


def test_request_id_header_is_ignored_when_proxy_request_id_is_off(app_factory):
    client = app_factory({"proxy.trusted": ["10.0.0.0/8"], "proxy.request_id": False}).test_client()
    r = client.get("/.well-known/terraform.json", headers={"X-Request-Id": "abc-123"},
                   environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert r.headers["X-Request-Id"] != "abc-123"


def _download_location(app, **request_kwargs) -> str:
    client = app.test_client()
    token = new_token(app, "admin")
    assert post_module(client, token).status_code == 201
    r = client.get("/v1/modules/acme/network/aws/1.0.0/download", headers={
        **bearer(token), **request_kwargs.pop("headers", {})}, **request_kwargs)
    return r.headers["X-Terraform-Get"]


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com",
             "X-Forwarded-For": "203.0.113.7"}


def test_forwarded_headers_from_untrusted_peer_are_ignored(app_factory):
    app = app_factory()
    location = _download_location(app, headers=FORWARDED, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert location.startswith("http://localhost/v1/files/")


def test_forwarded_headers_from_trusted_proxy_are_honoured(app_factory):
    app = app_factory({"proxy.trusted": ["10.0.0.0/8"]})
    location = _download_location(app, headers=FORWARDED, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert location.startswith("https://registry.example.com/v1/files/")


def test_discovery_under_a_path_prefix(app_factory):
    app = app_factory({"public_url": "https://example.com/registry"})
    assert app.test_client().get("/.well-known/terraform.json").get_json() == {
        "modules.v1": "/registry/v1/modules/", "providers.v1": "/registry/v1/providers/"}
    proxied = app_factory({"proxy.trusted": ["10.0.0.0/8"]}).test_client().get(
        "/.well-known/terraform.json", headers={"X-Forwarded-Prefix": "/tf"}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert proxied.get_json() == {"modules.v1": "/tf/v1/modules/", "providers.v1": "/tf/v1/providers/"}


def test_trusted_proxy_client_address_reaches_the_audit_log(app_factory):
    app = app_factory({"proxy.trusted": ["10.0.0.0/8"]})
    client = app.test_client()
    token = new_token(app, "admin")
    client.environ_base.update({"REMOTE_ADDR": "10.9.9.9", "HTTP_X_FORWARDED_FOR": "203.0.113.7, 10.1.1.1"})
    assert post_module(client, token).status_code == 201
    with app.extensions["tfregistry"].db.session() as session:
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "module.publish")).one()
    assert entry.ip == "203.0.113.7"
