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
import stat
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = [
    "COMPRESSION_RATIO_FLOOR",
    "MAX_COMPONENT_BYTES",
    "MAX_PATH_BYTES",
    "ArchiveError",
    "ArchiveLimits",
    "ArchiveReport",
    "TarEntry",
    "inspect_module_archive",
    "iter_tar_gz",
    "path_problem",
    "special_mode_bits",
]

#: Longest path component (file or directory name) accepted, in bytes of UTF-8: NAME_MAX
#: of Linux, macOS and Windows file systems.
MAX_COMPONENT_BYTES = 255
#: Longest path accepted (member name or symlink target), in bytes of UTF-8: PATH_MAX on Linux.
MAX_PATH_BYTES = 4096
#: The compression-ratio cap applies only once this many bytes have been decompressed,
#: so that small, very repetitive archives (a few MB of generated text) still pass.
COMPRESSION_RATIO_FLOOR = 4 * 1024**2

_CHUNK = 64 * 1024
# Decompressed bytes allowed for reading one member's headers (ustar, pax, GNU long
# names; paths are at most max_path_length anyway) plus tarfile's read-ahead.  Kept
# small because Python < 3.11.10 parses pax headers in quadratic time (CVE-2024-6232).
_HEADER_BUDGET = 32 * 1024
_TAIL_BUDGET = 1024**2  # decompressed bytes read after the tar end marker, looking for the gzip end
_MAX_SYMLINK_HOPS = 40
_MAX_SYMLINK_STEPS = 1_000_000  # path components processed while checking all symlinks
_GZIP_MAGIC = b"\x1f\x8b"
_README_RANKS = {"readme.md": 0, "readme": 1}  # lower-cased root names; lower rank wins
_ALLOWED_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE}
_TYPE_NAMES = {
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
_DRIVE_RE = re.compile(r"[A-Za-z]:")
# C0 controls, DEL and the C1 controls (U+0080-U+009F).
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
_SPECIAL_BITS = ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_ISVTX, "sticky"))


