"""README rendering.

PLACEHOLDER: the real renderer (markdown-it-py, sanitised with nh3, code highlighted with
Pygments, relative links resolved inside the archive) replaces this file at merge; it keeps
this signature.
"""

from __future__ import annotations

from markupsafe import Markup, escape


def render_markdown(text: str, *, link_base: str | None = None) -> Markup:
    """``text`` as HTML, safe to insert in a page (here: escaped, preformatted)."""
    return Markup('<pre class="markdown-source">{}</pre>').format(escape(text))
