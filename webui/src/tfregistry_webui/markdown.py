"""Markdown to safe HTML: READMEs, changelogs and provider documentation pages.

The text comes from whoever published the module or provider, so the output is treated as hostile
until sanitised.  The pipeline:

1. the text is cut at ``max_chars`` (a visible notice says so), which bounds the work below;
2. markdown-it-py renders CommonMark plus GFM tables and strikethrough; raw HTML is allowed
   through to step 4 (READMEs use ``<details>``, ``<img>`` and ``<br>``);
3. fenced code is highlighted by Pygments, by the language the fence names (``hcl``, ``terraform``
   and ``tf`` get its Terraform lexer); an unknown or missing language is shown plain, never
   guessed; the output uses classes only (:func:`pygments_css` is the stylesheet), no ``style``;
4. nh3 (ammonia) keeps a short list of tags and attributes; no ``style`` attributes (the UI's
   Content-Security-Policy forbids inline styles), no event handlers, no scripts, frames, SVG,
   objects or forms.  Every ``href``/``src`` is checked by :func:`_resolve_url`: ``http``,
   ``https`` and ``mailto`` (and ``#fragment``) are kept, any other scheme is dropped, and a
   relative URL is resolved against ``link_base`` (the URL prefix under which the archive's files
   are served), normalised so that ``..`` cannot climb above it; without ``link_base`` relative
   URLs are dropped.  A ``resolve_link`` callable, when given, decides instead for the relative
   ``href`` of links (provider docs point at sibling pages: ``../data-sources/x.md``); what it
   returns is kept as the URL, ``None`` drops the attribute.  Links get
   ``rel="noopener noreferrer nofollow"``.

Headings get stable ``id`` attributes (GitHub-style slugs, ``-1``, ``-2`` ... for repeats), so
``#usage`` links within a README work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TerraformLexer, get_lexer_by_name
from pygments.util import ClassNotFound

__all__ = ["DEFAULT_MAX_CHARS", "pygments_css", "render_markdown", "slugify"]

#: Text beyond this many characters is not rendered (a notice says so).
DEFAULT_MAX_CHARS = 500_000

#: Code blocks longer than this are shown plain: highlighting multiplies the size of the HTML by ten.
HIGHLIGHT_MAX_CHARS = 20_000
#: Deeper nesting of raw HTML elements makes the document render with raw HTML shown as text: the
#: HTML parser's work grows with the square of the depth (100,000 nested ``<div>`` take seconds).
MAX_HTML_DEPTH = 200

#: The class of the ``<pre>`` around highlighted code; :func:`pygments_css` styles it.
HIGHLIGHT_CLASS = "highlight"

#: Tags kept by the sanitiser; anything else is removed (its text kept, except for the ones below).
ALLOWED_TAGS = {
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "blockquote", "pre", "code", "kbd", "samp", "var",
    "ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
    "a", "img", "em", "strong", "b", "i", "u", "del", "s", "ins", "sub", "sup", "mark", "small", "abbr",
    "details", "summary", "span", "div",
}
#: Tags removed together with everything inside them.
REMOVED_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "svg", "math", "form", "noscript",
                        "template", "textarea", "select", "button", "frame", "frameset", "applet"}
#: Attributes kept, per tag (``*``: any kept tag).  No ``style``, no ``on*``.
ALLOWED_ATTRIBUTES = {
    "*": {"title", "class"},
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "h1": {"id"}, "h2": {"id"}, "h3": {"id"}, "h4": {"id"}, "h5": {"id"}, "h6": {"id"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
    "ol": {"start"},
    "details": {"open"},
    "abbr": {"title"},
}
#: What a link may point to, besides URLs relative to ``link_base`` and ``#fragments``.
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
# What browsers drop from a URL before parsing it (leading/trailing C0 and space; tab and newlines anywhere).
_URL_TRIM = "".join(chr(c) for c in range(0x21))
_URL_INNER_RE = re.compile(r"[\t\n\r]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BLANK_RE = re.compile(r"[\x00-\x20\x7f-\x9f]")
# Classes the output may carry: Pygments token classes, ours, and the table alignment classes.
_CLASS_RE = re.compile(r"^(?:[a-z]{1,3}[0-9]?|highlight|language-[a-z0-9_+#-]{1,40}|text-(?:left|center|right))$")
_ALIGN_RE = re.compile(r"^text-align:\s*(left|center|right)$")
_NUMBER_RE = re.compile(r"^[0-9]{1,5}%?$")
_ID_RE = re.compile(r"^[a-z0-9_-]{1,200}$")
_TERRAFORM_LANGS = {"hcl", "terraform", "tf", "tfvars", "opentofu", "tofu"}
_SLUG_DROP_RE = re.compile(r"[^\w\- ]", re.UNICODE)
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>")
#: An ``<img`` start of the sanitiser's output (attributes always quoted) that has no ``alt`` attribute.
_IMG_WITHOUT_ALT = re.compile(r'<img(?![^>]*\salt=")')
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def slugify(text: str) -> str:
    """A GitHub-style anchor for a heading: lower case, punctuation dropped, spaces to ``-``."""
    slug = _SLUG_DROP_RE.sub("", text.strip().lower()).replace(" ", "-")
    slug = re.sub(r"[^a-z0-9_-]", "", slug)  # ASCII only: ids are also checked by _ID_RE
    return slug[:100] or "section"


def _lexer_for(lang: str) -> Lexer | None:
    """The Pygments lexer a fence's language names, or None (shown plain); never a guess."""
    lang = lang.strip().lower()
    if not lang:
        return None
    if lang in _TERRAFORM_LANGS:
        return TerraformLexer()
    try:
        return get_lexer_by_name(lang)
    except ClassNotFound:
        return None


