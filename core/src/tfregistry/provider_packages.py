"""Provider packages: names, zip checks, the ``h1:``/``zh:`` hashes, SHA256SUMS and mirror folders.

Rules and algorithms follow ``docs/reference/protocols.md`` §4–5 (Terraform 1.15, its
``internal/getproviders`` package and ``golang.org/x/mod/sumdb/dirhash``).  Pure functions
on bytes, files and paths: no Flask, no database.  Every :class:`PackageError` message is
meant for the person who uploaded the file and names the file, entry or line at fault.

The zip checks are a security boundary: a provider zip comes from a publisher and is
unpacked by other people's Terraform.  :func:`inspect_provider_zip` reads every entry as a
stream and counts the bytes it actually decompresses, so a zip bomb (or a header lying
about sizes) stops at the limit instead of exhausting memory or disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from tfregistry import semver
from tfregistry.archives import COMPRESSION_RATIO_FLOOR, path_problem, special_mode_bits

__all__ = [
    "KNOWN_ARCH",
    "KNOWN_OS",
    "MirrorArchive",
    "PackageError",
    "PackageName",
    "PackageReport",
    "check_sums_cover",
    "h1_of_directory",
    "inspect_provider_zip",
    "package_filename",
    "parse_package_filename",
    "parse_shasums",
    "read_goreleaser_manifest",
    "render_shasums",
    "scan_mirror_directory",
    "signature_filename",
    "sums_filename",
    "validate_protocols",
    "validate_provider_address",
    "verify_mirror_hashes",
]

_CHUNK = 1024 * 1024
KNOWN_OS = ("darwin", "freebsd", "linux", "openbsd", "solaris", "windows", "netbsd")
KNOWN_ARCH = ("386", "amd64", "arm", "arm64", "ppc64le", "s390x", "riscv64", "mips", "mipsle", "mips64", "mips64le")

_PREFIX = "terraform-provider-"
_NAME_CHARS_RE = re.compile(r"[a-z0-9-]+", re.ASCII)
_HEX64_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
# A SHA256SUMS line as Terraform reads it (bytes.Fields): hash, blank, file name.  Upper-case
# hex and the GNU "*" binary marker are matched here only to be refused with a precise message.
_SUMS_LINE_RE = re.compile(r"(?P<hash>[0-9a-fA-F]{64})(?P<sep> {1,2})(?P<star>\*?)(?P<name>\S+)")
_PROTOCOL_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", re.ASCII)
_PLATFORM_RE = re.compile(r"([a-z0-9]+)_([a-z0-9]+)", re.ASCII)
_HOSTNAME_RE = re.compile(r"[^\s/\\:]+(?::[0-9]{1,5})?")
_DRIVE_RE = re.compile(r"[A-Za-z]:")
# zip "version made by" systems whose external attributes hold MS-DOS attributes (the same
# table as Go's archive/zip FileHeader.Mode: FAT, NTFS, VFAT).
_MSDOS_CREATORS = (0, 11, 14)
_MSDOS_DIRECTORY = 0x10
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
_SUPPORTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # all Go's archive/zip can read
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


class PackageError(ValueError):
    """A provider package, checksum file or mirror folder the registry refuses; the message is user-facing."""


def _show(text: str, limit: int = 120) -> str:
    """Quote a name taken from user input for a message, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


# --- names -------------------------------------------------------------------------------------


def _name_problem(value: str) -> str | None:
    """Why ``value`` is not a valid provider namespace or type, or None if it is."""
    if not value:
        return "it is empty"
    if len(value) > 64:
        return f"it is {len(value)} characters long (at most 64)"
    if value != value.lower():
        return f"it must be lower case ({value.lower()!r})"
    if "." in value:
        return "dots are not allowed"
    if not _NAME_CHARS_RE.fullmatch(value):
        return "only letters a-z, digits 0-9 and dashes are allowed"
    if value.startswith("-") or value.endswith("-"):
        return "it must not start or end with a dash"
    if "--" in value:
        return "consecutive dashes are not allowed"
    return None


