"""The plugin manager: built-in defaults, then entry points of group ``tfregistry``.

Load order (fixed, see ``docs/hooks.md``):

1. hook specifications from :mod:`tfregistry.hookspecs`;
2. built-in plugins (:data:`DEFAULT_PLUGINS`; fallbacks are ``trylast``);
3. entry points of group ``tfregistry``: all of them, or only those named in
   ``plugins.load`` (``TFR_PLUGINS``), minus ``plugins.disable`` (``TFR_DISABLE_PLUGINS``);
4. plugin objects passed to :func:`tfregistry.app.create_app` (tests, one-off site plugins);
5. ``check_pending()``: an implementation of an unknown hook stops start-up;
6. with ``plugins.trace`` (``TFR_TRACE_PLUGINS=1``), every hook call is logged.

Each plugin of steps 3 and 4 is checked against :data:`tfregistry.PLUGIN_API` as it is
loaded (:func:`check_plugin_api`): one whose ``TFR_PLUGIN_API`` range excludes it stops
start-up; an entry-point plugin that declares no range is loaded with a warning.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from tfregistry import PLUGIN_API, StartupError, __version__, hookspecs

log = logging.getLogger("tfregistry.plugins")

ENTRY_POINT_GROUP = "tfregistry"

#: The attribute of a plugin (its module, for an entry point) stating the plugin API versions it works
#: with, as a PEP 440 version specifier: ``TFR_PLUGIN_API = ">=1.0,<2"``.
API_ATTRIBUTE = "TFR_PLUGIN_API"

#: Core features implemented as plugins of the same hooks.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "tfregistry.default_plugins.core",
    "tfregistry.default_plugins.auth",
    "tfregistry.default_plugins.http",
)


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as ``tfr plugins`` and ``GET /api/v1/plugins`` show it."""

    name: str
    version: str
    module: str
    builtin: bool
    hooks: tuple[str, ...]


@dataclass
class Backend:
    """A backend offered by a plugin through a ``tfr_register_*_backends`` hook."""

    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str | None