_FORMATTER = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, _attrs: Any) -> str:
    """markdown-it's ``highlight`` option: a complete ``<pre>`` (used as is), or "" for the default."""
    name = (lang or "").split(maxsplit=1)[0] if lang else ""
    lexer = _lexer_for(name) if len(code) <= HIGHLIGHT_MAX_CHARS else None
    language = f' class="language-{escape(name.lower())}"' if name else ""
    body = highlight(code, lexer, _FORMATTER) if lexer is not None else str(escape(code))
    return f'<pre class="{HIGHLIGHT_CLASS}"><code{language}>{body}</code></pre>'


def _heading_ids_and_alignment(state: StateCore) -> None:
    """Core rule: ``id`` slugs on headings (unique per document), headings one level down (a document is
    shown under its page's own ``<h1>``: ``#`` becomes ``<h2>``, ``######`` stays ``<h6>``), and table cell
    alignment as classes (markdown-it writes ``style="text-align:..."``, which the sanitiser would drop)."""
    seen: dict[str, int] = {}
    tokens = state.tokens
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and index + 1 < len(tokens):
            inline = tokens[index + 1]
            text = "".join(child.content for child in (inline.children or [])
                           if child.type in ("text", "code_inline"))
            slug = slugify(text)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            token.attrSet("id", slug if count == 0 else f"{slug}-{count}")
        elif token.type in ("th_open", "td_open"):
            style = token.attrGet("style")
            if isinstance(style, str):
                match = _ALIGN_RE.match(style)
                token.attrs.pop("style", None)
                if match:
                    token.attrSet("class", f"text-{match.group(1)}")


@lru_cache(maxsize=2)
def _parser(html: bool = True) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": html, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    md.core.ruler.push("tfr_heading_ids", _heading_ids_and_alignment)
    return md


def _too_deep(html: str) -> bool:
    """Whether elements nest deeper than :data:`MAX_HTML_DEPTH` (counted loosely: unclosed tags count)."""
    depth = 0
    for match in _TAG_RE.finditer(html):
        closing, tag, self_closing = match.groups()
        if tag.lower() in _VOID_TAGS or self_closing:
            continue
        depth = max(depth - 1, 0) if closing else depth + 1
        if depth > MAX_HTML_DEPTH:
            return True
    return False


def _clean_path(path: str) -> str | None:
    """``path`` (percent-decoded) normalised: ``.`` and empty parts dropped; None if ``..`` climbs out."""
    parts: list[str] = []
    for part in unquote(path).split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        if "\\" in part or _CONTROL_RE.search(part):
            return None
        parts.append(part)
    return "/".join(parts)


LinkResolver = Callable[[str], str | None]


