"""The provision box and example sources: pure functions, no Flask."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from tfregistry import semver

_IDENTIFIER = re.compile(r"[^A-Za-z0-9_-]")
_SOURCE_LINE = re.compile(r'^(?P<indent>[ \t]*)source(?P<gap>[ \t]*)=[ \t]*"(?P<path>\.\.?/[^"]*)"[ \t]*$', re.M)


#: Tokens of a type constraint: words, quoted strings, punctuation, any other character.
_TOKEN = re.compile(r'\s*(?:(?P<word>[A-Za-z_][A-Za-z0-9_-]*)|(?P<string>"(?:[^"\\]|\\.)*")'
                    r"|(?P<punct>[(){}\[\],=:])|(?P<other>\S))")
_SIMPLE_PLACEHOLDERS = {"string": '""', "number": "0", "bool": "false", "list": "[]", "set": "[]", "tuple": "[]",
                        "map": "{}", "object": "{}"}


class _TypeParser:
    """A reader of Terraform type constraints (``object({ name = string, port = optional(number, 443) })``)
    producing a value of that type: only what :func:`placeholder` needs, no validation beyond that."""

    def __init__(self, text: str) -> None:
        self.tokens = [m.group(m.lastgroup or "other") for m in _TOKEN.finditer(text)]
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"expected {expected!r}, found {token!r}")
        self.pos += 1
        return token

    def skip_expression(self) -> None:
        """Skip an expression (an ``optional()`` default) up to the ``,`` or ``)`` that ends it."""
        depth = 0
        while (token := self.peek()) is not None:
            if depth == 0 and token in (",", ")"):
                return
            depth += token in "([{"
            depth -= token in ")]}"
            self.pos += 1
        raise ValueError("unterminated expression")

    def value(self) -> str:
        """A placeholder value for the type constraint at the current position."""
        kind = self.take()
        if kind in ("string", "number", "bool"):
            return _SIMPLE_PLACEHOLDERS[kind]
        if kind == "any":
            return "null"
        if kind in ("list", "set", "map"):
            self.take("(")
            self.value()
            self.take(")")
            return _SIMPLE_PLACEHOLDERS[kind]
        if kind == "tuple":
            self.take("(")
            self.take("[")
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.take(",")
            self.take("]")
            self.take(")")
            return "[" + ", ".join(items) + "]"
        if kind == "object":
            self.take("(")
            self.take("{")
            attributes = []
            while self.peek() != "}":
                key = self.take()
                self.take("=") if self.peek() == "=" else self.take(":")
                if self.peek() == "optional":
                    self.take()
                    self.take("(")
                    self.value()
                    if self.peek() == ",":
                        self.take(",")
                        self.skip_expression()
                    self.take(")")
                else:
                    attributes.append(f"{key} = {self.value()}")
                if self.peek() == ",":
                    self.take(",")
            self.take("}")
            self.take(")")
            return "{ " + ", ".join(attributes) + " }" if attributes else "{}"
        raise ValueError(f"unknown type {kind!r}")


def placeholder(type_text: str | None) -> str:
    """A value of the input's type to start from: ``""``, ``0``, ``false``, ``[]``, ``{}``, ``null`` for
    ``any``; an object gets its required attributes (``{ name = "" }``: ``optional()`` ones are left out)
    and a tuple one value per element, so the placeholder passes ``terraform validate`` as it is."""
    text = (type_text or "").strip()
    if not text:
        return "null"
    parser = _TypeParser(text)
    try:
        value = parser.value()
        if parser.peek() is None:
            return value
    except ValueError:
        pass
    head = re.match(r"[a-z]+", text)  # not a type this reader knows: the shape of its outer kind
    return _SIMPLE_PLACEHOLDERS.get(head.group(0) if head else "", "null")


def version_constraint(template: str, version: str, *, latest: bool = True) -> str:
    """The constraint to suggest for ``version``: ``template`` filled in; a pre-release is pinned exactly
    (Terraform never selects a pre-release through a range), and so is a version that is not the ``latest``
    release (a range would install a newer version, whose inputs may not be the ones the page lists)."""
    parsed = semver.parse(version)
    if parsed.is_prerelease or not latest:
        return f"= {version}"
    return template.format(major=parsed.major, minor=parsed.minor, patch=parsed.patch, version=version)


def block_label(name: str) -> str:
    """A module block label from a module or directory name."""
    label = _IDENTIFIER.sub("_", name) or "this"
    return label if label[0].isalpha() or label[0] == "_" else f"m_{label}"


def provision_snippet(*, label: str, source: str, constraint: str | None, inputs: list[dict[str, Any]]) -> str:
    """The ``module`` block to copy: source, version, and every required input as a type-shaped placeholder
    with its type in a comment."""
    lines = [f'module "{block_label(label)}" {{', f'  source  = "{source}"']
    if constraint:
        lines.append(f'  version = "{constraint}"')
    required = [i for i in inputs if i.get("required")]
    if required:
        lines.append("")
        width = max(len(i["name"]) for i in required)
        for item in required:
            type_text = " ".join((item.get("type") or "any").split())
            lines.append(f"  {item['name'].ljust(width)} = {placeholder(item.get('type'))} # {type_text}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def rewrite_example_sources(text: str, *, example_dir: str, address: str, version: str) -> str:
    """Replace ``source = "../.."``-style module sources of an example by the registry address (with
    ``//modules/x`` for a submodule) and pin ``version``; other sources are left as written."""

    def replace(match: re.Match[str]) -> str:
        target = posixpath.normpath(posixpath.join(example_dir, match.group("path")))
        if target.startswith("..") or target.startswith("examples"):
            return match.group(0)
        source = address if target == "." else f"{address}//{target}"
        indent, gap = match.group("indent"), match.group("gap")
        return f'{indent}source{gap}= "{source}"\n{indent}version{" " * max(len(gap) - 1, 1)}= "{version}"'

    return _SOURCE_LINE.sub(replace, text)
