"""Hook implementations: the ``storage.gcs.*`` settings and the ``gcs`` backend.

google-cloud-storage is imported only when the backend is selected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfregistry import StartupError, hookimpl

#: The tfregistry plugin API versions this plugin works with (a PEP 440 range); the core refuses to
#: start with a plugin whose range excludes its ``tfregistry.PLUGIN_API`` (docs/hooks.md).
TFR_PLUGIN_API = ">=1.0,<2"

#: (name, type, default, secret, help) for each ``storage.gcs.<name>`` setting.
SETTINGS: tuple[tuple[str, Any, Any, bool, str], ...] = (
    ("bucket", str, None, False, "Bucket name (required)."),
    ("prefix", str, "", False, "Object name prefix inside the bucket, e.g. registry/ (optional)."),
    ("project", str, None, False, "Project id (default: from the credentials)."),
    ("credentials_file", str, None, False,
     "Service-account key file (default: Application Default Credentials, e.g. workload identity on GKE)."),
    ("credentials_json", str, None, True,
     "Service-account key as JSON text; use {\"$file\" = ...} or {\"$env\" = ...} to keep it out of the file."),
    ("endpoint", str, None, False, "Custom API endpoint, e.g. http://127.0.0.1:9023 for an emulator."),
    ("anonymous", bool, False, False,
     "Make API calls without credentials (emulators only); a service-account key given too still signs URLs."),
    ("chunk_size", int, 16 * 1024 * 1024, False, "Resumable upload chunk size in bytes (a multiple of 256 KiB)."),
    ("connect_timeout", int, 5, False, "Seconds to wait for a connection."),
    ("read_timeout", int, 60, False, "Seconds to wait for data on a connection (also caps retrying)."),
    ("max_attempts", int, 3, False, "Attempts per request, retries included."),
)


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``storage.gcs.*``."""
    for name, type_, default, secret, help_ in SETTINGS:
        settings.add(f"storage.gcs.{name}", type_, default=default, secret=secret, help=help_)


def make_gcs_storage(settings: Mapping[str, Any]) -> Any:
    """Build the backend from ``storage.gcs.*``."""
    values = {name: settings[f"storage.gcs.{name}"] for name, *_ in SETTINGS}
    if not values["bucket"]:
        raise StartupError('storage.gcs.bucket (TFR_STORAGE__GCS__BUCKET) is required when storage.backend = "gcs"')
    if values["chunk_size"] <= 0 or values["chunk_size"] % (256 * 1024):
        raise StartupError("storage.gcs.chunk_size (TFR_STORAGE__GCS__CHUNK_SIZE) must be a positive multiple "
                           "of 256 KiB (262144)")
    for name in ("connect_timeout", "read_timeout", "max_attempts"):
        if values[name] < 1:
            raise StartupError(f"storage.gcs.{name} (TFR_STORAGE__GCS__{name.upper()}) must be at least 1")
    if values["credentials_file"] and values["credentials_json"]:
        raise StartupError("set storage.gcs.credentials_file or storage.gcs.credentials_json, not both")
    from tfregistry_storage_gcs.backend import GcsOptions, GcsStorage

    return GcsStorage(GcsOptions(**values))


@hookimpl
def tfr_register_storage_backends(register: Any) -> None:
    """Offer the ``gcs`` backend."""
    register.add("gcs", make_gcs_storage, description="Google Cloud Storage (storage.gcs.*)")
