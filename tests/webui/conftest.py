"""Fixtures for the web UI: an app with tfregistry-webui registered, HTML helpers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

import tfregistry_webui.plugin as webui_plugin

#: What every HTML page of the web UI must carry.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
MAX_PAGE_BYTES = 200 * 1024


@pytest.fixture
def ui_factory(app_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``ui_factory(config)``: an app with the web UI plugin (and only the local storage otherwise)."""

    def make(config: dict[str, Any] | None = None, plugins: tuple[Any, ...] = ()) -> Any:
        return app_factory(config, plugins=(webui_plugin, *plugins))

    return make


@pytest.fixture
def app(ui_factory: Callable[..., Any]) -> Any:
    """The ``app`` of the shared fixtures (tokens, ``publish``), here with the web UI."""
    return ui_factory()


def assert_page(response: Any, status: int = 200) -> str:
    """The page's HTML, after the checks every page must pass: status, headers, no inline script or
    style, bounded size."""
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    html = response.get_data(as_text=True)
    assert len(response.get_data()) < MAX_PAGE_BYTES
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\sstyle\s*=", html, re.I), "style= attribute"
    assert "<style" not in html.lower(), "inline <style>"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "inline event handler"
    return html