@dataclass
class BackendRegister:
    """The collector passed to ``tfr_register_storage_backends`` (and later families)."""

    kind: str
    backends: dict[str, Backend] = field(default_factory=dict)
    current_plugin: str | None = None

    def add(self, name: str, factory: Callable[..., Any], description: str = "") -> None:
        """Offer backend ``name``; ``factory(settings)`` builds it when it is selected."""
        if name in self.backends:
            other = self.backends[name].plugin
            raise StartupError(f"{self.kind} backend {name!r} is offered twice (by {other} and {self.current_plugin})")
        self.backends[name] = Backend(name, factory, description, self.current_plugin)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what ``tfr plugins`` reports."""

    def __init__(self) -> None:
        super().__init__("tfregistry")
        self.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self.trace = False

    def register_plugin(self, plugin: Any, name: str, version: str, builtin: bool) -> None:
        self.register(plugin, name=name)
        self._infos[name] = PluginInfo(name, version, getattr(plugin, "__name__", type(plugin).__name__),
                                       builtin, ())

    def plugin_infos(self) -> list[PluginInfo]:
        """Loaded plugins with their versions and the hooks each implements."""
        result = []
        for name, info in self._infos.items():
            plugin = self.get_plugin(name)
            if plugin is None:
                continue
            hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or ()))
            result.append(PluginInfo(info.name, info.version, info.module, info.builtin, hooks))
        return result

    def collect(self, hook: str, collector: Any) -> Any:
        """Call a one-argument registration hook plugin by plugin.

        ``collector.current_plugin`` names the plugin being called, so a duplicate
        registration can say who made it.
        """
        for impl in reversed(getattr(self.hook, hook).get_hookimpls()):
            collector.current_plugin = impl.plugin_name
            if self.trace:
                log.info("hook %s -> %s", hook, impl.plugin_name)
            impl.function(**{arg: collector for arg in impl.argnames})
        collector.current_plugin = None
        return collector


def check_plugin_api(plugin: Any, name: str, version: str, *, distribution: str | None = None,
                     entry_point: bool = True) -> str | None:
    """Check a plugin's ``TFR_PLUGIN_API`` against :data:`tfregistry.PLUGIN_API`; return the range it states.

    :param plugin: the plugin object (the module an entry point names, or any object).
    :param name: the plugin's name: for an entry point its name (by convention the distribution name).
    :param version: the plugin's version, for messages.
    :param distribution: the distribution providing the entry point, named too when it differs from ``name``.
    :param entry_point: the plugin came from an entry point: stating no range logs a warning (the plugin is
        loaded anyway), and a mismatch suggests ``TFR_DISABLE_PLUGINS``.  Objects handed over in code are
        only checked when they state a range.
    :raises StartupError: the range excludes this core's plugin API, or is not a version range.
    """
    same = distribution is None or distribution.lower().replace("_", "-") == name.lower().replace("_", "-")
    label = name if same else f"{name} (distribution {distribution})"
    declared = getattr(plugin, API_ATTRIBUTE, None)
    if declared is None:
        if entry_point:
            log.warning("plugin %s %s does not state the plugin API it was written for (%s in %s); loading it "
                        "anyway: tfregistry %s provides plugin API %s", label, version, API_ATTRIBUTE,
                        getattr(plugin, "__name__", type(plugin).__name__), __version__, PLUGIN_API)
        return None
    try:
        if not isinstance(declared, str) or not declared.strip():
            raise InvalidSpecifier(repr(declared))
        wanted = SpecifierSet(declared)
    except InvalidSpecifier:
        raise StartupError(f"plugin {label} {version}: {API_ATTRIBUTE} = {declared!r} is not a version range "
                           f"such as '>=1.0,<2'") from None
    if not wanted.contains(PLUGIN_API, prereleases=True):
        remedy = f"install a release of {distribution or name} made for plugin API {PLUGIN_API}"
        if entry_point:
            remedy += f", or disable it (TFR_DISABLE_PLUGINS={name})"
        raise StartupError(f"plugin {label} {version} needs plugin API {declared}, but tfregistry {__version__} "
                           f"provides plugin API {PLUGIN_API}: {remedy}")
    return declared


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def get_plugin_manager(
    *,
    load_entrypoints: bool = True,
    allow: Sequence[str] | None = None,
    block: Iterable[str] = (),
    extra: Iterable[Any] = (),
    trace: bool = False,
) -> PluginManager:
    """Build the plugin manager in the documented order.

    :param load_entrypoints: load third-party plugins from entry points.
    :param allow: if given, load only the entry points with these names.
    :param block: entry point (or built-in) names never to load.
    :param extra: plugin objects (modules or instances) to register last.
    :param trace: log every hook call at INFO level.
    """
    pm = PluginManager()
    blocked = set(block)
    for modname in DEFAULT_PLUGINS:
        if modname in blocked:
            continue
        pm.register_plugin(importlib.import_module(modname), modname, __version__, builtin=True)

    if load_entrypoints:
        available = {ep.name: ep for ep in _entry_points()}
        if allow is not None:
            missing = [name for name in allow if name not in available]
            if missing:
                raise StartupError(
                    f"plugins.load names plugins that are not installed: {', '.join(missing)} "
                    f"(installed: {', '.join(available) or 'none'})"
                )
        for name, ep in available.items():
            if name in blocked or (allow is not None and name not in allow):
                log.debug("plugin %s not loaded (blocked or not allowed)", name)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise StartupError(f"plugin {name} failed to import: {exc!r}") from exc
            version = ep.dist.version if ep.dist else "unknown"
            check_plugin_api(plugin, name, version, distribution=ep.dist.name if ep.dist else None)
            pm.register_plugin(plugin, name, version, builtin=False)

    for index, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        version = getattr(plugin, "__version__", "local")
        check_plugin_api(plugin, name, version, entry_point=False)
        pm.register_plugin(plugin, name, version, builtin=False)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise StartupError(f"plugin {pm.get_name(exc.plugin)}: {exc}") from exc

    if trace:
        pm.trace = True
        log.setLevel(logging.INFO)

        def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: dict[str, Any]) -> None:
            log.info("hook %s(%s) -> %s", hook_name, ", ".join(kwargs), [i.plugin_name for i in impls])

        def after(outcome: Any, hook_name: str, impls: Any, kwargs: Any) -> None:
            exc = outcome.exception
            log.info("hook %s %s", hook_name, f"raised {exc!r}" if exc else f"returned {outcome.get_result()!r}")

        pm.add_hookcall_monitoring(before, after)
    return pm
