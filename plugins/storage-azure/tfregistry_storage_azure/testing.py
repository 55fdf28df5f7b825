"""Test support: Azurite (the Azure Storage emulator, from npm) as a real server on 127.0.0.1.

Used by the plugin's tests and by ``tests/benchmarks/bench_storage_azure.py``.
``azurite-blob`` is taken from ``cache_dir`` (the tests pass ``<repo>/.cache/azurite``,
which git ignores), else from PATH; when neither has it, :func:`azurite_binary` runs
``npm install --prefix <cache_dir> azurite@AZURITE_VERSION`` itself, so a fresh clone
with Node.js and npm needs no other step.  Without node and npm it fails with a
message saying so.  ``TFREGISTRY_TEST_AZURITE_VERSION`` picks another version.

Importing this module needs pytest (failures are ``pytest.fail``), not the Azure SDK.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

AZURITE_VERSION = os.environ.get("TFREGISTRY_TEST_AZURITE_VERSION", "3.37.0")
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 30.0


def _fail(message: str) -> NoReturn:
    """``pytest.fail`` inside a test session, a plain error elsewhere (the benchmark)."""
    pytest.fail(message, pytrace=False)


def _cached_version(cache_dir: Path) -> str | None:
    try:
        return json.loads((cache_dir / "node_modules" / "azurite" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


#: Environment variables that steer npm through a proxy, a TLS-intercepting proxy or a mirror: what the
#: failure message lists (names only; a proxy URL may carry a password).  tox.ini passes them through.
NPM_NETWORK_VARIABLES = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE",
)  # fmt: skip


def azurite_binary(cache_dir: Path) -> str:
    """Path of ``azurite-blob``: from ``cache_dir``, else PATH, else installed into ``cache_dir`` with npm."""
    cached = cache_dir / "node_modules" / ".bin" / "azurite-blob"
    if cached.exists() and _cached_version(cache_dir) == AZURITE_VERSION:
        return str(cached)
    on_path = shutil.which("azurite-blob")
    if on_path and "TFREGISTRY_TEST_AZURITE_VERSION" not in os.environ:
        return on_path
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        _fail(
            "the Azure storage tests need Azurite, the Azure Storage emulator, and installing it needs Node.js "
            "and npm, which are not on PATH: install them (Debian: apt-get install nodejs npm), or install "
            f"Azurite yourself: npm install --prefix {cache_dir} azurite@{AZURITE_VERSION}"
        )
    install_azurite(npm, cache_dir)
    if not cached.exists():
        _fail(f"npm installed azurite@{AZURITE_VERSION} into {cache_dir} but {cached} is missing")
    return str(cached)


def install_azurite(npm: str, cache_dir: Path, timeout: float = 600) -> None:
    """``npm install --prefix cache_dir azurite@AZURITE_VERSION``; on failure, fail with what to set.

    npm reads proxies and CAs from the environment (``HTTPS_PROXY``, ``NODE_EXTRA_CA_CERTS``,
    ``npm_config_*``) and from ``~/.npmrc``; the message names them, lists which are set, and
    ends with npm's own output.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache_dir), f"azurite@{AZURITE_VERSION}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        output = exc.stderr or exc.stdout or ""
        _fail(install_failure_message(command, f"did not finish within {timeout:.0f} s",
                                      output.decode(errors="replace") if isinstance(output, bytes) else output))
    if result.returncode != 0:
        _fail(install_failure_message(command, f"exited with {result.returncode}", result.stderr or result.stdout))


def _npm_registry(npm: str) -> str:
    """The registry npm uses (from the environment or an npmrc), for the message."""
    try:
        out = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "its registry"
    url = urlsplit(out.stdout.strip())
    if not url.netloc:
        return "its registry"
    return urlunsplit(url._replace(netloc=url.netloc.rpartition("@")[2]))  # never a password in a report


