"""Validation of module archives (``.tar.gz``) uploaded by users.

This is a security boundary: the archive comes from a user and is later served to, and
unpacked by, other users' Terraform.  :func:`inspect_module_archive` reads the upload
once, as a stream, never writes anything to disk, and rejects anything that could
escape the directory it is unpacked into or exhaust memory, CPU or disk.

Decompression is done here rather than by :mod:`tarfile` (``mode="r|"`` over our own
gzip reader, instead of ``mode="r|gz"``) so that every decompressed byte is counted
against a budget, including the tar headers: :mod:`tarfile` reads a pax or GNU
long-name header into memory in one piece, whatever size its header claims.
"""

from __future__ import annotations

import codecs
import re
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["ArchiveError", "ArchiveLimits", "ArchiveReport", "inspect_module_archive", "symlink_escapes"]

_CHUNK = 64 * 1024
# Decompressed bytes allowed for reading one member's headers (ustar, pax, GNU long
# names; paths are at most max_path_length anyway) plus tarfile's read-ahead.  Kept
# small because Python < 3.11.10 parses pax headers in quadratic time (CVE-2024-6232).
_HEADER_BUDGET = 32 * 1024
_MAX_SYMLINK_HOPS = 40
_README_NAMES = ("readme.md", "readme")  # in order of preference, compared case-insensitively
_ALLOWED_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE}
_TYPE_NAMES = {
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}
_DRIVE_RE = re.compile(r"[A-Za-z]:")


class ArchiveError(ValueError):
    """The archive is invalid or unsafe; the message says why, for the uploader."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits applied while reading an archive."""

    #: Maximum number of members, directories included.
    max_files: int = 10_000
    #: Maximum total size of the files once unpacked.
    max_uncompressed_bytes: int = 500 * 1024**2
    #: Maximum length of a member name or symlink target, in characters.
    max_path_length: int = 4096
    #: The README kept for display is cut at this many bytes.
    max_readme_bytes: int = 1024**2


@dataclass(frozen=True)
class ArchiveReport:
    """What :func:`inspect_module_archive` found in a valid archive."""

    #: Regular files and symlinks (directories are not counted).
    file_count: int
    #: Total size of the regular files.
    uncompressed_bytes: int
    #: Text of the root README, decoded as UTF-8 (invalid bytes replaced), or None.
    readme: str | None
    #: Name of that README in the archive, without any leading "./".
    readme_name: str | None
    #: Whether the README was cut at ``ArchiveLimits.max_readme_bytes``.
    readme_truncated: bool
    #: Whether there is a ``*.tf`` or ``*.tf.json`` file at the archive root.
    has_root_tf: bool


