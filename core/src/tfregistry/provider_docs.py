"""Reading a provider's documentation from an uploaded archive of its ``docs/`` folder.

The layout is the public registry's (what ``tfplugindocs`` writes)::

    docs/index.md
    docs/resources/<name>.md            docs/data-sources/<name>.md
    docs/ephemeral-resources/<name>.md  docs/guides/<name>.md   docs/functions/<name>.md

each page optionally starting with front matter (``page_title``, ``subcategory``,
``description``).  The legacy ``website/docs`` layout (``index.html.markdown``, ``r/``, ``d/``,
``guides/``; ``.html.markdown``, ``.html.md`` or ``.markdown`` files) is read too.

Nothing in the archive is built or run: pages are text, kept as Markdown and rendered (sanitised)
when shown.  The archive is a ``.tar.gz`` or a ``.zip``; ``docs/`` may be at its root, or its
contents may be (the archive of the folder's contents), or either inside one top-level folder.
Links, unsafe names, oversized pages and archives are refused outright (:class:`DocsError`);
files that are merely out of place (outside the known folders, not Markdown, nested too deep) are
skipped and reported as problems, so an author sees them in the preview.  This module has no
database or web code: :mod:`tfregistry.services.provider_docs` stores what it returns.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from tfregistry.archives import ArchiveError, ArchiveLimits, iter_tar_gz, path_problem

__all__ = ["CATEGORIES", "CATEGORY_LABELS", "DocPage", "DocsError", "DocsLimits", "DocsReport", "parse_front_matter",
           "read_docs_archive"]

#: The categories of pages, in the order the index lists them.
CATEGORIES = ("index", "guides", "resources", "data-sources", "ephemeral-resources", "functions")
CATEGORY_LABELS = {
    "index": "Overview", "guides": "Guides", "resources": "Resources", "data-sources": "Data Sources",
    "ephemeral-resources": "Ephemeral Resources", "functions": "Functions",
}
#: Legacy ``website/docs`` folders and the category each holds.
_LEGACY_FOLDERS = {"r": "resources", "d": "data-sources", "ephemeral-resources": "ephemeral-resources",
                   "guides": "guides", "functions": "functions"}
_MARKDOWN_SUFFIXES = (".md",)
_LEGACY_SUFFIXES = (".html.markdown", ".html.md", ".markdown", ".md")
_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_HEADING_RE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_FRONT_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*:\s*(.*)$")
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
#: Most problems reported (the rest are counted).
MAX_PROBLEMS = 200
#: Front matter keys kept, and the most characters each may hold.
FRONT_MATTER_KEYS = {"page_title": 500, "subcategory": 255, "description": 4000}


class DocsError(ValueError):
    """The archive is refused as a whole; ``status`` is 400, or 413 for a limit."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DocsLimits:
    """Limits on a docs archive."""

    #: Most pages (Markdown files in the known folders).
    max_pages: int = 2000
    #: Largest page, in bytes.
    max_page_bytes: int = 512 * 1024
    #: Largest total of the pages, in bytes; also the largest archive accepted (compressed).
    max_total_bytes: int = 20 * 1024 * 1024
    #: Most members the archive may have (pages, folders, anything skipped).
    max_members: int = 20_000
    #: Most bytes read while unpacking (pages and skipped files), a decompression bomb guard.
    max_unpacked_bytes: int = 200 * 1024 * 1024
    #: Most unpacked bytes per compressed byte, past 4 MiB (see :class:`tfregistry.archives.ArchiveLimits`).
    max_compression_ratio: float = 100


@dataclass
class DocPage:
    """One page: where it was, what it is, and its Markdown (front matter removed)."""

    #: The page's path inside ``docs/`` (``resources/instance.md``; legacy pages keep theirs, ``r/x.html.markdown``).
    path: str
    category: str
    slug: str
    title: str
    subcategory: str
    description: str
    content: str


