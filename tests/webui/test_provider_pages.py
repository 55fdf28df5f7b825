"""Provider pages: versions, platforms, keys, the required_providers snippet, mirrored badges, tabs."""

from __future__ import annotations

import re

import pytest
from markupsafe import Markup

from tests.conftest import bearer, new_token
from tests.integration.test_providers import add_key, publish_provider
from tests.webui.conftest import assert_page
from tfregistry import hookimpl
from tfregistry.models import Provider, ProviderDocPage, ProviderPackage, ProviderVersion
from tfregistry.services.modules import get_or_create_namespace


@pytest.fixture
def providers(app, client, admin_token, signer):
    assert add_key(client, admin_token, "acme", signer.public_armor).status_code == 201
    for version in ("1.0.0", "1.1.0"):
        r = publish_provider(client, admin_token, version=version, key=signer)
        assert r.status_code == 201, r.get_json()
    with app.extensions["tfregistry"].db.session() as session:  # as a mirror sync leaves it
        ns = get_or_create_namespace(session, "hashicorp")
        provider = Provider(hostname="registry.terraform.io", namespace=ns, type="random")
        pv = ProviderVersion(provider=provider, version="3.6.0", protocols=["5.0"], shasums="x  y\n",
                             shasums_key="k/SHA256SUMS", signature_key="k/SHA256SUMS.sig",
                             upstream_key_armor="-----BEGIN PGP PUBLIC KEY BLOCK-----", published_by="mirror:1")
        pv.packages.append(ProviderPackage(os="linux", arch="amd64", filename="terraform-provider-random.zip",
                                           storage_key="k/zip", size=1, sha256="ab" * 32, h1="h1:x"))
        session.add(provider)
        session.commit()
    return bearer(admin_token)


def test_provider_list_and_page(client, providers, signer):
    listing = assert_page(client.get("/providers", headers=providers))
    assert "acme/foo" in listing and "hashicorp/random" in listing and "mirrored from registry.terraform.io" in listing
    page = assert_page(client.get("/providers/acme/foo", headers=providers))
    assert '<option value="1.1.0" selected>1.1.0 (latest)</option>' in page
    assert "terraform-provider-foo_1.1.0_linux_amd64.zip" in page and "darwin" in page
    snippet = re.search(r'<pre id="provider-snippet"[^>]*><code>(.*?)</code></pre>', page, re.S).group(1)
    assert "source  = &#34;localhost/acme/foo&#34;" in snippet and "version = &#34;~&gt; 1.1&#34;" in snippet
    assert signer.key_id in page
    keys = assert_page(client.get("/providers/acme/foo/1.0.0/keys", headers=providers))
    assert signer.fingerprint in keys
    versions = assert_page(client.get("/providers/acme/foo/versions", headers=providers))
    assert "/providers/acme/foo/1.0.0" in versions
    assert_page(client.get("/providers/acme/foo/9.9.9", headers=providers), 404)
    picked = client.get("/providers/acme/foo?version=1.0.0&tab=keys", headers=providers)
    assert picked.status_code == 302 and picked.headers["Location"] == "/providers/acme/foo/1.0.0/keys"


def test_mirrored_provider_page(client, providers):
    page = assert_page(client.get("/providers/hashicorp/random?origin=registry.terraform.io", headers=providers))
    assert "mirrored from registry.terraform.io" in page
    assert "source  = &#34;hashicorp/random&#34;" in page  # known by its origin address
    assert "network mirror" in page
    assert_page(client.get("/providers/hashicorp/random", headers=providers), 404)  # not one of ours