def validate_provider_address(namespace: str, type_: str) -> None:
    """Check a provider's namespace and type against Terraform's rules, requiring lower case.

    Both are 1-64 characters: letters, digits and single dashes, not starting or ending
    with a dash, no dots.  A type must not start with ``terraform-`` (the archive and
    executable names add ``terraform-provider-`` themselves).
    """
    for label, value in (("namespace", namespace), ("type", type_)):
        problem = _name_problem(value if isinstance(value, str) else "")
        if problem:
            raise PackageError(
                f"invalid provider {label} {_show(str(value))}: {problem}; use 1-64 lower-case letters, digits "
                "and single dashes, not starting or ending with a dash (e.g. acme/foo, acme/my-cloud)"
            )
    if type_.startswith("terraform-"):
        raise PackageError(
            f"invalid provider type {type_!r}: drop the 'terraform-' prefix (e.g. foo, not terraform-provider-foo)"
        )


@dataclass(frozen=True)
class PackageName:
    """The parts of a package file name ``terraform-provider-TYPE_VERSION_OS_ARCH.zip``."""

    type: str
    version: str
    os: str
    arch: str


def package_filename(type_: str, version: str, os: str, arch: str) -> str:
    """``terraform-provider-TYPE_VERSION_OS_ARCH.zip``, the conventional archive name."""
    return f"{_PREFIX}{type_}_{version}_{os}_{arch}.zip"


def sums_filename(type_: str, version: str) -> str:
    """``terraform-provider-TYPE_VERSION_SHA256SUMS``."""
    return f"{_PREFIX}{type_}_{version}_SHA256SUMS"


def signature_filename(type_: str, version: str) -> str:
    """``terraform-provider-TYPE_VERSION_SHA256SUMS.sig`` (a binary detached signature)."""
    return sums_filename(type_, version) + ".sig"


def parse_package_filename(filename: str, *, type_: str | None = None, version: str | None = None) -> PackageName:
    """Split ``terraform-provider-TYPE_VERSION_OS_ARCH.zip`` and check it against the declared type/version.

    The type contains no ``_`` and a semantic version cannot either, so the name splits
    into exactly four ``_``-separated parts; the version may still contain ``-``, ``+``
    and ``.`` (``1.0.0-rc.1+build.5``).  OS and architecture must be ones Go knows.
    """
    example = f"{_PREFIX}TYPE_VERSION_OS_ARCH.zip, e.g. {_PREFIX}foo_1.2.0_linux_amd64.zip"
    if not filename.startswith(_PREFIX) or not filename.endswith(".zip"):
        raise PackageError(f"package {_show(filename)} is not named {example}")
    parts = filename[len(_PREFIX) : -len(".zip")].split("_")
    if len(parts) != 4:
        raise PackageError(
            f"package {_show(filename)} is not named {example} (TYPE, VERSION, OS and ARCH are separated by '_' "
            "and contain none)"
        )
    name = PackageName(*parts)
    problem = _name_problem(name.type)
    if problem:
        raise PackageError(f"package {_show(filename)}: invalid provider type {name.type!r}: {problem}")
    if type_ is not None and name.type != type_:
        raise PackageError(f"file {filename} is for provider type {name.type!r}, not {type_!r}")
    if version is not None and name.version != version:
        raise PackageError(f"file {filename} is for version {name.version}, not {version}")
    try:
        semver.parse(name.version)
    except semver.InvalidVersion as exc:
        raise PackageError(f"package {_show(filename)}: {exc}") from None
    if name.os not in KNOWN_OS:
        raise PackageError(
            f"package {_show(filename)}: unknown operating system {name.os!r} (known: {', '.join(KNOWN_OS)})"
        )
    if name.arch not in KNOWN_ARCH:
        raise PackageError(
            f"package {_show(filename)}: unknown architecture {name.arch!r} (known: {', '.join(KNOWN_ARCH)})"
        )
    return name


# --- zip packages and the h1:/zh: hashes -------------------------------------------------------


