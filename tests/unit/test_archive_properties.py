"""Property tests: generated module archives and provider zips against a plain model of the rules.

Hypothesis builds archives from awkward parts (``..``, absolute paths, backslashes, drive
letters, control characters, 255/256-byte components, paths around 4096 bytes, non-ASCII
names, links in and out of the tree, every tar member type, setuid/setgid/sticky modes,
zero-filled "bomb" members) and each test checks three things:

1. the validator's verdict equals the verdict of :func:`module_model` / :func:`zip_model`,
   an independent, deliberately plain restatement of the documented rules (docs/modules.md,
   docs/providers.md); when exactly one rule is broken, the error must name that rule;
2. an accepted archive, unpacked by Python (``tarfile`` with ``filter="data"``, ``zipfile``),
   writes nothing outside the destination and leaves no symlink resolving outside it;
3. an accepted archive, unpacked the way Terraform unpacks it (:func:`go_getter_untar`,
   :func:`go_getter_unzip`), writes nothing outside the destination and sets no
   setuid/setgid/sticky bit, even with the mode bits that go-getter releases before the
   ``mode &= 0o777`` sanitising kept; an accepted provider zip unpacks without error,
   with its executable, and the unpacked folder hashes to the zip's ``h1:``.

Where the Terraform models come from: Terraform fetches module archives with
hashicorp/go-getter, whose ``untar`` (decompress_tar.go) does the unpacking; it installs
provider packages with go-getter's ``ZipDecompressor`` (hashicorp/terraform
internal/providercache/package_install.go: ``var unzip = getter.ZipDecompressor{}``;
decompress_zip.go).  Both refuse names with a ``..`` field (``containsDotDot``, split on
``/`` and ``\\``), join every name under the destination (Go's ``filepath.Join`` cleans, so
an absolute name stays inside), never create symlinks (a link entry becomes a regular
file), and follow symlinks already on disk when they create a file.

Runs are reproducible (``derandomize=True``, no example database) and bounded, so the
module takes a few seconds.  If a Hypothesis upgrade changes the examples so that a rule
is no longer reached ("rules never exercised"), widen the generator rather than the model.
"""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, example, given, settings

from tfregistry import provider_packages as pkg
from tfregistry.archives import ArchiveError, ArchiveLimits, inspect_module_archive

PROPERTY_SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

RATIO, FLOOR = 100, 128 * 1024  # a small floor, so that small generated archives can trip the ratio rule
BOMB = bytes(2 * 1024**2)  # ~1000:1 once compressed: over the ratio whatever else is in the archive
GOOD_PARTS = ["a", "b", "main.tf", "docs", "é", "snow\u2603", "x" * 255, "é" * 127 + "a", "\u00a0", "\u2028"]
BAD_PARTS = [
    "..", ".", "", "C:", "a\\b", "x" * 256, "é" * 128, "a\nb", "\t", "\x1b", "\x7f", "\x85", "\x9f", "a\rb",
]
DATA = st.sampled_from([b"", b'variable "x" {}\n', b"\xff" * 100]) | st.binary(max_size=512) | st.just(BOMB)


def parts(clean: bool) -> st.SearchStrategy[str]:
    """A path component: a valid one, or (unless ``clean``) possibly one that breaks a rule."""
    good = st.sampled_from(GOOD_PARTS)
    return good if clean else st.one_of(good, good, st.sampled_from(BAD_PARTS))


def paths(clean: bool = False) -> st.SearchStrategy[str]:
    """A relative, absolute, ``./``-prefixed or very long path; never empty."""
    joined = st.lists(parts(clean), min_size=1, max_size=3 if clean else 4).map("/".join)
    prefixed = st.tuples(st.sampled_from(["", "./"] if clean else ["", "", "", "/", "./"]), joined).map("".join)
    very_long = st.tuples(st.integers(19, 21), st.integers(50, 80)).map(
        lambda n: "/".join(["d" * 200] * n[0]) + "/" + "f" * n[1]  # 3869 to 4301 bytes, around 4096
    )
    odd = st.sampled_from([".", "./", "./.", "a/./b", "a//b", "."])  # normalise to "" or to a clean name
    return st.one_of(prefixed, prefixed, prefixed, very_long, *([] if clean else [odd])).filter(bool)