def _show(text: str, limit: int = 200) -> str:
    """Quote a name from the archive for a message, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


class ArchiveError(ValueError):
    """The archive is invalid or unsafe; the message says why, for the uploader."""


def path_problem(path: str, max_path_bytes: int = MAX_PATH_BYTES) -> str | None:
    """Which name rule ``path`` breaks, as a phrase for a message, or None.

    The rules shared by module archives and provider zips, for member names and symlink
    targets alike: no control characters (C0, DEL, C1), valid UTF-8, at most
    ``max_path_bytes`` bytes and at most :data:`MAX_COMPONENT_BYTES` bytes per
    ``/``-separated component.  Lengths are counted in bytes of UTF-8, as file systems
    count them.  Names that are not UTF-8 (from :mod:`tarfile`'s ``surrogateescape``)
    are measured by their original bytes.
    """
    control = _CONTROL_RE.search(path)
    if control:
        return (
            f"has the control character {control.group()!r} (rule: no control characters, C0, DEL or C1, in names)"
        )
    encoded = path.encode("utf-8", "surrogateescape")
    if len(encoded) > max_path_bytes:
        return f"has a path of {len(encoded)} bytes (rule: paths are at most {max_path_bytes} bytes of UTF-8)"
    for part in path.split("/"):
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > MAX_COMPONENT_BYTES:
            return (
                f"has a path component of {size} bytes, {_show(part, 40)}"
                f" (rule: file and directory names are at most {MAX_COMPONENT_BYTES} bytes of UTF-8)"
            )
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (rule: names must be UTF-8)"
    return None


def special_mode_bits(mode: int) -> list[str]:
    """The names of the setuid, setgid and sticky bits set in ``mode`` (empty if none)."""
    return [label for bit, label in _SPECIAL_BITS if mode & bit]


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits applied while reading an archive."""

    #: Maximum number of members, directories included.
    max_files: int = 10_000
    #: Maximum total size of the files once unpacked.
    max_uncompressed_bytes: int = 500 * 1024**2
    #: Maximum length of a member name or symlink target, in bytes of UTF-8.
    max_path_length: int = MAX_PATH_BYTES
    #: The README kept for display is cut at this many bytes.
    max_readme_bytes: int = 1024**2
    #: Most bytes the decompressed stream may hold per compressed byte read, once it is
    #: past ``compression_ratio_floor`` bytes; 0 turns the check off.
    max_compression_ratio: float = 100
    #: Decompressed size below which the compression ratio is not checked.
    compression_ratio_floor: int = COMPRESSION_RATIO_FLOOR


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
    #: Files asked for by ``collect`` (normalised name -> (first bytes kept, real size)).
    collected: dict[str, tuple[bytes, int]] = field(default_factory=dict)


class _GunzipStream:
    """Read-only file object decompressing gzip data, failing past a byte budget.

    Handles multi-member gzip files; anything after the last member that is not another
    gzip member (trailing garbage, zero padding) is ignored.  ``limit`` is the number
    of decompressed bytes that may be produced in total; the caller raises it as it goes.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""  # compressed bytes to feed before reading more from raw
        self._started = self._done = False
        self.produced = 0
        self.consumed = 0  # compressed bytes the inflater has used up
        self.limit = 0
        self.limit_message = "archive is too large"
        self.max_ratio: float = 0
        self.ratio_floor = COMPRESSION_RATIO_FLOOR

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK
        data = b""
        while not data and not self._done and size:
            if self._inflater.eof and not self._next_member():
                break
            compressed = self._inflater.unconsumed_tail or self._pending or self._raw.read(_CHUNK)
            self._pending = b""
            if not self._started:
                if not compressed:
                    raise ArchiveError("archive is empty (no data)")
                if not compressed.startswith(_GZIP_MAGIC):
                    raise ArchiveError("archive is not a gzip-compressed tar file")
                self._started = True
            if not compressed:
                raise ArchiveError("archive is truncated (unexpected end of gzip data)")
            try:
                data = self._inflater.decompress(compressed, size)
            except zlib.error as exc:
                raise ArchiveError(f"archive is corrupt (invalid gzip data: {exc})") from exc
            left = len(self._inflater.unconsumed_tail) + (len(self._inflater.unused_data) if self._inflater.eof else 0)
            self.consumed += len(compressed) - left
        self.produced += len(data)
        if self.produced > self.limit:
            raise ArchiveError(self.limit_message)
        if (
            self.max_ratio
            and self.produced > self.ratio_floor
            and self.produced > self.max_ratio * max(self.consumed, 1)
        ):
            raise ArchiveError(
                f"archive is compressed more than {self.max_ratio:g}:1 ({self.produced} bytes unpacked from"
                f" {self.consumed} compressed bytes, and reading stopped there); an archive that expands this much"
                " is refused as a decompression bomb"
            )
        return data

    def drain(self, budget: int) -> None:
        """Read on to the end of the gzip data, so its checksum is verified, or ``budget`` bytes."""
        self.limit = self.produced + budget + _CHUNK
        end = self.produced + budget
        while self.produced < end and self.read(_CHUNK):
            pass

    def _next_member(self) -> bool:
        """After a gzip member ends: start the next one, or note the end of the data."""
        rest = self._inflater.unused_data
        while len(rest) < len(_GZIP_MAGIC) and (more := self._raw.read(_CHUNK)):
            rest += more
        if not rest.startswith(_GZIP_MAGIC):
            self._done = True
            return False
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = rest
        return True


def _member_name(member: tarfile.TarInfo, limits: ArchiveLimits) -> str:
    """Validate a member's name and return it normalised ("./a//b/" -> "a/b")."""
    name = member.name
    shown = _show(name)
    if "\x00" in name or "\\" in name:
        raise ArchiveError(f"member {shown} has a backslash or NUL character in its name")
    problem = path_problem(name, limits.max_path_length)
    if problem:
        raise ArchiveError(f"member {shown} {problem}")
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise ArchiveError(f"member {shown} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {shown} has a '..' component in its path")
    return "/".join(parts)


def _check_link_target(name: str, target: str, limits: ArchiveLimits) -> None:
    if not target:
        raise ArchiveError(f"symlink {_show(name)} has an empty target")
    if "\x00" in target or "\\" in target:
        raise ArchiveError(f"symlink {_show(name)} has a backslash or NUL character in its target")
    problem = path_problem(target, limits.max_path_length)
    if problem:
        raise ArchiveError(f"symlink {_show(name)}: its target {_show(target)} {problem}")
    if target.startswith("/") or _DRIVE_RE.match(target):
        raise ArchiveError(f"symlink {_show(name)} has an absolute target {_show(target)}")


def _escaping_symlink(links: dict[str, str]) -> str | None:
    """Return the first symlink whose target resolves outside the archive root, if any.

    ``links`` maps every symlink in the archive (normalised name) to its relative target.
    A target is resolved as the operating system would once unpacked: from the link's
    directory, following the other symlinks on the way, so ``a -> x/..`` is judged by
    what ``x`` points to.  Loops count as escaping.  The total work is bounded.
    """
    steps = 0
    for name in sorted(links):
        resolved: list[str] = []  # paths of the directories resolved so far, "a", "a/b", ...
        pending = deque(name.split("/")[:-1] + links[name].split("/"))
        hops = 0
        while pending:
            steps += 1
            if steps > _MAX_SYMLINK_STEPS:
                raise ArchiveError("archive has too many or too deeply chained symlinks to check")
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    return name
                resolved.pop()
                continue
            path = f"{resolved[-1]}/{part}" if resolved else part
            if path not in links:
                resolved.append(path)
                continue
            hops += 1
            if hops > _MAX_SYMLINK_HOPS:
                return name
            pending.extendleft(reversed(links[path].split("/")))
    return None


def _check_nothing_below_files(seen: dict[str, bool], links: dict[str, str]) -> None:
    """Refuse a member whose path goes through a file or a symlink ("f" and "f/x").

    ``seen`` maps every normalised name to whether it is a directory.  Terraform (go-getter)
    unpacks a symlink as a plain file, so "link/x" can never be unpacked there, even when
    the link points to a directory.
    """
    for name in seen:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in seen and not seen[folder]:
                kind = "a symlink" if folder in links else "a file"
                raise ArchiveError(
                    f"member {_show(name)} is below {_show(folder)}, which is {kind}, not a directory (rule: nothing"
                    " may be unpacked below a file or symlink; Terraform unpacks symlinks as plain files)"
                )


#: ``collect(name, size)``: how many leading bytes of regular file ``name`` (``size`` bytes) to keep; 0 for none.
Collector = Callable[[str, int], int]


def inspect_module_archive(
    fileobj: BinaryIO, limits: ArchiveLimits, collect: Collector | None = None
) -> ArchiveReport:
    """Validate a module archive (a ``.tar.gz``) read from ``fileobj``, and describe it.

    The stream is read once, from its current position; nothing is extracted.  Raises
    :class:`ArchiveError`, naming the offending member, if the data is not a gzip'd tar,
    is empty or corrupt, exceeds ``limits`` (members, unpacked size, compression ratio:
    checked as the data streams, so a bomb stops early), or contains anything unsafe to
    unpack: absolute paths, ``..`` components, backslashes, control characters or
    over-long paths or components in names or symlink targets (:func:`path_problem`),
    setuid/setgid/sticky bits, hard links, devices, FIFOs, members below a file or a
    symlink, or symlinks that point outside the archive.  A leading ``./`` in names is accepted.  The README returned is
    ``README.md`` or ``README`` (any case) at the root of the archive.

    ``collect``, if given, is asked for every regular file how many of its first bytes to keep;
    those are returned in :attr:`ArchiveReport.collected` (the archive is still read and checked whole).
    """
    stream = _GunzipStream(fileobj)
    stream.max_ratio = limits.max_compression_ratio
    stream.ratio_floor = limits.compression_ratio_floor
    stream.limit = _HEADER_BUDGET
    stream.limit_message = "archive is not a gzip-compressed tar file (oversized tar header)"
    opened = False
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            opened = True
            return _inspect_members(tar, stream, limits, collect)
    except ArchiveError:
        raise
    except (tarfile.TarError, ValueError, EOFError) as exc:  # tarfile lets some ValueErrors through
        if opened:
            raise ArchiveError(f"archive is corrupt or truncated ({exc})") from exc
        if stream.produced == 0:
            raise ArchiveError("archive is empty") from exc
        raise ArchiveError("archive is not a gzip-compressed tar file") from exc


def _inspect_members(
    tar: tarfile.TarFile, stream: _GunzipStream, limits: ArchiveLimits, collect: Collector | None
) -> ArchiveReport:
    seen: dict[str, bool] = {}  # normalised name -> is a directory
    links: dict[str, str] = {}
    member_count = file_count = total_bytes = 0
    readme: bytes | None = None
    readme_name: str | None = None
    readme_truncated = has_root_tf = False
    previous = "the start of the archive"
    collected: dict[str, tuple[bytes, int]] = {}

    while True:
        stream.limit = stream.produced + _HEADER_BUDGET
        stream.limit_message = f"archive has an oversized tar header after {previous}"
        member = tar.next()
        if member is None:
            break
        name = _member_name(member, limits)
        previous = f"member {_show(member.name)}"
        member_count += 1
        if member_count > limits.max_files:
            raise ArchiveError(f"archive has more than {limits.max_files} members")
        if member.type not in _ALLOWED_TYPES:
            kind = _TYPE_NAMES.get(member.type, f"an entry of unsupported type {member.type!r}")
            raise ArchiveError(f"member {_show(member.name)} is {kind}, which is not allowed")
        special = special_mode_bits(member.mode)
        if special:
            raise ArchiveError(
                f"member {_show(member.name)} has the {' and '.join(special)} bit{'s' if len(special) > 1 else ''}"
                f" set (mode {member.mode:04o}); the registry serves archives byte for byte, so it refuses"
                " setuid, setgid and sticky bits rather than clearing them: remove them before packing"
                " (e.g. chmod -R ug-s,-t, or GNU tar --mode=ug-s,-t)"
            )
        if not name:  # the root directory itself, "./"
            if not member.isdir():
                raise ArchiveError(f"member {_show(member.name)} has an empty name")
            continue
        if name in seen and not (member.isdir() and seen[name]):
            raise ArchiveError(f"member {_show(name)} appears more than once in the archive")
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
                f" (at member {_show(name)})"
            )
        has_root_tf = has_root_tf or ("/" not in name and name.endswith((".tf", ".tf.json")))
        rank = _README_RANKS.get(name.lower())  # a name with a "/" is never a key
        keep = rank is not None and (readme_name is None or rank < _README_RANKS[readme_name.lower()])
        kept = bytearray()
        wanted = max(0, collect(name, member.size)) if collect is not None else 0
        wanted_bytes = bytearray()
        stream.limit = stream.produced + member.size + _HEADER_BUDGET
        data = tar.extractfile(member)
        if data is None:  # cannot happen for a regular file
            raise ArchiveError(f"member {_show(name)} cannot be read")
        while chunk := data.read(_CHUNK):
            total_bytes += len(chunk)
            if total_bytes > limits.max_uncompressed_bytes:
                raise ArchiveError(
                    f"archive is larger than {limits.max_uncompressed_bytes} bytes uncompressed"
                    f" (at member {_show(name)})"
                )
            if keep and len(kept) <= limits.max_readme_bytes:
                kept += chunk[: limits.max_readme_bytes + 1 - len(kept)]
            if len(wanted_bytes) < wanted:
                wanted_bytes += chunk[: wanted - len(wanted_bytes)]
        if wanted:
            collected[name] = (bytes(wanted_bytes), member.size)
        if keep:
            readme_name, readme = name, bytes(kept[: limits.max_readme_bytes])
            readme_truncated = len(kept) > limits.max_readme_bytes

    if file_count == 0:
        raise ArchiveError("archive is empty (it contains no files)")
    # Whatever follows the tar end marker is ignored, but an upload cut short in its last
    # bytes should not pass: read a little further, to the gzip trailer of usual archives.
    stream.drain(_TAIL_BUDGET)
    _check_nothing_below_files(seen, links)
    bad_link = _escaping_symlink(links)
    if bad_link is not None:
        raise ArchiveError(
            f"symlink {_show(bad_link)} -> {_show(links[bad_link])} points outside the archive"
            " (or is part of a loop)"
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
        collected=collected,
    )


