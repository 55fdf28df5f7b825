"""Pytest fixtures for plugin authors.

Opt in from the top-level ``conftest.py`` (or a test module)::

    pytest_plugins = ["tfregistry.testing.plugin"]
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable, Mapping
from typing import Any

import pytest

__all__ = [
    "BackendCollector",
    "SettingsCollector",
    "build_module_archive",
    "declared_settings",
    "make_module_archive",
    "plugin_manager",
    "plugin_settings",
]


def build_module_archive(
    name: str = "example",
    files: Mapping[str, str | bytes] | None = None,
) -> bytes:
    """Build a small, valid Terraform module archive (``.tar.gz``) in memory.

    It holds a ``main.tf`` and a ``README.md`` at the top level, plus ``files``
    (relative path to content), which may also replace those two.  The bytes are
    reproducible: the same arguments give the same archive.
    """
    contents: dict[str, str | bytes] = {
        "main.tf": f'variable "name" {{\n  type    = string\n  default = "{name}"\n}}\n\n'
        'output "name" {\n  value = var.name\n}\n',
        "README.md": f"# {name}\n\nA module built by tfregistry.testing for tests.\n",
    }
    contents.update(files or {})
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(contents):
            data = contents[path]
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(path)
            info.size = len(raw)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(raw))
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


@pytest.fixture
def make_module_archive() -> Callable[..., bytes]:
    """Factory fixture returning ``.tar.gz`` bytes of a small module.

    ``make_module_archive(name="vpc", files={"variables.tf": "..."})``; see :func:`build_module_archive`.
    """
    return build_module_archive


# --- testing a plugin's hooks without building an application ------------------------------------


class SettingsCollector:
    """Stands in for the collector ``tfr_add_settings`` receives: ``added[key]`` is the declaration."""

    def __init__(self) -> None:
        self.added: dict[str, dict[str, Any]] = {}

    def add(self, key: str, type: Any = str, **kwargs: Any) -> None:
        assert key not in self.added, f"{key} declared twice"
        self.added[key] = {"type": type, **kwargs}


class BackendCollector:
    """Stands in for the collector the ``tfr_register_*`` hooks receive: ``added[name] = (factory, description)``."""

    def __init__(self) -> None:
        self.added: dict[str, tuple[Any, str]] = {}

    def add(self, name: str, factory: Any, description: str = "") -> None:
        assert name not in self.added, f"{name} offered twice"
        self.added[name] = (factory, description)


def plugin_manager(*plugins: Any) -> Any:
    """A pluggy manager with tfregistry's hook specifications and only ``plugins``; an implementation of
    an unknown hook, or a ``TFR_PLUGIN_API`` range that excludes the installed core's plugin API, fails
    here (``StartupError``), as it would stop the registry's start-up."""
    import pluggy

    from tfregistry import hookspecs
    from tfregistry.plugins import check_plugin_api

    manager = pluggy.PluginManager("tfregistry")
    manager.add_hookspecs(hookspecs)
    for plugin in plugins:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        check_plugin_api(plugin, name, getattr(plugin, "__version__", "local"), entry_point=False)
        manager.register(plugin)
    manager.check_pending()
    return manager


def declared_settings(plugin: Any) -> dict[str, dict[str, Any]]:
    """What ``plugin.tfr_add_settings`` declares: key -> type, default and the other declaration fields."""
    collector = SettingsCollector()
    plugin.tfr_add_settings(settings=collector)
    return collector.added


def plugin_settings(plugin: Any, prefix: str, **values: Any) -> dict[str, Any]:
    """Every key the plugin declares at its default, then ``values`` (short names under ``prefix``) on top."""
    settings = {key: decl.get("default") for key, decl in declared_settings(plugin).items()}
    for name, value in values.items():
        assert f"{prefix}.{name}" in settings, f"no setting {prefix}.{name}"
        settings[f"{prefix}.{name}"] = value
    return settings