def link_targets(clean: bool) -> st.SearchStrategy[str]:
    """Symlink targets: paths, or short relative ones that climb (in the tree or out of it)."""
    climbing = st.lists(st.sampled_from(["..", "a", "b", "main.tf", "."]), min_size=1, max_size=4).map("/".join)
    if clean:
        return st.one_of(paths(clean), climbing, climbing)
    odd = st.sampled_from(["", "a\\b", "/etc/passwd", "C:x", "a\nb", "../x", "a/../.."])
    return st.one_of(odd, odd, paths(clean), climbing)


# --- the rules, restated plainly ----------------------------------------------------------------


def name_rules(path: str) -> set[str]:
    """Rules a member name or link target breaks (docs/modules.md, "What an archive may contain")."""
    broken = set()
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in path):
        broken.add("control character")
    if "\\" in path:
        broken.add("backslash")
    if len(path.encode("utf-8")) > 4096:
        broken.add("path length")
    if any(len(part.encode("utf-8")) > 255 for part in path.split("/")):
        broken.add("component length")
    if path.startswith("/") or (len(path) >= 2 and path[0] in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                and path[1] == ":"):
        broken.add("absolute")
    return broken


def lands_inside(links: dict[str, str], parts: list[str], hops_left: int = 40) -> list[str] | None:
    """Where ``parts`` (relative to the root) lead once every symlink on the way is followed.

    Returns the resolved path as a list of names, or None if it climbs above the root or
    loops (more than ``hops_left`` nested links).
    """
    where: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                return None
            where.pop()
            continue
        where.append(part)
        link = "/".join(where)
        if link in links:
            if hops_left == 0:
                return None
            followed = lands_inside(links, where[:-1] + links[link].split("/"), hops_left - 1)
            if followed is None:
                return None
            where = followed
    return where


@dataclass
class TarMember:
    name: str
    kind: str  # file, dir, symlink, hardlink, fifo, chardev, blockdev
    mode: int
    data: bytes = b""
    target: str = ""


KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
}
MODES = [0o644, 0o755, 0o600, 0o777, 0o4755, 0o2755, 0o1777, 0o6755]


@dataclass
class ModuleCase:
    members: list[TarMember]
    max_files: int
    max_uncompressed_bytes: int
    tar: bytes = b""
    targz: bytes = b""

    def limits(self) -> ArchiveLimits:
        return ArchiveLimits(
            max_files=self.max_files,
            max_uncompressed_bytes=self.max_uncompressed_bytes,
            max_compression_ratio=RATIO,
            compression_ratio_floor=FLOOR,
        )


@st.composite
def module_cases(draw: st.DrawFn) -> ModuleCase:
    clean = draw(st.booleans())  # half the archives are drawn from valid parts only, so many pass
    members = []
    # Clean archives get distinct names, so that duplicates do not refuse most of them.
    if clean:
        names = draw(st.lists(paths(clean), min_size=1, max_size=6, unique_by=lambda n: n.removeprefix("./")))
    else:
        names = draw(st.lists(st.one_of(paths(clean), st.sampled_from(["a", "./a", "a/"])), min_size=1, max_size=6))
    for name in names:
        kinds = ["file"] * 4 + ["dir"] * 2 + ["symlink"] * 3 + ([] if clean else list(KINDS))
        kind = draw(st.sampled_from(kinds))
        member = TarMember(name, kind, draw(st.sampled_from(MODES[:4] if clean else MODES[:4] * 3 + MODES)))
        if kind == "file":
            member.data = draw(DATA.filter(lambda data: not clean or data is not BOMB))
        if kind in ("symlink", "hardlink"):
            member.target = draw(link_targets(clean))
        members.append(member)
    return module_case(
        members, draw(st.sampled_from([10_000] if clean else [3, 10_000])),
        draw(st.sampled_from([1_500_000, 500 * 1024**2])),
    )