@dataclass
class TarEntry:
    """One member met by :func:`iter_tar_gz`.  :meth:`read` works only until the next entry is asked for."""

    #: The member's name, checked and normalised ("./a//b/" -> "a/b"; "" for the root directory).
    name: str
    #: ``file``, ``dir``, ``symlink``, or a phrase for anything else ("a hard link", "a FIFO" ...).
    kind: str
    #: Size of a regular file (0 for anything else).
    size: int
    #: A symlink's target.
    target: str = ""
    _file: BinaryIO | None = field(default=None, repr=False)

    def head(self, max_bytes: int) -> bytes:
        """The first ``max_bytes`` bytes of a regular file (all of it if smaller)."""
        if self.kind != "file" or self._file is None:
            raise ArchiveError(f"member {_show(self.name)} is {self.kind}, not a regular file")
        return self._file.read(max_bytes)

    def read(self, max_bytes: int) -> bytes:
        """The file's content; :class:`ArchiveError` if it is not a regular file or holds more than ``max_bytes``."""
        if self.kind != "file" or self._file is None:
            raise ArchiveError(f"member {_show(self.name)} is {self.kind}, not a regular file")
        if self.size > max_bytes:
            raise ArchiveError(f"member {_show(self.name)} is larger than {max_bytes} bytes")
        data = self._file.read(max_bytes + 1)
        if len(data) > max_bytes:  # pragma: no cover - tarfile reads what the header says
            raise ArchiveError(f"member {_show(self.name)} is larger than {max_bytes} bytes")
        return data


