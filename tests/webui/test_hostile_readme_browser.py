"""A hostile README published to a real ``tfr serve`` subprocess (SQLite and PostgreSQL), opened in real chromium:
nothing in it runs, nothing is fetched from elsewhere, and the page stays bounded.

The README holds every payload of :data:`tests.webui.test_markdown.HOSTILE` (script tags, event handlers,
``javascript:`` links, SVG with script...), an SVG file of the archive with a script (shown as an image and
linked), and 5 MB of text.  The browser context ignores the Content-Security-Policy (``bypass_csp``), so what
keeps the page inert here is the sanitiser alone; the SVG file itself is then opened with the CSP in force.
"""

from __future__ import annotations

import random
import re
import string
import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.e2e.conftest import RegistryServer
from tests.webui.harness import PAGE_WEIGHT_LIMIT, check_page, offsite_requests
from tests.webui.test_markdown import HOSTILE
from tfregistry.testing.plugin import build_module_archive

#: Every payload sets this (or opens a dialog) if it ever runs.
MARK = "window.__pwned = 1; alert(1)"
EVIL_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned = 1"><script>window.__pwned = 1;'
            'alert(1)</script><circle r="5"/></svg>')
FILLER = "Lorem ipsum <b>dolor</b> [x](javascript:alert(1)) <img src=x onerror=alert(1)> sit amet.\n\n"


def filler(size: int) -> str:
    """``size`` characters of text that does not compress much (the registry refuses archive bombs)."""
    rng = random.Random(12)
    letters = string.ascii_lowercase
    out: list[str] = []
    total = 0
    while total < size:
        words = " ".join("".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(12))
        paragraph = f"{words} {FILLER}"
        out.append(paragraph)
        total += len(paragraph)
    return "".join(out)


def hostile_readme() -> str:
    parts = ["# Hostile", "![diagram](docs/evil.svg) and [the svg](docs/evil.svg)",
             *(p.replace("alert(1)", MARK) for p in HOSTILE)]
    head = "\n\n".join(parts) + "\n\n"
    text = head + filler(5 * 1024 * 1024)
    assert len(text) > 5 * 1024 * 1024
    return text


@pytest.fixture(scope="module")
def hostile(registry: RegistryServer) -> str:
    """The module page of ``<ns>/hostile/generic`` 1.0.0 (a public namespace)."""
    namespace = f"evil{uuid.uuid4().hex[:6]}"
    archive = build_module_archive("hostile", {"README.md": hostile_readme(), "docs/evil.svg": EVIL_SVG,
                                               "main.tf": 'variable "name" {\n  type = string\n}\n'})
    assert registry.publish(namespace, "hostile", "generic", "1.0.0", archive) == 201, registry.output()[-2000:]
    registry.set_visibility(namespace, "public")
    return f"/modules/{namespace}/hostile/generic/1.0.0"


def test_the_hostile_readme_renders_inert_and_bounded(open_page: Callable[..., Page], registry: RegistryServer,
                                                      hostile: str):
    page = open_page(registry, bypass_csp=True)
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    weight = check_page(page, hostile, "hostile README")  # axe, no off-site request, under 200 KB...
    assert weight.total < PAGE_WEIGHT_LIMIT  # ... the SVG image included
    readme = page.locator(".readme")
    expect(readme.get_by_role("heading", name="Hostile")).to_be_visible()
    expect(readme).to_contain_text("the rest is not shown")  # 5 MB cut, and the page says so
    # fire at every element of the README the events its handlers would have listened to; open every <details>
    fired = readme.evaluate("""(root) => { let n = 0;
        for (const e of root.querySelectorAll('*')) {
            for (const type of ['mouseover', 'mouseenter', 'focus', 'load', 'error', 'toggle', 'animationstart']) {
                e.dispatchEvent(new Event(type)); n++; } }
        return n; }""")
    assert fired > 100
    for details in readme.locator("details").all():
        if details.is_visible():
            details.locator("summary").click()
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__pwned") is None
    assert dialogs == []
    assert offsite_requests(page) == []
    served = registry.get(hostile, headers={"Accept": "text/html"}).body.decode()  # the page as sent (no axe)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", served, re.I), "an inline script was served"
    assert len(served.encode()) < PAGE_WEIGHT_LIMIT
    # the README's DOM (not its text, which may quote the payloads): no active element, no handler attribute
    assert readme.locator("script, iframe, object, embed, form, style, base, meta, link, svg").count() == 0
    handlers = readme.evaluate("""(root) => [...root.querySelectorAll('*')].flatMap(
        (e) => [...e.attributes].map((a) => a.name).filter((n) => n.toLowerCase().startsWith('on')))""")
    assert handlers == []
    for href in readme.locator("a[href]").evaluate_all("(links) => links.map((a) => a.href)"):
        assert href.startswith(registry.url) or href.startswith("https://"), href
    images = readme.locator("img").evaluate_all("(imgs) => imgs.map((i) => i.src)")
    svg = [src for src in images if src.endswith("evil.svg")]
    assert len(svg) == 1 and svg[0].startswith(registry.url), images

    # the SVG file itself, opened as a page with the server's headers in force: served as text, nothing runs
    direct = open_page(registry, bypass_csp=False)
    direct.on("dialog", dismiss)
    response = direct.goto(svg[0])
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"
    direct.wait_for_timeout(300)
    assert direct.evaluate("() => window.__pwned") is None and dialogs == []