def module_case(members: list[TarMember], max_files: int = 10_000,
                max_uncompressed_bytes: int = 500 * 1024**2) -> ModuleCase:
    """Write ``members`` as a (PAX) tar and a ``.tar.gz``."""
    case = ModuleCase(members, max_files, max_uncompressed_bytes)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type, info.mode, info.linkname, info.size = KINDS[member.kind], member.mode, member.target, 0
            if member.kind == "file":
                info.size = len(member.data)
            tar.addfile(info, io.BytesIO(member.data) if member.kind == "file" else None)
    case.tar = buf.getvalue()
    case.targz = gzip.compress(case.tar, mtime=0)
    return case


def f(name: str, data: bytes = b"#\n") -> TarMember:
    return TarMember(name, "file", 0o644, data)


def link(name: str, target: str) -> TarMember:
    return TarMember(name, "symlink", 0o777, target=target)


# Rules the generator reaches rarely, always tried first (Hypothesis runs explicit examples too).
MODULE_EXAMPLES = [
    module_case([f("a"), f("a/x")]),
    module_case([link("l", "sub"), TarMember("sub", "dir", 0o755), f("l/x")]),
    module_case([f("main.tf"), link("l", "x" * 256)]),
    module_case([f("main.tf"), link("l", "a/" * 2048 + "x")]),
    module_case([f("main.tf"), link("l", "")]),
    module_case([f("main.tf"), link("l", "a\\b")]),
    module_case([f("main.tf"), f(".")]),
    module_case([f("main.tf"), f("./main.tf")]),
    module_case([f("main.tf"), link("l", "sub/../../x")]),
]


def module_model(case: ModuleCase) -> set[str]:
    """Every rule the archive breaks; empty if it must be accepted."""
    broken: set[str] = set()
    if len(case.members) > case.max_files:
        broken.add("member count")
    seen: dict[str, str] = {}
    links: dict[str, str] = {}
    files_and_links = total = 0
    for member in case.members:
        broken |= name_rules(member.name)
        names = [p for p in member.name.split("/") if p not in ("", ".")]
        if ".." in names:
            broken.add("..")
        if member.kind not in ("file", "dir", "symlink"):
            broken.add("member type")
            continue
        if member.mode & 0o7000:
            broken.add("special mode bit")
        name = "/".join(names)
        if not name:
            if member.kind != "dir":
                broken.add("empty name")
            continue
        if name in seen and not (member.kind == "dir" and seen[name] == "dir"):
            broken.add("duplicate")
        seen[name] = member.kind
        if member.kind == "file":
            files_and_links += 1
            total += len(member.data)
        elif member.kind == "symlink":
            files_and_links += 1
            target_broken = name_rules(member.target)
            if not member.target:
                target_broken.add("empty target")
            broken |= {f"target {rule}" for rule in target_broken}
            links[name] = member.target
    if files_and_links == 0:
        broken.add("no files")
    for name in seen:
        parents = ["/".join(name.split("/")[:depth]) for depth in range(1, name.count("/") + 1)]
        if any(seen.get(parent, "dir") != "dir" for parent in parents):
            broken.add("below a file")
    if total > case.max_uncompressed_bytes:
        broken.add("uncompressed size")
    for name, target in links.items():
        if lands_inside(links, name.split("/")[:-1] + target.split("/")) is None:
            broken.add("symlink escapes")
    # Compression ratio: the decompressed stream (the tar) against the gzip bytes.  The
    # generated archives either hold a BOMB (far over 100:1) or stay under the floor, so the
    # final ratio decides; the assertion keeps that true.
    ratio = len(case.tar) / len(case.targz)
    assert len(case.tar) <= FLOOR or ratio > 2 * RATIO or ratio < RATIO / 2, "ambiguous ratio: adjust the generator"
    if len(case.tar) > FLOOR and ratio > RATIO:
        broken.add("compression ratio")
    return broken


