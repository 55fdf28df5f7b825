"""Packing a module directory into a ``.tar.gz`` for ``tfr publish module DIR``.

Files are selected as Terraform selects them (hashicorp/go-slug), honouring a
``.terraformignore`` at the root of the directory:

* one pattern per line; blank lines and lines starting with ``#`` are skipped, and
  surrounding whitespace is trimmed;
* ``!pattern`` re-includes what an earlier pattern excluded; the last matching line wins;
* ``/pattern`` is anchored to the root; any other pattern matches at any depth, even
  one with a slash inside (``docs/*.md`` also matches ``sub/docs/x.md``, as in go-slug);
* ``pattern/`` matches only directories (and everything below them);
* ``*`` and ``?`` do not match ``/``; ``**`` matches across directories;
  ``[abc]`` is a character class and ``\\`` escapes the next character;
* a pattern that matches a directory also excludes everything below it.

``.git/`` and ``.terraform/`` directories are always excluded, before the file's own
rules (so ``!.terraform/modules/`` can bring a part back).

Terraform unpacks module archives without creating symlinks (a symlink entry becomes an
empty file), so a symlink to a file inside the directory is stored as a copy of that file;
a symlink to a directory, or to anything outside the module directory, is an error.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["DEFAULT_IGNORE_PATTERNS", "IgnoreRules", "iter_module_files", "pack_module"]

IGNORE_FILE = ".terraformignore"
DEFAULT_IGNORE_PATTERNS = (".git/", ".terraform/")


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool


def _translate(pattern: str) -> str:
    """Translate a glob (already made relative to the root) into a regular expression."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i) and i + 2 == n:
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 2 if pattern.startswith("**", i) else 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body[0] in "!^"
            body = "".join(c if c == "-" else re.escape(c) for c in body[negate:])
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = end + 1
        elif char == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


class IgnoreRules:
    """Compiled ``.terraformignore`` rules (see the module documentation)."""

    def __init__(self, patterns: Iterable[str], *, source: str = IGNORE_FILE) -> None:
        """Compile ``patterns`` (lines of an ignore file), after the default ones.

        Raises ValueError, naming ``source`` and the line, on an invalid pattern.
        """
        self._rules: list[_Rule] = []
        lines = [(0, p) for p in DEFAULT_IGNORE_PATTERNS] + list(enumerate(patterns, start=1))
        for lineno, line in lines:
            pattern = line.strip()
            if pattern.startswith("#"):
                continue
            negated = pattern.startswith("!")
            pattern = pattern[1:] if negated else pattern
            if not pattern:
                continue
            if pattern.endswith("/"):
                pattern += "**"
            pattern = pattern[1:] if pattern.startswith("/") else "**/" + pattern
            try:
                # The optional tail makes a match on a directory cover everything below it.
                regex = re.compile(_translate(pattern) + "(?:/.*)?", re.DOTALL)
            except re.error as exc:
                message = f"{source} line {lineno}: invalid pattern {line.strip()!r} ({exc})"
                raise ValueError(message) from None
            self._rules.append(_Rule(regex, negated))
        # For each rule: does a negated rule come after it?  (Then an excluded directory
        # must still be walked, as something below it may be re-included.)
        self._negation_after: list[bool] = []
        seen_negation = False
        for rule in reversed(self._rules):
            self._negation_after.append(seen_negation)
            seen_negation = seen_negation or rule.negated
        self._negation_after.reverse()

    @classmethod
    def for_directory(cls, root: Path) -> IgnoreRules:
        """Rules for a module directory: its ``.terraformignore`` if any, plus the defaults."""
        path = root / IGNORE_FILE
        if not path.is_file():
            return cls(())
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not valid UTF-8") from None
        return cls(text.splitlines(), source=str(path))

    def _last_match(self, relpath: str, is_dir: bool) -> int | None:
        subject = relpath + "/" if is_dir else relpath
        last = None
        for index, rule in enumerate(self._rules):
            if rule.regex.fullmatch(subject):
                last = index
        return last

    def excludes(self, relpath: str, is_dir: bool = False) -> bool:
        """Whether the rules exclude ``relpath`` (relative, ``/``-separated)."""
        last = self._last_match(relpath, is_dir)
        return last is not None and not self._rules[last].negated

    def prunes(self, relpath: str) -> bool:
        """Whether directory ``relpath`` and everything below it are excluded.

        That is: the directory is excluded and no later rule re-includes anything.
        """
        last = self._last_match(relpath, is_dir=True)
        return last is not None and not self._rules[last].negated and not self._negation_after[last]


def iter_module_files(root: Path) -> Iterator[Path]:
    """Yield the files and symlinks to pack from ``root``, as sorted relative paths.

    Applies ``.terraformignore`` and the default exclusions; excluded directories are
    not descended into unless a later ``!`` rule may re-include something below them.
    Symlinks (to directories too) are yielded, not followed; sockets, FIFOs and devices
    are skipped.  Raises ValueError on an invalid ``.terraformignore``.
    """
    rules = IgnoreRules.for_directory(root)

    def walk(directory: Path, prefix: str) -> Iterator[Path]:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            relpath = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if not rules.prunes(relpath):
                    yield from walk(Path(entry.path), relpath + "/")
            elif (entry.is_file(follow_symlinks=False) or entry.is_symlink()) and not rules.excludes(relpath):
                yield Path(relpath)

    # Sorting names at each level yields paths in Path order (component by component).
    return walk(root, "")


def pack_module(root: Path, dest: BinaryIO) -> int:
    """Write the module directory ``root`` to ``dest`` as a ``.tar.gz``; return the file count.

    The files are those of :func:`iter_module_files`.  The archive is reproducible:
    entries sorted, no directory entries, mtime 0, owner 0:0 with empty names, mode
    0755 for executables and 0644 otherwise, and a gzip header without name or time.
    A symlink to a file inside ``root`` is stored as a copy of the file.  Raises
    ValueError if a symlink points outside ``root``, to a directory or to nothing, or
    if ``.terraformignore`` is invalid; nothing is written to ``dest`` in that case.
    """
    real_root = Path(os.path.realpath(root))
    files = list(iter_module_files(root))
    for relpath in files:
        path = root / relpath
        if path.is_symlink():
            target = Path(os.path.realpath(path))
            if not target.is_relative_to(real_root):
                raise ValueError(f"symlink {relpath.as_posix()} -> {os.readlink(path)} points outside {root}")
            if not target.is_file():
                raise ValueError(
                    f"symlink {relpath.as_posix()} -> {os.readlink(path)} does not point to a file; "
                    "Terraform would unpack it as an empty file"
                )

    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=dest, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for relpath in files:
            with open(root / relpath, "rb") as fh:  # follows a symlink to its file
                info = tarfile.TarInfo(relpath.as_posix())
                st = os.fstat(fh.fileno())
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) else 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, fh)
    return len(files)