def iter_tar_gz(fileobj: BinaryIO, limits: ArchiveLimits) -> Iterator[TarEntry]:
    """The members of a ``.tar.gz`` read from ``fileobj``, in order, as a stream (nothing is extracted).

    Names are checked as :func:`inspect_module_archive` checks them (absolute paths, ``..``,
    backslashes, control characters, lengths: :class:`ArchiveError`), and the same budgets apply
    while decompressing (members, unpacked size, compression ratio, header sizes).  Links and other
    member types are reported, not followed: the caller decides what to do with them.  Stop
    iterating as soon as you have what you need; nothing more is read.
    """
    stream = _GunzipStream(fileobj)
    stream.max_ratio = limits.max_compression_ratio
    stream.ratio_floor = limits.compression_ratio_floor
    opened = False
    try:
        stream.limit = _HEADER_BUDGET
        stream.limit_message = "archive is not a gzip-compressed tar file (oversized tar header)"
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            opened = True
            yield from _tar_entries(tar, stream, limits)
    except ArchiveError:
        raise
    except (tarfile.TarError, ValueError, EOFError) as exc:
        if opened:
            raise ArchiveError(f"archive is corrupt or truncated ({exc})") from exc
        if stream.produced == 0:
            raise ArchiveError("archive is empty") from exc
        raise ArchiveError("archive is not a gzip-compressed tar file") from exc


