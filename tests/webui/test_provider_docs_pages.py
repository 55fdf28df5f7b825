"""Provider documentation in the web UI: the Documentation tab (index, sidebar), a page per URL, links between
pages, hostile Markdown, permissions, the docs upload form and the preview page (which stores nothing)."""

from __future__ import annotations

import io
import re
from html import unescape
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import bearer, new_token
from tests.integration.test_provider_docs import FULL, count_pages, upload
from tests.integration.test_providers import publish_provider
from tests.unit.test_provider_docs import INDEX, tgz, zipped
from tests.webui.conftest import assert_page
from tests.webui.test_account import form_csrf, sign_in, signed_in_as
from tfregistry.models import AuditEntry, ProviderDocPage
from tfregistry_webui import docs

BASE = "/providers/acme/foo/1.0.0"

LINKS = (b'---\npage_title: "foo_linked"\nsubcategory: "Compute"\n---\n# foo_linked\n\n'
         b"[data source](../data-sources/thing.md) [widget](widget.md#arguments)"
         b" [legacy](/docs/providers/foo/r/alpha.html) [overview](../index.md) [missing](nothing.md)"
         b" [image](../images/x.png) [climb](../../../../etc/x.md)"
         b" [site](https://example.com/docs) [anchor](#example)\n")
HOSTILE = (b'---\npage_title: "<script>alert(1)</script> x"\ndescription: \'"><script>alert(2)</script>\'\n---\n'
           b"# Hostile\n\n<script>alert(3)</script>\n<img src=x onerror=alert(4)>\n[click](javascript:alert(5))\n"
           b"<svg><script>alert(6)</script></svg>\n<iframe src=\"https://evil.example\"></iframe>\n"
           b'<a href="jav&#x09;ascript:alert(7)">tab</a>\n<div style="position:fixed">styled</div>\n'
           b"<form action=/x><button>go</button></form>\n\n```hcl\n" + b'resource "x" "y" {}\n' * 1500 + b"```\n\n"
           + b"Long text. " * 40_000)


def docs_archive(extra: dict[str, bytes] | None = None) -> io.BytesIO:
    return tgz({**FULL, "docs/resources/linked.md": LINKS, **(extra or {})})


@pytest.fixture
def provider(client: Any, admin_token: str) -> None:
    """acme/foo 1.0.0 (signed by a managed key) with documentation, and 1.1.0 without."""
    assert client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"},
                       headers=bearer(admin_token)).status_code == 201
    for version in ("1.0.0", "1.1.0"):
        published = publish_provider(client, admin_token, sign=False, version=version)
        assert published.status_code == 201, published.get_json()
    assert upload(client, admin_token, docs_archive()).status_code == 201


def nav_of(html: str) -> str:
    return re.search(r'<nav class="docs-nav" aria-label="Documentation pages">(.*?)</nav>', html, re.S).group(1)


# --- the Documentation tab and its pages ---------------------------------------------------------------------


def test_index_and_sidebar_grouped_by_category_and_subcategory(client, admin_token, provider):
    html = assert_page(client.get(f"{BASE}/docs", headers=bearer(admin_token)))
    assert "<title>Provider: Foo · Terraform Registry</title>" in html
    assert '<h1 id="foo">Foo</h1>' in html  # index.md, rendered
    assert '<a href="/providers/acme/foo/1.0.0/docs" aria-current="page">Documentation</a>' in html
    nav = nav_of(html)
    assert re.findall(r"<h3>(.*?)</h3>", nav) == ["Guides", "Resources", "Data Sources", "Ephemeral Resources",
                                                  "Functions"]
    assert f'<a href="{BASE}/docs/index/index" aria-current="page">Overview</a>' in nav
    resources = nav.split("<h3>Resources</h3>")[1].split("<h3>")[0]
    # pages without a subcategory first, then by subcategory, each by title
    assert re.findall(r">([^<>]+)</a>", resources) == ["foo_alpha", "foo_linked",
                                                       "foo_thing Resource - terraform-provider-foo", "foo_widget"]
    assert resources.index("foo_alpha") < resources.index("<h4>Compute</h4>") < resources.index("foo_linked")
    guides = nav.split("<h3>Guides</h3>")[1].split("<h3>")[0]
    assert "<h4>Tutorials</h4>" in guides and f'href="{BASE}/docs/guides/start"' in guides


