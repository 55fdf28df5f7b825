"""The 500 page of a real ``tfr serve`` subprocess in a real browser: in the layout, the request id shown is the
one the server logged with the error, nothing of the error itself leaks, and it passes the checks of every page
(axe-core light and dark, under 200 KB, nothing off-site).

The fault is real, not injected into the code: the search index table is dropped under the running server (on
SQLite and on PostgreSQL), so a search fails with an SQL error that is not an outage (a 500, not a 503).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator

import psycopg
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.engine import make_url

from tests.e2e.conftest import DATABASES, RegistryServer, running_server
from tests.webui.harness import check_page


def sign_in_with_token(page: Page, token: str) -> None:
    """Sign in through the token form."""
    page.goto("/sign-in")
    page.get_by_label("API token", exact=True).fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


@pytest.fixture(params=DATABASES)
def broken(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A server whose ``module_search`` table is gone (dropped behind its back after it started)."""
    with running_server(request.param, tmp_path_factory.mktemp(f"webui-500-{request.param}")) as srv:
        if request.param == "postgresql":
            url = make_url(srv.env["TFR_DATABASE_URL"]).set(drivername="postgresql")
            with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
                conn.execute("DROP TABLE module_search")
        else:
            with sqlite3.connect(srv.data_dir / "registry.db") as conn:
                conn.execute("DROP TABLE module_search")
        yield srv


def test_the_500_page_shows_the_logged_request_id_and_passes_the_checks(open_page: Callable[..., Page],
                                                                       broken: RegistryServer):
    page = open_page(broken)
    sign_in_with_token(page, broken.admin_token)  # reads need a sign-in on this server
    check_page(page, "/modules?q=network", "500 page", status=500)
    expect(page.get_by_role("heading", level=1)).to_have_text("Something went wrong")
    expect(page.get_by_role("banner")).to_contain_text("Signed in as")  # the layout, with the session
    text = page.get_by_role("main").inner_text()
    shown = re.search(r"Request id: (\S+) \(quote it", text)
    assert shown, text
    assert "module_search" not in page.content() and "OperationalError" not in page.content()
    logged = [line for line in broken.log_err.read_text(errors="replace").splitlines()
              if f"[{shown.group(1)}]" in line]
    assert any("ERROR" in line for line in logged), broken.output()[-3000:]
