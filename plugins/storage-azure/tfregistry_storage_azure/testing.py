"""Test support: Azurite (the Azure Storage emulator, from npm) as a real server on 127.0.0.1.

Used by the plugin's tests and by ``tests/benchmarks/bench_storage_azure.py``.
``azurite-blob`` is taken from ``cache_dir`` (the tests pass ``<repo>/.cache/azurite``,
which git ignores), else from PATH; when neither has it, :func:`azurite_binary` runs
``npm install --prefix <cache_dir> azurite@AZURITE_VERSION`` itself (through
:mod:`tfregistry.testing.npm`, shared with the browser tests' axe-core), so a fresh clone
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

import pytest

from tfregistry.testing import npm as npm_kit
from tfregistry.testing.npm import cached_version, install_npm_package, npm_package

AZURITE_VERSION = os.environ.get("TFREGISTRY_TEST_AZURITE_VERSION", "3.37.0")
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 30.0


#: How the npm failure messages name Azurite.
LABEL, ROLE = "Azurite", "the Azure Storage emulator the Azure storage tests run against"


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def azurite_binary(cache_dir: Path) -> str:
    """Path of ``azurite-blob``: from ``cache_dir``, else PATH, else installed into ``cache_dir`` with npm
    (:func:`tfregistry.testing.npm.npm_package`)."""
    cached = cache_dir / "node_modules" / ".bin" / "azurite-blob"
    if cached.exists() and cached_version(cache_dir, "azurite") == AZURITE_VERSION:
        return str(cached)
    on_path = shutil.which("azurite-blob")
    if on_path and "TFREGISTRY_TEST_AZURITE_VERSION" not in os.environ:
        return on_path
    npm_package(cache_dir, "azurite", AZURITE_VERSION, label=LABEL, role=ROLE)
    if not cached.exists():
        _fail(f"npm installed azurite@{AZURITE_VERSION} into {cache_dir} but {cached} is missing")
    return str(cached)


def install_azurite(npm: str, cache_dir: Path, timeout: float = 600) -> None:
    """``npm install --prefix cache_dir azurite@AZURITE_VERSION``; on failure, fail with what to set."""
    install_npm_package(npm, cache_dir, f"azurite@{AZURITE_VERSION}", label=LABEL, role=ROLE, timeout=timeout)


def install_failure_message(command: list[str], what: str, npm_output: str) -> str:
    """The message for a failed Azurite install (see :func:`tfregistry.testing.npm.install_failure_message`)."""
    return npm_kit.install_failure_message(command, what, npm_output, label=LABEL, role=ROLE)


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
