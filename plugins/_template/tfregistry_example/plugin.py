"""Hook implementations, found through the ``tfregistry`` entry point in pyproject.toml.

Each function is named after a hook in :mod:`tfregistry.hookspecs` and marked with
``@hookimpl``; it may take any subset of that hook's arguments, by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfregistry import hookimpl
from tfregistry_example.backend import MemoryStorage
from tfregistry_example.notifier import FileNotifier
from tfregistry_example.scm import DirectoryScm

#: The versions of tfregistry's plugin API (``tfregistry.PLUGIN_API``, "MAJOR.MINOR") this plugin works
#: with, as a PEP 440 range.  Start at the version you wrote it against and stop before the next major
#: one: ">=1.0,<2".  Raise the lower bound when you use something added later (a hook argument "since
#: plugin API 1.x").  The core refuses to start with a plugin whose range excludes its version.
TFR_PLUGIN_API = ">=1.2,<2"  # 1.2: tfr_register_scm_providers, tfr_register_notifiers, tfr_event

#: Settings of a non-storage plugin live under ``plugins.<distribution name>.``.
GREETING_SETTING = "plugins.tfregistry-example.greeting"


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare this plugin's settings (``tfr config show`` lists them)."""
    settings.add(GREETING_SETTING, type=str, default="hello", help="what the example plugin says")


def make_memory_storage(settings: Mapping[str, Any]) -> MemoryStorage:
    """Backend factory: the core calls it with the validated settings when the backend is selected."""
    return MemoryStorage()


@hookimpl
def tfr_register_storage_backends(register: Any) -> None:
    """Offer the ``example-memory`` backend (select it with ``storage.backend = "example-memory"``)."""
    register.add(
        "example-memory", make_memory_storage, description="in-memory example backend (not persistent)"
    )


@hookimpl
def tfr_register_scm_providers(register: Any) -> None:
    """Offer the ``example-dir`` source-control provider (bare git repositories in a directory)."""
    register.add("example-dir", lambda settings: DirectoryScm(), description="bare git repositories in a directory")


@hookimpl
def tfr_register_notifiers(register: Any) -> None:
    """Offer the ``example-file`` notifier (subscriptions name it with a target ``{"path": ...}``)."""
    register.add("example-file", lambda settings: FileNotifier(), description="appends events to a file")


#: Events this process has seen (the example listener's memory; a real one would queue a job).
SEEN: list[str] = []


@hookimpl
def tfr_event(event: Any) -> None:
    """Listen to every event: called after the change is committed; keep it quick, never raise."""
    SEEN.append(event.type)