MODULE_MESSAGES = {
    "member count": r"more than \d+ members",
    "control character": r"control character .*\(rule: no control characters",
    "backslash": "backslash or NUL",
    "path length": r"\(rule: paths are at most 4096 bytes of UTF-8\)",
    "component length": r"\(rule: file and directory names are at most 255 bytes of UTF-8\)",
    "absolute": "absolute path",
    "..": r"'\.\.' component",
    "member type": "which is not allowed",
    "special mode bit": r"(setuid|setgid|sticky)( and \w+)* bits? set \(mode",
    "empty name": "empty name",
    "duplicate": "more than once",
    "target control character": r"its target .* control character",
    "target backslash": "backslash or NUL character in its target",
    "target path length": r"its target .*\(rule: paths are at most 4096",
    "target component length": r"its target .*\(rule: file and directory names are at most 255",
    "target absolute": "absolute target",
    "target empty target": "empty target",
    "no files": "contains no files",
    "below a file": r"which is a (file|symlink), not a directory \(rule: nothing may be unpacked below",
    "uncompressed size": "bytes uncompressed",
    "symlink escapes": "points outside the archive",
    "compression ratio": r"compressed more than 100:1",
}


# --- how the archives are unpacked -------------------------------------------------------------


@contextmanager
def sandbox() -> Iterator[Path]:
    """A destination folder, with an empty sibling and parent checked to stay untouched."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "outside").mkdir()
        (root / "work" / "dest").mkdir(parents=True)
        yield root / "work" / "dest"
        assert sorted(os.listdir(root)) == ["outside", "work"], "something was written beside the sandbox"
        assert os.listdir(root / "outside") == [], "something was written outside the destination"
        assert os.listdir(root / "work") == ["dest"], "something was written next to the destination"
        real_dest = os.path.realpath(root / "work" / "dest")
        for folder, dirs, files in os.walk(root / "work" / "dest"):
            for entry in dirs + files:
                resolved = os.path.realpath(os.path.join(folder, entry))
                assert resolved == real_dest or resolved.startswith(real_dest + os.sep), (
                    f"{os.path.join(folder, entry)} resolves to {resolved}, outside the destination"
                )


def contains_dot_dot(name: str) -> bool:
    """go-getter's containsDotDot (decompress_tar.go/decompress_zip.go call it; the same as
    net/http's): a ``..`` field when the name is split on ``/`` and ``\\``."""
    return ".." in re.split(r"[/\\]", name)


def go_join(dest: Path, name: str) -> Path:
    """Go's filepath.Join(dest, name): concatenate, then Clean (an absolute name stays below dest)."""
    return Path(posixpath.normpath(f"{dest}/{name}"))


def write_go_file(path: Path, data: bytes, mode: int) -> None:
    """go-getter's copyReader: create (following symlinks already on disk), write, chmod."""
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def go_getter_untar(tar_bytes: bytes, dest: Path) -> None:
    """Model of hashicorp/go-getter ``untar`` (decompress_tar.go), which Terraform uses for modules.

    Per header: a name with a ``..`` field is an error; the path is filepath.Join(dst, name);
    a directory is MkdirAll'd, and chmod'ed to its header mode after the last entry (that
    final pass does not mask the mode, even in current go-getter: a setgid or sticky bit of
    a directory reaches the disk); anything else (symlinks, hard links and devices included)
    is written as a regular file with the entry's data, after MkdirAll of its parent.  For
    files, current go-getter masks the mode with 0o777; older releases kept the header
    mode, which is what this model does, so a setuid bit would reach the disk.  Symlinks
    are never created.
    """
    directories: list[tuple[Path, int]] = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            if contains_dot_dot(member.name):
                raise OSError(f"entry contains '..': {member.name}")
            path = go_join(dest, member.name)
            if member.isdir():
                os.makedirs(path, mode=0o755, exist_ok=True)
                directories.append((path, member.mode & 0o7777))
                continue
            if not path.parent.exists():
                os.makedirs(path.parent, mode=0o755)
            data = tar.extractfile(member).read() if member.isreg() else b""  # type: ignore[union-attr]
            write_go_file(path, data, member.mode & 0o7777)
    for path, mode in directories:
        os.chmod(path, mode)