@dataclass(frozen=True)
class PackageReport:
    """What :func:`inspect_provider_zip` found in a valid provider zip."""

    #: Lower-case hex SHA-256 of the zip file itself: the SHA256SUMS entry, and the ``zh:`` hash without prefix.
    sha256: str
    #: ``h1:`` hash of the zip contents (dirhash Hash1), with the prefix.
    h1: str
    #: Size of the zip file in bytes.
    size: int
    #: Name of the provider executable at the top level of the zip.
    executable: str
    #: Number of entries (all files: directory entries are refused).
    file_count: int
    #: Total size of the entries once unpacked, as actually decompressed.
    uncompressed_bytes: int


def _hash1(entries: Iterable[tuple[bytes, str]]) -> str:
    """dirhash.Hash1 over ``(name as bytes, hex sha256 of content)`` pairs."""
    summary = hashlib.sha256()
    for name, digest in sorted(entries):
        summary.update(digest.encode() + b"  " + name + b"\n")
    return "h1:" + base64.b64encode(summary.digest()).decode()


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The entry name as the bytes stored in the zip, which is what Go hashes and unpacks."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_FLAG else "cp437")


def _is_directory(info: zipfile.ZipInfo) -> bool:
    """Whether Go's archive/zip (and so Terraform) would treat the entry as a directory."""
    if info.filename.endswith("/") or stat.S_ISDIR(info.external_attr >> 16):
        return True
    return info.create_system in _MSDOS_CREATORS and bool(info.external_attr & _MSDOS_DIRECTORY)


def _check_entry(info: zipfile.ZipInfo) -> None:
    """Refuse an entry that is not a plain file at a safe, canonical relative path."""
    name = info.filename
    shown = _show(info.orig_filename)
    if _is_directory(info):
        raise PackageError(
            f"the zip has a directory entry {shown}: Terraform hashes directory entries when it installs from the "
            "zip but not when it re-checks the unpacked package, so the lock file hashes would disagree and the "
            "next 'terraform init' would fail; build the zip with file entries only ('zip -D', or GoReleaser's "
            "default archives)"
        )
    if info.orig_filename != name:  # Python cuts a name at its first NUL
        raise PackageError(
            f"the zip entry {shown} has the control character '\\x00' (rule: no control characters, C0, DEL or C1, "
            "in names)"
        )
    try:
        # The name as Go (and so Terraform) sees it: the stored bytes, whatever the UTF-8 flag says.
        go_name = _raw_name(info).decode("utf-8")
    except UnicodeDecodeError:
        raise PackageError(f"the zip entry {shown} is not valid UTF-8 (rule: names must be UTF-8)") from None
    problem = path_problem(go_name)
    if problem:
        raise PackageError(f"the zip entry {_show(go_name)} {problem}")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or _DRIVE_RE.match(name) or any(part in ("", ".", "..") for part in parts):
        raise PackageError(
            f"the zip has an unsafe path {shown}: entries must be relative paths with '/' separators and no "
            "'.', '..' or empty parts"
        )
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        raise PackageError(f"the zip has a symbolic link {shown}; a provider package holds regular files only")
    if file_type not in (0, stat.S_IFREG):
        raise PackageError(f"the zip entry {shown} is not a regular file (mode {oct(file_type)})")
    mode = info.external_attr >> 16
    special = special_mode_bits(mode)
    if special:
        raise PackageError(
            f"the zip entry {shown} has the {' and '.join(special)} bit{'s' if len(special) > 1 else ''} set"
            f" (mode {stat.S_IMODE(mode):04o}); the registry never rewrites a package (its bytes are covered by"
            " the signed SHA256SUMS), so it refuses setuid, setgid and sticky bits: clear them before zipping"
            " (chmod ug-s,-t)"
        )
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise PackageError(f"the zip entry {shown} is encrypted; Terraform cannot unpack it")
    if info.compress_type not in _SUPPORTED_COMPRESSION:
        raise PackageError(
            f"the zip entry {shown} uses compression method {info.compress_type}; Terraform can only unpack "
            "stored or deflate entries (the zip default)"
        )


