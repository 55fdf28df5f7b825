"""README rendering: CommonMark + GFM tables, Pygments, link resolution, and hostile input made inert."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from markupsafe import Markup

from tfregistry_webui.markdown import DEFAULT_MAX_CHARS, pygments_css, render_markdown, slugify

BASE = "/modules/acme/net/aws/1.0.0/files/"
EVENT_HANDLER = re.compile(r"\son\w+\s*=", re.IGNORECASE)


class _Tags(HTMLParser):
    """Every element and attribute of an HTML fragment, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_inert(html: str) -> None:
    """No script, frame, SVG, object, form or style element; no event handler or style attribute; no URL
    with a scheme other than http, https and mailto.  Text is not checked: ``[x](javascript:...)`` left as
    literal text, or an escaped ``" onclick=`` inside a title, is inert."""
    lowered = html.lower()
    assert "<script" not in lowered
    for tag in ("<iframe", "<svg", "<object", "<embed", "<form", "<style", "<math", "<base", "<meta", "<link"):
        assert tag not in lowered, tag
    parser = _Tags()
    parser.feed(html)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag not in {"script", "iframe", "svg", "object", "embed", "form", "style", "math", "base", "meta",
                           "link", "input", "button", "textarea", "frame"}, tag
        for name, value in attrs:
            assert not EVENT_HANDLER.match(" " + name + "="), (tag, name)
            assert name != "style", tag
            probe = re.sub(r"[\x00-\x20\x7f-\x9f]", "", value or "").lower()
            assert "javascript:" not in probe and "vbscript:" not in probe and "data:" not in probe, (tag, value)
            if name in ("href", "src"):
                assert probe.startswith(("http:", "https:", "mailto:", "#", "/")), (tag, value)
    # the literal checks the brief asks for, on the markup outside escaped text and attribute values
    markup = re.sub(r'"[^"]*"', '""', re.sub(r">[^<]*<", "><", html))
    assert not EVENT_HANDLER.search(markup), markup
    assert "javascript:" not in markup.lower()


def test_commonmark_gfm_tables_strikethrough_and_headings() -> None:
    html = render_markdown("# Usage\n\nSome *text* and ~~old~~.\n\n## Usage\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n")
    assert isinstance(html, Markup)
    # one level down: the page around the document has its own <h1>
    assert '<h2 id="usage">Usage</h2>' in html and '<h3 id="usage-1">Usage</h3>' in html and "<h1" not in html
    assert "<h6>deep</h6>" in render_markdown("###### deep").replace(' id="deep"', "")
    assert "<em>text</em>" in html and "<s>old</s>" in html
    assert '<th class="text-left">a</th>' in html and '<td class="text-right">2</td>' in html
    assert "style=" not in html


def test_slugs_are_github_like() -> None:
    assert slugify("Inputs & Outputs (v2)") == "inputs--outputs-v2"
    assert slugify("`aws_s3_bucket` resource") == "aws_s3_bucket-resource"
    assert slugify("!!!") == "section"


@pytest.mark.parametrize("lang", ["hcl", "terraform", "tf", "HCL"])
def test_terraform_code_is_highlighted_with_classes(lang: str) -> None:
    html = render_markdown(f'```{lang}\nresource "aws_s3_bucket" "b" {{\n  bucket = "x"\n}}\n```\n')
    assert f'<pre class="highlight"><code class="language-{lang.lower()}">' in html
    assert '<span class="kr">resource</span>' in html  # Pygments' keyword class from the Terraform lexer
    assert "style=" not in html


def test_unknown_or_missing_language_is_plain_never_guessed() -> None:
    for fence in ("```nosuchlanguage\n", "```\n"):
        html = render_markdown(fence + "def f(): <b>return</b> 1\n```\n")
        assert "<span" not in html
        assert "&lt;b&gt;return&lt;/b&gt;" in html


def test_pygments_css_has_light_and_dark_and_is_scoped() -> None:
    css = pygments_css()
    assert "@media (prefers-color-scheme: dark)" in css
    rules = [line.strip() for line in css.splitlines() if "{" in line and not line.startswith("@media")]
    assert rules and all(rule.startswith("pre.highlight") for rule in rules)


def test_relative_links_and_images_resolve_against_the_base() -> None:
    html = render_markdown(
        "[doc](docs/usage.md#inputs) [root](/LICENSE) [dot](./a/../b.md) ![logo](img/logo%20small.png)\n"
        "[anchor](#usage) [web](https://example.com/x) [mail](mailto:a@example.com)\n",
        link_base=BASE,
    )
    assert f'href="{BASE}docs/usage.md#inputs"' in html
    assert f'href="{BASE}LICENSE"' in html and f'href="{BASE}b.md"' in html
    assert f'src="{BASE}img/logo%20small.png"' in html
    assert 'href="#usage"' in html and 'href="https://example.com/x"' in html
    assert 'href="mailto:a@example.com"' in html
    assert html.count('rel="noopener noreferrer nofollow"') == 6


@pytest.mark.parametrize("target", ["../x.md", "a/../../x.md", "%2e%2e/x.md", "a/%2E%2E/%2e%2e/etc/passwd",
                                    "..%2fsecret", "a\\..\\..\\x", "/\\evil.example/x", "\\\\evil.example/x",
                                    "%5C%5Cevil.example"])
