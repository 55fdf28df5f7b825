"""Hook implementations: the ``storage.local.path`` setting and the ``local`` backend."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfregistry import StartupError, hookimpl
from tfregistry_storage_local.backend import LocalStorage

#: The tfregistry plugin API versions this plugin works with (a PEP 440 range); the core refuses to
#: start with a plugin whose range excludes its ``tfregistry.PLUGIN_API`` (docs/hooks.md).
TFR_PLUGIN_API = ">=1.0,<2"

PATH_SETTING = "storage.local.path"


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``storage.local.path``."""
    settings.add(
        PATH_SETTING,
        type=Path,
        default=None,
        help="directory for stored objects; default <data_dir>/storage",
    )


def make_local_storage(settings: Mapping[str, Any]) -> LocalStorage:
    """Build the backend: ``storage.local.path``, or ``<data_dir>/storage``, created if missing."""
    configured = settings[PATH_SETTING]
    root = Path(configured).expanduser() if configured else Path(settings["data_dir"]) / "storage"
    try:
        return LocalStorage(root)
    except OSError as exc:
        raise StartupError(
            f"{PATH_SETTING}: cannot create the storage directory {root}: {exc.strerror or exc}"
        ) from None


@hookimpl
def tfr_register_storage_backends(register: Any) -> None:
    """Offer the ``local`` backend."""
    register.add(
        "local",
        make_local_storage,
        description="files in a local directory (storage.local.path, default <data_dir>/storage)",
    )