def test_a_page_per_url_with_its_title_description_and_current_link(client, admin_token, provider):
    html = assert_page(client.get(f"{BASE}/docs/resources/thing", headers=bearer(admin_token)))
    assert "<title>foo_thing Resource - terraform-provider-foo · Terraform Registry</title>" in html
    assert '<meta name="description" content="Manages a thing.">' in html
    assert '<h1 id="foo_thing-resource">foo_thing (Resource)</h1>' in html and '<h2 id="example">' in html
    assert html.count('aria-current="page"') == 3  # Providers in the header, the Documentation tab, this page
    assert f'<a href="{BASE}/docs/resources/thing" aria-current="page">foo_thing Resource' in nav_of(html)
    assert '<input type="hidden" name="doc" value="resources/thing">' in html  # the version picker keeps the page
    for path in ("data-sources/thing", "ephemeral-resources/token", "functions/parse_id", "guides/start",
                 "index/index"):
        assert 'aria-current="page"' in nav_of(assert_page(client.get(f"{BASE}/docs/{path}",
                                                                      headers=bearer(admin_token))))
    assert_page(client.get(f"{BASE}/docs/resources/nothing", headers=bearer(admin_token)), 404)
    assert_page(client.get("/providers/acme/foo/9.9.9/docs/resources/thing", headers=bearer(admin_token)), 404)


def test_latest_version_urls_and_the_version_picker(client, admin_token, provider):
    # 1.1.0 is the latest and has no docs; 1.0.0 has them
    latest = assert_page(client.get("/providers/acme/foo/docs", headers=bearer(admin_token)))
    assert "Version 1.1.0 has no documentation." in latest
    assert_page(client.get("/providers/acme/foo/docs/resources/thing", headers=bearer(admin_token)), 404)
    assert upload(client, admin_token, tgz(FULL), url="/api/v1/providers/acme/foo/1.1.0/docs").status_code == 201
    page = assert_page(client.get("/providers/acme/foo/docs/resources/thing", headers=bearer(admin_token)))
    assert "foo_thing (Resource)</h1>" in page and '<span class="badge">1.1.0</span>' in page
    picked = client.get("/providers/acme/foo?version=1.0.0&tab=docs&doc=resources/thing", headers=bearer(admin_token))
    assert picked.status_code == 302 and picked.headers["Location"] == f"{BASE}/docs/resources/thing"
    # linked.md is only in 1.0.0: from there, 1.1.0 opens its Documentation tab
    away = client.get("/providers/acme/foo?version=1.1.0&tab=docs&doc=resources/linked", headers=bearer(admin_token))
    assert away.headers["Location"] == "/providers/acme/foo/1.1.0/docs"


def test_links_between_pages_resolve_to_their_urls_and_the_rest_are_dropped(client, admin_token, provider):
    html = assert_page(client.get(f"{BASE}/docs/resources/linked", headers=bearer(admin_token)))
    body = html.split('<article class="doc-page readme">')[1].split("</article>")[0]
    hrefs = dict((unescape(text), unescape(href) if href else None) for href, text in
                 re.findall(r'<a(?: href="([^"]*)")?[^>]*>([^<]*)</a>', body))
    assert hrefs == {
        "data source": f"{BASE}/docs/data-sources/thing",
        "widget": f"{BASE}/docs/resources/widget#arguments",
        "legacy": f"{BASE}/docs/resources/alpha",
        "overview": f"{BASE}/docs/index/index",
        "missing": None, "image": None, "climb": None,  # text kept, link dropped
        "site": "https://example.com/docs",
        "anchor": "#example",
    }


