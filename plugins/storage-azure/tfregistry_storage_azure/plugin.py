"""Hook implementations: the ``storage.azure.*`` settings and the ``azure`` backend.

azure-storage-blob is imported only when the backend is selected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfregistry import StartupError, hookimpl

SETTINGS: tuple[tuple[str, Any, Any, bool, str], ...] = (
    ("container", str, None, False, "Container name (required)."),
    ("prefix", str, "", False, "Blob name prefix inside the container, e.g. registry/ (optional)."),
    ("connection_string", str, None, True, "Storage account connection string (one way to authenticate)."),
    ("account_url", str, None, False, "Account endpoint, e.g. https://acme.blob.core.windows.net (with key, SAS "
     "or DefaultAzureCredential)."),
    ("account_key", str, None, True, "Account key, with account_url."),
    ("sas_token", str, None, True, "SAS token, with account_url (downloads then go through the registry)."),
    ("use_default_credential", bool, False, False,
     "Authenticate with DefaultAzureCredential (managed/workload identity); needs tfregistry-storage-azure[identity]."),
    ("access_tier", str, None, False,
     "Access tier for new blobs: Hot, Cool, Cold or Archive (default: the account's)."),
    ("block_size", int, 8 * 1024 * 1024, False, "Block size in bytes for streamed uploads."),
    ("connect_timeout", int, 5, False, "Seconds to wait for a connection."),
    ("read_timeout", int, 60, False, "Seconds to wait for data."),
    ("max_attempts", int, 3, False, "Attempts per request, retries included."),
)
TIERS = ("Hot", "Cool", "Cold", "Archive")


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``storage.azure.*``."""
    for name, type_, default, secret, help_ in SETTINGS:
        settings.add(f"storage.azure.{name}", type_, default=default, secret=secret, help=help_)


def make_azure_storage(settings: Mapping[str, Any]) -> Any:
    """Build the backend from ``storage.azure.*``."""
    values = {name: settings[f"storage.azure.{name}"] for name, *_ in SETTINGS}
    if not values["container"]:
        raise StartupError(
            'storage.azure.container (TFR_STORAGE__AZURE__CONTAINER) is required when storage.backend = "azure"')
    ways = [bool(values["connection_string"]), bool(values["account_key"]), bool(values["sas_token"]),
            bool(values["use_default_credential"])]
    if sum(ways) != 1:
        raise StartupError("storage.azure: set exactly one of connection_string, account_key, sas_token or "
                           "use_default_credential")
    if not values["connection_string"] and not values["account_url"]:
        raise StartupError("storage.azure.account_url is required with account_key, sas_token or "
                           "use_default_credential")
    if values["access_tier"] and values["access_tier"] not in TIERS:
        raise StartupError(f"storage.azure.access_tier must be one of {', '.join(TIERS)}")
    if values["use_default_credential"]:
        try:
            import azure.identity  # noqa: F401
        except ImportError:
            raise StartupError("storage.azure.use_default_credential needs the azure-identity package: "
                               "pip install 'tfregistry-storage-azure[identity]'") from None
    from tfregistry_storage_azure.backend import AzureOptions, AzureStorage

    return AzureStorage(AzureOptions(**values))


@hookimpl
def tfr_register_storage_backends(register: Any) -> None:
    """Offer the ``azure`` backend."""
    register.add("azure", make_azure_storage, description="Azure Blob Storage (storage.azure.*)")
