"""``tfr serve`` with the web UI installed (as the README's run command does): a real server subprocess."""

from __future__ import annotations

import re
from pathlib import Path

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


@pytest.mark.e2e
def test_the_readme_quotes_the_lines_serve_prints(tmp_path):
    """The README's run section shows the last lines of the first start; they are what ``tfr serve`` prints
    (port and data directory aside) when the web UI is installed."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    quoted = re.search(r"^Serving https://127\.0\.0\.1:8443/ \(data in [^)]+\)\nWeb UI: open "
                       r"https://127\.0\.0\.1:8443/ in a browser$", readme, re.M)
    assert quoted, "the README does not show the first start's Serving / Web UI lines"
    with running_server("sqlite", tmp_path) as srv:
        lines = srv.log_out.read_text().splitlines()
    serving = next(i for i, line in enumerate(lines) if line.startswith("Serving "))
    printed = "\n".join(lines[serving:serving + 2])
    expected = re.sub(r"\(data in [^)]+\)", "(data in DIR)", quoted.group(0)).replace("8443", str(srv.port))
    assert re.sub(r"\(data in [^)]+\)", "(data in DIR)", printed) == expected, printed
