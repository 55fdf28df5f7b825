"""Hook implementations: the ``storage.s3.*`` settings and the ``s3`` backend.

boto3 is imported only when the backend is selected, so other ``tfr`` commands stay fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfregistry import StartupError, hookimpl

#: The tfregistry plugin API versions this plugin works with (a PEP 440 range); the core refuses to
#: start with a plugin whose range excludes its ``tfregistry.PLUGIN_API`` (docs/hooks.md).
TFR_PLUGIN_API = ">=1.0,<2"

SETTINGS: tuple[tuple[str, Any, Any, bool, str], ...] = (
    ("bucket", str, None, False, "Bucket name (required)."),
    ("prefix", str, "", False, "Key prefix inside the bucket, e.g. registry/ (optional)."),
    ("region", str, None, False, "Region, e.g. eu-west-1 (default: from the environment/profile)."),
    ("endpoint_url", str, None, False, "Custom endpoint for S3-compatible services, e.g. https://minio.example:9000."),
    ("path_style", bool, False, False, "Path-style addressing (most S3-compatible services need it)."),
    ("access_key_id", str, None, False, "Static access key id (default: the AWS credential chain)."),
    ("secret_access_key", str, None, True, "Static secret access key."),
    ("session_token", str, None, True, "Session token for temporary static credentials."),
    ("role_arn", str, None, False, "Assume this role (with the base credentials, or with a web identity token)."),
    ("external_id", str, None, False, "External id for assume-role."),
    ("role_session_name", str, "tfregistry", False, "Session name for assume-role."),
    ("web_identity_token_file", str, None, False,
     "OIDC token file (EKS IRSA, GitHub Actions) for AssumeRoleWithWebIdentity with role_arn."),
    ("sts_endpoint_url", str, None, False,
     "STS endpoint for role_arn (default: endpoint_url if set, as MinIO and Ceph serve STS there; else AWS STS)."),
    ("sse", str, "", False, "Server-side encryption: '' (bucket default), AES256 (SSE-S3) or aws:kms (SSE-KMS)."),
    ("kms_key_id", str, None, False, "KMS key id or ARN for sse = aws:kms (default: the AWS-managed key)."),
    ("part_size", int, 16 * 1024 * 1024, False, "Multipart upload part size in bytes (5 MiB to 5 GiB)."),
    ("connect_timeout", int, 5, False, "Seconds to wait for a connection."),
    ("read_timeout", int, 60, False, "Seconds to wait for data on a connection."),
    ("max_attempts", int, 3, False, "Attempts per request, retries included."),
)


@hookimpl
def tfr_add_settings(settings: Any) -> None:
    """Declare ``storage.s3.*``."""
    for name, type_, default, secret, help_ in SETTINGS:
        settings.add(f"storage.s3.{name}", type_, default=default, secret=secret, help=help_)


def make_s3_storage(settings: Mapping[str, Any]) -> Any:
    """Build the backend from ``storage.s3.*``."""
    values = {name: settings[f"storage.s3.{name}"] for name, *_ in SETTINGS}
    if not values["bucket"]:
        raise StartupError('storage.s3.bucket (TFR_STORAGE__S3__BUCKET) is required when storage.backend = "s3"')
    if values["sse"] not in ("", "AES256", "aws:kms"):
        raise StartupError(f"storage.s3.sse must be '', AES256 or aws:kms, not {values['sse']!r}")
    if not 5 * 1024**2 <= values["part_size"] <= 5 * 1024**3:
        raise StartupError("storage.s3.part_size must be between 5 MiB (5242880) and 5 GiB (5368709120), "
                           "the part sizes S3 accepts")
    if bool(values["access_key_id"]) != bool(values["secret_access_key"]):
        raise StartupError("storage.s3.access_key_id and storage.s3.secret_access_key go together")
    if values["web_identity_token_file"] and not values["role_arn"]:
        raise StartupError("storage.s3.web_identity_token_file needs storage.s3.role_arn")
    from tfregistry_storage_s3.backend import S3Options, S3Storage

    return S3Storage(S3Options(**values))


@hookimpl
def tfr_register_storage_backends(register: Any) -> None:
    """Offer the ``s3`` backend."""
    register.add("s3", make_s3_storage, description="AWS S3 or an S3-compatible service (storage.s3.*)")
