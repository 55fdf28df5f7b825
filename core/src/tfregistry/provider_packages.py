"""Provider packages: names, zip checks, the ``h1:``/``zh:`` hashes, SHA256SUMS and mirror folders.

Rules and algorithms follow ``docs/reference/protocols.md`` §4–5 (Terraform 1.15 and
``golang.org/x/mod/sumdb/dirhash``).  Pure functions: no Flask, no database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tfregistry import semver

CHUNK = 1024 * 1024
KNOWN_OS = ("darwin", "freebsd", "linux", "openbsd", "solaris", "windows", "netbsd")
KNOWN_ARCH = ("386", "amd64", "arm", "arm64", "ppc64le", "s390x", "riscv64", "mips", "mipsle", "mips64", "mips64le")
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,63}$")
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(\S+)$")


class PackageError(ValueError):
    """A provider package, checksum file or mirror folder the registry refuses; the message is user-facing."""


def validate_provider_address(namespace: str, type_: str) -> None:
    """Terraform's provider address rules, lower case required."""
    for label, value in (("namespace", namespace), ("type", type_)):
        if not _NAME.match(value or ""):
            raise PackageError(
                f"invalid provider {label} {value!r}: use 1-64 lower-case letters, digits and single "
                "dashes, not starting or ending with a dash (e.g. acme/foo)"
            )
    if type_.startswith("terraform-"):
        raise PackageError(
            f"invalid provider type {type_!r}: drop the 'terraform-' prefix (e.g. foo, not terraform-foo)"
        )


@dataclass(frozen=True)
class PackageName:
    type: str
    version: str
    os: str
    arch: str


def package_filename(type_: str, version: str, os: str, arch: str) -> str:
    return f"terraform-provider-{type_}_{version}_{os}_{arch}.zip"


def sums_filename(type_: str, version: str) -> str:
    return f"terraform-provider-{type_}_{version}_SHA256SUMS"


def signature_filename(type_: str, version: str) -> str:
    return sums_filename(type_, version) + ".sig"


def parse_package_filename(filename: str, *, type_: str | None = None, version: str | None = None) -> PackageName:
    """Split ``terraform-provider-TYPE_VERSION_OS_ARCH.zip`` and check it against the declared type/version."""
    example = "terraform-provider-TYPE_VERSION_OS_ARCH.zip, e.g. terraform-provider-foo_1.2.0_linux_amd64.zip"
    if not filename.startswith("terraform-provider-") or not filename.endswith(".zip"):
        raise PackageError(f"package {filename!r} is not named {example}")
    stem = filename[len("terraform-provider-") : -len(".zip")]
    parts = stem.split("_")
    if len(parts) < 4:
        raise PackageError(f"package {filename!r} is not named {example}")
    name = PackageName(parts[0], "_".join(parts[1:-2]), parts[-2], parts[-1])
    try:
        semver.parse(name.version)
    except semver.InvalidVersion as exc:
        raise PackageError(f"package {filename!r}: {exc}") from None
    if name.os not in KNOWN_OS:
        raise PackageError(f"package {filename!r}: unknown operating system {name.os!r} ({', '.join(KNOWN_OS)})")
    if name.arch not in KNOWN_ARCH:
        raise PackageError(f"package {filename!r}: unknown architecture {name.arch!r} ({', '.join(KNOWN_ARCH)})")
    if type_ is not None and name.type != type_:
        raise PackageError(f"file {filename} is for provider type {name.type!r}, not {type_!r}")
    if version is not None and name.version != version:
        raise PackageError(f"file {filename} is for version {name.version}, not {version}")
    return name


@dataclass(frozen=True)
class PackageReport:
    sha256: str
    h1: str
    size: int
    executable: str
    file_count: int
    uncompressed_bytes: int


def _sha256_stream(fileobj: BinaryIO) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    while chunk := fileobj.read(CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), size


