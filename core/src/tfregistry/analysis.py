"""Module analysis: what a module version declares, read from its archive without running anything.

:func:`analyse_module_archive` reads the ``*.tf``, ``*.tf.json`` and OpenTofu ``*.tofu`` /
``*.tofu.json`` files of the root module, of every ``modules/<x>`` (and ``modules/<x>/modules/<y>``)
and of every ``examples/<x>``, and returns their inputs, outputs, module calls, provider
requirements, resources and data sources in the public registry's field names.  It is stored
as-is in ``ModuleVersion.analysis``.

Nothing from the archive is executed: HCL is parsed by python-hcl2 (a pure-Python Lark grammar),
JSON by :mod:`json`; no subprocess, no ``terraform``.  The archive goes through the same checks as
at publish (:func:`tfregistry.archives.inspect_module_archive`), reads are bounded per file and in
total, and parsing is bounded in time (:class:`AnalysisLimits`).  What cannot be read is reported
in ``problems`` (file, line, column, why) and the rest is still documented: analysis never fails
a publish.
"""

from __future__ import annotations

import codecs
import json
import posixpath
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from tfregistry.archives import ArchiveError, ArchiveLimits, ArchiveReport, inspect_module_archive

__all__ = ["ANALYZER_VERSION", "AnalysisLimits", "ModuleAnalysis", "analyse_module_archive", "failed_analysis",
           "hcl_text"]

#: Bumped when the result's shape or content changes, so old results can be told apart.
ANALYZER_VERSION = 1

_TF_SUFFIXES = (".tf", ".tf.json", ".tofu", ".tofu.json")
_DOC_DIR_RE = re.compile(r"^(?:modules/[^/]+(?:/modules/[^/]+)?|examples/[^/]+)$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_OVERRIDE_RE = re.compile(r"(?:^|_)override\.(?:tf|tofu)(?:\.json)?$")
#: Resource type prefixes that belong to Terraform's built-in provider, not to a registry one.
_BUILTIN_PROVIDERS = {"terraform"}


@dataclass(frozen=True)
class AnalysisLimits:
    """Bounds on the work one analysis may do."""

    #: A Terraform file larger than this is not parsed (reported as a problem).
    max_file_bytes: int = 1024**2
    #: Terraform source read per archive, all files together; files past it are reported, not parsed.
    max_total_bytes: int = 8 * 1024**2
    #: Time spent parsing, all files together; a file still parsing then is stopped and reported.
    max_seconds: float = 30.0


@dataclass
class _Context:
    """State of one analysis: problems found and the parsing deadline."""

    limits: AnalysisLimits
    deadline: float
    problems: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, path: str, message: str, line: int | None = None, column: int | None = None) -> None:
        self.problems.append({"path": path, "line": line, "column": column, "message": message})


# --- reading the archive -------------------------------------------------------------------------


def _doc_dir(path: str) -> str | None:
    """The documented directory ``path`` (a file) belongs to, or None."""
    folder = posixpath.dirname(path)
    return folder if folder == "" or _DOC_DIR_RE.match(folder) else None


def _documented_dirs(names: list[str]) -> list[str]:
    """Every documented directory that holds anything, even only a nested one (``modules/x/modules/y``)."""
    found = {""}
    for name in names:
        parts = name.split("/")
        for depth in (2, 4):
            if len(parts) > depth and _DOC_DIR_RE.match("/".join(parts[:depth])):
                found.add("/".join(parts[:depth]))
    return sorted(found)


def _wanted(name: str) -> str | None:
    """Why a file is read: "tf", "readme", "changelog", or None."""
    folder = _doc_dir(name)
    if folder is None:
        return None
    base = posixpath.basename(name)
    if base.endswith(_TF_SUFFIXES):
        return "tf"
    if base.lower() == "readme.md" and folder:
        return "readme"
    if base.lower() == "changelog.md" and not folder:
        return "changelog"
    return None


def _capped_text(data: bytes, limits: ArchiveLimits) -> str:
    """A README or changelog as text (invalid UTF-8 replaced), cut at ``limits.max_readme_bytes``."""
    truncated = len(data) > limits.max_readme_bytes
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    return decoder.decode(data[: limits.max_readme_bytes], final=not truncated)  # a cut character is dropped


# --- parsing, bounded in time ----------------------------------------------------------------------


class _Timeout(Exception):
    """A parse ran past the deadline (it is left to finish in its thread, its result dropped)."""