def _check_entry_set(infos: Sequence[zipfile.ZipInfo]) -> None:
    """Refuse entries that would collide when unpacked: duplicates, case variants, a file used as a folder."""
    names: set[str] = set()
    folded: dict[str, str] = {}
    for info in infos:
        name = info.filename
        if name in names:
            raise PackageError(f"the zip has two entries named {_show(name)}")
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            raise PackageError(
                f"the zip has entries {_show(other)} and {_show(name)} that differ only in case; they "
                "collide when unpacked on macOS or Windows"
            )
        names.add(name)
    for name in sorted(names):
        parts = name.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in names:
                raise PackageError(f"the zip has {_show(folder)} both as a file and as the folder of {_show(name)}")


def _check_ratio(info: zipfile.ZipInfo, unpacked: int, total: int, size: int, ratio: float, floor: int) -> None:
    """Refuse a zip bomb: ``unpacked`` bytes of ``info`` so far, ``total`` for the zip of ``size`` bytes."""
    if not ratio:
        return
    if unpacked > floor and unpacked > ratio * max(info.compress_size, 1):
        raise PackageError(
            f"the zip entry {_show(info.filename)} is compressed more than {ratio:g}:1 (over {unpacked} bytes from "
            f"{info.compress_size} compressed bytes, and reading stopped there); such an entry is refused as a "
            "decompression bomb"
        )
    if total > floor and total > ratio * max(size, 1):
        raise PackageError(
            f"the zip is compressed more than {ratio:g}:1 (over {total} bytes unpacked from a {size}-byte file, "
            f"stopped while reading {_show(info.filename)}); it is refused as a decompression bomb"
        )