class _GunzipStream:
    """Read-only file object decompressing gzip data, failing past a byte budget.

    Handles multi-member gzip files; anything after the last member that is not another
    gzip member (trailing garbage, zero padding) is ignored.  ``limit`` is the number
    of decompressed bytes that may be produced in total; the caller raises it as it goes.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._done = False
        self.produced = 0
        self.limit = 0
        self.limit_message = "archive is too large"

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK
        data = b""
        while not data and not self._done and size:
            if self._inflater.eof and not self._next_member():
                break
            compressed = self._inflater.unconsumed_tail or self._raw.read(_CHUNK)
            if not compressed:
                raise ArchiveError("archive is truncated (unexpected end of gzip data)")
            try:
                data = self._inflater.decompress(compressed, size)
            except zlib.error as exc:
                if self.produced == 0:
                    raise ArchiveError("archive is not a gzip-compressed tar file") from exc
                raise ArchiveError(f"archive is corrupt (invalid gzip data: {exc})") from exc
        self.produced += len(data)
        if self.produced > self.limit:
            raise ArchiveError(self.limit_message)
        return data

    def _next_member(self) -> bool:
        """After a gzip member ends: start the next one, or note the end of the data."""
        rest = self._inflater.unused_data
        while len(rest) < 2:
            more = self._raw.read(_CHUNK)
            if not more:
                break
            rest += more
        if not rest.startswith(b"\x1f\x8b"):
            self._done = True
            return False
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._inflater.decompress(rest, 0)  # only buffers it: the loop feeds unconsumed_tail
        return True


def _member_name(member: tarfile.TarInfo, limits: ArchiveLimits) -> str:
    """Validate a member's name and return it normalised ("./a//b/" -> "a/b")."""
    name = member.name
    shown = repr(name[:200])
    if len(name) > limits.max_path_length:
        raise ArchiveError(f"member {shown}... has a path longer than {limits.max_path_length} characters")
    if "\x00" in name or "\\" in name:
        raise ArchiveError(f"member {shown} has a backslash or NUL character in its name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError(f"member {shown} has a name that is not valid UTF-8") from None
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise ArchiveError(f"member {shown} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {shown} has a '..' component in its path")
    return "/".join(parts)


def _check_link_target(name: str, target: str, limits: ArchiveLimits) -> None:
    if not target or len(target) > limits.max_path_length:
        raise ArchiveError(f"symlink {name!r} has an empty or too long target")
    if "\x00" in target or "\\" in target:
        raise ArchiveError(f"symlink {name!r} has a backslash or NUL character in its target")
    if target.startswith("/") or _DRIVE_RE.match(target):
        raise ArchiveError(f"symlink {name!r} has an absolute target {target!r}")


def symlink_escapes(name: str, links: Mapping[str, str]) -> bool:
    """Whether symlink ``name`` resolves to a path outside the archive root.

    ``links`` maps every symlink in the archive (normalised name) to its relative
    target.  The target is resolved as the operating system would once unpacked: from
    the link's directory, following the other symlinks along the way, so that
    ``a -> x/..`` is judged by what ``x`` points to.  Symlink loops count as escaping.
    """
    resolved: list[str] = []
    pending = name.split("/")[:-1] + links[name].split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return True
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > _MAX_SYMLINK_HOPS or target.startswith("/"):
                return True
            resolved.pop()
            pending[:0] = target.split("/")
    return False


def inspect_module_archive(fileobj: BinaryIO, limits: ArchiveLimits) -> ArchiveReport:
    """Validate a module archive (a ``.tar.gz``) read from ``fileobj``, and describe it.

    The stream is read once, from its current position; nothing is extracted.  Raises
    :class:`ArchiveError`, naming the offending member, if the data is not a gzip'd tar,
    is empty or corrupt, exceeds ``limits``, or contains anything unsafe to unpack:
    absolute paths, ``..`` components, backslashes or NULs in names, hard links,
    devices, FIFOs, or symlinks that point outside the archive.  A leading ``./`` in
    names is accepted.  The README returned is ``README.md`` or ``README`` (any case)
    at the root of the archive.
    """
    stream = _GunzipStream(fileobj)
    stream.limit = _HEADER_BUDGET
    stream.limit_message = "archive is not a gzip-compressed tar file (oversized tar header)"
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")  # type: ignore[call-overload]
    except tarfile.TarError as exc:
        if stream.produced == 0:
            raise ArchiveError("archive is empty") from exc
        raise ArchiveError("archive is not a gzip-compressed tar file") from exc
    try:
        return _inspect_members(tar, stream, limits)
    except tarfile.TarError as exc:
        raise ArchiveError(f"archive is corrupt or truncated ({exc})") from exc
    finally:
        tar.close()


def _inspect_members(tar: tarfile.TarFile, stream: _GunzipStream, limits: ArchiveLimits) -> ArchiveReport:
    seen: dict[str, bool] = {}  # normalised name -> is a directory
    links: dict[str, str] = {}
    member_count = file_count = total_bytes = 0
    readme: bytes | None = None
    readme_name: str | None = None
    readme_truncated = has_root_tf = False
    previous = "the start of the archive"

    while True:
        stream.limit = stream.produced + _HEADER_BUDGET
        stream.limit_message = f"archive has an oversized tar header after {previous}"
        member = tar.next()
        if member is None:
            break
        name = _member_name(member, limits)
        previous = f"member {member.name[:200]!r}"
        member_count += 1
        if member_count > limits.max_files:
            raise ArchiveError(f"archive has more than {limits.max_files} members")
        if member.type not in _ALLOWED_TYPES:
            kind = _TYPE_NAMES.get(member.type, f"entry of unsupported type {member.type!r}")
            raise ArchiveError(f"member {member.name!r} is a {kind}, which is not allowed")
        if not name:  # the root directory itself, "./"
            if not member.isdir():
                raise ArchiveError(f"member {member.name!r} has an empty name")
            continue
        if name in seen and not (member.isdir() and seen[name]):
            raise ArchiveError(f"member {name!r} appears more than once in the archive")
        seen[name] = member.isdir()
        if member.isdir():
            continue

        file_count += 1
        if member.issym():
            _check_link_target(name, member.linkname, limits)
            links[name] = member.linkname
            continue

        # A regular file: check the size its header claims, then count what is really read.
        if total_bytes + member.size > limits.max_uncompressed_bytes:
            raise ArchiveError(
                f"archive is larger than {limits.max_uncompressed_bytes} bytes uncompressed"
                f" (at member {name!r})"
            )
        at_root = "/" not in name
        has_root_tf = has_root_tf or (at_root and name.endswith((".tf", ".tf.json")))
        rank = _README_NAMES.index(name.lower()) if at_root and name.lower() in _README_NAMES else None
        keep = rank is not None and (readme_name is None or rank < _README_NAMES.index(readme_name.lower()))
        kept = bytearray()
        stream.limit = stream.produced + member.size + _HEADER_BUDGET
        data = tar.extractfile(member)
        assert data is not None  # a regular file always has a file object
        while chunk := data.read(_CHUNK):
            total_bytes += len(chunk)
            if total_bytes > limits.max_uncompressed_bytes:
                raise ArchiveError(
                    f"archive is larger than {limits.max_uncompressed_bytes} bytes uncompressed"
                    f" (at member {name!r})"
                )
            if keep and len(kept) <= limits.max_readme_bytes:
                kept += chunk[: limits.max_readme_bytes + 1 - len(kept)]
        if keep:
            readme_name, readme = name, bytes(kept[: limits.max_readme_bytes])
            readme_truncated = len(kept) > limits.max_readme_bytes

    if file_count == 0:
        raise ArchiveError("archive is empty (it contains no files)")
    for name in sorted(links):
        if symlink_escapes(name, links):
            raise ArchiveError(
                f"symlink {name!r} -> {links[name]!r} points outside the archive (or is part of a loop)"
            )
    text = None
    if readme is not None:
        # A final=False decode drops a character cut in half by the size cap.
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        text = decoder.decode(readme, final=not readme_truncated)
    return ArchiveReport(
        file_count=file_count,
        uncompressed_bytes=total_bytes,
        readme=text,
        readme_name=readme_name,
        readme_truncated=readme_truncated,
        has_root_tf=has_root_tf,
    )