def _resolve_url(value: str, link_base: str | None, resolve_link: LinkResolver | None = None) -> str | None:
    """The URL to keep for an ``href``/``src``, or None to drop the attribute (``resolve_link``: see
    :func:`render_markdown`)."""
    url = _URL_INNER_RE.sub("", value.strip(_URL_TRIM))
    if not url:
        return None
    probe = _BLANK_RE.sub("", url)  # what a lenient browser might still read as a scheme
    scheme = _SCHEME_RE.match(probe)
    if scheme:
        if scheme.group(1).lower() not in URL_SCHEMES or _SCHEME_RE.match(url) is None:
            return None
        return url
    if url.startswith("#"):
        return url
    if url.startswith("//"):  # scheme-relative: another host
        return "https:" + url
    if resolve_link is not None:
        return resolve_link(url)
    if link_base is None:
        return None
    parts = urlsplit(url)
    path = _clean_path(parts.path)
    if path is None:
        return None
    # Paths are relative to the archive root (a README sits at the root; "/x" means the root too).
    resolved = link_base.rstrip("/") + "/" + quote(path, safe="/@!$&'()*+,;=:~-._")
    return urlunsplit(("", "", resolved, "", parts.fragment))


def _attribute_filter(link_base: str | None, resolve_link: Callable[[str], str | None] | None = None) -> Any:
    def keep(tag: str, attribute: str, value: str) -> str | None:
        if attribute in ("href", "src"):
            return _resolve_url(value, link_base, resolve_link if tag == "a" and attribute == "href" else None)
        if attribute == "class":
            classes = [c for c in value.split() if _CLASS_RE.match(c)]
            return " ".join(classes) or None
        if attribute == "id":
            return value if _ID_RE.match(value) else None
        if attribute in ("width", "height", "colspan", "rowspan", "start"):
            return value if _NUMBER_RE.match(value.strip()) else None
        return value

    return keep


def render_markdown(text: str, *, link_base: str | None = None, max_chars: int = DEFAULT_MAX_CHARS,
                    resolve_link: Callable[[str], str | None] | None = None) -> Markup:
    """Render ``text`` (Markdown, possibly hostile) as sanitised HTML, safe to put in a page.

    ``link_base``: the URL prefix relative links and images resolve against, e.g.
    ``/modules/acme/net/aws/1.0.0/files/``; without it relative URLs are dropped.  ``resolve_link``:
    for the relative ``href`` of a link (no scheme, not ``#...`` or ``//...``, with tabs and newlines
    removed), the URL to use instead, or ``None`` to drop it; it must return a URL of this site.
    Text beyond ``max_chars`` characters is cut, with a notice at the end.
    """
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    html = _parser().render(text)
    if _too_deep(html):
        html = _parser(html=False).render(text)  # raw HTML shown as text; Markdown nesting is capped
    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags=REMOVED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_attribute_filter(link_base, resolve_link),
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )
    # raw <img> without alt text (a screen reader would read its URL): marked decorative, as axe-core asks
    cleaned = _IMG_WITHOUT_ALT.sub('<img alt=""', cleaned)
    if truncated:
        cleaned += (f'<p class="truncated"><strong>This document is longer than {max_chars:,} characters; '
                    "the rest is not shown.</strong></p>")
    return Markup(cleaned)


def _scoped(css: str, scope: str) -> str:
    """Only the rules under ``scope`` (Pygments also emits page-wide ``pre`` and line-number rules)."""
    return "\n".join(line for line in css.splitlines() if line.startswith(scope))


@lru_cache(maxsize=1)
def pygments_css(light_style: str = "default", dark_style: str = "monokai") -> str:
    """The stylesheet for highlighted code (``pre.highlight``): ``light_style`` by default, ``dark_style``
    under ``@media (prefers-color-scheme: dark)``.  Serve it as a static stylesheet (no inline styles)."""
    scope = f"pre.{HIGHLIGHT_CLASS}"
    light = _scoped(HtmlFormatter(style=light_style).get_style_defs(scope), scope)
    dark = _scoped(HtmlFormatter(style=dark_style).get_style_defs(scope), scope)
    indented = "\n".join("  " + line for line in dark.splitlines())
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{indented}\n}}\n"