def _tar_entries(tar: tarfile.TarFile, stream: _GunzipStream, limits: ArchiveLimits) -> Iterator[TarEntry]:
    count = total = file_end = 0
    previous = "the start of the archive"
    while True:
        # Room for the next header, and for skipping what the caller left unread of the previous file.
        stream.limit = max(stream.produced, file_end) + _HEADER_BUDGET
        stream.limit_message = f"archive has an oversized tar header after {previous}"
        member = tar.next()
        if member is None:
            return
        name = _member_name(member, limits)
        previous = f"member {_show(member.name)}"
        count += 1
        if count > limits.max_files:
            raise ArchiveError(f"archive has more than {limits.max_files} members")
        if member.isdir():
            yield TarEntry(name, "dir", 0)
        elif member.issym():
            yield TarEntry(name, "symlink", 0, target=member.linkname)
        elif member.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
            total += member.size
            if total > limits.max_uncompressed_bytes:
                raise ArchiveError(f"archive is larger than {limits.max_uncompressed_bytes} bytes uncompressed"
                                   f" (at member {_show(name)})")
            file_end = stream.produced + member.size
            stream.limit = file_end + _HEADER_BUDGET
            yield TarEntry(name, "file", member.size, _file=tar.extractfile(member))
        else:
            yield TarEntry(name, _TYPE_NAMES.get(member.type, f"an entry of unsupported type {member.type!r}"), 0)


@dataclass(frozen=True)
class ArchiveFile:
    """A file read back from a stored module archive by :func:`read_archive_files`."""

    name: str
    data: bytes
    #: Whether ``data`` was cut at the per-file cap.
    truncated: bool
    size: int


def read_archive_files(fileobj: BinaryIO, wanted: Callable[[str], bool], *, max_file_bytes: int = 256 * 1024,
                       max_total_bytes: int = 1024**2, max_files: int = 200,
                       limits: ArchiveLimits | None = None) -> list[ArchiveFile]:
    """Regular files of a module archive whose name ``wanted`` accepts, in archive order, each cut at
    ``max_file_bytes``, at most ``max_files`` of them and ``max_total_bytes`` kept in all: for display
    (the web UI's example code).  Read with :func:`iter_tar_gz` (same checks and budgets; nothing is
    extracted).  Raises :class:`ArchiveError` when the archive cannot be read."""
    found: list[ArchiveFile] = []
    kept_total = 0
    for entry in iter_tar_gz(fileobj, limits or ArchiveLimits()):
        if entry.kind != "file" or not entry.name or not wanted(entry.name):
            continue
        budget = min(max_file_bytes, max_total_bytes - kept_total)
        if budget <= 0 or len(found) >= max_files:
            break
        data = entry.head(budget)
        kept_total += len(data)
        found.append(ArchiveFile(entry.name, data, entry.size > len(data), entry.size))
    return found
