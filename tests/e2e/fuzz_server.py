"""Schemathesis's own runner (the ``st`` command line) against a real ``tfr serve`` over TLS, on SQLite and
PostgreSQL: the whole OpenAPI document, every check, every phase (examples, coverage, fuzzing, stateful), as
the administrator the server created on first start and anonymously.

This is the route an operator would take against a deployed registry; ``tests/fuzz`` runs the same checks in
process, with more roles, in the normal suite.  Schemathesis's coverage phase sends thousands of requests
whatever the example count, more than the suite's time budget, so this file is named outside ``test_*.py``
and ``tox -e fuzz`` runs it by path (an explicit path is collected whatever its name).
``TFREGISTRY_FUZZ_EXAMPLES`` bounds the examples.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import DATABASES, RegistryServer, running_server

EXAMPLES = int(os.environ.get("TFREGISTRY_FUZZ_EXAMPLES", "4"))

#: See tests/fuzz/test_api_schemathesis.py: a 400 is content no schema can describe.
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=DATABASES)
def fuzz_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A server whose rate limits let the checks send thousands of requests, many with bad credentials."""
    limits = {"TFR_LIMITS__AUTH_FAILURES": "1000000/minute", "TFR_LIMITS__UPLOADS": "1000000/minute",
              "TFR_LIMITS__LOGIN": "1000000/minute"}
    with running_server(request.param, tmp_path_factory.mktemp(f"fuzz-{request.param}"), limits) as srv:
        yield srv


@pytest.mark.parametrize("role", ["admin", "anonymous"])
def test_schemathesis_cli_against_the_server(fuzz_server: RegistryServer, role: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    args = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "--no-color", "run",
            f"{fuzz_server.url}/api/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
            "--seed", "20261204", "--generation-deterministic", "--tls-verify", str(fuzz_server.bundle),
            "--no-color", "--workers", "2", "--request-timeout", "30", "--max-failures", "20"]
    if role == "admin":
        args += ["--header", f"Authorization: Bearer {fuzz_server.admin_token}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
                            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    summary = result.stdout[-6000:]
    assert result.returncode == 0, f"schemathesis found failures as {role}:\n{summary}\n{result.stderr[-2000:]}"
    assert "operations" in result.stdout.lower(), summary