def test_hostile_markdown_in_docs_is_inert_and_bounded(client, admin_token, provider):
    assert upload(client, admin_token, docs_archive({"docs/guides/hostile.md": HOSTILE})).status_code == 201
    html = assert_page(client.get(f"{BASE}/docs/guides/hostile", headers=bearer(admin_token)))
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; x · Terraform Registry</title>" in html
    assert 'content="&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in html
    for payload in ("alert(3)", "alert(4)", "alert(6)", "alert(7)", "evil.example", "<iframe", "<svg",
                    "<form action=\"/x", "position:fixed"):
        assert payload not in html, payload
    assert not re.search(r'(href|src)="[^"]*script', html, re.I)  # [click](javascript:...) stays text
    assert "longer than" in html or "too large to show" in html  # cut, with a notice
    nav = nav_of(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; x" in nav and "<script>alert" not in nav


def test_no_docs_empty_state(client, admin_token, provider):
    html = assert_page(client.get("/providers/acme/foo/1.1.0/docs", headers=bearer(admin_token)))
    assert "Version 1.1.0 has no documentation." in html and "tfr publish provider DIST --docs DIR" in html
    assert 'href="/providers/acme/foo/1.1.0/docs/upload">Upload this version' in html
    reader = assert_page(client.get("/providers/acme/foo/1.1.0/docs", headers=bearer(new_token(client.application,
                                                                                                 "read"))))
    assert "has no documentation" in reader and "/docs/upload" not in reader


def test_docs_pages_are_read_like_the_provider(ui_factory):
    from tests.integration.test_identity import Site

    site = Site(ui_factory({"tenancy": "multi"}))
    for org in ("blue", "red"):
        site.org(org)
    site.namespace("acme", "blue")
    site.client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"}, headers=bearer(site.admin))
    assert publish_provider(site.client, site.admin, sign=False).status_code == 201
    assert upload(site.client, site.admin, docs_archive()).status_code == 201
    member, outsider = site.service("blue", "read"), site.service("red", "read")
    for path in ("/docs", "/docs/resources/thing"):
        assert "foo_thing" in assert_page(site.get(BASE + path, member))
        assert_page(site.get(BASE + path), 401)
        hidden = assert_page(site.get(BASE + path, outsider), 404)
        assert hidden == assert_page(site.get(BASE.replace("acme", "gone") + path, outsider), 404)
    for path in ("/providers/acme/foo/docs/resources/thing", f"{BASE}/docs/upload"):
        assert assert_page(site.get(path, outsider), 404) == assert_page(site.get(path.replace("acme", "gone"),
                                                                                   outsider), 404)


# --- upload form ---------------------------------------------------------------------------------------------


def post_form(client: Any, url: str, archive: io.BytesIO | None, name: str = "docs.tar.gz", **fields: str) -> Any:
    csrf = form_csrf(client.get(url).get_data(as_text=True))
    data: dict[str, Any] = {"csrf_token": csrf, **fields}
    if archive is not None:
        data["archive"] = (archive, name)
    return client.post(url, data=data, content_type="multipart/form-data")


def test_upload_replaces_the_docs(app, client, admin_token, provider):
    sign_in(client, admin_token)
    form = assert_page(client.get(f"{BASE}/docs/upload"))
    assert 'enctype="multipart/form-data"' in form and '<label for="f-archive">' in form and "(9 pages now)" in form
    done = assert_page(post_form(client, f"{BASE}/docs/upload", zipped({"docs/index.md": b"# New overview\n",
                                                                        "docs/notes.txt": b"x"}), "docs.zip"))
    assert "Published 1 page</strong>, replacing the 9 the version had" in done
    assert "Files skipped" in done and "notes.txt" in done
    assert count_pages(app) == 1
    shown = assert_page(client.get(f"{BASE}/docs"))
    assert '<h1 id="new-overview">New overview</h1>' in shown
    refused = assert_page(post_form(client, f"{BASE}/docs/upload", io.BytesIO(b"not an archive")), 400)
    assert 'id="f-archive-error"' in refused and "must be a .tar.gz or a .zip" in refused
    assert 'id="f-archive-error"' in assert_page(post_form(client, f"{BASE}/docs/upload", None), 400)
    assert count_pages(app) == 1


def test_upload_needs_the_publish_permission_of_the_namespace(app, client, provider):
    assert_page(client.get(f"{BASE}/docs/upload"), 401)
    signed_in_as(client, "viewer@example.com", role="viewer")
    assert "may not publish or change providers" in assert_page(client.get(f"{BASE}/docs/upload"), 403)
    refused = client.post(
        f"{BASE}/docs/upload", data={"csrf_token": form_csrf(client.get("/").get_data(as_text=True)),
                                     "archive": (tgz({"docs/index.md": INDEX}), "d.tar.gz")},
        content_type="multipart/form-data")
    assert_page(refused, 403)
    assert count_pages(app) == 9


def test_upload_over_the_cap_is_the_413_page(ui_factory):
    app = ui_factory({"limits.provider_docs_max_bytes": 4096})
    client = app.test_client()
    admin = new_token(app, "admin")
    client.post("/api/v1/gpg-keys/managed", json={"namespace": "acme"}, headers=bearer(admin))
    assert publish_provider(client, admin, sign=False).status_code == 201
    sign_in(client, admin)
    import random

    noise = random.Random(3).randbytes(16384)
    for url in (f"{BASE}/docs/upload", "/publish/provider-docs/preview"):
        html = assert_page(post_form(client, url, tgz({"docs/index.md": INDEX, "docs/noise.bin": noise})), 413)
        assert "Upload too large" in html and "limits.provider_docs_max_bytes" in html
    assert count_pages(app) == 0


# --- preview -----------------------------------------------------------------------------------------------


def rows(app: Any) -> tuple[int, int]:
    with app.extensions["tfregistry"].db.session() as session:
        return (session.scalar(sa.select(sa.func.count()).select_from(ProviderDocPage)),
                session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)))


