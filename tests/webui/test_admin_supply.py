"""Administration of signing keys and mirrors (``/admin/keys``, ``/admin/mirrors``) through the Flask test client:
every page and action as a signed-in browser (CSRF), and the refusals for viewers and other organizations' admins,
which change nothing."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import bearer, new_token
from tests.providers_kit import shasums
from tests.webui.conftest import assert_page
from tests.webui.test_account import audit, csrf_of, sign_in, signed_in_as
from tests.webui.test_publish_forms import provider_form, release
from tfregistry.models import GpgKey, MirrorConfig, MirrorPolicy


def count(app: Any, model: Any) -> int:
    with app.extensions["tfregistry"].db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def post_form(client: Any, path: str, page: str | None = None, **data: Any) -> Any:
    """POST a form as a browser: with the CSRF token of ``page`` (default ``path``)."""
    return client.post(path, data={"csrf_token": csrf_of(client, page or path), **data})


def error_of(html: str, field: str) -> str:
    match = re.search(rf'id="f-{field}-error">([^<]*)<', html)
    assert match, f"no error at {field}"
    return unescape(match.group(1))


# --- signing keys ------------------------------------------------------------------------------------------


def test_add_a_key_and_see_what_it_signed(app, client, admin_token, signer):
    sign_in(client, admin_token)
    assert "Namespaces you manage" in assert_page(client.get("/admin/keys"))
    assert client.get("/admin/keys?namespace=acme").headers["Location"] == "/admin/keys/acme"
    empty = assert_page(client.get("/admin/keys/acme"))
    assert "acme has no signing key yet" in empty and 'id="f-ascii_armor"' in empty
    added = post_form(client, "/admin/keys/acme", ascii_armor=signer.public_armor, source="release pipeline")
    assert added.status_code == 303 and added.headers["Location"] == "/admin/keys/acme"
    listed = client.get("/api/v1/gpg-keys?namespace=acme", headers=bearer(admin_token)).get_json()
    assert [k["fingerprint"] for k in listed] == [signer.fingerprint]
    assert [e.target for e in audit(app, "gpg_key.add")] == [f"acme/{listed[0]['key_id']}"]
    zips = release()
    sums = shasums(zips)
    assert provider_form(client, zips, sums, signer.sign(sums)).status_code == 303
    page = assert_page(client.get("/admin/keys/acme"))
    assert signer.fingerprint in page and "release pipeline" in page and "uploaded" in page
    assert 'href="/providers/acme/foo/1.0.0">foo 1.0.0</a>' in page
    assert "Key " + listed[0]["key_id"] + " added to acme." in page
    index = assert_page(client.get("/admin/keys"))
    assert 'href="/admin/keys/acme">acme</a>' in index


def test_an_unusable_key_is_refused_at_the_field_keeping_what_was_typed(app, client, admin_token, signer):
    sign_in(client, admin_token)
    html = assert_page(post_form(client, "/admin/keys/acme", ascii_armor="not a key", source="laptop"), 400)
    assert error_of(html, "ascii_armor").startswith("unusable signing key:")
    assert 'name="source" type="text" value="laptop"' in html and ">not a key</textarea>" in html
    assert post_form(client, "/admin/keys/acme", ascii_armor=signer.public_armor).status_code == 303
    again = assert_page(post_form(client, "/admin/keys/acme", ascii_armor=signer.public_armor), 409)
    assert "is already registered for namespace acme" in error_of(again, "ascii_armor")
    assert count(app, GpgKey) == 1


def test_create_a_managed_key_then_revoke_it_after_confirming(app, client, admin_token):
    sign_in(client, admin_token)
    created = post_form(client, "/admin/keys/acme/managed", "/admin/keys/acme", key_type="ed25519")
    assert created.status_code == 303
    page = assert_page(client.get("/admin/keys/acme"))
    assert "registry-managed" in page and "Registry-managed key" in page
    assert len(audit(app, "gpg_key.create_managed")) == 1
    with app.extensions["tfregistry"].db.session() as s:
        key_id = s.scalar(select(GpgKey.id))
    confirm = assert_page(client.get(f"/admin/keys/acme/{key_id}/revoke"))
    assert "longer offered to Terraform" in confirm and 'class="danger"' in confirm
    assert not audit(app, "gpg_key.revoke")  # asking changes nothing
    done = post_form(client, f"/admin/keys/acme/{key_id}/revoke", "/admin/keys/acme")
    assert done.status_code == 303
    shown = client.get(f"/api/v1/gpg-keys/{key_id}", headers=bearer(admin_token)).get_json()
    assert shown["revoked_at"] is not None and len(audit(app, "gpg_key.revoke")) == 1
    assert "revoked" in assert_page(client.get("/admin/keys/acme"))
    # the key is in acme: another namespace's URL does not reach it
    assert client.get(f"/admin/keys/other/{key_id}/revoke").status_code == 404


def test_a_second_managed_key_is_refused_next_to_the_field(client, admin_token):
    sign_in(client, admin_token)
    assert post_form(client, "/admin/keys/acme/managed", "/admin/keys/acme").status_code == 303
    html = assert_page(post_form(client, "/admin/keys/acme/managed", "/admin/keys/acme"), 409)
    assert "already has a registry-managed signing key" in error_of(html, "key_type")


def test_key_pages_need_csrf(app, client, admin_token, signer):
    sign_in(client, admin_token)
    refused = client.post("/admin/keys/acme", data={"csrf_token": "forged", "ascii_armor": signer.public_armor})
    assert refused.status_code == 403 and count(app, GpgKey) == 0


def test_viewers_and_anonymous_callers_may_not_manage_keys(app, client, admin_token, signer):
    assert client.post("/api/v1/gpg-keys", json={"namespace": "acme", "ascii_armor": signer.public_armor},
                       headers=bearer(admin_token)).status_code == 201
    assert assert_page(client.get("/admin/keys"), 401)
    assert client.get("/admin/keys/acme").status_code == 401
    viewer = new_token(app, "read")
    assert_page(client.get("/admin/keys", headers=bearer(viewer)), 403)
    assert_page(client.get("/admin/keys/acme", headers=bearer(viewer)), 403)
    assert client.post("/admin/keys/acme", data={"ascii_armor": "x"}, headers=bearer(viewer)).status_code == 403
    assert client.post("/admin/keys/acme/managed", headers=bearer(viewer)).status_code == 403
    assert client.post("/admin/keys/acme/1/revoke", headers=bearer(viewer)).status_code == 403
    # a publisher manages keys (keys:manage) but may not create a managed one (admin), as in the API
    publisher = new_token(app, "publish")
    assert "needs the admin role" in assert_page(client.get("/admin/keys/acme", headers=bearer(publisher)))
    assert client.post("/admin/keys/acme/managed", headers=bearer(publisher)).status_code == 403
    with app.extensions["tfregistry"].db.session() as s:
        assert [(k.revoked_at, k.managed) for k in s.scalars(select(GpgKey))] == [(None, False)]


def test_another_organizations_admin_sees_nothing_of_its_keys(ui_factory, signer):
    from tests.integration.test_identity import Site

    site = Site(ui_factory({"tenancy": "multi"}))
    for org in ("blue", "red"):
        site.org(org)
        site.namespace(f"{org}-ns", org)
    assert site.post("/api/v1/gpg-keys", site.admin, json={"namespace": "blue-ns",
                                                             "ascii_armor": signer.public_armor}).status_code == 201
    red_admin = site.personal(site.user("ruth@red.example", {"red": "admin"}))
    index = assert_page(site.get("/admin/keys", red_admin))
    assert "red-ns" in index and "blue-ns" not in index
    assert_page(site.get("/admin/keys/blue-ns", red_admin), 404)
    with site.registry.db.session() as s:
        key_id = s.scalar(select(GpgKey.id))
    assert site.get(f"/admin/keys/blue-ns/{key_id}/revoke", red_admin).status_code == 404
    assert site.post(f"/admin/keys/blue-ns/{key_id}/revoke", red_admin).status_code == 404
    assert site.post("/admin/keys/blue-ns", red_admin, data={"ascii_armor": signer.public_armor}).status_code == 404
    assert site.post("/admin/keys/blue-ns/managed", red_admin).status_code == 404
    assert not site.audit("gpg_key.revoke") and not site.audit("gpg_key.create_managed")
    # blue's admin sees it
    blue_admin = site.personal(site.user("bo@blue.example", {"blue": "admin"}))
    assert signer.fingerprint in assert_page(site.get("/admin/keys/blue-ns", blue_admin))


# --- mirrors ---------------------------------------------------------------------------------------------------

MIRROR = {"upstream_host": "registry.example.test", "upstream_url": "https://127.0.0.1:9", "namespace": "hashicorp",
          "type": "random", "version_constraint": "~> 3.6", "platforms": "linux_amd64 darwin_arm64",
          "interval_seconds": "", "latest": "", "trusted_fingerprints": "", "enabled": "on"}


def new_mirror(client: Any, **fields: str) -> Any:
    return post_form(client, "/admin/mirrors/new", **{**MIRROR, **fields})


def config_row(app: Any) -> MirrorConfig:
    with app.extensions["tfregistry"].db.session() as s:
        config = s.scalar(select(MirrorConfig))
        s.expunge_all()
        return config


def test_create_edit_and_delete_a_mirror(app, client, admin_token):
    sign_in(client, admin_token)
    assert "No mirror configuration yet." in assert_page(client.get("/admin/mirrors"))
    assert 'id="f-upstream_token"' in assert_page(client.get("/admin/mirrors/new"))
    created = new_mirror(client, upstream_token="secret-upstream-token")
    assert created.status_code == 303
    config = config_row(app)
    assert created.headers["Location"] == f"/admin/mirrors/{config.id}"
    assert (config.status, config.platforms, config.version_constraint) == ("approved", ["linux_amd64", "darwin_arm64"],
                                                                             "~> 3.6")
    assert config.upstream_token_encrypted and "secret-upstream-token" not in config.upstream_token_encrypted
    assert [e.action for e in audit(app, "mirror.create")] == ["mirror.create"]
    shown = client.get(f"/api/v1/mirrors/{config.id}", headers=bearer(admin_token)).get_json()
    assert shown["has_token"] is True and shown["decided_by"] == "token:admin"
    detail = assert_page(client.get(f"/admin/mirrors/{config.id}"))
    assert "registry.example.test/hashicorp/random" in detail and "Never synced." in detail
    assert "secret-upstream-token" not in detail
    edit = assert_page(client.get(f"/admin/mirrors/{config.id}/edit"))
    assert 'value="~&gt; 3.6"' in edit and "leave empty to keep it" in edit and "secret-upstream-token" not in edit
    saved = post_form(client, f"/admin/mirrors/{config.id}/edit", **{**MIRROR, "version_constraint": ">= 3.0",
                                                                     "interval_seconds": "3600", "enabled": ""})
    assert saved.status_code == 303, re.findall(r'field-error[^>]*>([^<]*)', saved.get_data(as_text=True))
    config = config_row(app)
    assert (config.version_constraint, config.interval_seconds, config.enabled) == (">= 3.0", 3600, False)
    assert config.upstream_token_encrypted  # an empty token field keeps the token
    assert len(audit(app, "mirror.update")) == 1
    confirm = assert_page(client.get(f"/admin/mirrors/{config.id}/delete"))
    assert "the providers it already mirrored stay" in confirm and count(app, MirrorConfig) == 1
    assert post_form(client, f"/admin/mirrors/{config.id}/delete").status_code == 303
    assert count(app, MirrorConfig) == 0 and len(audit(app, "mirror.delete")) == 1


def test_mirror_form_errors_are_next_to_their_fields(app, client, admin_token):
    sign_in(client, admin_token)
    html = assert_page(new_mirror(client, platforms="linux_amd64 plan9_z80", interval_seconds="5"), 400)
    assert "is not OS_ARCH" in error_of(html, "platforms") and error_of(html, "interval_seconds")
    assert 'name="namespace" type="text" value="hashicorp"' in html
    bad_constraint = assert_page(new_mirror(client, version_constraint="about 3"), 400)
    assert "invalid version constraint" in error_of(bad_constraint, "version_constraint")
    assert count(app, MirrorConfig) == 0


def test_sync_now_records_a_run_with_its_errors_in_the_history(app, client, admin_token):
    sign_in(client, admin_token)
    new_mirror(client)
    config = config_row(app)
    started = post_form(client, f"/admin/mirrors/{config.id}/sync", f"/admin/mirrors/{config.id}")
    assert started.status_code == 303
    app.extensions["tfregistry"].jobs.wait()
    detail = assert_page(client.get(f"/admin/mirrors/{config.id}"))
    assert "Sync of mirror" in detail
    runs = client.get(f"/api/v1/mirrors/{config.id}/status", headers=bearer(admin_token)).get_json()
    assert runs and runs[0]["status"] == "failed"  # nothing listens at the upstream URL
    assert f"Run {runs[0]['id']}" in detail and unescape(runs[0]["errors"][0]) in unescape(detail)
    assert ">failed</span>" in detail


def test_approval_queue(ui_factory):
    app = ui_factory({"mirror.require_approval": True})
    client = app.test_client()
    signed_in_as(client, "vera@example.com", role="viewer")
    form = assert_page(client.get("/admin/mirrors/new"))
    assert "Request a mirror" in form and 'id="f-upstream_url"' not in form
    requested = new_mirror(client, upstream_url="")
    assert requested.status_code == 303
    assert config_row(app).status == "pending" and len(audit(app, "mirror.request")) == 1
    queue = assert_page(client.get("/admin/mirrors"))
    assert "requested by user:vera@example.com" in queue and ">Approve" not in queue  # a viewer cannot decide
    mirror_id = config_row(app).id
    assert client.post(f"/admin/mirrors/{mirror_id}/approve",
                       data={"csrf_token": csrf_of(client, "/admin/mirrors")}).status_code == 403
    manager = app.test_client()
    sign_in(manager, new_token(app, "admin"))
    assert ">Approve" in assert_page(manager.get("/admin/mirrors"))
    done = post_form(manager, f"/admin/mirrors/{mirror_id}/approve", "/admin/mirrors", note="ok for the platform team",
                     back="list")
    assert done.status_code == 303 and done.headers["Location"] == "/admin/mirrors"
    config = config_row(app)
    assert (config.status, config.decision_note) == ("approved", "ok for the platform team")
    assert audit(app, "mirror.approve")[0].details["note"] == "ok for the platform team"
    rejected = post_form(manager, f"/admin/mirrors/{mirror_id}/reject", f"/admin/mirrors/{mirror_id}", note="no")
    assert rejected.status_code == 303 and config_row(app).status == "rejected"
    assert "is rejected" in assert_page(manager.get(f"/admin/mirrors/{mirror_id}"))


def test_policies_and_the_tester(app, client, admin_token):
    sign_in(client, admin_token)
    assert "No rule: everything may be mirrored" in assert_page(client.get("/admin/mirrors/policies"))
    allowed = assert_page(client.get("/admin/mirrors/policies?address=registry.terraform.io/hashicorp/aws"))
    assert "Allowed: registry.terraform.io/hashicorp/aws may be mirrored." in allowed
    added = post_form(client, "/admin/mirrors/policies", effect="allow", pattern="registry.terraform.io/hashicorp",
                      description="HashiCorp only")
    assert added.status_code == 303 and len(audit(app, "mirror.policy.add")) == 1
    page = assert_page(client.get("/admin/mirrors/policies?address=registry.terraform.io/integrations/github"))
    assert "registry.terraform.io/hashicorp/*" in page and "HashiCorp only" in page
    assert ("Refused: no mirror policy allows registry.terraform.io/integrations/github "
            "(allowed: registry.terraform.io/hashicorp/*)") in unescape(page)
    half = assert_page(client.get("/admin/mirrors/policies?address=registry.terraform.io"))
    assert "Write the full address" in half
    bad = assert_page(post_form(client, "/admin/mirrors/policies", effect="deny", pattern="https://evil/x"), 400)
    assert "invalid policy pattern" in error_of(bad, "pattern") and 'value="https://evil/x"' in bad
    # a denied configuration is refused with the policy's reason
    refused = assert_page(new_mirror(client, upstream_host="registry.terraform.io", upstream_url="",
                                     namespace="integrations", type="github"), 403)
    assert "no mirror policy allows" in refused and count(app, MirrorConfig) == 0
    with app.extensions["tfregistry"].db.session() as s:
        policy_id = s.scalar(select(MirrorPolicy.id))
    confirm = assert_page(client.get(f"/admin/mirrors/policies/{policy_id}/delete"))
    assert f"Delete policy {policy_id} (allow registry.terraform.io/hashicorp/*)?" in confirm
    assert count(app, MirrorPolicy) == 1
    assert post_form(client, f"/admin/mirrors/policies/{policy_id}/delete",
                     "/admin/mirrors/policies").status_code == 303
    assert count(app, MirrorPolicy) == 0 and len(audit(app, "mirror.policy.delete")) == 1


def test_pull_through_statistics(ui_factory, admin_token):
    app = ui_factory({"mirror.pull_through": True})
    from tfregistry.services.pullthrough import record_stats

    with app.app_context(), app.extensions["tfregistry"].db.session() as s:
        record_stats(s, "registry.terraform.io", hit=True, saved=1234)
        record_stats(s, "registry.terraform.io", miss=True, error="upstream down")
    client = app.test_client()
    sign_in(client, new_token(app, "admin"))
    page = assert_page(client.get("/admin/mirrors/pull-through"))
    row = '<th scope="row">registry.terraform.io</th><td>1</td><td>1</td><td>1,234</td><td>upstream down</td>'
    assert row in page


@pytest.mark.parametrize("path", ["/admin/mirrors", "/admin/mirrors/policies", "/admin/mirrors/pull-through",
                                  "/admin/mirrors/new"])
def test_mirror_pages_need_a_mirror_scope(app, client, path):
    assert_page(client.get(path), 401)
    assert_page(client.get(path, headers=bearer(new_token(app, "modules:read"))), 403)


def test_a_viewer_sees_mirrors_but_changes_nothing(app, client, admin_token):
    sign_in(client, admin_token)
    new_mirror(client)
    post_form(client, "/admin/mirrors/policies", effect="deny", pattern="example.com")
    mirror_id = config_row(app).id
    viewer = new_token(app, "read")  # mirrors:read, as the viewer role: the API lets it look
    assert "registry.example.test/hashicorp/random" in assert_page(client.get("/admin/mirrors", headers=bearer(viewer)))
    detail = assert_page(client.get(f"/admin/mirrors/{mirror_id}", headers=bearer(viewer)))
    assert "Sync now" not in detail and "Edit" not in detail
    for method, path in (("GET", "/admin/mirrors/new"), ("POST", "/admin/mirrors/new"),
                         ("GET", f"/admin/mirrors/{mirror_id}/edit"), ("POST", f"/admin/mirrors/{mirror_id}/edit"),
                         ("POST", f"/admin/mirrors/{mirror_id}/delete"), ("POST", f"/admin/mirrors/{mirror_id}/sync"),
                         ("POST", f"/admin/mirrors/{mirror_id}/reject"), ("POST", "/admin/mirrors/policies"),
                         ("POST", "/admin/mirrors/policies/1/delete")):
        response = client.open(path, method=method, data=MIRROR, headers=bearer(viewer))
        assert response.status_code == 403, (method, path)
    assert count(app, MirrorConfig) == 1 and count(app, MirrorPolicy) == 1
    assert config_row(app).status == "approved"
    assert not audit(app, "mirror.update") and not audit(app, "mirror.delete") and not audit(app, "mirror.reject")
