"""The web UI's foundation: layout, headers, static files, error pages, extension hooks, settings."""

from __future__ import annotations

import re

import pytest

from tests.webui.conftest import assert_page
from tfregistry import hookimpl
from tfregistry.app import bootstrap
from tfregistry.testing.plugin import build_module_archive

HTML = {"Accept": "text/html"}


def test_home_renders_in_the_layout(client):
    html = assert_page(client.get("/"))
    assert '<a class="skip-link" href="#main">' in html
    assert '<main id="main"' in html and "<header" in html and "<footer" in html
    assert 'aria-label="Main"' in html and 'role="search"' in html
    assert '<label for="header-q"' in html and '<label for="home-q"' in html
    assert "Terraform Registry" in html


def test_home_counts_and_lists_only_what_the_caller_can_see(client, publish, admin_token):
    publish(namespace="acme", name="vpc", version="1.0.0")
    publish(namespace="acme", name="vpc", version="1.1.0")
    anonymous = assert_page(client.get("/"))
    assert "acme/vpc/aws" not in anonymous  # namespaces are private by default
    assert re.search(r"<strong>0</strong> <a href=\"/modules\">modules", anonymous)
    signed = assert_page(client.get("/", headers={"Authorization": f"Bearer {admin_token}"}))
    assert re.search(r"<strong>1</strong> <a href=\"/modules\">modules", signed)
    assert re.search(r"<strong>2</strong> module versions", signed)
    assert "acme/vpc/aws 1.1.0" in signed


def test_static_files_are_versioned_and_cached_long(client):
    html = client.get("/").get_data(as_text=True)
    css = re.search(r'href="(/-/static/[^"]+/tfr\.css)"', html).group(1)
    response = client.get(css)
    assert response.status_code == 200 and response.mimetype == "text/css"
    assert "immutable" in response.headers["Cache-Control"] and "max-age=31536000" in response.headers["Cache-Control"]
    stale = client.get(re.sub(r"/-/static/[^/]+/", "/-/static/0.0.0-old/", css))
    assert stale.status_code == 200 and "immutable" not in stale.headers.get("Cache-Control", "")
    js = re.search(r'src="(/-/static/[^"]+/tfr\.js)"', html).group(1)
    assert client.get(js).status_code == 200
    assert client.get("/-/static/x/../../plugin.py").status_code == 404


def test_unknown_path_is_the_html_404_for_browsers_and_json_elsewhere(client):
    page = assert_page(client.get("/no/such/page", headers=HTML), 404)
    assert "Page not found" in page
    assert client.get("/v1/modules/a/b/c/d/e/f", headers=HTML).is_json
    assert client.get("/api/v1/nothing-here", headers=HTML).is_json
    assert client.get("/no/such/page", headers={"Accept": "application/json"}).is_json


def test_error_pages_are_in_the_layout(client):
    assert "Sign-in required" in assert_page(client.get("/namespaces/acme"), 401)
    assert "Bad request" in assert_page(client.get("/modules?offset=x"), 400)
    assert "Method not allowed" in assert_page(client.post("/modules"), 405)
    page = assert_page(client.get("/", headers={"Authorization": "Bearer not-a-token"}), 401)
    assert "not valid" in page


def test_500_page_shows_the_request_id(ui_factory):
    from tfregistry_webui import ui

    app = ui_factory({"proxy.trusted": ["127.0.0.1/32"]})  # the test client's address: a trusted proxy's id
    app.config["TESTING"] = False  # let the error handler answer instead of raising into the test

    def failing():
        raise RuntimeError("kaboom")

    app.view_functions["tfr_webui.home"] = failing  # a view of the web UI's blueprint that fails
    response = app.test_client().get("/", headers={"X-Request-Id": "req-12345"})
    html = assert_page(response, 500)
    assert "req-12345" in html and "kaboom" not in html
    assert ui.ERROR_TITLES[500] in html


def test_hook_tfr_webui_nav_entries(ui_factory):
    class Nav:
        @hookimpl
        def tfr_webui_nav_entries(self, registry, identity):
            return [{"label": "Admin <b>", "url": "/-/admin/"}] if not identity.anonymous else [
                {"label": "Help", "url": "/-/help/"}]

    client = ui_factory(plugins=(Nav(),)).test_client()
    html = assert_page(client.get("/"))
    assert '<a href="/-/help/">Help</a>' in html and "Admin" not in html


def test_primary_color_is_served_as_a_stylesheet_never_inline(ui_factory):
    client = ui_factory({"webui.primary_color": "#aa3300", "webui.site_name": "ACME modules"}).test_client()
    html = assert_page(client.get("/"))
    assert "ACME modules" in html
    theme = re.search(r'href="(/-/theme/[0-9a-f]+\.css)"', html).group(1)
    css = client.get(theme)
    assert css.mimetype == "text/css" and "#aa3300" in css.get_data(as_text=True)