@dataclass
class DocsReport:
    """The pages read and the problems met (files skipped, and why)."""

    pages: list[DocPage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _show(name: str) -> str:
    return repr(name if len(name) <= 200 else name[:200] + "...")


# --- front matter ------------------------------------------------------------------------------


_DOUBLE_RE = re.compile(r'^"((?:[^"\\]|\\.)*)"')
_SINGLE_RE = re.compile(r"^'((?:[^']|'')*)'")


def _scalar(raw: str) -> str:
    """A front matter value: ``"double"`` (with backslash escapes), ``'single'`` or plain text; a
    `` # comment`` after it is dropped."""
    raw = raw.strip()
    double = _DOUBLE_RE.match(raw)
    if double:
        escapes = {"n": "\n", "t": "\t"}
        return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), double.group(1))
    single = _SINGLE_RE.match(raw)
    if single:
        return single.group(1).replace("''", "'")
    return raw.split(" #", 1)[0].strip()


def parse_front_matter(text: str) -> tuple[dict[str, str], str, str | None]:
    """Split ``text`` into (front matter, body, problem).

    Front matter is the block between a first line ``---`` and the next ``---`` line: simple
    ``key: value`` lines (values plain, ``"double"`` or ``'single'`` quoted), and block scalars
    (``key: |``, ``|-``, ``>``, ``>-``) followed by indented lines, as ``tfplugindocs`` and the
    legacy layout write them.  This is the subset those files use, not YAML (no YAML library is
    needed for it).  Without front matter the whole text is the body; front matter that never ends
    is a problem, and the text is then kept whole as the body.
    """
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return {}, text, None
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        return {}, text, "front matter starts with '---' but has no closing '---' line; the page is shown as is"
    values: dict[str, str] = {}
    index = 1
    while index < end:
        line = lines[index]
        index += 1
        match = _FRONT_KEY_RE.match(line)
        if not match:
            continue  # comments, list items, indented continuation of keys we do not keep
        key, raw = match.group(1), match.group(2).strip()
        if raw[:1] in ("|", ">") and raw.rstrip("-+") in ("|", ">"):
            block: list[str] = []
            while index < end and (lines[index].startswith((" ", "\t")) or not lines[index].strip()):
                block.append(lines[index].strip())
                index += 1
            joiner = "\n" if raw[0] == "|" else " "
            value = joiner.join(block).strip()
        else:
            value = _scalar(raw)
        if key in FRONT_MATTER_KEYS:
            values[key] = value[: FRONT_MATTER_KEYS[key]]
    return values, "\n".join(lines[end + 1:]).lstrip("\n"), None


# --- layout ------------------------------------------------------------------------------------


def _locate(path: str, prefix: str, legacy: bool) -> tuple[str, str, str] | str:
    """``(category, slug, docs path)`` for an archive file, or why it is skipped."""
    rel = path[len(prefix):]
    parts = rel.split("/")
    suffixes = _LEGACY_SUFFIXES if legacy else _MARKDOWN_SUFFIXES
    suffix = next((s for s in suffixes if parts[-1].lower().endswith(s)), None)
    where = "website/docs/" if legacy else "docs/"
    if suffix is None:
        return f"{_show(path)} is not a Markdown page ({', '.join(suffixes)}); skipped"
    stem = parts[-1][: -len(suffix)]
    if len(parts) == 1:
        if stem.lower() == "index":
            return "index", "index", rel
        return (f"{_show(path)} is not in a known folder of {where} (index{suffixes[0]}, "
                f"{', '.join(f'{f}/' for f in (_LEGACY_FOLDERS if legacy else CATEGORIES[1:]))}); skipped")
    folder = parts[0]
    category = _LEGACY_FOLDERS.get(folder) if legacy else (folder if folder in CATEGORIES[1:] else None)
    if category is None:
        return f"{_show(path)} is in {_show(folder + '/')}, not a known folder of {where}; skipped"
    if len(parts) > 2:
        return f"{_show(path)} is in a sub-folder of {folder}/ (pages sit directly in it); skipped"
    if not _SLUG_RE.match(stem):
        return (f"{_show(path)}: page names are letters, digits, '_', '-' and '.', starting with a letter or "
                "digit; skipped")
    return category, stem, rel


