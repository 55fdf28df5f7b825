"""``tfr scm connect --auth-method oauth`` and ``tfr scm authorize`` against a live registry and the fake
GitHub's OAuth endpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests
import tfregistry_scm_github.plugin as github_plugin
from tfregistry_scm_github.testing import FakeGitHub

from tests.integration.test_cli import live_server, run  # noqa: F401 - fixtures
from tests.integration.test_scm_oauth import CLIENT


@pytest.fixture
def app(app_factory: Any) -> Any:
    return app_factory({"scm.reconcile_interval": 0, "scm.github.oauth_client_id": CLIENT[0],
                        "scm.github.oauth_client_secret": CLIENT[1]}, plugins=(github_plugin,))


def test_tfr_scm_connect_oauth_and_authorize(run: Any, live_server: str, admin_token: str,  # noqa: F811
                                             tmp_path: Path):
    common = ["--url", live_server, "--token", admin_token]
    with FakeGitHub(tmp_path, token="ghp_test", oauth_client=CLIENT) as gh:
        gh.create_repo("terraform-net")
        made = run("scm", "connect", "gho", "--provider", "github", "--auth-method", "oauth", "--base-url",
                   gh.api_url, *common)
        assert made.exit_code == 0, made.output
        conn = json.loads(made.output)
        assert conn["oauth_status"] == "pending" and conn["authorize_url"].startswith(gh.api_url[:-len("/api/v3")])
        again = run("scm", "authorize", str(conn["id"]), *common)
        assert again.exit_code == 0, again.output
        url = json.loads(again.output)["authorize_url"]
        back = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
        assert back.startswith(f"{live_server}/api/v1/scm/oauth/callback?")
        # the first authorization's state was replaced by the second's: only the second works
        first = requests.get(conn["authorize_url"], allow_redirects=False, timeout=10).headers["Location"]
        assert requests.get(first, timeout=10, verify=os.environ["SSL_CERT_FILE"]).status_code == 400
        done = requests.get(back, timeout=10, verify=os.environ["SSL_CERT_FILE"])
        assert done.status_code == 200 and done.json()["oauth_status"] == "active"
        repos = run("scm", "repositories", str(conn["id"]), *common)
        assert repos.exit_code == 0 and json.loads(repos.output)[0]["id"] == "acme/terraform-net"
        for token in gh.tokens - {"ghp_test"}:
            assert token not in repos.output and token not in done.text