@pytest.mark.parametrize("value", ["red;}body{display:none", "url(javascript:x)", "#12", "expression(1)"])
def test_primary_color_must_be_a_colour(tmp_path, value):
    import tfregistry_webui.plugin as webui_plugin
    from tfregistry import StartupError

    with pytest.raises(StartupError, match="webui.primary_color"):
        bootstrap({"data_dir": str(tmp_path), "webui.primary_color": value}, environ={},
                  plugins=[webui_plugin], load_entrypoints=False)


def test_logo_from_another_origin_is_allowed_by_the_csp(ui_factory):
    client = ui_factory({"webui.logo_url": "https://cdn.example.com/logo.png"}).test_client()
    response = client.get("/")
    assert "img-src 'self' data: https://cdn.example.com;" in response.headers["Content-Security-Policy"]
    assert 'src="https://cdn.example.com/logo.png"' in response.get_data(as_text=True)


def test_templates_dir_overrides_and_can_extend_the_original(ui_factory, tmp_path):
    site = tmp_path / "site-templates"
    site.mkdir()
    (site / "_footer.html").write_text(
        '{% include "tfregistry_webui/_footer.html" %}<p class="meta">Run by the platform team</p>')
    client = ui_factory({"webui.templates_dir": str(site)}).test_client()
    html = assert_page(client.get("/"))
    assert "Run by the platform team" in html and "Service discovery" in html


def test_webui_settings_are_declared(tmp_path):
    import tfregistry_webui.plugin as webui_plugin

    settings = bootstrap({"data_dir": str(tmp_path)}, environ={}, plugins=[webui_plugin],
                         load_entrypoints=False).settings
    assert settings["webui.site_name"] == "Terraform Registry"
    assert settings["webui.version_constraint_template"] == "~> {major}.{minor}"
    assert settings["webui.token_sign_in"] is True


def test_namespace_page_lists_modules_and_providers_with_the_owner(client, publish, admin_token):
    publish(namespace="acme", name="vpc")
    html = assert_page(client.get("/namespaces/acme", headers={"Authorization": f"Bearer {admin_token}"}))
    assert "acme/vpc/aws" in html and "Organization" in html and "Providers (0)" in html
    assert_page(client.get("/namespaces/nobody", headers={"Authorization": f"Bearer {admin_token}"}), 404)


def test_module_list_filters_sorts_and_pages(client, publish, admin_token):
    auth_header = {"Authorization": f"Bearer {admin_token}"}
    for name in ("alpha", "beta", "gamma"):
        publish(namespace="acme", name=name)
    azure = build_module_archive("delta", {"main.tf": 'resource "azurerm_resource_group" "rg" {\n'
                                                      '  name     = "rg"\n  location = "westeurope"\n}\n'})
    publish(namespace="other", name="delta", system="azurerm", archive=azure)
    everything = assert_page(client.get("/modules?sort=name&limit=2", headers=auth_header))
    assert "acme/alpha/aws" in everything and "acme/beta/aws" in everything and "gamma" not in everything
    assert 'rel="next"' in everything
    second = assert_page(client.get("/modules?sort=name&limit=2&offset=2", headers=auth_header))
    assert "acme/gamma/aws" in second and 'rel="prev"' in second
    assert "delta" in assert_page(client.get("/modules?system=azurerm", headers=auth_header))
    assert "alpha" not in assert_page(client.get("/modules?namespace=other", headers=auth_header))
    assert "delta" in assert_page(client.get("/modules?provider=hashicorp/azurerm", headers=auth_header))
    assert "delta" not in assert_page(client.get("/modules?provider=aws", headers=auth_header))
    recent = assert_page(client.get("/modules?sort=recent", headers=auth_header))
    assert recent.index("other/delta") < recent.index("acme/alpha")
    found = assert_page(client.get("/modules?q=gam", headers=auth_header))
    assert "acme/gamma/aws" in found and "alpha" not in found and '<option value="relevance" selected>' in found


def test_without_the_web_ui_the_core_answers_as_before(app_factory):
    client = app_factory().test_client()  # only the local storage plugin: no web UI
    root = client.get("/", headers=HTML)
    assert root.status_code == 404 and root.is_json
    assert client.get("/modules", headers=HTML).is_json
    assert client.get("/.well-known/terraform.json").status_code == 200


def test_highlight_stylesheet_is_linked_and_served(client):
    html = client.get("/").get_data(as_text=True)
    href = re.search(r'href="(/-/highlight/[^"]+\.css)"', html).group(1)
    response = client.get(href)
    assert response.status_code == 200 and response.mimetype == "text/css"