def test_preview_renders_and_stores_nothing(app, client, provider):
    signed_in_as(client, "pub@example.com", role="publisher")
    form = assert_page(client.get("/publish/provider-docs/preview"))
    assert '<label for="f-archive">' in form and 'name="show"' in form
    before = rows(app)
    html = assert_page(post_form(client, "/publish/provider-docs/preview",
                                 docs_archive({"docs/stray.md": b"x", "docs/guides/hostile.md": HOSTILE})))
    assert rows(app) == before
    assert "10 pages" in html and "Files that would be skipped" in html and "stray.md" in html
    assert '<nav class="docs-nav" aria-label="Pages in the archive">' in html
    assert '<h1 id="foo">Foo</h1>' in html and 'id="doc-resources-thing"' in html
    assert '<a href="#doc-data-sources-thing"' in html  # links between pages point at their sections
    for payload in ("alert(3)", "alert(4)", "alert(6)", "<iframe"):
        assert payload not in html
    assert not re.search(r'(href|src)="[^"]*script', html, re.I)
    only = assert_page(post_form(client, "/publish/provider-docs/preview", docs_archive(), show="resources/thing"))
    assert 'id="doc-resources-thing"' in only and 'id="doc-index-index"' not in only
    assert "8 pages not rendered" in only
    refused = assert_page(post_form(client, "/publish/provider-docs/preview", tgz({"README.md": b"x"})), 400)
    assert 'id="f-archive-error"' in refused and "no documentation pages found" in refused
    assert rows(app) == before


def test_preview_is_for_those_who_may_publish_providers(app, client, provider):
    anonymous = assert_page(client.get("/publish/provider-docs/preview"))
    assert "Sign in to publish." in anonymous and 'name="archive"' not in anonymous
    assert client.post("/publish/provider-docs/preview", data={}).status_code == 401
    signed_in_as(client, "viewer@example.com", role="viewer")
    assert "providers:write" in assert_page(client.get("/publish/provider-docs/preview"))
    refused = client.post("/publish/provider-docs/preview",
                          data={"csrf_token": form_csrf(client.get("/").get_data(as_text=True)),
                                "archive": (docs_archive(), "docs.tar.gz")}, content_type="multipart/form-data")
    assert_page(refused, 403)


def test_preview_needs_csrf(client, admin_token, provider):
    sign_in(client, admin_token)
    refused = client.post("/publish/provider-docs/preview", data={"csrf_token": "forged",
                                                                  "archive": (docs_archive(), "docs.tar.gz")},
                          content_type="multipart/form-data")
    assert refused.status_code == 403 and b"CSRF" in refused.data


