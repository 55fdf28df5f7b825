"""Test data for providers, made with the real ``gpg`` binary (independent of the registry's own gpg code).

``SigningKey`` generates a throwaway key in its own GNUPGHOME; ``build_release`` lays out
a GoReleaser-style ``dist`` folder: one zip per platform, ``SHA256SUMS``, a binary
detached ``SHA256SUMS.sig`` and optionally a manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def provider_zip(type_: str, version: str, platform: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A provider package: one executable entry (a shell script; ``init`` never runs it), no directory entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(f"terraform-provider-{type_}_v{version}", date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = 0o100755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, f"#!/bin/sh\necho 'fake {type_} {version} {platform} provider' >&2\nexit 1\n")
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


class SigningKey:
    """A throwaway OpenPGP signing key held in a private GNUPGHOME."""

    def __init__(self, name: str = "tfregistry test signer", key_type: str = "ed25519") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tfr-gpg-")
        self.home = Path(self._tmp.name)
        self.home.chmod(0o700)
        params = (
            "%no-protection\n"
            + (
                "Key-Type: EDDSA\nKey-Curve: ed25519\n"
                if key_type == "ed25519"
                else "Key-Type: RSA\nKey-Length: 3072\n"
            )
            + f"Key-Usage: sign\nName-Real: {name}\nName-Email: signer@tfregistry.invalid\nExpire-Date: 0\n%commit\n"
        )
        self._gpg("--batch", "--gen-key", input=params.encode())
        listing = self._gpg("--list-keys", "--with-colons").decode()
        self.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
        self.key_id = self.fingerprint[-16:]

    def _gpg(self, *args: str, input: bytes | None = None) -> bytes:
        result = subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--yes", *args],
            input=input,
            capture_output=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout

    @property
    def public_armor(self) -> str:
        return self._gpg("--armor", "--export", self.fingerprint).decode()

    def sign(self, data: bytes, armor: bool = False) -> bytes:
        """A detached signature over ``data`` (binary unless ``armor``)."""
        return self._gpg(
            "--local-user",
            self.fingerprint,
            "--detach-sign",
            *(["--armor"] if armor else []),
            "--output",
            "-",
            input=data,
        )

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True, check=False)
        self._tmp.cleanup()


def h1_of_zip(data: bytes) -> str:
    """dirhash Hash1 of a zip, written from the published algorithm (protocols.md §5.3), not from our code."""
    import base64

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    lines = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(entries, key=lambda e: e[0].encode()))
    return "h1:" + base64.b64encode(hashlib.sha256(lines.encode()).digest()).decode()


def shasums(entries: dict[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(entries.items())).encode()


@dataclass
class Release:
    """A GoReleaser-like ``dist`` folder."""

    dist: Path
    type: str
    version: str
    zips: dict[str, bytes]  # file name -> bytes
    sums: bytes
    signature: bytes | None

    def zip_name(self, platform: str) -> str:
        return f"terraform-provider-{self.type}_{self.version}_{platform}.zip"


def build_release(
    dist: Path,
    type_: str,
    version: str,
    platforms: Iterable[str] = ("linux_amd64", "darwin_arm64"),
    key: SigningKey | None = None,
    protocols: list[str] | None = None,
    armor: bool = False,
) -> Release:
    """Write zips, SHA256SUMS and (with ``key``) SHA256SUMS.sig into ``dist``."""
    dist.mkdir(parents=True, exist_ok=True)
    stem = f"terraform-provider-{type_}_{version}"
    zips = {f"{stem}_{p}.zip": provider_zip(type_, version, p) for p in platforms}
    for name, data in zips.items():
        (dist / name).write_bytes(data)
    sums = shasums(zips)
    signature = None
    if key is not None:
        (dist / f"{stem}_SHA256SUMS").write_bytes(sums)
        signature = key.sign(sums, armor=armor)
        (dist / f"{stem}_SHA256SUMS.sig").write_bytes(signature)
    if protocols:
        (dist / f"{stem}_manifest.json").write_text(
            json.dumps({"version": 1, "metadata": {"protocol_versions": protocols}})
        )
    return Release(dist, type_, version, zips, sums, signature)
