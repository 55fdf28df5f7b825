"""Typed settings: a TOML file, ``TFR_`` environment overrides and secret references.

Precedence, lowest first: declared defaults, the TOML file (``TFR_CONFIG`` or
``--config``), ``TFR_`` environment variables (``__`` separates nesting levels:
``TFR_STORAGE__LOCAL__PATH`` is ``storage.local.path``), then overrides passed to
:func:`tfregistry.app.create_app`.  Any leaf may be ``{"$env" = "NAME"}`` or
``{"$file" = "/path"}`` so secrets stay out of the file.

Every key is declared (by the core or a plugin, through ``tfr_add_settings``) with a
type; values are converted and checked at start-up, and a bad one stops the
server with a message naming the key and where the value came from.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tfregistry import StartupError

log = logging.getLogger(__name__)

ENV_PREFIX = "TFR_"
#: Environment variables that are not settings but are read by the tooling itself.
ENV_NOT_SETTINGS = {"TFR_CONFIG", "TFR_URL", "TFR_TOKEN"}
#: Short environment names for often-used keys.
ENV_ALIASES = {
    "TFR_PLUGINS": "plugins.load",
    "TFR_DISABLE_PLUGINS": "plugins.disable",
    "TFR_TRACE_PLUGINS": "plugins.trace",
}
MASK = "********"


class ByteSize(int):
    """A size in bytes; accepts ``104857600``, ``"100MB"``, ``"1.5GiB"``."""


class Duration(int):
    """A duration in seconds; accepts ``300``, ``"300s"``, ``"5m"``, ``"12h"``, ``"30d"``."""


_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(value: Any) -> ByteSize:
    """Parse a byte size (``100MB``, ``512KiB``, ``1048576``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, ""
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a size (examples: 1048576, 100MB, 1.5GiB)")
        number, unit = float(m.group(1)), m.group(2).lower()
    result = int(number * _SIZE_UNITS[unit])
    if result < 0:
        raise ValueError(f"{value!r} is negative")
    return ByteSize(result)


def parse_duration(value: Any) -> Duration:
    """Parse a duration (``300``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w``) into seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Duration(value)
    m = re.fullmatch(r"\s*(\d+)\s*([a-z]?)\s*", str(value).lower())
    if not m:
        raise ValueError(f"{value!r} is not a duration (examples: 300, 90s, 15m, 12h, 30d)")
    return Duration(int(m.group(1)) * _DURATION_UNITS[m.group(2)])


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def parse_list(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        return [str(v) for v in json.loads(text)]
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not an integer") from None


def parse_str(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return str(value)


def parse_url(value: Any) -> str:
    """An absolute ``http(s)`` base URL, stored without a trailing slash."""
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an absolute http(s) URL such as https://registry.example.com")
    return text.rstrip("/")


def parse_secret(value: Any) -> str:
    """A secret of at least 16 characters."""
    text = parse_str(value)
    if len(text) < 16:
        raise ValueError("must be at least 16 characters long")
    return text


def parse_networks(value: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A list of IP addresses or CIDR networks."""
    try:
        return [ipaddress.ip_network(item, strict=False) for item in parse_list(value)]
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a list of IP addresses/networks: {exc}") from None


_PARSERS: dict[Any, Callable[[Any], Any]] = {
    str: parse_str,
    int: parse_int,
    bool: parse_bool,
    float: float,
    list: parse_list,
    Path: lambda v: Path(str(v)).expanduser(),
    ByteSize: parse_size,
    Duration: parse_duration,
}


@dataclass(frozen=True)
class Declaration:
    """One declared setting."""

    key: str
    type: Any
    default: Any
    secret: bool
    help: str
    choices: tuple[str, ...] | None
    plugin: str | None

    def convert(self, value: Any) -> Any:
        parser = _PARSERS.get(self.type, self.type)
        result = parser(value)
        if self.choices is not None and result not in self.choices:
            raise ValueError(f"{result!r} is not one of: {', '.join(self.choices)}")
        return result


class SettingsDeclarations:
    """The collector that ``tfr_add_settings`` receives."""

    def __init__(self) -> None:
        self._decls: dict[str, Declaration] = {}
        self.current_plugin: str | None = None

    def add(
        self,
        key: str,
        type: Any = str,
        *,
        default: Any = None,
        secret: bool = False,
        help: str = "",
        choices: tuple[str, ...] | list[str] | None = None,
    ) -> None:
        """Declare ``key`` (dotted, lower case) of ``type`` with a ``default``.

        ``type`` is ``str``, ``int``, ``float``, ``bool``, ``list`` (of strings),
        ``pathlib.Path``, :class:`ByteSize`, :class:`Duration`, or any callable that
        converts a raw value and raises ``ValueError`` on bad input.
        """
        if not re.fullmatch(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*", key):
            raise StartupError(f"setting name {key!r} is not a dotted lower-case name")
        if key in self._decls:
            first = self._decls[key].plugin
            raise StartupError(f"setting {key!r} is declared twice (by {first} and {self.current_plugin})")
        self._decls[key] = Declaration(
            key, type, default, secret, help, tuple(choices) if choices else None, self.current_plugin
        )

    def __iter__(self) -> Iterator[Declaration]:
        return iter(sorted(self._decls.values(), key=lambda d: d.key))

    def __contains__(self, key: object) -> bool:
        return key in self._decls

    def __getitem__(self, key: str) -> Declaration:
        return self._decls[key]


@dataclass
class RawValue:
    value: Any
    source: str  # "file /path", "env TFR_X", "override"


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and not _is_reference(value):
            yield from _flatten(value, key + ".")
        else:
            yield key, value


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("$env", "$file")


def _resolve_reference(value: Any) -> Any:
    if not _is_reference(value):
        return value
    kind, target = next(iter(value.items()))
    if kind == "$env":
        if target not in os.environ:
            raise ValueError(f"environment variable {target} (named by $env) is not set")
        return os.environ[target]
    try:
        return Path(target).read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the file named by $file: {exc}") from None


def _normalise(key: str) -> str:
    return key.lower().replace("-", "_")


def load_raw(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, RawValue]:
    """Read the TOML file, the environment and overrides into dotted keys (not yet typed)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, RawValue] = {}
    path = config_path or environ.get("TFR_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except OSError as exc:
            raise StartupError(f"cannot read configuration file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise StartupError(f"configuration file {path} is not valid TOML: {exc}") from None
        for key, value in _flatten(table):
            raw[key] = RawValue(value, f"file {path}")
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        key = ENV_ALIASES.get(name) or name[len(ENV_PREFIX):].lower().replace("__", ".")
        if isinstance(value, str) and value.lstrip().startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                parsed = json.loads(value)
                if _is_reference(parsed):  # only {"$env": ...}/{"$file": ...}; other JSON stays text
                    value = parsed
        raw[key] = RawValue(value, f"environment {name}")
    for key, value in _flatten(overrides or {}):
        raw[key] = RawValue(value, "override")
    return raw


class Settings(Mapping[str, Any]):
    """Validated, read-only settings: ``settings["storage.backend"]``."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], declarations: SettingsDeclarations):
        self._values = values
        self._sources = sources
        self.declarations = declarations

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def source(self, key: str) -> str:
        """Where the value of ``key`` came from (``default``, ``file ...``, ``environment ...``)."""
        return self._sources.get(key, "default")

    @property
    def data_dir(self) -> Path:
        return self._values["data_dir"]

    def effective(self) -> list[tuple[Declaration, str, str]]:
        """Every declared setting with its value as ``tfr config show`` prints it (secrets masked) and
        where the value came from, sorted by key: what ``tfr config show`` and the web UI's System page show."""
        return [(decl, self.display_value(decl.key), self.source(decl.key)) for decl in self.declarations]

    def display_value(self, key: str) -> str:
        """The value of ``key`` as ``tfr config show`` prints it, secrets masked."""
        value = self._values[key]
        decl = self.declarations[key]
        if value is None:
            return "(unset)"
        if decl.secret:
            return MASK
        if isinstance(value, str):
            return mask_url_password(value)
        if isinstance(value, list):
            return ", ".join(str(v) for v in value) or "(empty)"
        return str(value)


def mask_url_password(value: str) -> str:
    """Hide the password in ``scheme://user:password@host/...``."""
    parts = urlsplit(value)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return value


def build_settings(declarations: SettingsDeclarations, raw: Mapping[str, RawValue]) -> Settings:
    """Convert and check every value; raise :class:`StartupError` naming the first bad key."""
    by_normal = {_normalise(d.key): d for d in declarations}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    errors: list[str] = []
    for key, item in raw.items():
        decl = by_normal.get(_normalise(key))
        if decl is None:
            if item.source.startswith("environment"):
                log.warning("ignoring %s: no setting %r is declared", item.source.split()[1], key)
                continue
            errors.append(f"unknown setting {key!r} ({item.source}); is the plugin that provides it installed?")
            continue
        try:
            resolved = _resolve_reference(item.value)
        except ValueError as exc:
            errors.append(f"invalid value for setting {decl.key!r} ({item.source}): {exc}")
            continue
        try:
            values[decl.key] = decl.convert(resolved)
        except (ValueError, TypeError) as exc:
            reason = str(exc)
            if decl.secret and (str(resolved) in reason or repr(resolved) in reason):
                reason = "the (secret) value is not valid"
            errors.append(f"invalid value for setting {decl.key!r} ({item.source}): {reason}")
            continue
        sources[decl.key] = item.source
    if errors:
        raise StartupError("configuration error:\n  " + "\n  ".join(errors))
    for decl in declarations:
        if decl.key not in values:
            values[decl.key] = decl.convert(decl.default) if decl.default is not None else None
    return Settings(values, sources, declarations)
