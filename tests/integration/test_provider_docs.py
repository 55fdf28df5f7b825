"""Provider documentation through the API: upload, index, pages, replacement, preview, limits, permissions."""

from __future__ import annotations

import io
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, new_token
from tests.integration.test_providers import publish_provider
from tests.unit.test_provider_docs import INDEX, THING, tgz, zipped
from tfregistry.models import AuditEntry, ProviderDocPage

DOCS = "/api/v1/providers/acme/foo/1.0.0/docs"

FULL = {
    "docs/index.md": INDEX,
    "docs/resources/thing.md": THING,
    "docs/resources/widget.md": b'---\nsubcategory: "Compute"\npage_title: "foo_widget"\n---\n# foo_widget\n',
    "docs/resources/alpha.md": b"---\npage_title: foo_alpha\n---\nNo subcategory.\n",
    "docs/data-sources/thing.md": b'---\nsubcategory: "Compute"\n---\n# foo_thing (Data Source)\n',
    "docs/guides/start.md": b"---\npage_title: Getting started\nsubcategory: Tutorials\n---\nHello.\n",
    "docs/functions/parse_id.md": b"---\npage_title: parse_id\n---\nparse_id(string)\n",
    "docs/ephemeral-resources/token.md": b"# foo_token\n",
}


def upload(client: Any, token: str | None, archive: io.BytesIO, url: str = DOCS) -> Any:
    return client.post(url, data={"archive": (archive, "docs.tar.gz")}, content_type="multipart/form-data",
                       headers=bearer(token) if token else {})


@pytest.fixture
def provider(client: Any, admin_token: str) -> None:
    """acme/foo 1.0.0, signed by a registry-managed key."""
    key = client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"}, headers=bearer(admin_token))
    assert key.status_code == 201, key.get_json()
    published = publish_provider(client, admin_token, sign=False)
    assert published.status_code == 201, published.get_json()


def count_pages(app: Any) -> int:
    with app.extensions["tfregistry"].db.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ProviderDocPage))


def test_publish_docs_then_read_the_index_and_pages(app: Any, client: Any, admin_token: str, provider: None) -> None:
    response = upload(client, admin_token, tgz(FULL))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["id"] == "acme/foo/1.0.0" and body["page_count"] == 8 and body["problems"] == []
    assert body["replaced"] == 0

    index = client.get(DOCS, headers=bearer(admin_token)).get_json()
    assert index["page_count"] == 8
    assert [c["category"] for c in index["categories"]] == ["index", "guides", "resources", "data-sources",
                                                            "ephemeral-resources", "functions"]
    resources = next(c for c in index["categories"] if c["category"] == "resources")
    assert resources["label"] == "Resources"
    assert [(s["name"], [p["slug"] for p in s["pages"]]) for s in resources["subcategories"]] == [
        ("", ["alpha"]), ("Compute", ["thing", "widget"])]
    thing = resources["subcategories"][1]["pages"][0]
    assert thing == {"path": "resources/thing.md", "category": "resources", "slug": "thing",
                     "title": "foo_thing Resource - terraform-provider-foo", "subcategory": "Compute",
                     "description": "Manages a thing."}
    assert "content" not in str(index)

    page = client.get(f"{DOCS}/resources/thing", headers=bearer(admin_token)).get_json()
    assert page["content"].startswith("# foo_thing (Resource)") and page["subcategory"] == "Compute"
    overview = client.get(f"{DOCS}/index/index", headers=bearer(admin_token)).get_json()
    assert overview["title"] == "Provider: Foo" and overview["content"] == "# Foo\n"
    missing = client.get(f"{DOCS}/resources/nothing", headers=bearer(admin_token))
    assert missing.status_code == 404 and "no documentation page resources/nothing" in missing.get_json()["message"]
    assert client.get("/api/v1/providers/acme/foo/9.9.9/docs", headers=bearer(admin_token)).status_code == 404


def test_docs_can_be_replaced_and_are_audited(app: Any, client: Any, admin_token: str, provider: None) -> None:
    assert upload(client, admin_token, tgz(FULL)).status_code == 201
    again = upload(client, admin_token, zipped({"docs/index.md": b"# New overview\n"}))
    assert again.status_code == 201 and again.get_json()["replaced"] == 8
    index = client.get(DOCS, headers=bearer(admin_token)).get_json()
    assert index["page_count"] == 1 and count_pages(app) == 1
    assert client.get(f"{DOCS}/index/index", headers=bearer(admin_token)).get_json()["title"] == "New overview"
    with app.extensions["tfregistry"].db.session() as session:
        entries = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "provider.docs")).all()
        assert [e.target for e in entries] == ["acme/foo/1.0.0"] * 2


def test_files_out_of_place_are_listed(client: Any, admin_token: str, provider: None) -> None:
    response = upload(client, admin_token, tgz({**FULL, "docs/resource/typo.md": b"x", "README.md": b"x",
                                                 "docs/resources/img.png": b"\x89PNG"}))
    assert response.status_code == 201
    problems = response.get_json()["problems"]
    assert len(problems) == 3 and any("'docs/resource/typo.md' is in 'resource/'" in p for p in problems)


