"""Provider documentation in the web UI: links between pages, the sidebar, and rendering within a budget.

Pure helpers (no routes, no database): the version's pages are rendered by
:mod:`tfregistry_webui.provider_views`, the preview and the upload form by
:mod:`tfregistry_webui.docs_views`.  Page content is Markdown from whoever published the provider:
it goes through :func:`~tfregistry_webui.markdown.render_markdown` (sanitised) and nothing else.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from markupsafe import Markup

from tfregistry.provider_docs import CATEGORIES
from tfregistry_webui.markdown import LinkResolver, render_markdown

#: Folders of ``docs/`` (and of the legacy ``website/docs/``) and the category each holds.
FOLDERS = {**{c: c for c in CATEGORIES[1:]}, "r": "resources", "d": "data-sources"}
#: What a link to a page ends with (``.html``: the legacy website's own links).
PAGE_SUFFIXES = (".html.markdown", ".html.md", ".markdown", ".md", ".html")
#: The legacy website's absolute links: ``/docs/providers/<name>/r/thing.html``.
_WEBSITE_LINK = re.compile(r"^/docs/providers/[^/]+/(.+)$")
#: The most characters of a page rendered, and the most HTML a rendered page may take (the rest is cut,
#: with a notice).
DOC_MAX_CHARS = 150_000
DOC_HTML_BUDGET = 120 * 1024
#: What a whole documentation page (layout, sidebar, content) may weigh: under the UI's 200 KB.  The
#: content gets what the layout (:data:`LAYOUT_BYTES`, generous) and the sidebar leave, at least MIN_DOC_BUDGET.
PAGE_BUDGET = 190 * 1024
LAYOUT_BYTES = 24 * 1024
MIN_DOC_BUDGET = 24 * 1024
#: Pages listed in the sidebar; past this many, it lists only the current page's subcategory (the others
#: are a link to their first page) and, within a larger subcategory, the pages around the current one.
SIDEBAR_MAX_PAGES = 400

Target = tuple[str, str]


def page_target(path: str, current_path: str) -> Target | None:
    """``(category, slug)`` of the page a relative link points to, from the page at ``current_path``
    (its path inside ``docs/``, e.g. ``resources/thing.md``); ``None`` when it points elsewhere.  The link
    names a Markdown file (:data:`PAGE_SUFFIXES`), or a page without a suffix (``../guides/start``)."""
    path = unquote(path)
    website = _WEBSITE_LINK.match(path)
    if website:
        rel = website.group(1)
    elif path.startswith("/") or "\\" in path:
        return None
    else:
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(current_path), path))
        if rel == ".." or rel.startswith("../"):
            return None
    parts = rel.split("/")
    name = parts[-1]
    suffix = next((s for s in PAGE_SUFFIXES if name.lower().endswith(s)), None)
    if (suffix is None and "." in name) or len(parts) > 2:
        return None  # another kind of file (an image), or not a page's place
    stem = name[: -len(suffix)] if suffix else name  # ../guides/start: a page named without its suffix
    if len(parts) == 1:
        return ("index", "index") if stem.lower() == "index" else None
    category = FOLDERS.get(parts[0])
    return (category, stem) if category and stem else None


def link_resolver(current_path: str, known: Collection[Target], url_of: Callable[[str, str], str],
                  *, keep_fragment: bool = True) -> LinkResolver:
    """A ``resolve_link`` for :func:`render_markdown`: relative links to pages of ``known`` become
    ``url_of(category, slug)`` (plus the link's ``#fragment`` with ``keep_fragment``); any other
    relative link is dropped (its text stays)."""

    def resolve(url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            return None
        target = page_target(parts.path, current_path)
        if target is None or target not in known:
            return None
        fragment = f"#{quote(parts.fragment, safe='-_.~')}" if parts.fragment and keep_fragment else ""
        return url_of(*target) + fragment

    return resolve


def render_doc(text: str, resolve: LinkResolver | None, budget: int = DOC_HTML_BUDGET) -> Markup:
    """A page's Markdown as safe HTML of at most about ``budget`` characters: when the full rendering is
    larger (long pages, code highlighting), the text is cut shorter until it fits, with a notice."""
    chars = min(len(text), DOC_MAX_CHARS)
    for _ in range(4):
        html = render_markdown(text, resolve_link=resolve, max_chars=max(chars, 1))
        if len(html) <= budget:
            return html
        chars = int(chars * budget / len(html) * 0.8)
    return Markup('<p class="truncated"><strong>This page is too large to show here.</strong></p>')


def sidebar(grouped: Sequence[dict[str, Any]], current: Target | None,
            url_of: Callable[[str, str], str | None]) -> list[dict[str, Any]]:
    """The sidebar of :func:`tfregistry.services.provider_docs.group_pages`'s groups: per category its
    subcategories, each with ``pages`` (title, url, current) or, collapsed, ``pages`` None and ``url`` of
    its first page; ``url_of`` may return None (a page not linked)."""
    total = sum(len(sub["pages"]) for group in grouped for sub in group["subcategories"])
    compact = total > SIDEBAR_MAX_PAGES
    nav = []
    for group in grouped:
        subs = []
        for sub in group["subcategories"]:
            pages = sub["pages"]
            keys = [(p["category"], p["slug"]) for p in pages]
            here = keys.index(current) if current in keys else None
            entry: dict[str, Any] = {"name": sub["name"], "count": len(pages), "url": url_of(*keys[0]),
                                     "pages": None, "before": 0, "after": 0}
            if not compact or here is not None:
                start = 0
                if len(pages) > SIDEBAR_MAX_PAGES:
                    start = min(max(0, (here or 0) - SIDEBAR_MAX_PAGES // 2), len(pages) - SIDEBAR_MAX_PAGES)
                shown = pages[start:start + SIDEBAR_MAX_PAGES]
                entry.update(before=start, after=len(pages) - start - len(shown), pages=[
                    {"title": p["title"] or p["slug"], "url": url_of(p["category"], p["slug"]),
                     "current": (p["category"], p["slug"]) == current} for p in shown])
            subs.append(entry)
        nav.append({"category": group["category"], "label": group["label"], "subcategories": subs})
    return nav


def nav_bytes(nav: Sequence[dict[str, Any]]) -> int:
    """About how many bytes of HTML the sidebar ``nav`` takes (an upper estimate: titles may be escaped)."""
    size = 0
    for group in nav:
        size += 2 * len(group["label"]) + 40
        for sub in group["subcategories"]:
            size += 2 * len(sub["name"]) + len(sub["url"] or "") + 80
            for page in sub["pages"] or ():
                size += 2 * len(page["title"]) + len(page["url"] or "") + 60
    return size


def doc_budget(nav: Sequence[dict[str, Any]]) -> int:
    """The HTML budget of a page's content next to the sidebar ``nav``."""
    return max(MIN_DOC_BUDGET, min(DOC_HTML_BUDGET, PAGE_BUDGET - LAYOUT_BYTES - nav_bytes(nav)))