def _with_deadline(func: Callable[[str], Any], text: str, seconds: float) -> Any:
    """``func(text)`` in a daemon thread; :class:`_Timeout` if it has not finished after ``seconds``.

    A parse that runs late is left to finish on its own and its result dropped: Python cannot stop
    a thread safely (an exception sent into it may land in a garbage-collector callback or any
    other code it happens to run).  The size caps bound that work, and once the archive's time
    budget is spent no further file is parsed, so at most one such thread runs per analysis.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = func(text)
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="tfr-analysis-parse", daemon=True)
    thread.start()
    thread.join(max(seconds, 0.0))
    if thread.is_alive():
        raise _Timeout
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _parse_hcl(text: str) -> dict[str, Any]:
    import hcl2

    # Heredocs are kept as written and read by _heredoc_value: python-hcl2 8.1.4 drops their final
    # newline, and escapes quotes and backslashes in the value of a "<<-" heredoc.
    options = hcl2.SerializationOptions(
        strip_string_quotes=True, with_comments=False, explicit_blocks=False, preserve_heredocs=True
    )
    return hcl2.serialize(hcl2.parses(text, discard_comments=True), serialization_options=options)


def _warm_parser() -> None:
    from hcl2.parser import parser

    parser()


def _terminal_text(name: str) -> str:
    """A grammar terminal as the user would type it (``RSQB`` -> ``']'``) where it is a literal."""
    if name == "NL_OR_COMMENT":
        return "new line"
    try:
        from hcl2.parser import parser

        pattern = parser().get_terminal(name).pattern
    except Exception:  # unknown terminal: show its name
        return name
    return repr(pattern.value) if type(pattern).__name__ == "PatternStr" else name.lower().replace("_", " ")


def _syntax_message(exc: Exception) -> str:
    """A one-line description of a python-hcl2 (Lark) parse error."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, UnexpectedToken):
        token = exc.token
        found = "end of the file" if token.type == "$END" else repr(str(token.value)[:40])
        expected = sorted({_terminal_text(name) for name in exc.expected if name != "$END"})
        more = f"; expected {', '.join(expected[:8])}{', ...' if len(expected) > 8 else ''}" if expected else ""
        return f"syntax error: unexpected {found}{more}"
    if isinstance(exc, UnexpectedCharacters):
        return f"syntax error: unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedEOF):
        return "syntax error: unexpected end of the file"
    if isinstance(exc, RecursionError):
        return "the file is nested too deeply to be read"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"could not be read ({type(exc).__name__}: {first[:300]})"