@pytest.mark.parametrize(("archive", "status", "message"), [
    (lambda: tgz({"README.md": b"x", "main.go": b"package main"}), 400, "no documentation pages found"),
    (lambda: tgz({"docs/index.md": INDEX, "docs/../../etc/cron.d/x.md": b"x"}), 400, "'..' component"),
    (lambda: tgz({"docs/index.md": INDEX}, {"docs/guides/passwd.md": "/etc/passwd"}), 400, "symbolic link"),
    (lambda: zipped({"docs/index.md": INDEX}, {"docs/guides/l.md": "../../x"}), 400, "symbolic link"),
    (lambda: io.BytesIO(b"not an archive"), 400, "must be a .tar.gz or a .zip"),
    (lambda: tgz({"docs/index.md": b"x" * 2048}), 413, "per page"),
    (lambda: tgz({f"docs/guides/{n}.md": b"x" for n in "abcd"}), 413, "more than 3 pages"),
])
def test_refused_archives_store_nothing(app_factory: Any, archive: Any, status: int, message: str) -> None:
    app = app_factory({"limits.provider_docs_max_page_bytes": 1024, "limits.provider_docs_max_pages": 3})
    client = app.test_client()
    admin = new_token(app, "admin")
    client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"}, headers=bearer(admin))
    assert publish_provider(client, admin, sign=False).status_code == 201
    response = upload(client, admin, archive())
    assert response.status_code == status, response.get_json()
    assert message in response.get_json()["message"]
    assert count_pages(app) == 0


def test_archive_over_the_upload_limit_is_413(app_factory: Any) -> None:
    app = app_factory({"limits.provider_docs_max_bytes": 4096})
    client = app.test_client()
    admin = new_token(app, "admin")
    client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"}, headers=bearer(admin))
    assert publish_provider(client, admin, sign=False).status_code == 201
    import random

    noise = random.Random(2).randbytes(8192)
    for url in (DOCS, "/api/v1/providers/docs/preview"):
        response = upload(client, admin, tgz({"docs/index.md": INDEX, "docs/noise.bin": noise}), url)
        assert response.status_code == 413, response.get_json()
        assert "limits.provider_docs_max_bytes" in response.get_json()["message"]


def test_only_publishers_of_the_namespace_may_upload(app: Any, client: Any, admin_token: str,
                                                     provider: None) -> None:
    other_publisher = new_token(app, "publish", namespace="other")
    reader = new_token(app, "read")
    assert upload(client, other_publisher, tgz(FULL)).status_code == 403
    assert upload(client, reader, tgz(FULL)).status_code == 403
    assert upload(client, None, tgz(FULL)).status_code == 401
    own_publisher = new_token(app, "publish", namespace="acme")
    assert upload(client, own_publisher, tgz(FULL)).status_code == 201


def test_private_docs_are_read_like_the_provider(app_factory: Any) -> None:
    app = app_factory({"tenancy": "multi"})
    client = app.test_client()
    admin = new_token(app, "admin")
    for org in ("acme-org", "other-org"):
        assert client.post("/api/v1/organizations", json={"name": org}, headers=bearer(admin)).status_code == 201
    assert client.post("/api/v1/organizations/acme-org/namespaces", json={"name": "acme", "visibility": "private"},
                       headers=bearer(admin)).status_code == 201
    client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"}, headers=bearer(admin))
    assert publish_provider(client, admin, sign=False).status_code == 201
    assert upload(client, admin, tgz(FULL)).status_code == 201

    def service_token(org: str) -> str:
        made = client.post("/api/v1/tokens", json={"name": org, "kind": "service", "organization": org,
                                                   "scopes": ["read"]}, headers=bearer(admin))
        assert made.status_code == 201, made.get_json()
        return made.get_json()["secret"]

    member, outsider = service_token("acme-org"), service_token("other-org")
    for url in (DOCS, f"{DOCS}/resources/thing"):
        assert client.get(url, headers=bearer(member)).status_code == 200
        assert client.get(url).status_code == 401
        hidden = client.get(url, headers=bearer(outsider))
        assert hidden.status_code == 404
        assert client.get(url.replace("/acme/", "/nosuchns/"), headers=bearer(outsider)).get_json()["message"] \
            == hidden.get_json()["message"].replace("'acme'", "'nosuchns'")


def test_preview_stores_nothing(app: Any, client: Any, admin_token: str, provider: None) -> None:
    url = "/api/v1/providers/docs/preview"
    publisher = new_token(app, "publish", namespace="acme")
    preview = upload(client, publisher, tgz({**FULL, "docs/stray.md": b"x"}), url)
    assert preview.status_code == 200, preview.get_json()
    body = preview.get_json()
    assert body["page_count"] == 8 and len(body["problems"]) == 1 and "id" not in body
    assert [c["category"] for c in body["categories"]][:2] == ["index", "guides"]
    assert count_pages(app) == 0
    assert client.get(DOCS, headers=bearer(admin_token)).get_json()["page_count"] == 0
    refused = upload(client, publisher, tgz({"README.md": b"x"}), url)
    assert refused.status_code == 400 and "no documentation pages found" in refused.get_json()["message"]
    assert upload(client, None, tgz(FULL), url).status_code == 401
    assert upload(client, new_token(app, "read"), tgz(FULL), url).status_code == 403


def test_deleting_the_version_deletes_its_docs(app: Any, client: Any, admin_token: str, provider: None) -> None:
    assert upload(client, admin_token, tgz(FULL)).status_code == 201
    assert client.delete("/api/v1/providers/acme/foo/1.0.0", headers=bearer(admin_token)).status_code == 204
    assert count_pages(app) == 0