def _find_executable(names: Iterable[str], type_: str) -> str:
    """The provider executable Terraform would pick: first top-level match in lexical order."""
    prefix = f"{_PREFIX}{type_}"
    names = sorted(names)
    for name in names:
        if "/" not in name and (name == prefix or name.startswith((prefix + "_", prefix + "."))):
            return name
    listing = ", ".join(_show(n, 80) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    raise PackageError(
        f"the zip has no provider executable at its top level: expected a file named {prefix}, or starting with "
        f"{prefix}_ or {prefix}. (usually {prefix}_vVERSION, with .exe on Windows); found {listing or 'no entries'}"
    )


def inspect_provider_zip(
    fileobj: BinaryIO,
    type_: str,
    *,
    max_uncompressed_bytes: int = 2 * 1024**3,
    max_files: int = 1000,
    max_compression_ratio: float = 100,
    compression_ratio_floor: int = COMPRESSION_RATIO_FLOOR,
    sha256: str | None = None,
) -> PackageReport:
    """Check a provider zip and compute its ``zh:`` (sha256) and ``h1:`` (dirhash.HashZip) hashes.

    ``sha256``: the file's digest when the caller took it already (an upload hashed while it was
    received, :class:`tfregistry.uploads.SpooledUpload`); the file is then not read a second time for it.

    ``fileobj`` must be seekable; it is read from the start and left at the start.  The
    zip must hold regular files only, at safe relative paths (no directory entries, no
    symlinks, no ``..``, no control characters, UTF-8 names within the length rules of
    :func:`tfregistry.archives.path_problem`), without setuid, setgid or sticky bits,
    stored or deflated, including a top-level executable named like
    ``terraform-provider-TYPE_vVERSION``.  Every entry is decompressed, so corrupt data and
    CRC errors are found; decompression stops as soon as ``max_uncompressed_bytes`` is
    passed, whatever sizes the headers claim, or as soon as the data expands more than
    ``max_compression_ratio`` times (an entry against its compressed size, or everything
    against the size of the zip) once past ``compression_ratio_floor`` bytes; a ratio of 0
    turns that check off.  Raises :class:`PackageError`.
    """
    if sha256 is not None:
        size = fileobj.seek(0, 2)
        file_sha256 = sha256
    else:
        fileobj.seek(0)
        sha, size = hashlib.sha256(), 0
        while chunk := fileobj.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
        file_sha256 = sha.hexdigest()
    fileobj.seek(0)
    try:
        archive = zipfile.ZipFile(fileobj)
    except UnicodeDecodeError:
        raise PackageError("the zip has an entry name flagged as UTF-8 that is not valid UTF-8") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise PackageError(f"not a zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_files:
            raise PackageError(f"the zip has {len(infos)} entries, more than the limit of {max_files}")
        for info in infos:
            _check_entry(info)
        _check_entry_set(infos)
        executable = _find_executable([i.filename for i in infos], type_)
        entries: list[tuple[bytes, str]] = []
        total = 0
        for info in infos:
            digest = hashlib.sha256()
            unpacked = 0
            try:
                with archive.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        total += len(chunk)
                        unpacked += len(chunk)
                        if total > max_uncompressed_bytes:
                            raise PackageError(
                                f"the zip unpacks to more than {max_uncompressed_bytes} bytes (stopped while reading "
                                f"{_show(info.filename)})"
                            )
                        _check_ratio(info, unpacked, total, size, max_compression_ratio, compression_ratio_floor)
                        digest.update(chunk)
            except PackageError:
                raise
            except _READ_ERRORS as exc:
                raise PackageError(f"the zip entry {_show(info.filename)} is corrupt: {exc}") from None
            entries.append((_raw_name(info), digest.hexdigest()))
    fileobj.seek(0)
    return PackageReport(file_sha256, _hash1(entries), size, executable, len(infos), total)


def h1_of_directory(path: Path) -> str:
    """dirhash.HashDir of an unpacked package: what ``terraform init`` writes to the lock file.

    Every non-directory entry under ``path`` (symlinks to files are read through; symlinked
    folders are not walked, and are an error as in Go), named relative to ``path`` with
    ``/`` separators, sorted by bytes.  Raises :class:`PackageError` or :class:`OSError`.
    """
    root = Path(path)
    if not root.is_dir():
        raise PackageError(f"{root} is not a directory")

    def fail(error: OSError) -> None:
        raise error

    entries: list[tuple[bytes, str]] = []
    for folder, dirnames, filenames in os.walk(root, onerror=fail):
        for name in dirnames:
            if os.path.islink(os.path.join(folder, name)):
                raise PackageError(f"{os.path.join(folder, name)} is a symbolic link to a folder; it cannot be hashed")
        for name in filenames:
            full = os.path.join(folder, name)
            relative = os.fsencode(os.path.relpath(full, root)).replace(os.fsencode(os.sep), b"/")
            if b"\n" in relative:
                raise PackageError(f"{full}: file names with newlines cannot be hashed")
            digest = hashlib.sha256()
            with open(full, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
            entries.append((relative, digest.hexdigest()))
    return _hash1(entries)


# --- SHA256SUMS --------------------------------------------------------------------------------


def parse_shasums(data: bytes) -> dict[str, str]:
    """Parse a SHA256SUMS file strictly: file name → lower-case hex, in file order.

    Accepted lines are ``<64 lower-case hex><one or two spaces><file name>``, ``\\n`` or
    ``\\r\\n`` terminated, with one optional newline at the very end.  Refused, because
    Terraform mishandles them: blank lines (Terraform 1.15 crashes), upper-case hex
    (refused as not what any checksum tool writes) and the ``*name`` binary marker of
    ``sha256sum -b`` (Terraform compares ``*name`` with the file name and finds no line).
    Duplicate names and empty files are refused too.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackageError(f"SHA256SUMS is not UTF-8 text (invalid byte at offset {exc.start})") from None
    if text.startswith("\ufeff"):
        raise PackageError("SHA256SUMS starts with a byte-order mark; Terraform cannot read its first line")
    if not text:
        raise PackageError("SHA256SUMS is empty")
    if text.endswith("\n"):
        text = text[:-1]
    entries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            what = "a blank line" if line == "" else "a line of only spaces"
            raise PackageError(f"SHA256SUMS has {what} at line {number}: Terraform 1.15 crashes on it; remove it")
        match = _SUMS_LINE_RE.fullmatch(line)
        if not match:
            raise PackageError(
                f"SHA256SUMS line {number} is not '<64 hex digits>  <file name>' (as written by "
                f"'sha256sum' or 'shasum -a 256'): {_show(line)}"
            )
        digest, name = match["hash"], match["name"]
        if match["star"]:
            raise PackageError(
                f"SHA256SUMS line {number} marks {name} with '*' (binary mode, 'sha256sum -b'): Terraform would "
                f"look for a line naming {name} and not find it; write the file with 'sha256sum' or 'shasum -a 256'"
            )
        if not _HEX64_RE.fullmatch(digest):
            raise PackageError(
                f"SHA256SUMS line {number} uses upper-case hex; Terraform expects lower case (as sha256sum writes)"
            )
        if name in entries:
            raise PackageError(f"SHA256SUMS lists {name} twice (lines {lines[name]} and {number})")
        entries[name] = digest
        lines[name] = number
    return entries


def render_shasums(entries: Mapping[str, str]) -> bytes:
    """The canonical SHA256SUMS text: ``<hex>  <name>``, sorted by file name, one trailing newline."""
    if not entries:
        raise PackageError("cannot write an empty SHA256SUMS")
    lines = []
    for name in sorted(entries):
        digest = entries[name].lower()
        if not _HEX64_RE.fullmatch(digest):
            raise PackageError(f"{_show(name)}: {_show(entries[name])} is not a SHA-256 hex digest")
        if not name or any(c.isspace() for c in name) or name.startswith("*"):
            raise PackageError(f"{_show(name)} cannot be listed in SHA256SUMS (empty, blanks or a leading '*')")
        lines.append(f"{digest}  {name}\n")
    return "".join(lines).encode()


def check_sums_cover(sums: Mapping[str, str], packages: Mapping[str, str]) -> None:
    """Every package (file name → sha256 hex) must have its line, with the same hash, in SHA256SUMS.

    Extra lines (other platforms uploaded later, a GoReleaser manifest) are allowed.
    """
    for name, digest in sorted(packages.items()):
        if name not in sums:
            raise PackageError(f"SHA256SUMS has no line for {name}")
        if sums[name].lower() != digest.lower():
            raise PackageError(
                f"{name} does not match its SHA256SUMS line (expected {sums[name]}, got {digest}): "
                "the file was changed after signing"
            )


# --- plugin protocols --------------------------------------------------------------------------


def validate_protocols(protocols: Sequence[str]) -> list[str]:
    """Check plugin protocol versions ``MAJOR.MINOR`` (majors 4 to 6); returns them stripped, deduplicated.

    An empty list is an error: the caller decides the default (``["5.0"]``) when none is given.
    """
    if isinstance(protocols, (str, bytes)) or not isinstance(protocols, Sequence):
        raise PackageError('plugin protocol versions must be a list such as ["5.0"]')
    if not protocols:
        raise PackageError("no plugin protocol versions given: use 5.0 (SDKv2) or 6.0 (plugin framework)")
    result: list[str] = []
    for protocol in protocols:
        text = protocol.strip() if isinstance(protocol, str) else ""
        match = _PROTOCOL_RE.fullmatch(text)
        if not match:
            raise PackageError(
                f"invalid plugin protocol version {_show(str(protocol))}: use MAJOR.MINOR, e.g. 5.0 (SDKv2) or 6.0 "
                "(plugin framework)"
            )
        if not 4 <= int(match.group(1)) <= 6:
            raise PackageError(
                f"unsupported plugin protocol version {text}: the major version must be 4, 5 or 6 (5.0 for SDKv2, "
                "6.0 for the plugin framework)"
            )
        if text not in result:
            result.append(text)
    return result


def read_goreleaser_manifest(data: bytes) -> list[str]:
    """``metadata.protocol_versions`` of a GoReleaser ``terraform-provider-TYPE_VERSION_manifest.json``.

    The file looks like ``{"version": 1, "metadata": {"protocol_versions": ["6.0"]}}``.
    """
    shape = '{"version": 1, "metadata": {"protocol_versions": ["6.0"]}}'
    try:
        manifest: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackageError(f"the manifest is not valid JSON ({exc}); expected {shape}") from None
    if not isinstance(manifest, dict):
        raise PackageError(f"the manifest is not a JSON object; expected {shape}")
    if manifest.get("version", 1) != 1:
        raise PackageError(f"the manifest has version {manifest['version']!r}; only version 1 is known ({shape})")
    metadata = manifest.get("metadata")
    protocols = metadata.get("protocol_versions") if isinstance(metadata, dict) else None
    if not isinstance(protocols, list) or not protocols:
        raise PackageError(f"the manifest lists no metadata.protocol_versions; expected {shape}")
    return validate_protocols(protocols)


# --- `terraform providers mirror` folders ------------------------------------------------------


@dataclass(frozen=True)
class MirrorArchive:
    """One package listed in a ``terraform providers mirror`` folder."""

    hostname: str
    namespace: str
    type: str
    version: str
    os: str
    arch: str
    #: Absolute path of the zip file, inside the folder of its ``VERSION.json``.
    path: Path
    #: The ``hashes`` listed for it (``h1:...``/``zh:...``), not verified yet: see :func:`verify_mirror_hashes`.
    hashes: tuple[str, ...]


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PackageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PackageError(f"{path}: expected a JSON object")
    return data


def _subfolders(folder: Path, level: str) -> list[Path]:
    """The sub-folders of ``folder`` (hidden entries ignored); any other entry is an error."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise PackageError(
                f"{entry}: unexpected file; a `terraform providers mirror` folder holds HOSTNAME/NAMESPACE/TYPE/ "
                f"folders only, and this one would be a {level} folder"
            )
        found.append(entry)
    return found


def _mirror_archive_path(doc_path: Path, platform: str, url: Any) -> Path:
    """Resolve an archive ``url`` from ``doc_path``: a relative path to a file beside it."""
    where = f"{doc_path}: archive {platform}"
    if not isinstance(url, str) or not url:
        raise PackageError(f"{where} has no 'url'")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or parts.query or parts.fragment or url.startswith(("/", "\\")) or "\\" in url:
        raise PackageError(
            f"{where}: url {_show(url)} is not a file name relative to {doc_path.name}: only local files can be "
            "imported (mirror remote archives first with `terraform providers mirror`)"
        )
    folder = doc_path.parent.resolve()
    path = (folder / unquote(parts.path)).resolve()
    if folder not in path.parents:
        raise PackageError(
            f"{where}: url {_show(url)} points outside {folder}: only files beside {doc_path.name} can be imported"
        )
    if not path.is_file():
        raise PackageError(f"{where}: archive {_show(url)} is missing ({path} is not a file)")
    return path


def _scan_type_folder(root: Path, type_dir: Path) -> list[MirrorArchive]:
    """The archives listed by ``HOSTNAME/NAMESPACE/TYPE/index.json`` and its ``VERSION.json`` files."""
    hostname, namespace, type_ = type_dir.relative_to(root).parts
    if not _HOSTNAME_RE.fullmatch(hostname):
        raise PackageError(f"{type_dir.parent.parent}: {hostname!r} is not a hostname (optionally with :port)")
    try:
        validate_provider_address(namespace, type_)
    except PackageError as exc:
        raise PackageError(f"{type_dir}: {exc}") from None
    index = type_dir / "index.json"
    if not index.is_file():
        raise PackageError(f"{type_dir}: no index.json; is this a `terraform providers mirror` folder?")
    versions = _read_json_object(index).get("versions")
    if not isinstance(versions, dict) or not versions:
        raise PackageError(f'{index}: expected {{"versions": {{"VERSION": {{}}, ...}}}} with at least one version')
    for version in versions:
        try:
            semver.parse(version)
        except semver.InvalidVersion as exc:
            raise PackageError(f"{index}: {exc}") from None
    found: list[MirrorArchive] = []
    used: dict[Path, str] = {}
    for version in sorted(versions, key=semver.sort_key):
        doc_path = type_dir / f"{version}.json"
        if not doc_path.is_file():
            raise PackageError(f"{index} lists version {version} but {doc_path.name} is missing")
        archives = _read_json_object(doc_path).get("archives")
        if not isinstance(archives, dict) or not archives:
            raise PackageError(f'{doc_path}: expected {{"archives": {{"OS_ARCH": {{"url": ..., "hashes": [...]}}}}}}')
        for platform, entry in sorted(archives.items()):
            match = _PLATFORM_RE.fullmatch(platform)
            if not match or match[1] not in KNOWN_OS or match[2] not in KNOWN_ARCH:
                raise PackageError(f"{doc_path}: {platform!r} is not a known OS_ARCH platform (e.g. linux_amd64)")
            if not isinstance(entry, dict):
                raise PackageError(f"{doc_path}: archive {platform} is not a JSON object")
            path = _mirror_archive_path(doc_path, platform, entry.get("url"))
            label = f"{version} {platform}"
            if path in used:
                raise PackageError(f"{doc_path}: {path.name} is listed for both {used[path]} and {label}")
            used[path] = label
            try:
                named: PackageName | None = parse_package_filename(path.name)
            except PackageError:
                named = None  # a hand-made mirror may name its files differently
            if named is not None and named != PackageName(type_, version, match[1], match[2]):
                raise PackageError(f"{doc_path}: archive {platform} of {type_} {version} points to {path.name}")
            hashes = entry.get("hashes") or []
            if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
                raise PackageError(f"{doc_path}: archive {platform}: 'hashes' must be a list of strings")
            found.append(MirrorArchive(hostname, namespace, type_, version, match[1], match[2], path, tuple(hashes)))
    listed = set(used) | {index.resolve()} | {(type_dir / f"{v}.json").resolve() for v in versions}
    for entry in sorted(type_dir.iterdir()):
        if not entry.name.startswith(".") and entry.suffix in (".zip", ".json") and entry.resolve() not in listed:
            raise PackageError(
                f"{entry}: not listed in {index.name} or any VERSION.json, so it would not be imported; remove it "
                "or list it"
            )
    return found


def scan_mirror_directory(root: Path) -> list[MirrorArchive]:
    """Every archive of a ``terraform providers mirror`` folder, in order; hashes are not checked here.

    The layout is ``HOSTNAME/NAMESPACE/TYPE/index.json`` (``{"versions": {"1.0.0": {}}}``),
    ``HOSTNAME/NAMESPACE/TYPE/1.0.0.json`` (``{"archives": {"linux_amd64": {"url": ...,
    "hashes": [...]}}}``) and the zips, whose ``url`` is a file name relative to that JSON
    file.  HOSTNAME may carry a port (``localhost:8443``).  Nothing is skipped silently:
    stray files, zips or JSON files that no index lists, remote or escaping URLs and missing
    files raise :class:`PackageError` naming the file at fault (hidden entries are ignored).
    """
    root = Path(root)
    if not root.is_dir():
        raise PackageError(f"{root} is not a directory")
    root = root.resolve()
    found: list[MirrorArchive] = []
    for host_dir in _subfolders(root, "HOSTNAME"):
        for namespace_dir in _subfolders(host_dir, "NAMESPACE"):
            for type_dir in _subfolders(namespace_dir, "TYPE"):
                found.extend(_scan_type_folder(root, type_dir))
    if not found:
        raise PackageError(
            f"{root} holds no HOSTNAME/NAMESPACE/TYPE/index.json: is it a `terraform providers mirror` folder?"
        )
    return found


def verify_mirror_hashes(report: PackageReport, hashes: Sequence[str]) -> None:
    """Accept an archive when at least one listed ``h1:``/``zh:`` hash matches it, as Terraform does.

    Hashes of other schemes are ignored; with no ``h1:``/``zh:`` hash at all the archive
    cannot be verified and is refused.
    """
    if not hashes:
        raise PackageError("no hashes listed: cannot verify the archive")
    usable = [h for h in hashes if h.startswith(("h1:", "zh:"))]
    if not usable:
        raise PackageError(f"no h1: or zh: hash listed ({', '.join(hashes)}): cannot verify the archive")
    ours = {report.h1, f"zh:{report.sha256}"}
    if not any(h in ours or (h.startswith("zh:") and h.lower() in ours) for h in usable):
        raise PackageError(
            f"the archive matches none of its listed hashes ({', '.join(usable)}; it has {report.h1} and "
            f"zh:{report.sha256}): it was changed"
        )