def _load(ctx: _Context, path: str, data: bytes) -> tuple[dict[str, Any], bool] | None:
    """The parsed file and whether it is JSON syntax, or None (a problem was recorded)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        ctx.problem(path, f"not analysed: the file is not valid UTF-8 (byte {exc.start})")
        return None
    is_json = path.endswith(".json")
    if is_json:
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
            ctx.problem(path, f"invalid JSON: {getattr(exc, 'msg', str(exc))}", line, column)
            return None
        if not isinstance(parsed, dict):
            ctx.problem(path, "invalid Terraform JSON: the top level must be an object")
            return None
        return parsed, True
    _warm_parser()  # building the grammar (once per process) is not the file's time
    remaining = ctx.deadline - time.monotonic()
    if remaining <= 0:
        ctx.problem(path, f"not analysed: analysis ran out of time ({ctx.limits.max_seconds:g} s in all)")
        return None
    try:
        return _with_deadline(_parse_hcl, text, remaining), False
    except _Timeout:
        ctx.problem(path, f"not analysed: parsing took longer than the {ctx.limits.max_seconds:g} s allowed")
    except Exception as exc:
        ctx.problem(path, _syntax_message(exc), getattr(exc, "line", None), getattr(exc, "column", None))
    return None


# --- rendering values back to HCL text -----------------------------------------------------------------


def _single_interpolation(text: str) -> bool:
    """Whether ``text`` is exactly one ``${...}`` (python-hcl2's wrapper of an expression)."""
    if not (text.startswith("${") and text.endswith("}")):
        return False
    depth, quoted, escaped = 1, False, False
    for index in range(2, len(text)):
        char = text[index]
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index == len(text) - 1
    return False


_HEREDOC_RE = re.compile(r"<<(-?)([A-Za-z][A-Za-z0-9._-]*)\r?\n(.*?)^[ \t]*\2[ \t]*\r?\n?\Z", re.S | re.M)


def _heredoc_value(text: str) -> str | None:
    """The value of a heredoc as written (``<<EOT`` ... ``EOT``), as Terraform reads it, or None.

    Every line ends with a newline; ``<<-`` removes the smallest indentation (in spaces) of the
    non-blank lines.  Template sequences (``${``, ``$${``...) are kept as they are.
    """
    match = _HEREDOC_RE.match(text)
    if match is None:
        return None
    lines = match.group(3).replace("\r\n", "\n").splitlines(keepends=True)
    if match.group(1):
        indents = [len(line) - len(line.lstrip(" ")) for line in lines if line.strip()]
        cut = min(indents, default=0)
        lines = [line[cut:] if line.strip() else line.lstrip(" ") for line in lines]
    return "".join(lines)


def _value(value: Any) -> Any:
    """A string from python-hcl2 with its heredoc, if it is one, read as its value."""
    if isinstance(value, str) and value.startswith("<<"):
        heredoc = _heredoc_value(value)
        return value if heredoc is None else heredoc
    return value


def _quote(text: str) -> str:
    """An HCL quoted string with ``text``'s value; ``${``, ``$${``, ``%{`` and ``%%{`` are kept as they are."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


def _key_text(key: str) -> str:
    return key if _IDENTIFIER_RE.match(key) and key not in ("null", "true", "false") else _quote(key)


def hcl_text(value: Any, json_syntax: bool = False) -> str:
    """``value`` (as python-hcl2 or :mod:`json` gives it) written back as HCL.

    Strings are quoted with their escapes; python-hcl2 wraps expressions in ``${...}``, which is
    removed (``"${1 + 2}"`` -> ``1 + 2``).  In JSON syntax every string is a string (a template).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if not json_syntax and _single_interpolation(value):
            return value[2:-1]
        return _quote(value if json_syntax else _value(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl_text(item, json_syntax) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{_key_text(str(k))} = {hcl_text(v, json_syntax)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }"
    return _quote(str(value))


def _type_text(value: Any, json_syntax: bool) -> str | None:
    """A variable's ``type`` as written (python-hcl2 gives ``${map(string)}`` or ``string``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value[2:-1] if not json_syntax and _single_interpolation(value) else value
    return hcl_text(value, json_syntax)


def _string(value: Any) -> str:
    """A plain string attribute (description, source, version) as Terraform reads it; "" when absent."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return hcl_text(value)
    return _value(value).replace("$${", "${").replace("%%{", "%{")


def _flag(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip(), default)
    return bool(value)


# --- blocks -------------------------------------------------------------------------------------------------


def _blocks(value: Any, labels: int) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """(labels, body) of every block in ``value``: lists (python-hcl2, JSON arrays) and nested label objects."""
    if isinstance(value, list):
        for item in value:
            yield from _blocks(item, labels)
    elif labels == 0:
        if isinstance(value, dict):
            yield (), value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key == "//":  # a comment in JSON syntax
                continue
            for rest, body in _blocks(inner, labels - 1):
                yield (str(key), *rest), body


def _count(value: Any) -> int:
    """How many nested blocks an attribute holds (a list of bodies, or one body in JSON)."""
    if isinstance(value, list):
        return sum(1 for item in value if isinstance(item, dict))
    return 1 if isinstance(value, dict) else 0


@dataclass
class _Doc:
    """What one directory declares, in declaration order."""

    path: str
    files: list[str] = field(default_factory=list)
    required_versions: list[str] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    providers: dict[str, dict[str, str]] = field(default_factory=dict)
    implied: set[str] = field(default_factory=set)  # local names used by resources or provider blocks
    sourced: set[str] = field(default_factory=set)  # local names whose source was written
    required_providers_blocks: int = 0
    resources: list[dict[str, str]] = field(default_factory=list)
    data_sources: list[dict[str, str]] = field(default_factory=list)

    def add(self, ctx: _Context, path: str, parsed: dict[str, Any], json_syntax: bool) -> None:
        """Add what one parsed file declares."""
        for _, body in _blocks(parsed.get("terraform"), 0):
            self._terraform(ctx, path, body)
        for (name,), body in _blocks(parsed.get("variable"), 1):
            if name in self.inputs:
                ctx.problem(path, f"variable {name!r} is declared more than once; the first is documented")
                continue
            default = body.get("default", _MISSING)
            self.inputs[name] = {
                "name": name,
                "type": _type_text(body.get("type"), json_syntax),
                "description": _string(body.get("description")),
                "default": None if default is _MISSING else hcl_text(default, json_syntax),
                "required": default is _MISSING,
                "sensitive": _flag(body.get("sensitive")),
                "nullable": _flag(body.get("nullable"), default=True),
                "ephemeral": _flag(body.get("ephemeral")),
                "validations": _count(body.get("validation")),
            }
        for (name,), body in _blocks(parsed.get("output"), 1):
            if name in self.outputs:
                ctx.problem(path, f"output {name!r} is declared more than once; the first is documented")
                continue
            self.outputs[name] = {"name": name, "description": _string(body.get("description")),
                                  "sensitive": _flag(body.get("sensitive")), "ephemeral": _flag(body.get("ephemeral"))}
        for (name,), body in _blocks(parsed.get("module"), 1):
            self.modules.setdefault(name, {"name": name, "source": _string(body.get("source")),
                                           "version": _string(body.get("version"))})
        for kind, target in (("resource", self.resources), ("data", self.data_sources)):
            for (rtype, name), body in _blocks(parsed.get(kind), 2):
                target.append({"name": name, "type": rtype})
                self._imply(_provider_of(rtype, body.get("provider")))
        for (name,), _ in _blocks(parsed.get("provider"), 1):
            self._imply(name)

    def _terraform(self, ctx: _Context, path: str, body: dict[str, Any]) -> None:
        version = body.get("required_version")
        if isinstance(version, str) and version and version not in self.required_versions:
            self.required_versions.append(version)
        for _, block in _blocks(body.get("required_providers"), 0):
            self.required_providers_blocks += 1
            if self.required_providers_blocks == 2:
                ctx.problem(path, "a second required_providers block: Terraform accepts only one per module;"
                                  " the requirements are merged here")
            for name, requirement in block.items():
                if name == "//":
                    continue
                if isinstance(requirement, dict):
                    source, constraint = _string(requirement.get("source")), _string(requirement.get("version"))
                else:  # the legacy form: name = "version constraint"
                    source, constraint = "", _string(requirement)
                self._require(name, source, constraint)

    def _require(self, name: str, source: str, constraint: str) -> None:
        """Add a provider requirement; one stated again (in another file) adds its constraint."""
        # Terraform's default for a bare local name, until a file writes the source
        entry = self.providers.setdefault(name, {"name": name, "namespace": "hashicorp",
                                                 "source": f"hashicorp/{name}", "version": ""})
        if source and name not in self.sourced:
            self.sourced.add(name)
            parts = source.split("/")
            entry.update(source=source, namespace=parts[-2] if len(parts) >= 2 else "hashicorp")
        if constraint and constraint not in entry["version"]:
            entry["version"] = f"{entry['version']}, {constraint}" if entry["version"] else constraint

    def _imply(self, name: str | None) -> None:
        if name and name not in _BUILTIN_PROVIDERS:
            self.implied.add(name)

    def result(self) -> dict[str, Any]:
        for name in sorted(self.implied):  # after the declared ones, by name
            if name not in self.providers:
                self._require(name, "", "")
        return {
            "path": self.path,
            "name": posixpath.basename(self.path),
            "readme": "",
            "empty": not self.files,
            "required_version": ", ".join(self.required_versions) or None,
            "inputs": list(self.inputs.values()),
            "outputs": list(self.outputs.values()),
            "dependencies": list(self.modules.values()),
            "provider_dependencies": list(self.providers.values()),
            "resources": self.resources,
            "data_sources": self.data_sources,
            "files": self.files,
        }


_MISSING = object()


def _provider_of(resource_type: str, provider: Any) -> str | None:
    """The local provider name a resource uses: its ``provider`` argument, else its type's prefix."""
    if isinstance(provider, str) and provider:
        text = provider[2:-1] if _single_interpolation(provider) else provider
        return text.split(".")[0].strip() or None
    return resource_type.split("_", 1)[0] or None


def _select_files(names: list[str]) -> list[str]:
    """The Terraform files of one directory to read: a ``.tofu`` file replaces the ``.tf`` of the same name."""
    chosen = set(names)
    for name in names:
        if name.endswith(".tofu"):
            chosen.discard(name[: -len(".tofu")] + ".tf")
        elif name.endswith(".tofu.json"):
            chosen.discard(name[: -len(".tofu.json")] + ".tf.json")
    return sorted(chosen)


def analyse_module_archive(
    fileobj: BinaryIO, limits: ArchiveLimits, analysis_limits: AnalysisLimits | None = None
) -> dict[str, Any]:
    """Analyse a module archive (``.tar.gz``) read from ``fileobj``; see the module documentation.

    Never raises for the archive's content: what cannot be read goes into ``problems``.  The
    READMEs of submodules and examples and the root ``CHANGELOG.md`` are cut at
    ``limits.max_readme_bytes`` like the root README.
    """
    analysis = ModuleAnalysis(limits, analysis_limits)
    try:
        report = inspect_module_archive(fileobj, limits, analysis.collect)
    except ArchiveError as exc:
        return failed_analysis(f"the archive could not be read: {exc}")
    return analysis.result(report)


class ModuleAnalysis:
    """One analysis, made while the archive is inspected: pass :meth:`collect` to
    :func:`~tfregistry.archives.inspect_module_archive`, then :meth:`result` its report.  A publish
    reads the archive once for both its checks and its documentation this way."""

    def __init__(self, limits: ArchiveLimits, analysis_limits: AnalysisLimits | None = None) -> None:
        self.limits = limits
        self.alimits = analysis_limits or AnalysisLimits()
        self.deadline = time.monotonic() + self.alimits.max_seconds
        self.budget = self.alimits.max_total_bytes
        self.sizes: dict[str, int] = {}  # every regular file of the archive

    def collect(self, name: str, size: int) -> int:
        """How many of the first bytes of this regular file the analysis needs."""
        self.sizes[name] = size
        kind = _wanted(name)
        if kind == "tf":
            if size > self.alimits.max_file_bytes or size > self.budget:
                return 0
            self.budget -= size
            return size
        return self.limits.max_readme_bytes + 1 if kind else 0

    def result(self, report: ArchiveReport) -> dict[str, Any]:
        """The analysis of the archive ``report`` describes (inspected with :meth:`collect`)."""
        return _analyse(report, self.sizes, self.limits, self.alimits, _Context(self.alimits, self.deadline))


def _analyse(report: ArchiveReport, sizes: dict[str, int], limits: ArchiveLimits, alimits: AnalysisLimits,
             ctx: _Context) -> dict[str, Any]:
    result: dict[str, Any] = {"analyzer": ANALYZER_VERSION, "root": None, "submodules": [], "examples": [],
                              "changelog": None, "problems": ctx.problems}

    names = list(sizes)
    by_dir: dict[str, list[str]] = {}
    for name in names:
        if _wanted(name) == "tf":
            by_dir.setdefault(posixpath.dirname(name), []).append(posixpath.basename(name))
    readmes: dict[str, bytes] = {}
    for name, (data, _) in report.collected.items():
        if _wanted(name) == "readme":
            readmes.setdefault(posixpath.dirname(name), data)
    docs: dict[str, dict[str, Any]] = {}
    for folder in _documented_dirs(names):
        doc = _Doc(folder)
        for base in _select_files(by_dir.get(folder, [])):
            path = posixpath.join(folder, base)
            doc.files.append(base)
            if _OVERRIDE_RE.search(base):
                ctx.problem(path, "override files are not merged into the documentation; this one was skipped")
                continue
            if sizes[path] and path not in report.collected:
                too_big = sizes[path] > alimits.max_file_bytes
                ctx.problem(path, f"not analysed: the file is {sizes[path]} bytes, more than {alimits.max_file_bytes}"
                            if too_big else f"not analysed: the module's Terraform files exceed"
                            f" {alimits.max_total_bytes} bytes in all")
                continue
            loaded = _load(ctx, path, report.collected.get(path, (b"", 0))[0])  # an empty file is not kept
            if loaded is not None:
                doc.add(ctx, path, *loaded)
        docs[folder] = doc.result()
        if folder in readmes:
            docs[folder]["readme"] = _capped_text(readmes[folder], limits)
    changelog = next((v for n, v in report.collected.items() if _wanted(n) == "changelog"), None)
    if changelog is not None:
        result["changelog"] = _capped_text(changelog[0], limits)
    result["root"] = docs.pop("")
    result["submodules"] = [doc for path, doc in docs.items() if path.startswith("modules/")]
    result["examples"] = [doc for path, doc in docs.items() if path.startswith("examples/")]
    return result


def failed_analysis(message: str) -> dict[str, Any]:
    """The result of an analysis that could not be done: an empty root and ``message`` as the only problem."""
    return {"analyzer": ANALYZER_VERSION, "root": _Doc("").result(), "submodules": [], "examples": [],
            "changelog": None, "problems": [{"path": "", "line": None, "column": None, "message": message}]}