def _hash1(lines: Sequence[tuple[str, str]]) -> str:
    summary = "".join(f"{digest}  {name}\n" for name, digest in sorted(lines, key=lambda e: e[0].encode()))
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    if info.is_dir():
        raise PackageError(
            f"the zip has a directory entry {name!r}: directory entries make the hash Terraform records at first "
            "install differ from the one it checks on reinstall; build the zip with file entries only "
            "(zip -D, or GoReleaser's defaults)"
        )
    path = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise PackageError(f"the zip has an unsafe path {name!r}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise PackageError(f"the zip has a symbolic link {name!r}; providers are single executables")


def inspect_provider_zip(
    fileobj: BinaryIO, type_: str, *, max_uncompressed_bytes: int = 2 * 1024**3, max_files: int = 1000
) -> PackageReport:
    """Check a provider zip and compute its ``zh:`` (sha256) and ``h1:`` (dirhash Hash1) hashes."""
    fileobj.seek(0)
    sha256, size = _sha256_stream(fileobj)
    fileobj.seek(0)
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise PackageError("not a zip archive") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_files:
            raise PackageError(f"the zip has more than {max_files} entries")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise PackageError("the zip has duplicate entries")
        lines: list[tuple[str, str]] = []
        total = 0
        for info in infos:
            _check_member(info)
            digest = hashlib.sha256()
            try:
                with archive.open(info) as member:
                    while chunk := member.read(CHUNK):
                        total += len(chunk)
                        if total > max_uncompressed_bytes:
                            raise PackageError(f"the zip unpacks to more than {max_uncompressed_bytes} bytes")
                        digest.update(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise PackageError(f"the zip entry {info.filename!r} cannot be read: {exc}") from None
            lines.append((info.filename, digest.hexdigest()))
    prefix = f"terraform-provider-{type_}"
    candidates = sorted(
        n for n in names if "/" not in n and (n == prefix or n.startswith((prefix + "_", prefix + ".")))
    )
    if not candidates:
        raise PackageError(
            f"the zip has no provider executable at its top level: expected {prefix} or "
            f"{prefix}_vVERSION, found {', '.join(sorted(names)[:5]) or 'nothing'}"
        )
    fileobj.seek(0)
    return PackageReport(sha256, _hash1(lines), size, candidates[0], len(infos), total)


def h1_of_directory(path: Path) -> str:
    """dirhash Hash1 of an unpacked package (what ``terraform init`` writes to the lock file)."""
    lines = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        lines.append((file.relative_to(path).as_posix(), hashlib.sha256(file.read_bytes()).hexdigest()))
    return _hash1(lines)


def parse_shasums(data: bytes) -> dict[str, str]:
    """Parse a SHA256SUMS file strictly (file name → lower-case hex), keeping its order."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise PackageError("SHA256SUMS is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
    entries: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            raise PackageError(f"SHA256SUMS has a blank line at line {number}: Terraform 1.15 crashes on it; remove it")
        match = _SUMS_LINE.match(line.rstrip("\r"))
        if not match:
            raise PackageError(f"SHA256SUMS line {number} is not '<64 hex digits>  <file name>': {line[:100]!r}")
        digest, name = match.groups()
        if digest != digest.lower():
            raise PackageError(f"SHA256SUMS line {number} uses upper-case hex; Terraform expects lower case")
        if name in entries:
            raise PackageError(f"SHA256SUMS lists {name} twice")
        entries[name] = digest
    if not entries:
        raise PackageError("SHA256SUMS is empty")
    return entries


def render_shasums(entries: Mapping[str, str]) -> bytes:
    """The canonical SHA256SUMS text: two spaces, sorted by file name, one trailing newline."""
    return "".join(f"{entries[name]}  {name}\n" for name in sorted(entries)).encode()


def check_sums_cover(sums: Mapping[str, str], packages: Mapping[str, str]) -> None:
    """Every uploaded package (file name → sha256) must have its exact line in SHA256SUMS."""
    for name, digest in sorted(packages.items()):
        if name not in sums:
            raise PackageError(f"SHA256SUMS has no line for {name}")
        if sums[name] != digest:
            raise PackageError(
                f"{name} does not match its SHA256SUMS line (expected {sums[name]}, got {digest}): "
                "the file was changed after signing"
            )


def validate_protocols(protocols: Sequence[str]) -> list[str]:
    """Plugin protocol versions ``MAJOR.MINOR`` that Terraform may speak (majors 4 to 6)."""
    result = []
    for protocol in protocols:
        match = re.fullmatch(r"(\d+)\.(\d+)", protocol.strip())
        if not match or not 4 <= int(match.group(1)) <= 6:
            raise PackageError(
                f"invalid plugin protocol version {protocol!r}: use 5.0 (SDKv2) or 6.0 (plugin framework)"
            )
        result.append(protocol.strip())
    return result


def read_goreleaser_manifest(data: bytes) -> list[str]:
    """``protocol_versions`` from a GoReleaser ``*_manifest.json``."""
    try:
        manifest = json.loads(data)
        protocols = manifest["metadata"]["protocol_versions"]
    except (ValueError, KeyError, TypeError):
        raise PackageError('the manifest is not {"version": 1, "metadata": {"protocol_versions": [...]}}') from None
    if not isinstance(protocols, list) or not protocols:
        raise PackageError("the manifest lists no protocol_versions")
    return validate_protocols([str(p) for p in protocols])


@dataclass(frozen=True)
class MirrorArchive:
    hostname: str
    namespace: str
    type: str
    version: str
    os: str
    arch: str
    path: Path
    hashes: tuple[str, ...]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PackageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PackageError(f"{path}: expected a JSON object")
    return data


def scan_mirror_directory(root: Path) -> list[MirrorArchive]:
    """Every archive of a ``terraform providers mirror`` folder: ``HOST/NS/TYPE/{index.json,VERSION.json,*.zip}``."""
    root = root.resolve()
    found: list[MirrorArchive] = []
    for index in sorted(root.glob("*/*/*/index.json")):
        type_dir = index.parent
        hostname, namespace, type_ = type_dir.relative_to(root).parts
        versions = _read_json(index).get("versions")
        if not isinstance(versions, dict):
            raise PackageError(f"{index}: no 'versions' object")
        for version in sorted(versions):
            doc_path = type_dir / f"{version}.json"
            archives = _read_json(doc_path).get("archives")
            if not isinstance(archives, dict):
                raise PackageError(f"{doc_path}: no 'archives' object")
            for platform, entry in sorted(archives.items()):
                os_, _, arch = platform.partition("_")
                url = str((entry or {}).get("url", ""))
                if not url or "://" in url or url.startswith("/"):
                    raise PackageError(f"{doc_path}: {platform} url {url!r}: only local files can be imported")
                path = (type_dir / url).resolve()
                if root not in path.parents:
                    raise PackageError(f"{doc_path}: {platform} url {url!r} points outside the folder")
                if not path.is_file():
                    raise PackageError(f"{doc_path}: {platform} archive {url} is missing")
                found.append(
                    MirrorArchive(
                        hostname, namespace, type_, version, os_, arch, path, tuple(entry.get("hashes") or ())
                    )
                )
    if not found:
        raise PackageError(
            f"{root} holds no HOST/NAMESPACE/TYPE/index.json: is it a `terraform providers mirror` folder?"
        )
    return found


def verify_mirror_hashes(report: PackageReport, hashes: Sequence[str]) -> None:
    """At least one listed ``h1:``/``zh:`` hash must match the archive."""
    if not hashes:
        raise PackageError("no hashes listed: cannot verify the archive")
    ours = {report.h1, f"zh:{report.sha256}"}
    if not ours & set(hashes):
        raise PackageError(f"the archive matches none of its listed hashes ({', '.join(hashes)}): it was changed")