def install_failure_message(command: list[str], what: str, npm_output: str) -> str:
    """The message for a failed Azurite install: the command, the likely cause, what to set, npm's output."""
    registry = _npm_registry(command[0])
    lowered = npm_output.lower()
    if any(word in lowered for word in ("self_signed_cert", "self-signed certificate", "unable_to_get_issuer",
                                        "local issuer certificate", "unable_to_verify_leaf", "cert_")):
        cause = ("npm does not trust the TLS certificate it was shown (a TLS-intercepting proxy?): point "
                 "NODE_EXTRA_CA_CERTS or npm_config_cafile at a PEM file with that proxy's CA")
    elif any(word in lowered for word in ("econnrefused", "enotfound", "etimedout", "eai_again", "econnreset",
                                          "network", "proxy")):
        cause = f"npm could not reach {registry}: behind a proxy, set HTTPS_PROXY (or npm_config_https_proxy)"
    else:
        cause = "see npm's output below"
    is_set = sorted({name for name in os.environ if name in NPM_NETWORK_VARIABLES or name.lower().startswith(
        "npm_config_")})
    return (
        f"Installing Azurite, the Azure Storage emulator the Azure storage tests run against, failed: "
        f"`{' '.join(command)}` {what}.\n"
        f"Likely cause: {cause}.\n"
        "npm must reach its registry. Behind a proxy or a TLS-intercepting proxy, set these before running "
        "the tests (tox.ini passes them through), or put the npm_config_* ones in ~/.npmrc:\n"
        "  HTTPS_PROXY / HTTP_PROXY (or npm_config_https_proxy / npm_config_proxy): the proxy URL; keep "
        "127.0.0.1 and localhost in NO_PROXY\n"
        "  NODE_EXTRA_CA_CERTS=/path/to/proxy-ca.pem (added to node's CAs) or "
        "npm_config_cafile=/path/to/ca-bundle.pem\n"
        "  npm_config_registry=https://your-npm-mirror/ to install from a mirror\n"
        f"Set now: {', '.join(is_set) or 'none of them'}.\n"
        f"Or install Azurite yourself: npm install --prefix {command[command.index('--prefix') + 1]} "
        f"azurite@{AZURITE_VERSION}\n"
        f"npm's output (last 3000 characters):\n{npm_output[-3000:]}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection_string(port: int, key: str = KEY) -> str:
    """Azurite's account-key connection string (any ``key``: a wrong one tests the refusal)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


@contextlib.contextmanager
def running_azurite(
    cache_dir: Path, *, cert: Path | None = None, key: Path | None = None, oauth: bool = False
) -> Iterator[int]:
    """Start ``azurite-blob`` in memory, without telemetry, on a free port; yield the port; stop it.

    With ``cert``/``key`` it serves HTTPS; ``oauth`` turns on bearer-token
    authentication (``--oauth basic``: Azurite checks a token's issuer, audience and
    lifetime, not its signature), which needs HTTPS.
    """
    binary = azurite_binary(cache_dir)
    port = free_port()
    command = [
        binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
        "--skipApiVersionCheck", "--disableTelemetry", "--silent",
    ]  # fmt: skip
    if cert and key:
        command += ["--cert", str(cert), "--key", str(key)]
    if oauth:
        command += ["--oauth", "basic"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-3000:]

        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    _fail(f"Azurite ({' '.join(command)}) exited with {proc.returncode}:\n{output()}")
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    _fail(f"Azurite did not listen on 127.0.0.1:{port} within {START_TIMEOUT:.0f} s:\n{output()}")
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (and its key), for HTTPS Azurite."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class FakeEntraCredential:
    """A token credential handing out unsigned JWTs that Azurite's ``--oauth basic`` accepts.

    Stands in for ``DefaultAzureCredential``: the backend sees an ``azure.core``
    token credential, exactly as with a managed or workload identity.
    """

    OID = "11059fcc-5514-4800-b5f8-49808b9cfab6"
    TID = "ab1f708d-50f6-404c-a006-d71b2ac7a606"

    def __init__(self) -> None:
        self.requests = 0

    @staticmethod
    def _b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.requests += 1
        now = int(time.time())
        claims = {
            "aud": "https://storage.azure.com",
            "iss": f"https://sts.windows.net/{self.TID}/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": self.OID,
            "tid": self.TID,
        }
        return AccessToken(f"{self._b64({'alg': 'none', 'typ': 'JWT'})}.{self._b64(claims)}.", now + 3600)