def test_relative_urls_cannot_climb_above_the_base(target: str) -> None:
    html = render_markdown(f"[x]({target}) <img src=\"{target}\" alt=\"i\">", link_base=BASE)
    for url in re.findall(r'(?:href|src)="([^"]*)"', html):
        assert url.startswith(BASE) and ".." not in url and "%2e" not in url.lower(), url


def test_without_a_base_relative_urls_are_dropped() -> None:
    html = render_markdown("[x](docs/a.md) ![i](img.png) [y](https://example.com)")
    assert "docs/a.md" not in html and "img.png" not in html
    assert 'href="https://example.com"' in html


HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    '<img src="x" ONERROR=alert(1)//>',
    '<p onclick="alert(1)" onmouseover=alert(2)>hover</p>',
    "<body onload=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;avascript&#x3A;alert(1)">x</a>',
    '<a href=" &#14; javascript:alert(1)">x</a>',
    '<a href="java\tscript:alert(1)">x</a>',
    '<a href="java&#x09;script:alert(1)">x</a>',
    '<a href="java&NewLine;script:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](JAVASCRIPT:alert(1))",
    "[x](  javascript:alert(1)  )",
    "[x](java%0Ascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    "<svg><script>alert(1)</script></svg>",
    '<svg onload="alert(1)"><circle r="5"/></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="x.swf"></object><embed src="x.swf">',
    '<form action="https://evil.example"><input name=a><button>go</button></form>',
    "<style>body{display:none}</style>",
    '<div style="position:fixed;top:0">overlay</div>',
    '<base href="https://evil.example/"><meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    '<details open ontoggle="alert(1)"><summary>s</summary></details>',
    "<!-- <script>alert(1)</script> -->",
    '<a href="x" title="&quot; onmouseover=&quot;alert(1)">t</a>',
    '```html\n<script>alert(1)</script>\n```',
    "`<script>alert(1)</script>`",
    '<img src="https://example.com/a.png" srcset="javascript:alert(1) 1x">',
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_markup_is_inert(payload: str) -> None:
    for base in (None, BASE):
        assert_inert(render_markdown(payload, link_base=base))


def test_hostile_readme_all_at_once_keeps_the_harmless_parts() -> None:
    html = render_markdown("# Title\n\nSee [usage](docs/usage.md).\n\n" + "\n\n".join(HOSTILE), link_base=BASE)
    assert_inert(html)
    assert '<h2 id="title">Title</h2>' in html
    assert f'<a href="{BASE}docs/usage.md" rel="noopener noreferrer nofollow">usage</a>' in html
    # an unclosed <style> (in the <math> payload) swallows what follows it: removed, never rendered as CSS


def test_five_megabytes_of_text_render_bounded_with_a_notice() -> None:
    chunk = "# Heading <script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)> *a* **b**\n\n"
    text = chunk * (5 * 1024 * 1024 // len(chunk) + 1)
    assert len(text) >= 5 * 1024 * 1024
    html = render_markdown(text, link_base=BASE)
    assert_inert(html)
    assert "the rest is not shown" in html
    assert len(html) < 4 * DEFAULT_MAX_CHARS


def test_pathological_nesting_finishes() -> None:
    for text in ("[" * 200_000, ">" * 200_000 + " x", "*" * 200_000, "<div>" * 50_000, "- " * 100_000 + "x"):
        html = render_markdown(text, max_chars=200_000)
        assert_inert(html)
        assert len(html) < 10 * 200_000


def test_deeply_nested_raw_html_is_shown_as_text() -> None:
    """The sanitiser's HTML parser is quadratic in nesting depth: past MAX_HTML_DEPTH raw HTML becomes text."""
    for tag in ("div", "blockquote"):
        html = render_markdown(f"<{tag}>" * 100_000 + "<script>alert(1)</script>")
        assert_inert(html)
        assert html.startswith(f"<p>&lt;{tag}&gt;&lt;{tag}&gt;")
    shallow = render_markdown("<div>\n\n" * 50 + "# Deep enough\n\n" + "</div>\n\n" * 50)
    assert '<h2 id="deep-enough">Deep enough</h2>' in shallow and shallow.count("<div>") == 50


def test_huge_code_blocks_are_not_highlighted() -> None:
    small = render_markdown('```hcl\nlocals { a = 1 }\n```\n')
    big = render_markdown("```hcl\n" + 'locals { a = "${var.b}" }\n' * 2000 + "```\n")
    assert "<span" in small and "<span" not in big and big.count("locals {") == 2000


def test_max_chars_cuts_and_says_so() -> None:
    assert "not shown" not in render_markdown("abc", max_chars=3)
    html = render_markdown("abcdef", max_chars=3)
    assert "abc" in html and "def" not in html and "not shown" in html


def test_images_without_alt_text_are_marked_decorative() -> None:
    html = render_markdown('<img src="a.png"> <img src="b.png" alt="Diagram"> ![](c.png) ![Logo](d.png)\n\n'
                           '<img src=x onerror="alert(1)">', link_base=BASE)
    assert_inert(html)
    images = re.findall(r"<img[^>]*>", html)
    assert len(images) == 5 and all(re.search(r'\salt="', img) for img in images), images
    assert [re.search(r'alt="([^"]*)"', img).group(1) for img in images] == ["", "Diagram", "", "Logo", ""]
    assert all(img.count(" alt=") == 1 for img in images), images