def too_long_for(dest: Path, names: list[str]) -> bool:
    """Whether a name, below ``dest``, passes PATH_MAX (4096 bytes with the NUL): the rule
    bounds paths inside the archive, so a path near the limit cannot be unpacked anywhere
    but at the root of the file system.  That fails the extraction; it writes nothing."""
    return any(len(f"{dest}/{name}".encode()) >= 4096 for name in names)


def special_bits_on_disk(dest: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(dest):
        for entry in dirs + files:
            path = os.path.join(folder, entry)
            if not os.path.islink(path) and os.stat(path).st_mode & 0o7000:
                found.append(path)
    return found


# --- the module archive property -----------------------------------------------------------------


def examples(cases: list[object]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a @given test with several explicit examples."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        for case in reversed(cases):
            test = example(case)(test)
        return test

    return decorate


def check_verdict(broken: set[str], run: Callable[[], object], error: type[Exception],
                  messages: dict[str, str]) -> bool:
    """Run the validator; its verdict must be the model's.  Returns whether it accepted."""
    try:
        run()
    except error as exc:
        assert broken, f"refused, but the model accepts it: {exc}"
        if len(broken) == 1:
            (rule,) = broken
            assert re.search(messages[rule], str(exc)), f"the message does not name the rule {rule!r}: {exc}"
        return False
    assert not broken, f"accepted, but the model refuses it: {sorted(broken)}"
    return True


def test_module_archives_follow_the_model() -> None:
    verdicts: Counter[str] = Counter()

    @PROPERTY_SETTINGS
    @given(module_cases())
    @examples(MODULE_EXAMPLES)
    def check(case: ModuleCase) -> None:
        broken = module_model(case)
        accepted = check_verdict(
            broken,
            lambda: inspect_module_archive(io.BytesIO(case.targz), case.limits()),
            ArchiveError,
            MODULE_MESSAGES,
        )
        verdicts["accepted" if accepted else "refused"] += 1
        verdicts.update(broken)
        if not accepted:
            return
        with sandbox() as dest, tarfile.open(fileobj=io.BytesIO(case.targz), mode="r:gz") as tar:
            if too_long_for(dest, tar.getnames()):
                verdicts["path too long once unpacked"] += 1
                return
            tar.extractall(dest, filter="data")  # no FilterError, no OSError
        with sandbox() as dest:
            go_getter_untar(case.tar, dest)  # an accepted archive unpacks without error
            assert special_bits_on_disk(dest) == []

    check()
    # The generator reaches both verdicts and every rule, or the property says little.
    assert verdicts["accepted"] >= 20 and verdicts["refused"] >= 60, verdicts
    missing = set(MODULE_MESSAGES) - set(verdicts)
    assert not missing, f"rules never exercised: {sorted(missing)}"


# --- provider zips ---------------------------------------------------------------------------


EXE = "terraform-provider-foo_v1.0.0"
ZIP_KINDS = {"file": stat.S_IFREG, "plain": 0, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "fifo": stat.S_IFIFO,
             "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}


@dataclass
class ZipEntry:
    name: str
    kind: str
    mode: int
    data: bytes
    deflate: bool


@dataclass
class ZipCase:
    entries: list[ZipEntry]
    max_uncompressed_bytes: int
    max_files: int
    data: bytes = b""
    compressed: list[int] = field(default_factory=list)  # compress_size of each entry, in order


@st.composite
def zip_cases(draw: st.DrawFn) -> ZipCase:
    clean = draw(st.booleans())  # half the zips are drawn from valid parts only, so many pass
    data = DATA.filter(lambda data: not clean or data is not BOMB)
    entries = []
    if clean or draw(st.integers(0, 5)):  # usually an executable, so that some zips pass
        mode = draw(st.sampled_from([0o755] if clean else [0o755] * 4 + MODES))
        entries.append(ZipEntry(EXE, "file", mode, draw(data), draw(st.booleans())))
    for _ in range(draw(st.integers(0, 4))):
        fixed = ["LICENSE", "license", "docs/", EXE, EXE + "/x", "a/b", "a"]
        name = draw(paths(clean) if clean else st.one_of(paths(clean), st.sampled_from(fixed)))
        kind = draw(st.sampled_from(["file"] * 6 + ["plain"] * 2 + ([] if clean else list(ZIP_KINDS))))
        mode = draw(st.sampled_from(MODES[:4] if clean else MODES[:4] * 3 + MODES))
        entries.append(ZipEntry(name, kind, mode, draw(data), draw(st.booleans())))
        if not clean and draw(st.integers(0, 3)) == 0:  # the same name again, or in another case
            again = draw(st.sampled_from([name, name.swapcase()]))
            entries.append(ZipEntry(again, kind, mode, draw(data), draw(st.booleans())))
    return zip_case(entries, draw(st.sampled_from([1_500_000, 2 * 1024**3])),
                    draw(st.sampled_from([1000] if clean else [3, 1000])))


def zip_case(entries: list[ZipEntry], max_uncompressed_bytes: int = 2 * 1024**3, max_files: int = 1000) -> ZipCase:
    """Write ``entries`` as a zip made on Unix (create_system 3)."""
    case = ZipCase(entries, max_uncompressed_bytes, max_files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for entry in entries:
            info = zipfile.ZipInfo(entry.name, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (ZIP_KINDS[entry.kind] | entry.mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED if entry.deflate else zipfile.ZIP_STORED
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "Duplicate name": duplicates are part of what is tested
                with zf.open(info, "w") as out:
                    out.write(entry.data)
    case.data = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(case.data)) as zf:
        case.compressed = [info.compress_size for info in zf.infolist()]
    return case


def z(name: str, data: bytes = b"#!/bin/sh\n", mode: int = 0o755) -> ZipEntry:
    return ZipEntry(name, "file", mode, data, True)


ZIP_EXAMPLES = [
    zip_case([z(EXE), z("docs/" + "d" * 200 + "/" + "/".join(["e" * 200] * 19) + "/" + "f" * 100)]),
    zip_case([z(EXE), z("docs"), z("docs/a.md")]),
    zip_case([z(EXE), z("a"), z("b"), z("c")], max_files=3),
    zip_case([z(EXE), z("LICENSE"), z("license")]),
    zip_case([z("README.md")]),
]


def zip_model(case: ZipCase) -> set[str]:
    """Every rule the provider zip breaks (docs/providers.md, "What a package may contain")."""
    broken: set[str] = set()
    if len(case.entries) > case.max_files:
        broken.add("entry count")
    names: list[str] = []
    total = 0
    for index, entry in enumerate(case.entries):
        if entry.name.endswith("/") or entry.kind == "dir":
            broken.add("directory entry")
            continue
        broken |= {rule for rule in name_rules(entry.name) if rule != "backslash" and rule != "absolute"}
        if entry.name.startswith("/") or "\\" in entry.name or re.match("[A-Za-z]:", entry.name) or any(
            part in ("", ".", "..") for part in entry.name.split("/")
        ):
            broken.add("unsafe path")
        if entry.kind == "symlink":
            broken.add("symlink")
        elif entry.kind not in ("file", "plain"):
            broken.add("not a regular file")
        if entry.mode & 0o7000:
            broken.add("special mode bit")
        names.append(entry.name)
        total += len(entry.data)
        compressed = case.compressed[index]
        if len(entry.data) > FLOOR and len(entry.data) > RATIO * max(compressed, 1):
            broken.add("compression ratio")
    if total > FLOOR and total > RATIO * len(case.data):
        broken.add("compression ratio")
    if total > case.max_uncompressed_bytes:
        broken.add("uncompressed size")
    if len(set(names)) < len(names):
        broken.add("duplicate")
    if len({n.casefold() for n in set(names)}) < len(set(names)):
        broken.add("case collision")
    if any(other.startswith(name + "/") for name in names for other in names):
        broken.add("file and folder")
    if not any("/" not in n and (n == "terraform-provider-foo" or n.startswith(("terraform-provider-foo_",
                                                                              "terraform-provider-foo.")))
               for n in names):
        broken.add("no executable")
    return broken


ZIP_MESSAGES = {
    "entry count": "more than the limit of",
    "directory entry": "directory entry",
    "control character": r"control character .*\(rule: no control characters",
    "path length": r"\(rule: paths are at most 4096 bytes of UTF-8\)",
    "component length": r"\(rule: file and directory names are at most 255 bytes of UTF-8\)",
    "unsafe path": "unsafe path",
    "symlink": "symbolic link",
    "not a regular file": "not a regular file",
    "special mode bit": r"(setuid|setgid|sticky)( and \w+)* bits? set \(mode",
    "compression ratio": "compressed more than 100:1",
    "uncompressed size": "unpacks to more than",
    "duplicate": "two entries named",
    "case collision": "differ only in case",
    "file and folder": "both as a file and as the folder",
    "no executable": "no provider executable",
}


def go_getter_unzip(data: bytes, dest: Path) -> None:
    """Model of hashicorp/go-getter ``ZipDecompressor.Decompress`` (decompress_zip.go), which
    Terraform's internal/getproviders uses to unpack a provider package.

    Per entry: a name with a ``..`` field is an error; the path is filepath.Join(dst, name);
    a directory (trailing ``/`` or directory mode) is MkdirAll'd; anything else, symlinks
    included, is written as a regular file after MkdirAll of its parent.  As for tar, the
    unmasked mode of older releases is used.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if contains_dot_dot(info.filename):
                raise OSError(f"entry contains '..': {info.filename}")
            path = go_join(dest, info.filename)
            if info.filename.endswith("/") or stat.S_ISDIR(info.external_attr >> 16):
                os.makedirs(path, mode=0o755, exist_ok=True)
                continue
            os.makedirs(path.parent, mode=0o755, exist_ok=True)
            write_go_file(path, zf.read(info), (info.external_attr >> 16) & 0o7777)


def test_provider_zips_follow_the_model() -> None:
    verdicts: Counter[str] = Counter()

    @PROPERTY_SETTINGS
    @given(zip_cases())
    @examples(ZIP_EXAMPLES)
    def check(case: ZipCase) -> None:
        broken = zip_model(case)
        reports: list[pkg.PackageReport] = []
        accepted = check_verdict(
            broken,
            lambda: reports.append(pkg.inspect_provider_zip(
                io.BytesIO(case.data), "foo", max_uncompressed_bytes=case.max_uncompressed_bytes,
                max_files=case.max_files, max_compression_ratio=RATIO, compression_ratio_floor=FLOOR,
            )),
            pkg.PackageError,
            ZIP_MESSAGES,
        )
        verdicts["accepted" if accepted else "refused"] += 1
        verdicts.update(broken)
        if not accepted:
            return
        with sandbox() as dest, zipfile.ZipFile(io.BytesIO(case.data)) as zf:
            if too_long_for(dest, zf.namelist()):
                verdicts["path too long once unpacked"] += 1
                return
            zf.extractall(dest)
            assert sorted(zf.namelist()) == sorted(
                p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()
            ), "Python unpacked the files under other names"
        with sandbox() as dest:
            go_getter_unzip(case.data, dest)  # an accepted package unpacks without error
            assert (dest / reports[0].executable).is_file()
            assert special_bits_on_disk(dest) == []
            # What Terraform records in the lock file after unpacking is the zip's h1: hash.
            assert pkg.h1_of_directory(dest) == reports[0].h1

    check()
    assert verdicts["accepted"] >= 20 and verdicts["refused"] >= 60, verdicts
    missing = set(ZIP_MESSAGES) - set(verdicts)
    assert not missing, f"rules never exercised: {sorted(missing)}"
