"""The Module Registry Protocol and the browse API, through the Flask test client."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from tests.conftest import bearer, new_token, post_module
from tfregistry.models import Namespace


def test_discovery_advertises_modules_v1(client):
    r = client.get("/.well-known/terraform.json")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    assert r.get_json()["modules.v1"] == "/v1/modules/"


def test_versions_lists_every_version(client, publish, admin_token):
    for v in ("0.9.0", "1.0.0", "1.1.0-beta1", "2.0.0"):
        assert publish(version=v).status_code == 201
    r = client.get("/v1/modules/acme/network/aws/versions", headers=bearer(admin_token))
    assert r.status_code == 200
    body = r.get_json()
    assert len(body["modules"]) == 1
    assert [v["version"] for v in body["modules"][0]["versions"]] == ["2.0.0", "1.1.0-beta1", "1.0.0", "0.9.0"]


def test_download_answers_204_with_signed_location(client, publish, admin_token, module_archive):
    archive = module_archive(files={"extra.tf": "# v1.2.0\n"})
    assert publish(version="1.2.0", archive=archive).status_code == 201
    r = client.get("/v1/modules/acme/network/aws/1.2.0/download", headers={
        **bearer(admin_token), "User-Agent": "Terraform/1.15.5"})
    assert r.status_code == 204
    location = r.headers["X-Terraform-Get"]
    parts = urlsplit(location)
    assert parts.path.endswith(".tar.gz")
    assert {"expires", "signature"} <= set(parse_qs(parts.query))

    # The archive URL works with no token, and serves the exact bytes without Content-Encoding.
    f = client.get(parts.path + "?" + parts.query)
    assert f.status_code == 200
    assert "Content-Encoding" not in f.headers
    assert f.mimetype == "application/octet-stream"
    assert hashlib.sha256(f.data).hexdigest() == hashlib.sha256(archive).hexdigest()
    head = client.head(parts.path + "?" + parts.query)
    assert head.status_code == 200 and head.headers["Accept-Ranges"] == "bytes"
    ranged = client.get(parts.path + "?" + parts.query, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.data == archive[:10]


def test_download_for_other_clients_has_json_location(client, publish, admin_token):
    publish(version="1.0.0")
    r = client.get("/v1/modules/acme/network/aws/1.0.0/download",
                   headers={**bearer(admin_token), "User-Agent": "OpenTofu/1.9.0"})
    assert r.status_code == 200
    assert r.get_json()["location"] == r.headers["X-Terraform-Get"]


@pytest.mark.parametrize("tamper", ["signature", "expires", "path"])
def test_tampered_or_expired_file_links_are_refused(client, publish, admin_token, tamper):
    publish(version="1.0.0")
    location = client.get("/v1/modules/acme/network/aws/1.0.0/download",
                          headers=bearer(admin_token)).headers["X-Terraform-Get"]
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    path = parts.path
    if tamper == "signature":
        query["signature"] = query["signature"][:-2] + ("AA" if not query["signature"].endswith("AA") else "BB")
    elif tamper == "expires":
        query["expires"] = "1"  # long past, and not what was signed
    else:
        path = path.replace("1.0.0", "1.0.1")
    r = client.get(path, query_string=query)
    assert r.status_code == 403
    assert "invalid or has expired" in r.get_json()["errors"][0]


def test_latest_download_redirects_to_highest_release(client, publish, admin_token):
    for v in ("1.0.0", "1.1.0", "2.0.0-rc.1"):
        publish(version=v)
    r = client.get("/v1/modules/acme/network/aws/download", headers=bearer(admin_token))
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/v1/modules/acme/network/aws/1.1.0/download")


def test_unknown_module_and_version_are_404(client, publish, admin_token):
    publish(version="1.0.0")
    assert client.get("/v1/modules/acme/nope/aws/versions", headers=bearer(admin_token)).status_code == 404
    r = client.get("/v1/modules/acme/network/aws/9.9.9/download", headers=bearer(admin_token))
    assert r.status_code == 404
    assert "9.9.9" in r.get_json()["errors"][0]


def test_reads_need_a_token_unless_anonymous_read(app_factory, module_archive):
    app = app_factory()
    client = app.test_client()
    r = client.get("/v1/modules/acme/network/aws/versions")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    bad = client.get("/v1/modules/acme/network/aws/versions", headers=bearer("tfr_" + "x" * 43))
    assert bad.status_code == 401


def test_anonymous_read_setting_opens_protocol_reads(app_factory):
    app = app_factory({"auth.anonymous_read": True})
    client = app.test_client()
    assert post_module(client, new_token(app, "admin")).status_code == 201
    assert client.get("/v1/modules/acme/network/aws/versions").status_code == 200
    # publishing still needs a token
    assert post_module(client, None, version="1.0.1").status_code == 401


def test_browse_api_lists_searches_and_pages(client, publish, admin_token):
    for name in ("network", "compute", "storage"):
        assert publish(name=name, version="1.0.0", description=f"{name} things").status_code == 201
    assert publish(namespace="other", name="network", system="gcp", version="0.1.0").status_code == 201
    h = bearer(admin_token)

    everything = client.get("/v1/modules", headers=h).get_json()
    assert {m["id"] for m in everything["modules"]} == {
        "acme/compute/aws/1.0.0", "acme/network/aws/1.0.0", "acme/storage/aws/1.0.0", "other/network/gcp/0.1.0"}

    page1 = client.get("/v1/modules?limit=2", headers=h).get_json()
    assert len(page1["modules"]) == 2 and page1["meta"]["next_offset"] == 2
    page2 = client.get("/v1/modules?limit=2&offset=2", headers=h).get_json()
    assert len(page2["modules"]) == 2 and "next_offset" not in page2["meta"]
    assert {m["id"] for m in page1["modules"]}.isdisjoint({m["id"] for m in page2["modules"]})

    found = client.get("/v1/modules/search?q=netw", headers=h).get_json()["modules"]
    assert {m["namespace"] for m in found} == {"acme", "other"}
    assert client.get("/v1/modules/search", headers=h).status_code == 400

    in_ns = client.get("/v1/modules/other", headers=h).get_json()["modules"]
    assert [m["id"] for m in in_ns] == ["other/network/gcp/0.1.0"]
    by_name = client.get("/v1/modules/acme/network", headers=h).get_json()["modules"]
    assert [m["provider"] for m in by_name] == ["aws"]

    latest = client.get("/v1/modules/acme/network/aws", headers=h).get_json()
    assert latest["version"] == "1.0.0" and latest["description"] == "network things"
    assert "# example" in latest["root"]["readme"]
    exact = client.get("/v1/modules/acme/network/aws/1.0.0", headers=h).get_json()
    assert exact["versions"] == ["1.0.0"]


def test_namespace_token_sees_only_its_namespace(client, publish, make_token):
    publish(namespace="acme", version="1.0.0")
    publish(namespace="other", version="1.0.0")
    token = make_token("read", namespace="acme")
    listed = client.get("/v1/modules", headers=bearer(token)).get_json()["modules"]
    assert [m["namespace"] for m in listed] == ["acme"]
    assert client.get("/v1/modules/other/network/aws/versions", headers=bearer(token)).status_code == 403
    assert client.get("/v1/modules/acme/network/aws/versions", headers=bearer(token)).status_code == 200


def test_download_events_are_counted(client, publish, admin_token):
    publish(version="1.0.0")
    for _ in range(3):
        client.get("/v1/modules/acme/network/aws/1.0.0/download", headers=bearer(admin_token))
    assert client.get("/v1/modules/acme/network/aws/1.0.0", headers=bearer(admin_token)).get_json()["downloads"] == 3


def test_public_url_makes_absolute_locations(app_factory):
    app = app_factory({"public_url": "https://registry.example.com/"})
    token = new_token(app, "admin")
    client = app.test_client()
    assert post_module(client, token).status_code == 201
    loc = client.get("/v1/modules/acme/network/aws/1.0.0/download", headers=bearer(token)).headers["X-Terraform-Get"]
    assert loc.startswith("https://registry.example.com/v1/files/modules/acme/network/aws/1.0.0/")


def test_namespace_token_keeps_access_to_public_namespaces(client, publish, make_token, app):
    publish(namespace="shared", version="1.0.0")
    publish(namespace="secret", version="1.0.0")
    registry = app.extensions["tfregistry"]
    with registry.db.session() as session:
        session.scalars(select(Namespace).where(Namespace.name == "shared")).one().visibility = "public"
        session.commit()
    token = make_token("read", namespace="team")
    assert client.get("/v1/modules/shared/network/aws/versions", headers=bearer(token)).status_code == 200
    assert client.get("/v1/modules/secret/network/aws/versions", headers=bearer(token)).status_code == 403
    listed = client.get("/v1/modules", headers=bearer(token)).get_json()["modules"]
    assert [m["namespace"] for m in listed] == ["shared"]
