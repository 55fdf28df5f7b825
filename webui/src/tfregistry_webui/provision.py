"""The provision box and example sources: pure functions, no Flask."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from tfregistry import semver

_IDENTIFIER = re.compile(r"[^A-Za-z0-9_-]")
_SOURCE_LINE = re.compile(r'^(?P<indent>[ \t]*)source(?P<gap>[ \t]*)=[ \t]*"(?P<path>\.\.?/[^"]*)"[ \t]*$', re.M)


def placeholder(type_text: str | None) -> str:
    """A value of the input's type to start from: ``""``, ``0``, ``false``, ``[]``, ``{}``, else ``null``."""
    text = (type_text or "").strip()
    head = re.match(r"[a-z]+", text)
    kind = head.group(0) if head else ""
    return {"string": '""', "number": "0", "bool": "false", "list": "[]", "set": "[]", "tuple": "[]",
            "map": "{}", "object": "{}"}.get(kind, "null")


def version_constraint(template: str, version: str) -> str:
    """The constraint to suggest for ``version``: ``template`` filled in; a pre-release is pinned exactly
    (Terraform never selects a pre-release through a range)."""
    parsed = semver.parse(version)
    if parsed.is_prerelease:
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
