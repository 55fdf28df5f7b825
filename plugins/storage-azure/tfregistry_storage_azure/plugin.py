"""Hook implementations: the ``storage.azure.*`` settings and the ``azure`` backend.

The Azure SDK is imported only when the backend is built: every ``tfr`` command
loads all installed plugins, and most never touch the storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tfregistry import hookimpl
from tfregistry_storage_azure.config import (
    AUTH_MODES,
    DEFAULT_BLOCK_SIZE,
    config_from_settings,
    parse_access_tier,
    parse_container,
    parse_prefix,
    parse_seconds,
    parse_size,
)

if TYPE_CHECKING:
    from tfregistry_storage_azure.backend import AzureBlobStorage

#: The tfregistry plugin API versions this plugin works with (a PEP 440 range); the core refuses to
#: start with a plugin whose range excludes its ``tfregistry.PLUGIN_API`` (docs/hooks.md).
TFR_PLUGIN_API = ">=1.0,<2"

P = "storage.azure."


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare the ``storage.azure.*`` settings (docs/storage-azure.md describes each)."""
    add = settings.add
    add(P + "container", parse_container, default=None, help="blob container that holds the objects (required)")
    add(
        P + "auth",
        str,
        default="auto",
        choices=AUTH_MODES,
        help="how to authenticate: auto (whichever credential is set; DefaultAzureCredential if none), "
        "connection_string, account_key, sas_token, or identity (DefaultAzureCredential; needs the [identity] extra)",
    )
    add(P + "account_name", str, default=None, help="storage account name (with account_key, sas_token or identity)")
    add(P + "account_url", str, default=None, help="blob endpoint; default https://<account_name>.blob.core.windows.net")
    add(P + "connection_string", str, default=None, secret=True, help="storage account connection string")
    add(P + "account_key", str, default=None, secret=True, help="storage account access key")
    add(
        P + "sas_token",
        str,
        default=None,
        secret=True,
        help="SAS token with racwdl on the container (cannot sign download URLs: see storage.azure.presigned_urls)",
    )
    add(
        P + "managed_identity_client_id",
        str,
        default=None,
        help="client id of a user-assigned managed identity (auth = identity)",
    )
    add(P + "prefix", parse_prefix, default=None, help="key prefix inside the container, e.g. registry/")
    add(
        P + "block_size",
        parse_size,
        default=DEFAULT_BLOCK_SIZE,
        help="upload block size, 64KiB..256MiB; an upload holds block_size * (upload_concurrency + 1) in memory",
    )
    add(P + "upload_concurrency", int, default=4, help="blocks of one upload sent in parallel (1..32)")
    add(
        P + "access_tier",
        parse_access_tier,
        default=None,
        help="access tier of stored blobs: Hot, Cool or Cold; default: the account's default tier",
    )
    add(P + "connect_timeout", parse_seconds, default=5, help="seconds to wait for a connection to the endpoint")
    add(P + "read_timeout", parse_seconds, default=60, help="seconds to wait for data on an open connection")
    add(P + "retries", int, default=3, help="retries of a failed request (0..10), with a short backoff")
    add(
        P + "presigned_urls",
        bool,
        default=True,
        help="hand Terraform SAS download URLs; false serves downloads through the registry",
    )
    add(
        P + "sas_lifetime",
        parse_seconds,
        default=None,
        help="lifetime of SAS download URLs (at most 7d); default: downloads.url_ttl",
    )


def make_azure_storage(settings: Mapping[str, Any]) -> AzureBlobStorage:
    """Build the backend from the validated settings (``StartupError`` names a bad setting)."""
    config = config_from_settings(settings)
    from tfregistry_storage_azure.backend import AzureBlobStorage

    return AzureBlobStorage.from_config(config)


@hookimpl
def tfr_register_storage_backends(register: Any) -> None:
    """Offer the ``azure`` backend."""
    register.add(
        "azure",
        make_azure_storage,
        description="Azure Blob Storage container (storage.azure.*: connection string, key, SAS or identity)",
    )
