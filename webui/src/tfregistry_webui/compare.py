"""What changed between two analysed versions of a module: pure functions, unit-tested."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Change:
    """One named item whose attribute changed."""

    name: str
    old: Any
    new: Any


@dataclass
class Comparison:
    """The differences a reviewer needs before an upgrade (one directory: root, a submodule...)."""

    inputs_added: list[dict[str, Any]] = field(default_factory=list)
    inputs_removed: list[dict[str, Any]] = field(default_factory=list)
    #: Inputs that had a default (or did not exist as optional) and now must be set.
    inputs_now_required: list[str] = field(default_factory=list)
    types_changed: list[Change] = field(default_factory=list)
    defaults_changed: list[Change] = field(default_factory=list)
    outputs_added: list[dict[str, Any]] = field(default_factory=list)
    outputs_removed: list[dict[str, Any]] = field(default_factory=list)
    #: Provider requirements by source address: constraint changed (``old``/``new`` ``None`` when added/removed).
    providers_changed: list[Change] = field(default_factory=list)
    required_version: Change | None = None

    @property
    def breaking(self) -> bool:
        """Whether callers may have to change their configuration."""
        return bool(self.inputs_removed or self.inputs_now_required or self.types_changed or self.outputs_removed
                    or any(i.get("required") for i in self.inputs_added))

    @property
    def empty(self) -> bool:
        return not (self.inputs_added or self.inputs_removed or self.inputs_now_required or self.types_changed
                    or self.defaults_changed or self.outputs_added or self.outputs_removed
                    or self.providers_changed or self.required_version)


def _by_name(items: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items or ()}


def _providers(doc: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for p in doc.get("provider_dependencies") or ():
        key = p.get("source") or p.get("name") or ""
        found[key] = p.get("version") or ""
    return found


def compare_docs(old: dict[str, Any], new: dict[str, Any]) -> Comparison:
    """Compare two analysed directories (the ``root`` of two versions, say)."""
    result = Comparison()
    old_in, new_in = _by_name(old.get("inputs")), _by_name(new.get("inputs"))
    result.inputs_added = [new_in[n] for n in new_in if n not in old_in]
    result.inputs_removed = [old_in[n] for n in old_in if n not in new_in]
    for name in (n for n in new_in if n in old_in):
        before, after = old_in[name], new_in[name]
        if after.get("required") and not before.get("required"):
            result.inputs_now_required.append(name)
        if _norm(before.get("type")) != _norm(after.get("type")):
            result.types_changed.append(Change(name, before.get("type"), after.get("type")))
        if not after.get("required") and _norm(before.get("default")) != _norm(after.get("default")):
            result.defaults_changed.append(Change(name, before.get("default"), after.get("default")))
    old_out, new_out = _by_name(old.get("outputs")), _by_name(new.get("outputs"))
    result.outputs_added = [new_out[n] for n in new_out if n not in old_out]
    result.outputs_removed = [old_out[n] for n in old_out if n not in new_out]
    old_p, new_p = _providers(old), _providers(new)
    for source in sorted(set(old_p) | set(new_p)):
        before, after = old_p.get(source), new_p.get(source)
        if before != after:
            result.providers_changed.append(Change(source, before, after))
    if (old.get("required_version") or None) != (new.get("required_version") or None):
        result.required_version = Change("required_version", old.get("required_version"), new.get("required_version"))
    return result


def _norm(text: Any) -> Any:
    """Whitespace does not make a type or a default different."""
    return " ".join(text.split()) if isinstance(text, str) else text
