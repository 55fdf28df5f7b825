"""Deprecate / undeprecate / delete buttons on the module and provider version pages: shown to those who may
use them, hidden from others, and the forms on the page work (with their CSRF token)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from tests.conftest import bearer, new_token, post_module
from tests.integration.test_providers import publish_provider
from tests.webui.conftest import assert_page
from tests.webui.test_account import sign_in, signed_in_as

MODULE = "/modules/acme/network/aws"
PROVIDER = "/providers/acme/foo"


def form_of(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the page's form posting to ``action``."""
    form = re.search(rf'<form method="post" action="{re.escape(action)}">(.*?)</form>', html, re.S)
    assert form, f"no form posting to {action}"
    return {name: unescape(value) for name, value in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(1))}


def test_module_page_buttons_for_an_admin_and_the_deprecate_form_works(app, client, admin_token):
    assert post_module(client, admin_token).status_code == 201
    sign_in(client, admin_token)
    page = assert_page(client.get(f"{MODULE}/1.0.0"))
    assert '<section class="version-actions" aria-label="Manage acme/network/aws 1.0.0">' in page
    assert f'href="{MODULE}/1.0.0/delete">Delete acme/network/aws 1.0.0' in page
    assert "forms.css" in page
    fields = form_of(page, f"{MODULE}/1.0.0/deprecate")
    done = client.post(f"{MODULE}/1.0.0/deprecate", data={**fields, "reason": "Use 2.x"})
    assert done.status_code == 303 and done.headers["Location"] == f"{MODULE}/1.0.0"
    shown = client.get(f"/api/v1{MODULE}/1.0.0", headers=bearer(admin_token)).get_json()
    assert shown["deprecated"] is True and shown["deprecation_reason"] == "Use 2.x"
    after = assert_page(client.get(done.headers["Location"]))
    assert "Version 1.0.0 is deprecated." in after and "Use 2.x" in after
    undo = form_of(after, f"{MODULE}/1.0.0/undeprecate")
    assert client.post(f"{MODULE}/1.0.0/undeprecate", data=undo).status_code == 303
    assert client.get(f"/api/v1{MODULE}/1.0.0", headers=bearer(admin_token)).get_json()["deprecated"] is False
    forged = client.post(f"{MODULE}/1.0.0/deprecate", data={"csrf_token": "forged"})
    assert forged.status_code == 403 and b"CSRF" in forged.data


def test_module_page_buttons_hidden_from_readers_and_anonymous(ui_factory):
    from tests.integration.test_identity import Site

    site = Site(ui_factory())
    site.namespace("opensrc", "default", visibility="public")
    assert post_module(site.client, site.admin, namespace="opensrc").status_code == 201
    for token in (None, new_token(site.client.application, "read")):
        page = assert_page(site.get("/modules/opensrc/network/aws/1.0.0", token))
        assert "version-actions" not in page and "/deprecate" not in page and "/delete" not in page
    publisher = assert_page(site.get("/modules/opensrc/network/aws/1.0.0", new_token(site.client.application,
                                                                                     "publish")))
    assert 'action="/modules/opensrc/network/aws/1.0.0/deprecate"' in publisher and "/delete" not in publisher
    assert 'action="/modules/opensrc/network/aws/1.0.0/deprecate"' in assert_page(
        site.get("/modules/opensrc/network/aws/1.0.0/versions", site.admin))  # on every tab


def test_provider_page_buttons_and_the_deprecate_form(app, client, admin_token):
    assert client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"},
                       headers=bearer(admin_token)).status_code == 201
    assert publish_provider(client, admin_token, sign=False).status_code == 201
    reader = assert_page(client.get(PROVIDER, headers=bearer(new_token(app, "read"))))
    assert "version-actions" not in reader and "/deprecate" not in reader
    signed_in_as(client, "pub@example.com", role="publisher")
    page = assert_page(client.get(f"{PROVIDER}/1.0.0/versions"))
    assert 'aria-label="Manage acme/foo 1.0.0"' in page and "/delete" not in page  # publishers do not delete
    done = client.post(f"{PROVIDER}/1.0.0/deprecate", data={**form_of(page, f"{PROVIDER}/1.0.0/deprecate"),
                                                            "reason": "use 2.x"})
    assert done.status_code == 303 and done.headers["Location"] == f"{PROVIDER}/1.0.0"
    after = assert_page(client.get(done.headers["Location"]))
    assert "Version 1.0.0 is deprecated." in after and f'action="{PROVIDER}/1.0.0/undeprecate"' in after
    shown: Any = client.get(f"/api/v1{PROVIDER}/1.0.0", headers=bearer(admin_token)).get_json()
    assert shown["deprecated"] is True and shown["deprecation_reason"] == "use 2.x"
    admin_client = app.test_client()  # another browser, signed in as the admin
    sign_in(admin_client, admin_token)
    assert f'href="{PROVIDER}/1.0.0/delete"' in assert_page(admin_client.get(PROVIDER))