# --- helpers ----------------------------------------------------------------------------------------------


def test_page_target_reads_relative_and_legacy_links():
    assert docs.page_target("../data-sources/x.md", "resources/y.md") == ("data-sources", "x")
    assert docs.page_target("x.html.markdown", "r/y.html.markdown") == ("resources", "x")
    assert docs.page_target("../d/x.html.markdown", "r/y.html.markdown") == ("data-sources", "x")
    assert docs.page_target("/docs/providers/foo/index.html", "r/y.html.markdown") == ("index", "index")
    assert docs.page_target("resources/x.md", "index.md") == ("resources", "x")
    assert docs.page_target("../guides/start", "resources/y.md") == ("guides", "start")
    assert docs.page_target("../index", "resources/y.md") == ("index", "index")
    for bad in ("../../x.md", "/etc/x.md", "x.png", "../resources/sub/x.md", "..\\x.md", "../other/x.md", "..",
                "../images/logo.svg", "../other/x"):
        assert docs.page_target(bad, "resources/y.md") is None, bad


def test_a_large_sidebar_lists_only_the_current_subcategory():
    def page(category: str, sub: str, n: int) -> dict[str, str]:
        return {"category": category, "slug": f"{sub}{n:04d}", "title": f"{sub} {n:04d}", "subcategory": sub}

    grouped = [{"category": "resources", "label": "Resources", "subcategories": [
        {"name": "A", "pages": [page("resources", "a", n) for n in range(300)]},
        {"name": "B", "pages": [page("resources", "b", n) for n in range(900)]}]}]
    nav = docs.sidebar(grouped, ("resources", "b0800"), lambda c, s: f"/{c}/{s}")
    a, b = nav[0]["subcategories"]
    assert a["pages"] is None and a["url"] == "/resources/a0000" and a["count"] == 300
    assert len(b["pages"]) == docs.SIDEBAR_MAX_PAGES and b["before"] + b["after"] == 900 - docs.SIDEBAR_MAX_PAGES
    assert [p["title"] for p in b["pages"] if p["current"]] == ["b 0800"]
    small = docs.sidebar([{**grouped[0], "subcategories": grouped[0]["subcategories"][:1]}], None, lambda c, s: "/")
    assert len(small[0]["subcategories"][0]["pages"]) == 300


def test_a_large_provider_stays_under_the_page_weight(client, admin_token, provider):
    """1,200 pages with long titles, a page of 150,000 characters of highlighted code, and 300 stray files:
    every page stays under 200 KB (assert_page), the sidebar lists the current subcategory only."""
    long = "x" * 60
    pages = {f"docs/resources/{sub}_{n:04d}.md": (f'---\npage_title: "{sub}_{n:04d}_{long} Resource"\n'
                                                  f'subcategory: "{sub.title()} {long}"\n---\n# r\n').encode()
             for sub in ("alpha", "beta", "gamma") for n in range(400)}
    big = b"```hcl\n" + b'resource "aws_instance" "x" { ami = "ami-123" }\n' * 3000 + b"```\n"
    stray = {f"docs/stray/{n:03d}_{long}.txt": b"x" for n in range(300)}
    archive = tgz({"docs/index.md": INDEX, "docs/resources/big.md": big, **pages, **stray}).getvalue()
    assert upload(client, admin_token, io.BytesIO(archive)).status_code == 201
    html = assert_page(client.get(f"{BASE}/docs/resources/beta_0200", headers=bearer(admin_token)))
    nav = nav_of(html)
    assert "beta_0200" in nav and "alpha_0001" not in nav and "Alpha " in nav  # collapsed: a link to its first page
    assert f'href="{BASE}/docs/resources/alpha_0000"' in nav
    assert "longer than" in assert_page(client.get(f"{BASE}/docs/resources/big", headers=bearer(admin_token)))
    sign_in(client, admin_token)
    preview = assert_page(post_form(client, "/publish/provider-docs/preview", io.BytesIO(archive)))
    assert "1202 pages" in preview and preview.count("stray/") == 50 and "… 151 more lines" in preview
