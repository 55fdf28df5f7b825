"""Test support: npm packages the tests need (Azurite, axe-core), installed on first use into a cache directory.

:func:`npm_package` returns ``<cache_dir>/node_modules/<package>`` once a version matching the wanted
one is there, running ``npm install --prefix <cache_dir> <package>@<wanted>`` itself when it is not,
so a fresh clone with Node.js and npm needs no other step.  Failures are ``pytest.fail`` with what to
install or set (proxies, CAs, a mirror) and npm's own output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["NPM_NETWORK_VARIABLES", "cached_version", "install_failure_message", "install_npm_package",
           "npm_package", "require_npm"]

#: Environment variables that steer npm through a proxy, a TLS-intercepting proxy or a mirror: what the
#: failure message lists (names only; a proxy URL may carry a password).  tox.ini passes them through.
NPM_NETWORK_VARIABLES = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE",
)  # fmt: skip


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def matches(version: str, wanted: str) -> bool:
    """``version`` is ``wanted`` exactly (``3.37.0``) or within it as a prefix (``4`` or ``4.10``)."""
    return version == wanted or version.startswith(wanted + ".")


def cached_version(cache_dir: Path, package: str) -> str | None:
    """The version of ``package`` installed under ``cache_dir``, or ``None``."""
    try:
        return json.loads((cache_dir / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def require_npm(label: str, role: str, spec: str, cache_dir: Path) -> str:
    """Path of ``npm``; fails saying what to install when Node.js or npm is missing."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        _fail(f"the tests need {label}, {role}, and installing it needs Node.js and npm, which are not on PATH: "
              f"install them (Debian: apt-get install nodejs npm), or install {label} yourself: "
              f"npm install --prefix {cache_dir} {spec}")
    return npm


def npm_package(cache_dir: Path, package: str, wanted: str, *, label: str, role: str) -> Path:
    """The directory of ``package`` (``wanted``: an exact version or a major/minor prefix) under ``cache_dir``.

    Installs ``package@wanted`` there with npm when it is missing or another version; ``label`` and
    ``role`` name it in failure messages ("Azurite", "the Azure Storage emulator the ... run against").
    """
    directory = cache_dir / "node_modules" / package
    version = cached_version(cache_dir, package)
    if version is not None and matches(version, wanted):
        return directory
    spec = f"{package}@{wanted}"
    install_npm_package(require_npm(label, role, spec, cache_dir), cache_dir, spec, label=label, role=role)
    version = cached_version(cache_dir, package)
    if version is None or not matches(version, wanted):
        _fail(f"npm installed {spec} into {cache_dir} but {directory} holds version {version}")
    return directory


def install_npm_package(npm: str, cache_dir: Path, spec: str, *, label: str, role: str, timeout: float = 600) -> None:
    """``npm install --prefix cache_dir SPEC``; on failure, fail with what to set.

    npm reads proxies and CAs from the environment (``HTTPS_PROXY``, ``NODE_EXTRA_CA_CERTS``,
    ``npm_config_*``) and from ``~/.npmrc``; the message names them, lists which are set, and
    ends with npm's own output.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache_dir), spec]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        output = exc.stderr or exc.stdout or ""
        _fail(install_failure_message(command, f"did not finish within {timeout:.0f} s",
                                      output.decode(errors="replace") if isinstance(output, bytes) else output,
                                      label=label, role=role))
    if result.returncode != 0:
        _fail(install_failure_message(command, f"exited with {result.returncode}", result.stderr or result.stdout,
                                      label=label, role=role))


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


def install_failure_message(command: list[str], what: str, npm_output: str, *, label: str, role: str) -> str:
    """The message for a failed install: the command, the likely cause, what to set, npm's output."""
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
        f"Installing {label}, {role}, failed: `{' '.join(command)}` {what}.\n"
        f"Likely cause: {cause}.\n"
        "npm must reach its registry. Behind a proxy or a TLS-intercepting proxy, set these before running "
        "the tests (tox.ini passes them through), or put the npm_config_* ones in ~/.npmrc:\n"
        "  HTTPS_PROXY / HTTP_PROXY (or npm_config_https_proxy / npm_config_proxy): the proxy URL; keep "
        "127.0.0.1 and localhost in NO_PROXY\n"
        "  NODE_EXTRA_CA_CERTS=/path/to/proxy-ca.pem (added to node's CAs) or "
        "npm_config_cafile=/path/to/ca-bundle.pem\n"
        "  npm_config_registry=https://your-npm-mirror/ to install from a mirror\n"
        f"Set now: {', '.join(is_set) or 'none of them'}.\n"
        f"Or install {label} yourself: npm install --prefix {command[command.index('--prefix') + 1]} {command[-1]}\n"
        f"npm's output (last 3000 characters):\n{npm_output[-3000:]}"
    )
