"""Semantic Versioning 2.0.0 (https://semver.org): parsing, precedence and "latest".

Module and provider versions in the registry protocols are strict SemVer: no leading
``v``, no leading zeros, optional ``-prerelease`` and ``+build`` parts::

    >>> parse("1.2.3-rc.1+build.5") < parse("1.2.3")
    True
    >>> sorted(["1.10.0", "1.2.0", "1.2.0-beta"], key=sort_key)
    ['1.2.0-beta', '1.2.0', '1.10.0']
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["InvalidVersion", "Version", "latest", "parse", "sort_key"]

# The regular expression suggested by semver.org, with named groups.  re.ASCII keeps
# ``\d`` from matching non-ASCII digits; fullmatch() keeps ``$`` from accepting a "\n".
_SEMVER_RE = re.compile(
    r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)

#: Type of :meth:`Version.sort_key`.
SortKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


class InvalidVersion(ValueError):
    """The text is not a Semantic Versioning 2.0.0 version."""


@dataclass(frozen=True)
class Version:
    """A parsed semantic version; build it with :func:`parse`.

    Comparisons (``<``, ``<=``, ``>``, ``>=``) follow SemVer precedence, which ignores
    build metadata, while ``==`` compares every field: ``1.0.0+a`` and ``1.0.0+b`` have
    the same precedence (neither is ``<`` the other) but are not ``==``.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @property
    def is_prerelease(self) -> bool:
        """Whether the version has a pre-release part (``1.0.0-rc.1``)."""
        return bool(self.prerelease)

    def sort_key(self) -> SortKey:
        """Return a tuple that orders versions by SemVer precedence.

        A release sorts after its pre-releases; numeric pre-release identifiers compare
        numerically and before alphanumeric ones, which compare in ASCII order; a longer
        list of identifiers wins when the shorter one is a prefix of it.
        """
        identifiers = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.prerelease
        )
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, identifiers)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.sort_key() <= other.sort_key()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.sort_key() > other.sort_key()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.sort_key() >= other.sort_key()


def _quote(text: str, limit: int = 80) -> str:
    """Quote user input for an error message: escaped control characters, bounded length."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return json.dumps(text, ensure_ascii=False)


def parse(text: str) -> Version:
    """Parse a semantic version such as ``1.2.3``, ``1.2.3-rc.1`` or ``1.2.3+build.7``.

    Raises :class:`InvalidVersion`, with a message meant for the user, when ``text`` is
    not a valid SemVer 2.0.0 version.
    """
    match = _SEMVER_RE.fullmatch(text)
    if match is None:
        if text[:1] in ("v", "V") and _SEMVER_RE.fullmatch(text[1:]):
            hint = f"drop the leading {text[0]!r}: {text[1:]}"
        else:
            hint = "expected MAJOR.MINOR.PATCH, e.g. 1.2.3"
        raise InvalidVersion(f"{_quote(text)} is not a valid semantic version ({hint})")
    prerelease = match["prerelease"]
    return Version(
        major=int(match["major"]),
        minor=int(match["minor"]),
        patch=int(match["patch"]),
        prerelease=tuple(prerelease.split(".")) if prerelease else (),
        build=match["build"] or "",
    )


def sort_key(text: str) -> SortKey:
    """Precedence key of a version string: ``sorted(versions, key=sort_key)``.

    Raises :class:`InvalidVersion` if ``text`` is not a valid version.
    """
    return parse(text).sort_key()


def latest(versions: Iterable[str], include_prereleases: bool = False) -> str | None:
    """Return the version with the highest precedence, as given, or None if there is none.

    Pre-releases are skipped unless ``include_prereleases`` is true, as Terraform does when
    it picks the newest module version without an explicit constraint: if only
    pre-releases exist the result is None.  Raises :class:`InvalidVersion` on an invalid
    version string.
    """
    best: tuple[SortKey, str] | None = None
    for text in versions:
        version = parse(text)
        if version.is_prerelease and not include_prereleases:
            continue
        key = version.sort_key()
        if best is None or key > best[0]:
            best = (key, text)
    return best[1] if best else None