def test_downloads_key_registrants_and_how_versions_came(app, client, providers, signer):
    """Provider downloads are counted (written in batches) and shown on the list and the page; each key
    says who registered it (as the API does); a mirrored provider's versions say whether a mirror sync
    or ``tfr mirror import`` brought them."""
    for _ in range(3):
        r = client.get("/v1/providers/acme/foo/1.1.0/download/linux/amd64", headers=providers)
        assert r.status_code == 200
    assert client.get("/v1/providers/acme/foo/1.0.0/download/darwin/arm64", headers=providers).status_code == 200
    registry = app.extensions["tfregistry"]
    registry.downloads.flush()
    assert client.get("/v1/providers/acme/foo/1.1.0", headers=providers).get_json()["downloads"] == 3
    listing = assert_page(client.get("/providers", headers=providers))
    assert "4 downloads" in listing
    page = assert_page(client.get("/providers/acme/foo", headers=providers))
    assert "3 of this version, 4 of all versions" in page
    versions = assert_page(client.get("/providers/acme/foo/versions", headers=providers))
    assert re.search(r"<td>2</td><td>3</td>", versions) and re.search(r"<td>2</td><td>1</td>", versions)

    [key] = client.get("/api/v1/gpg-keys?namespace=acme", headers=providers).get_json()
    assert key["created_by"]  # the actor who added it
    keys = assert_page(client.get("/providers/acme/foo/keys", headers=providers))
    assert f"<td>{key['created_by']}</td>" in keys

    with registry.db.session() as session:  # a version `tfr mirror import` brought
        provider = session.query(Provider).filter_by(type="random").one()
        pv = ProviderVersion(provider=provider, version="3.7.0", protocols=["5.0"], shasums="x  y\n",
                             shasums_key="k2/SHA256SUMS", signature_key="k2/SHA256SUMS.sig",
                             upstream_key_armor="-----BEGIN PGP PUBLIC KEY BLOCK-----", published_by="cli")
        pv.packages.append(ProviderPackage(os="linux", arch="amd64", filename="terraform-provider-random.zip",
                                           storage_key="k2/zip", size=1, sha256="cd" * 32, h1="h1:y"))
        session.add(pv)
        session.commit()
    imported = assert_page(client.get("/providers/hashicorp/random/3.7.0?origin=registry.terraform.io",
                                      headers=providers))
    assert "imported from registry.terraform.io" in imported
    mirrored = assert_page(client.get("/providers/hashicorp/random/3.6.0?origin=registry.terraform.io",
                                      headers=providers))
    assert "mirrored from registry.terraform.io" in mirrored
    assert client.get("/api/v1/providers/acme/foo/1.1.0", headers=providers).get_json()["origin"] == "published"


def test_documentation_tab_shows_the_pages_or_how_to_publish_them(app, client, providers):
    assert ">Documentation</a>" in assert_page(client.get("/providers/acme/foo", headers=providers))
    empty = assert_page(client.get("/providers/acme/foo/1.1.0/docs", headers=providers))
    assert "has no documentation" in empty and "tfr publish provider DIST --docs DIR" in empty
    # a mirrored provider without pages has no Documentation tab
    mirrored = assert_page(client.get("/providers/hashicorp/random?origin=registry.terraform.io", headers=providers))
    assert ">Documentation</a>" not in mirrored
    with app.extensions["tfregistry"].db.session() as session:
        pv = session.query(ProviderVersion).filter_by(version="1.1.0").one()
        session.add(ProviderDocPage(provider_version_id=pv.id, path="resources/thing.md", category="resources",
                                    slug="thing", title="foo_thing", content="# foo_thing"))
        session.commit()
    docs = assert_page(client.get("/providers/acme/foo/1.1.0/docs", headers=providers))
    assert "foo_thing" in docs


def test_anonymous_cannot_see_private_providers(client, providers):
    assert "acme/foo" not in assert_page(client.get("/providers"))
    assert_page(client.get("/providers/acme/foo"), 401)


def test_hook_tfr_webui_provider_tabs(ui_factory, signer):
    class Notes:
        @hookimpl
        def tfr_webui_provider_tabs(self, provider_version):
            return [{"id": "notes", "label": "Release notes",
                     "render": lambda: Markup("<p>Notes for {}</p>").format(provider_version.version)}]

    app = ui_factory(plugins=(Notes(),))
    client = app.test_client()
    token = new_token(app, "admin")
    assert add_key(client, token, "acme", signer.public_armor).status_code == 201
    assert publish_provider(client, token, key=signer).status_code == 201
    page = assert_page(client.get("/providers/acme/foo/1.0.0/notes", headers=bearer(token)))
    assert "<p>Notes for 1.0.0</p>" in page and ">Release notes</a>" in page
