"""Module pages: tabs, provision box, submodules and examples, compare, usage, archive files, permissions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from markupsafe import Markup
from sqlalchemy import select

from tests.conftest import bearer, new_token, post_module
from tests.webui.conftest import assert_page
from tests.webui.sample import ANALYSIS_1_0, FILES, analysis_1_1
from tfregistry import hookimpl
from tfregistry.models import ModuleVersion, utcnow
from tfregistry.services.modules import record_downloads
from tfregistry.testing.plugin import build_module_archive

BASE = "/modules/acme/network/aws"


def set_analysis(app: Any, version: str, analysis: dict[str, Any] | None) -> None:
    with app.extensions["tfregistry"].db.session() as session:
        mv = session.scalar(select(ModuleVersion).where(ModuleVersion.version == version))
        mv.analysis = analysis
        session.commit()


@pytest.fixture
def published(app, client, admin_token):
    """acme/network/aws 1.0.0 and 1.1.0 (analysed) and 2.0.0-beta.1 (not analysed)."""
    for version in ("1.0.0", "1.1.0", "2.0.0-beta.1"):
        archive = build_module_archive("network", FILES)
        assert post_module(client, admin_token, version=version, archive=archive).status_code == 201
    set_analysis(app, "1.0.0", ANALYSIS_1_0)
    set_analysis(app, "1.1.0", analysis_1_1())
    set_analysis(app, "2.0.0-beta.1", None)
    return bearer(admin_token)


TABS = ["", "/inputs", "/outputs", "/dependencies", "/resources", "/submodules", "/examples", "/changelog",
        "/versions", "/usage"]


@pytest.mark.parametrize("tab", TABS)
def test_every_tab_of_a_version_renders(client, published, tab):
    html = assert_page(client.get(f"{BASE}/1.1.0{tab}", headers=published))
    current = re.search(r'<a href="([^"]+)" aria-current="page">', html.split('class="tabs"')[1]).group(1)
    assert current == f"{BASE}/1.1.0{tab}"
    assert "acme/network/aws" in html


def test_tab_contents(client, published):
    inputs = assert_page(client.get(f"{BASE}/1.1.0/inputs", headers=published))
    assert "Required inputs" in inputs and "<code>object({ a = optional(string) })</code>" in inputs
    assert "Unexpected token" in inputs and "broken.tf:3:5" in inputs  # analysis problems are shown
    deps = assert_page(client.get(f"{BASE}/1.1.0/dependencies", headers=published))
    assert "hashicorp/aws" in deps and "&gt;= 5.0" in deps
    resources = assert_page(client.get(f"{BASE}/1.1.0/resources", headers=published))
    assert "aws_vpc" in resources and "aws_availability_zones" in resources
    readme = assert_page(client.get(f"{BASE}/1.1.0", headers=published))
    assert "Builds a VPC." in readme
    changelog = assert_page(client.get(f"{BASE}/1.1.0/changelog", headers=published))
    assert "Added the region selector" in changelog


def test_latest_release_is_the_default_and_tabs_work_without_a_version(client, published):
    html = assert_page(client.get(BASE, headers=published))
    assert '<option value="1.1.0" selected>1.1.0 (latest)</option>' in html
    assert '<option value="2.0.0-beta.1">2.0.0-beta.1 (pre-release)</option>' in html
    assert "Outputs" in assert_page(client.get(f"{BASE}/outputs", headers=published))


def test_version_picker_is_a_form_that_redirects(client, published):
    response = client.get(f"{BASE}?version=1.0.0&tab=inputs", headers=published)
    assert response.status_code == 302 and response.headers["Location"] == f"{BASE}/1.0.0/inputs"
    html = assert_page(client.get(f"{BASE}/1.0.0", headers=published))
    assert "data-autosubmit" in html and '<button type="submit" class="secondary">Show</button>' in html
    assert "This is not the latest version" in html
    assert "version = &#34;= 1.0.0&#34;" in html  # pinned: "~> 1.0" would install 1.1.0 and its other inputs
    part = client.get(f"{BASE}?version=1.0.0&kind=submodules&part=subnets&tab=inputs", headers=published)
    assert part.headers["Location"] == f"{BASE}/1.0.0/submodules/subnets/inputs"


def test_not_analysed_version_says_so(client, published):
    html = assert_page(client.get(f"{BASE}/2.0.0-beta.1/inputs", headers=published))
    assert "has not been analysed yet" in html
    assert 'version = &#34;= 2.0.0-beta.1&#34;' in html  # a pre-release is pinned exactly


def test_provision_box_has_type_shaped_placeholders(client, published, app):
    html = assert_page(client.get(f"{BASE}/1.1.0", headers=published))
    snippet = re.search(r'<pre id="provision-snippet"[^>]*><code>(.*?)</code></pre>', html, re.S).group(1)
    assert 'source  = &#34;localhost/acme/network/aws&#34;' in snippet
    assert 'version = &#34;~&gt; 1.1&#34;' in snippet
    assert re.search(r"cidr\s+= &#34;&#34; # string", snippet)
    assert re.search(r"azs\s+= \[\] # list\(string\)", snippet)
    assert re.search(r"tags\s+= \{\} # map\(any\)", snippet)
    assert re.search(r"settings\s+= \{\} # object\(\{ a = optional\(string\) \}\)", snippet)
    assert "enable_nat" not in snippet and "subnet_count" not in snippet  # optional inputs are left out
    assert 'data-copy="provision-snippet"' in html


def test_provision_box_uses_public_url_and_the_constraint_template(ui_factory):
    app = ui_factory({"public_url": "https://registry.example.com",
                      "webui.version_constraint_template": ">= {version}"})
    client = app.test_client()
    token = new_token(app, "admin")
    post_module(client, token, archive=build_module_archive("network", FILES))
    html = assert_page(client.get(BASE, headers=bearer(token)))
    assert "source  = &#34;registry.example.com/acme/network/aws&#34;" in html
    assert "version = &#34;&gt;= 1.0.0&#34;" in html


def test_submodule_and_example_pages(client, published):
    sub = assert_page(client.get(f"{BASE}/1.1.0/submodules/subnets", headers=published))
    assert "localhost/acme/network/aws//modules/subnets" in sub
    assert re.search(r"count_per_az\s+= 0 # number", sub)
    for tab in ("inputs", "outputs", "dependencies", "resources"):
        assert_page(client.get(f"{BASE}/1.1.0/submodules/subnets/{tab}", headers=published))
    example = assert_page(client.get(f"{BASE}/1.1.0/examples/complete", headers=published))
    assert "localhost/acme/network/aws//examples/complete" in example and "Complete example" in example
    code = assert_page(client.get(f"{BASE}/1.1.0/examples/complete/code", headers=published))
    assert 'source = &#34;localhost/acme/network/aws&#34;\n  version = &#34;1.1.0&#34;' in code
    assert 'source = &#34;localhost/acme/network/aws//modules/subnets&#34;' in code
    assert 'source  = &#34;terraform-aws-modules/vpc/aws&#34;' in code  # not ours: left as written
    assert assert_page(client.get(f"{BASE}/1.1.0/submodules/nope", headers=published), 404)
    assert assert_page(client.get(f"{BASE}/1.1.0/examples/complete/usage", headers=published), 404)


def test_compare_two_versions(client, published):
    html = assert_page(client.get(f"{BASE}/compare/1.0.0...1.1.0", headers=published))
    rows = {" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)}
    assert "input added subnet_count - number = 2" in rows
    assert "input added (required) settings - object({ a = optional(string) })" in rows
    assert "input removed legacy string -" in rows
    assert "input now required tags optional required" in rows
    assert "type changed tags map(string) map(any)" in rows
    assert "default changed enable_nat false true" in rows
    assert "output added nat_ids - NAT gateways." in rows
    assert "provider constraint changed hashicorp/aws &gt;= 4.0 &gt;= 5.0" in rows
    assert "Callers may need to change their configuration" in html
    form = client.get(f"{BASE}/compare?from=1.0.0&to=1.1.0", headers=published)
    assert form.status_code == 302 and form.headers["Location"] == f"{BASE}/compare/1.0.0...1.1.0"
    assert "not been analysed" in assert_page(client.get(f"{BASE}/compare/1.1.0...2.0.0-beta.1", headers=published))
    assert_page(client.get(f"{BASE}/compare/1.0.0...9.9.9", headers=published), 404)


def test_usage_tab_counts_terraform_and_opentofu(app, client, published):
    with app.extensions["tfregistry"].db.session() as session:
        ids = {mv.version: mv.id for mv in session.scalars(select(ModuleVersion))}
        now = utcnow()
        agents = ["Terraform/1.9.5 (+https://www.terraform.io)"] * 3 + ["OpenTofu/1.8.0"] * 2 + ["curl/8"]
        record_downloads(session, [(ids["1.0.0" if i % 2 else "1.1.0"], None, None, agent,
                                    (now - timedelta(days=i)).timestamp()) for i, agent in enumerate(agents)])
        session.commit()
    html = assert_page(client.get(f"{BASE}/1.1.0/usage", headers=published))
    assert "6 downloads of all versions" in html and "Terraform 3" in html and "OpenTofu 2" in html
    assert '<svg viewBox="0 0 720 220" role="img" aria-labelledby="chart-weeks-title"' in html
    assert '<title id="chart-weeks-title">Downloads per week, last 26 weeks</title>' in html
    assert "<th scope=\"row\">1.9.5</th><td>3</td>" in html and "<th scope=\"row\">1.8.0</th><td>2</td>" in html


def test_archive_files_are_served_safely(client, published):
    png = client.get(f"{BASE}/1.1.0/files/docs/diagram.png", headers=published)
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert "sandbox" in png.headers["Content-Security-Policy"]
    assert client.get(f"{BASE}/1.1.0/files/examples/complete/main.tf", headers=published).mimetype == "text/plain"
    html = client.get(f"{BASE}/1.1.0/files/docs/notes.html", headers=published)
    assert html.status_code == 200 and html.mimetype == "text/plain"
    assert html.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"{BASE}/1.1.0/files/../../etc/passwd", headers=published).status_code == 404
    assert client.get(f"{BASE}/1.1.0/files/missing.png", headers=published).status_code == 404


def test_anonymous_cannot_see_private_modules(client, published):
    page = assert_page(client.get(f"{BASE}/1.1.0"), 401)
    assert "Sign-in required" in page
    assert "Provision instructions" not in page and "localhost/acme/network/aws" not in page
    assert "acme/network/aws" not in assert_page(client.get("/modules"))
    assert "acme/network/aws" not in assert_page(client.get("/modules?q=network"))


def test_public_namespace_is_visible_to_anonymous(ui_factory):
    from tests.integration.test_identity import Site

    site = Site(ui_factory())
    site.namespace("opensrc", "default", visibility="public")
    assert post_module(site.client, site.admin, namespace="opensrc").status_code == 201
    assert "opensrc/network/aws" in assert_page(site.client.get("/modules"))
    assert "opensrc/network/aws" in assert_page(site.client.get("/modules/opensrc/network/aws"))
    assert "opensrc/network/aws" in assert_page(site.client.get("/namespaces/opensrc"))


def test_hidden_namespace_is_the_same_404_page_as_a_missing_one(ui_factory):
    from tests.integration.test_identity import Site

    site = Site(ui_factory({"tenancy": "multi"}))
    for org in ("blue", "red"):
        site.org(org)
        site.namespace(f"{org}-ns", org)
        assert post_module(site.client, site.admin, namespace=f"{org}-ns").status_code == 201
    red = site.service("red", "modules:read")
    hidden = site.get("/modules/blue-ns/network/aws", red)
    missing = site.get("/modules/gone-ns/network/aws", red)
    assert assert_page(hidden, 404) == assert_page(missing, 404)
    assert assert_page(site.get("/namespaces/blue-ns", red), 404) == assert_page(site.get("/namespaces/gone-ns", red),
                                                                                 404)
    assert "blue-ns" not in assert_page(site.get("/modules", red))
    assert "red-ns/network/aws" in assert_page(site.get("/modules", red))
    by_org = assert_page(site.get("/modules?organization=blue", site.admin))
    assert "blue-ns/network/aws" in by_org and "red-ns" not in by_org and 'id="f-org"' in by_org
    assert "blue-ns" not in assert_page(site.get("/", red))


def test_hook_tfr_webui_module_tabs(ui_factory):
    seen = []

    class SourceTab:
        @hookimpl
        def tfr_webui_module_tabs(self, registry, module_version, identity):
            seen.append((module_version.address, module_version.version, identity.kind))
            return [{"id": "source", "label": "Source", "render": lambda: Markup("<p class=src>from git</p>")},
                    {"id": "plain", "label": "Plain", "render": lambda: "<b>escaped</b>"},
                    {"id": "inputs", "label": "Clash", "render": lambda: "never"},
                    {"id": "Bad Id", "label": "Bad", "render": lambda: "never"}]

    app = ui_factory(plugins=(SourceTab(),))
    client = app.test_client()
    token = new_token(app, "admin")
    post_module(client, token)
    page = assert_page(client.get(f"{BASE}/1.0.0/source", headers=bearer(token)))
    assert "<p class=src>from git</p>" in page and ">Source</a>" in page
    assert "&lt;b&gt;escaped&lt;/b&gt;" in assert_page(client.get(f"{BASE}/1.0.0/plain", headers=bearer(token)))
    assert "Clash" not in page and "Bad Id" not in page
    assert ("acme/network/aws", "1.0.0", "site") in seen


def test_search_finds_modules_by_resource_type_and_input_name(app, client, published):
    from tfregistry.services import search

    with app.extensions["tfregistry"].db.session() as session:  # what publish and reanalysis do
        for module_id in session.scalars(select(ModuleVersion.module_id).distinct()):
            search.reindex_module(session, module_id)
        session.commit()
    by_type = assert_page(client.get("/modules?q=aws_vpc", headers=published))
    assert f'href="{BASE}"' in by_type
    assert f'href="{BASE}"' in assert_page(client.get("/modules?q=subnet_count", headers=published))
    assert f'href="{BASE}"' not in assert_page(client.get("/modules?q=aws_s3_bucket", headers=published))


def test_version_actions_on_the_module_page_for_those_who_may(client, published, app):
    html = assert_page(client.get(f"{BASE}/1.1.0", headers=published))
    assert f'action="{BASE}/1.1.0/deprecate"' in html and "Deprecate acme/network/aws 1.1.0" in html
    assert f'href="{BASE}/1.1.0/delete"' in html
    reader = bearer(new_token(app, "read"))
    assert "/deprecate" not in assert_page(client.get(f"{BASE}/1.1.0", headers=reader))
    assert "/deprecate" not in assert_page(client.get(f"{BASE}/1.1.0/submodules/subnets", headers=published))


def test_a_caller_without_the_read_scope_gets_the_403_page(app, client, published):
    token = new_token(app, "providers:read")
    page = assert_page(client.get(f"{BASE}/1.1.0", headers=bearer(token)), 403)
    assert "Not allowed" in page and "may not read modules" in page
