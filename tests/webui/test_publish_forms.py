"""Publish forms (module archive, provider release) and version actions (deprecate, undeprecate, delete),
through the Flask test client, as signed-in browsers."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from flask import render_template_string

from tests.conftest import bearer, new_token
from tests.providers_kit import provider_zip, shasums
from tests.webui.conftest import assert_page
from tests.webui.test_account import SECRET, audit, csrf_of, form_csrf, sign_in, signed_in_as
from tfregistry.testing.plugin import build_module_archive

MODULE = {"namespace": "acme", "name": "network", "system": "aws", "version": "1.2.0", "description": "VPC and subnets"}


def post_module_form(client: Any, archive: bytes | None = None, csrf: str | None = None, **fields: str) -> Any:
    data: dict[str, Any] = {**MODULE, **fields, "csrf_token": csrf or csrf_of(client, "/publish/module")}
    data["archive"] = (io.BytesIO(build_module_archive() if archive is None else archive), "module.tar.gz")
    return client.post("/publish/module", data=data, content_type="multipart/form-data")


def field_value(html: str, name: str) -> str:
    return re.search(rf'name="{name}" type="text" value="([^"]*)"', html).group(1)


# --- modules ---------------------------------------------------------------------------------------------


def test_publish_form_is_accessible_and_names_its_limit(app, client, admin_token):
    sign_in(client, admin_token)
    html = assert_page(client.get("/publish/module"))
    assert 'enctype="multipart/form-data"' in html and "<legend>Address</legend>" in html
    for field in ("namespace", "name", "system", "version", "description", "archive"):
        assert f'<label for="f-{field}">' in html and f'id="f-{field}"' in html
        assert f'aria-describedby="f-{field}-hint"' in html
    limit = app.extensions["tfregistry"].settings["limits.module_archive_max_bytes"]
    assert f"At most {limit:,} bytes." in html


def test_publish_a_module_through_the_form(app, client, admin_token):
    sign_in(client, admin_token)
    done = post_module_form(client)
    assert done.status_code == 303
    assert done.headers["Location"] == "/modules/acme/network/aws/1.2.0"
    listed = client.get("/v1/modules/acme/network/aws/versions", headers=bearer(admin_token)).get_json()
    assert [v["version"] for v in listed["modules"][0]["versions"]] == ["1.2.0"]
    shown = client.get("/api/v1/modules/acme/network/aws/1.2.0", headers=bearer(admin_token)).get_json()
    assert shown["description"] == "VPC and subnets" and shown["published_by"] == "token:admin"
    assert [e.target for e in audit(app, "module.publish")] == ["acme/network/aws/1.2.0"]
    # the same bytes again are no change: the same redirect
    assert post_module_form(client).headers["Location"] == "/modules/acme/network/aws/1.2.0"


def test_publishing_as_a_user_through_a_personal_token_session(client):
    signed_in_as(client, "pub@example.com", role="publisher")
    assert post_module_form(client, version="0.1.0").status_code == 303


def test_validation_errors_keep_the_fields(client, admin_token):
    sign_in(client, admin_token)
    refused = post_module_form(client, version="not-a-version", name="Bad Name!")
    html = assert_page(refused, 400)
    assert field_value(html, "namespace") == "acme" and field_value(html, "version") == "not-a-version"
    assert field_value(html, "name") == "Bad Name!" and ">VPC and subnets</textarea>" in html
    for field in ("version", "name"):
        assert f'id="f-{field}-error"' in html
        assert f'aria-describedby="f-{field}-hint f-{field}-error" aria-invalid="true"' in html
    assert 'role="alert"' in html


def test_a_broken_archive_is_reported_at_the_archive_field(client, admin_token):
    sign_in(client, admin_token)
    html = assert_page(post_module_form(client, archive=b"this is not gzip"), 400)
    assert 'id="f-archive-error"' in html and field_value(html, "system") == "aws"


def test_a_different_archive_for_an_existing_version_is_a_conflict(client, admin_token):
    sign_in(client, admin_token)
    post_module_form(client)
    other = build_module_archive(files={"main.tf": 'variable "x" {}\n'})
    html = assert_page(post_module_form(client, archive=other), 409)
    assert "already exists with different content" in html and 'id="f-version-error"' in html


def test_an_oversized_upload_is_the_413_page(ui_factory, admin_token):
    app = ui_factory({"limits.module_archive_max_bytes": 1024})
    client = app.test_client()
    sign_in(client, new_token(app, "admin"))
    csrf = csrf_of(client, "/publish/module")
    huge = post_module_form(client, archive=b"\0" * (200 * 1024), csrf=csrf)  # past the cap and the form's framing
    html = assert_page(huge, 413)
    assert "Upload too large" in html and "limits.module_archive_max_bytes" in html
    # within the framing allowance but past the archive cap: the same page, from the API's own check
    assert "Upload too large" in assert_page(post_module_form(client, archive=b"\0" * 4096, csrf=csrf), 413)


def test_who_may_not_publish_is_told_why(client, admin_token):
    anonymous = assert_page(client.get("/publish/module"))
    assert "Sign in to publish." in anonymous and 'name="archive"' not in anonymous
    assert client.post("/publish/module", data={"namespace": "acme"}).status_code == 401
    signed_in_as(client, "viewer@example.com", role="viewer")
    html = assert_page(client.get("/publish/module"))
    assert "may not publish or change modules" in html and "modules:write" in html
    assert client.post("/publish/module", data={"csrf_token": csrf_of(client, "/")}).status_code == 403


def test_a_namespace_limited_token_is_refused_elsewhere_at_the_namespace_field(app, client):
    sign_in(client, new_token(app, "publish", namespace="other"))
    html = assert_page(post_module_form(client), 403)
    assert 'id="f-namespace-error"' in html and "namespace &#39;acme&#39;" in html
    assert field_value(html, "name") == "network"


def test_publish_needs_csrf(client, admin_token):
    sign_in(client, admin_token)
    refused = post_module_form(client, csrf="forged")
    assert refused.status_code == 403 and b"CSRF" in refused.data


# --- providers -------------------------------------------------------------------------------------------


def provider_form(client: Any, zips: dict[str, bytes], sums: bytes | None = None, sig: bytes | None = None,
                  **fields: str) -> Any:
    data: dict[str, Any] = {"namespace": "acme", "type": "foo", "version": "1.0.0", "protocols": "",
                            "signing": "upload", **fields, "csrf_token": csrf_of(client, "/publish/provider"),
                            "packages": [(io.BytesIO(b), name) for name, b in zips.items()]}
    if sums is not None:
        data["shasums"] = (io.BytesIO(sums), "terraform-provider-foo_1.0.0_SHA256SUMS")
    if sig is not None:
        data["shasums_signature"] = (io.BytesIO(sig), "terraform-provider-foo_1.0.0_SHA256SUMS.sig")
    return client.post("/publish/provider", data=data, content_type="multipart/form-data")


def release(version: str = "1.0.0") -> dict[str, bytes]:
    return {f"terraform-provider-foo_{version}_{p}.zip": provider_zip("foo", version, p)
            for p in ("linux_amd64", "darwin_arm64")}


def test_publish_a_signed_provider_through_the_form(client, admin_token, signer):
    keyed = client.post("/api/v1/gpg-keys", json={"namespace": "acme", "ascii_armor": signer.public_armor},
                        headers=bearer(admin_token))
    assert keyed.status_code == 201
    sign_in(client, admin_token)
    form = assert_page(client.get("/publish/provider"))
    assert 'multiple' in form and "<legend>Signature</legend>" in form
    zips = release()
    sums = shasums(zips)
    done = provider_form(client, zips, sums, signer.sign(sums))
    assert done.status_code == 303 and done.headers["Location"] == "/providers/acme/foo/1.0.0"
    shown = client.get("/api/v1/providers/acme/foo/1.0.0", headers=bearer(admin_token)).get_json()
    assert len(shown["platforms"]) == 2 and shown["signing_key_id"]


def test_a_provider_signed_with_the_managed_key(client, admin_token):
    assert client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"},
                       headers=bearer(admin_token)).status_code == 201
    sign_in(client, admin_token)
    done = provider_form(client, release(), signing="managed")
    assert done.status_code == 303
    shown = client.get("/api/v1/providers/acme/foo/1.0.0", headers=bearer(admin_token)).get_json()
    assert shown["signed_by_managed_key"] is True


def test_provider_form_errors_keep_the_fields(client, admin_token):
    sign_in(client, admin_token)
    html = assert_page(provider_form(client, release(), version="1.0.0", protocols="6.0"), 400)
    assert 'id="f-shasums-error"' in html and "managed key" in html
    assert field_value(html, "protocols") == "6.0" and field_value(html, "type") == "foo"
    unsigned = assert_page(provider_form(client, release(), signing="managed"), 400)  # no managed key in acme
    assert 'id="f-shasums-error"' in unsigned
    no_zips = assert_page(provider_form(client, {}, signing="managed"), 400)
    assert 'id="f-packages-error"' in no_zips


# --- version actions ------------------------------------------------------------------------------------


@pytest.fixture
def published(client, publish):
    assert publish(namespace="acme", name="network", version="1.0.0").status_code == 201
    assert publish(namespace="acme", name="network", version="1.1.0").status_code == 201


def test_deprecate_and_undeprecate_a_module_version(app, client, admin_token, published):
    sign_in(client, admin_token)
    csrf = csrf_of(client, "/")
    done = client.post("/modules/acme/network/aws/1.0.0/deprecate", data={"csrf_token": csrf,
                                                                           "reason": "Use 1.1: 1.0 leaks"})
    assert done.status_code == 303 and done.headers["Location"] == "/modules/acme/network/aws/1.0.0"
    shown = client.get("/api/v1/modules/acme/network/aws/1.0.0", headers=bearer(admin_token)).get_json()
    assert shown["deprecated"] is True and shown["deprecation_reason"] == "Use 1.1: 1.0 leaks"
    client.post("/modules/acme/network/aws/1.0.0/undeprecate", data={"csrf_token": csrf})
    shown = client.get("/api/v1/modules/acme/network/aws/1.0.0", headers=bearer(admin_token)).get_json()
    assert shown["deprecated"] is False and shown["deprecation_reason"] is None
    assert [e.action for e in audit(app, "module.deprecate")] == ["module.deprecate"]


def test_delete_asks_first(app, client, admin_token, published):
    sign_in(client, admin_token)
    confirm = assert_page(client.get("/modules/acme/network/aws/1.0.0/delete"))
    assert "Delete module version acme/network/aws 1.0.0?" in confirm and 'class="danger"' in confirm
    assert client.get("/api/v1/modules/acme/network/aws/1.0.0", headers=bearer(admin_token)).status_code == 200
    done = client.post("/modules/acme/network/aws/1.0.0/delete", data={"csrf_token": form_csrf(confirm)})
    assert done.status_code == 303 and done.headers["Location"] == "/modules/acme/network/aws"
    assert client.get("/api/v1/modules/acme/network/aws/1.0.0", headers=bearer(admin_token)).status_code == 404
    last = client.post("/modules/acme/network/aws/1.1.0/delete", data={"csrf_token": form_csrf(confirm)})
    assert last.headers["Location"] == "/namespaces/acme"  # the module is gone with its last version


def test_a_viewer_may_neither_deprecate_nor_delete(client, admin_token, published):
    signed_in_as(client, "viewer@example.com", role="viewer")
    csrf = csrf_of(client, "/")
    refused = client.post("/modules/acme/network/aws/1.0.0/deprecate", data={"csrf_token": csrf, "reason": "x"})
    assert "may not publish or change modules" in assert_page(refused, 403)
    assert "may not delete modules" in assert_page(client.get("/modules/acme/network/aws/1.0.0/delete"), 403)
    assert assert_page(client.post("/modules/acme/network/aws/1.0.0/delete", data={"csrf_token": csrf}), 403)
    shown = client.get("/api/v1/modules/acme/network/aws/1.0.0", headers=bearer(admin_token)).get_json()
    assert shown["deprecated"] is False


def test_a_publisher_may_deprecate_but_not_delete(client, admin_token, published):
    signed_in_as(client, "pub@example.com", role="publisher")
    csrf = csrf_of(client, "/")
    assert client.post("/modules/acme/network/aws/1.1.0/deprecate", data={"csrf_token": csrf}).status_code == 303
    assert client.post("/modules/acme/network/aws/1.1.0/delete", data={"csrf_token": csrf}).status_code == 403


def test_anonymous_version_actions_need_a_sign_in(client, published):
    assert client.post("/modules/acme/network/aws/1.0.0/deprecate").status_code == 401
    assert client.get("/modules/acme/network/aws/1.0.0/delete").status_code == 401


def test_provider_version_actions(app, client, admin_token):
    assert client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"},
                       headers=bearer(admin_token)).status_code == 201
    sign_in(client, admin_token)
    assert provider_form(client, release(), signing="managed").status_code == 303
    csrf = csrf_of(client, "/")
    done = client.post("/providers/acme/foo/1.0.0/deprecate", data={"csrf_token": csrf, "reason": "use 2.x"})
    assert done.status_code == 303 and done.headers["Location"] == "/providers/acme/foo/1.0.0"
    shown = client.get("/api/v1/providers/acme/foo/1.0.0", headers=bearer(admin_token)).get_json()
    assert shown["deprecated"] is True and shown["deprecation_reason"] == "use 2.x"
    client.post("/providers/acme/foo/1.0.0/undeprecate", data={"csrf_token": csrf})
    assert client.get("/api/v1/providers/acme/foo/1.0.0", headers=bearer(admin_token)).get_json()["deprecated"] is False
    confirm = assert_page(client.get("/providers/acme/foo/1.0.0/delete"))
    assert "Delete provider version acme/foo 1.0.0?" in confirm
    gone = client.post("/providers/acme/foo/1.0.0/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303 and gone.headers["Location"] == "/providers/acme/foo"
    assert client.get("/api/v1/providers/acme/foo/1.0.0", headers=bearer(admin_token)).status_code == 404


# --- the version_actions macro and its helper -------------------------------------------------------------


def render_actions(app: Any, secret: str | None, published_version: str = "1.0.0") -> str:
    from tfregistry.services import modules as module_svc
    from tfregistry_webui.publish_views import module_version_actions

    headers = bearer(secret) if secret else {}
    with app.test_request_context("/", headers=headers):
        registry = app.extensions["tfregistry"]
        with registry.db.session() as session:
            mv = module_svc.get_version(session, "acme", "network", "aws", published_version)
            actions = module_version_actions(session, mv)
            return render_template_string(
                '{% from "_version_actions.html" import version_actions with context %}{{ version_actions(actions) }}',
                actions=actions, csrf_token=lambda: "t")


def test_version_actions_show_what_the_caller_may_do(app, admin_token, published):
    admin = render_actions(app, admin_token)
    assert 'action="/modules/acme/network/aws/1.0.0/deprecate"' in admin
    assert 'href="/modules/acme/network/aws/1.0.0/delete"' in admin and '<label for="deprecation-reason">' in admin
    publisher = render_actions(app, new_token(app, "publish"))
    assert "/deprecate" in publisher and "/delete" not in publisher
    assert render_actions(app, new_token(app, "read")).strip() == ""
    assert render_actions(app, None).strip() == ""


def test_no_page_shows_a_secret(client, admin_token, published):
    sign_in(client, admin_token)
    for path in ("/", "/modules", "/publish/module", "/publish/provider", "/account/tokens", "/sign-in",
                 "/modules/acme/network/aws/1.0.0/delete"):
        html = client.get(path).get_data(as_text=True)
        assert admin_token not in html and not SECRET.search(html), path
