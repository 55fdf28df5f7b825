"""``tfr serve`` with the web UI installed (as the README's run command does): a real server subprocess."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import running_server
from tests.webui.conftest import SECURITY_HEADERS


@pytest.mark.e2e
def test_serve_names_the_web_ui_and_serves_it(tmp_path):
    with running_server("sqlite", tmp_path) as srv:
        assert f"Web UI: open https://127.0.0.1:{srv.port}/ in a browser" in srv.log_out.read_text()
        home = srv.get("/", headers={"Accept": "text/html"})
        assert home.status == 200 and home.headers["content-type"].startswith("text/html")
        for name, value in SECURITY_HEADERS.items():
            assert home.headers[name.lower()] == value
        css = re.search(r'href="(/-/static/[^"]+\.css)"', home.body.decode()).group(1)
        assert srv.get(css).status == 200
        # protocol clients see the core's answers, unchanged
        assert srv.get("/.well-known/terraform.json").headers["content-type"] == "application/json"
        missing = srv.get("/v1/modules/a/b/c/d/e", token=srv.admin_token)
        assert missing.status == 404 and missing.headers["content-type"] == "application/json"