def _root(names: list[str]) -> tuple[str, bool]:
    """Where the docs folder is in the archive: ``(prefix, legacy layout)``.

    ``docs/`` or ``website/docs/`` at the root or inside one top-level folder (an archive of a
    repository checkout); else the archive holds the docs folder's contents.
    """
    top = {name.split("/", 1)[0] for name in names if "/" in name}
    wrappers = [""] + [folder + "/" for folder in sorted(top)] if len(top) == 1 else [""]
    for wrapper in wrappers:
        for prefix, legacy in ((f"{wrapper}docs/", False), (f"{wrapper}website/docs/", True)):
            if any(name.startswith(prefix) for name in names):
                return prefix, legacy
    return "", False


# --- archives ----------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    """A zip entry name checked like tar member names, normalised (``./a//b`` -> ``a/b``)."""
    problem = path_problem(name)
    if problem:
        raise DocsError(f"the archive entry {_show(name)} {problem}")
    if "\\" in name or name.startswith("/") or _DRIVE_RE.match(name):
        raise DocsError(f"the archive entry {_show(name)} has an absolute path or a backslash")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise DocsError(f"the archive entry {_show(name)} has a '..' component in its path")
    return "/".join(parts)


def _zip_files(fileobj: BinaryIO, limits: DocsLimits) -> Iterator[tuple[str, zipfile.ZipFile, zipfile.ZipInfo]]:
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, UnicodeDecodeError) as exc:
        raise DocsError(f"the archive is not a valid zip ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise DocsError(f"the archive has more than {limits.max_members} entries", 413)
        for info in infos:
            name = _check_name(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise DocsError(f"the archive has a symbolic link {_show(name)}; links are not accepted")
            if info.is_dir() or kind == stat.S_IFDIR or not name:
                continue
            if kind not in (0, stat.S_IFREG):
                raise DocsError(f"the archive entry {_show(name)} is not a regular file")
            if info.flag_bits & 0x1:
                raise DocsError(f"the archive entry {_show(name)} is encrypted")
            yield name, archive, info


def _entries(fileobj: BinaryIO, limits: DocsLimits) -> list[tuple[str, bytes | None, int]]:
    """Every regular file as ``(name, content, size)``, the content ``None`` when the file is not Markdown or
    is larger than a page may be; links, anything unsafe and the limits raise :class:`DocsError`."""
    head = fileobj.read(4)
    fileobj.seek(0)
    files: list[tuple[str, bytes | None, int]] = []
    total = 0

    def keep(name: str, size: int, read: Callable[[int], bytes]) -> None:
        nonlocal total
        if not name.lower().endswith((".md", ".markdown")) or size > limits.max_page_bytes:
            files.append((name, None, size))  # an oversized page is refused once the docs folder is known
            return
        data = read(limits.max_page_bytes)
        total += len(data)
        if total > limits.max_total_bytes:
            raise DocsError(f"the pages add up to more than {limits.max_total_bytes} bytes", 413)
        files.append((name, data, size))

    if head.startswith(_GZIP_MAGIC):
        archive_limits = ArchiveLimits(max_files=limits.max_members, max_uncompressed_bytes=limits.max_unpacked_bytes,
                                       max_compression_ratio=limits.max_compression_ratio)
        try:
            for entry in iter_tar_gz(fileobj, archive_limits):
                if entry.kind == "dir" or not entry.name:
                    continue
                if entry.kind != "file":
                    what = "a symbolic link" if entry.kind == "symlink" else entry.kind
                    raise DocsError(f"the archive member {_show(entry.name)} is {what}; only files and folders "
                                    "are accepted")
                keep(entry.name, entry.size, entry.read)
        except ArchiveError as exc:
            message = str(exc)
            over_limit = "larger than" in message or "members" in message
            status = 413 if over_limit and "compressed more than" not in message else 400
            raise DocsError(f"invalid docs archive: {exc}", status) from None
    elif head.startswith(_ZIP_MAGICS):
        unpacked = 0
        for name, archive, info in _zip_files(fileobj, limits):
            unpacked += info.file_size
            if unpacked > limits.max_unpacked_bytes:
                raise DocsError(f"the archive unpacks to more than {limits.max_unpacked_bytes} bytes", 413)

            def read(max_bytes: int, archive: zipfile.ZipFile = archive, info: zipfile.ZipInfo = info) -> bytes:
                try:
                    with archive.open(info) as member:
                        data = member.read(max_bytes + 1)
                except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as e:
                    raise DocsError(f"the archive entry {_show(info.filename)} cannot be read: {e}") from None
                if len(data) > max_bytes:
                    raise DocsError(f"the page {_show(info.filename)} is more than {max_bytes} bytes", 413)
                return data

            keep(name, info.file_size, read)
    else:
        raise DocsError("the docs archive must be a .tar.gz or a .zip of the provider's docs/ folder")
    return files


def read_docs_archive(fileobj: BinaryIO, limits: DocsLimits | None = None) -> DocsReport:
    """Read the pages of a docs archive (``.tar.gz`` or ``.zip``, seekable, read from the start).

    Returns the pages and the problems (files skipped, front matter not closed); raises
    :class:`DocsError` for an archive refused as a whole: not an archive, links or unsafe names,
    a page or the total over the limits, too many pages, or no page at all.
    """
    limits = limits or DocsLimits()
    files = _entries(fileobj, limits)
    report = DocsReport()
    prefix, legacy = _root([name for name, _, _ in files])
    seen: dict[tuple[str, str], str] = {}
    for name, data, size in sorted(files):
        if not name.startswith(prefix):
            report.problems.append(f"{_show(name)} is outside {prefix or 'the docs folder'}; skipped")
            continue
        located = _locate(name, prefix, legacy)
        if isinstance(located, str):
            report.problems.append(located)
            continue
        category, slug, rel = located
        if data is None:  # every name _locate accepts ends in .md or .markdown: the page was too large to read
            raise DocsError(f"the page {_show(name)} is {size} bytes, more than the limit of "
                            f"{limits.max_page_bytes} bytes per page", 413)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            report.problems.append(f"{_show(name)} is not UTF-8 text ({exc.reason} at byte {exc.start}); skipped")
            continue
        if "\x00" in text:
            report.problems.append(f"{_show(name)} contains NUL characters; skipped")
            continue
        if (category, slug) in seen:
            report.problems.append(f"{_show(name)} is the same page as {_show(seen[(category, slug)])}; skipped")
            continue
        seen[(category, slug)] = name
        front, body, problem = parse_front_matter(text.replace("\r\n", "\n"))
        if problem:
            report.problems.append(f"{_show(name)}: {problem}")
        heading = _HEADING_RE.search(body)
        title = front.get("page_title") or (heading.group(1)[:500] if heading else slug)
        report.pages.append(DocPage(path=rel, category=category, slug=slug, title=title,
                                    subcategory=front.get("subcategory", ""),
                                    description=front.get("description", ""), content=body))
        if len(report.pages) > limits.max_pages:
            raise DocsError(f"the archive has more than {limits.max_pages} pages", 413)
    if len(report.problems) > MAX_PROBLEMS:
        more = len(report.problems) - MAX_PROBLEMS
        report.problems[MAX_PROBLEMS:] = [f"... and {more} more files skipped"]
    if not report.pages:
        found = "; ".join(report.problems[:5]) or "the archive holds no files"
        raise DocsError(f"no documentation pages found: expected docs/index.md, docs/resources/*.md, "
                        f"docs/data-sources/*.md ... ({found})")
    return report
