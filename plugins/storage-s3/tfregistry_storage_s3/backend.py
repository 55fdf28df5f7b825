"""A storage backend on AWS S3 or an S3-compatible service, through boto3."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from tfregistry.interfaces import (
    HashingReader,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StoredObject,
    validate_key,
)

__all__ = ["S3Options", "S3Storage", "role_credentials"]

#: Where multipart uploads land before the finished object is copied into place with its metadata.
UPLOAD_PREFIX = "_tfr_uploads/"
NOT_FOUND = ("404", "NoSuchKey", "NotFound")


@dataclass(frozen=True)
class S3Options:
    """The ``storage.s3.*`` settings."""

    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    path_style: bool = False
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str = "tfregistry"
    web_identity_token_file: str | None = None
    sts_endpoint_url: str | None = None
    sse: str = ""
    kms_key_id: str | None = None
    part_size: int = 16 * 1024 * 1024
    connect_timeout: int = 5
    read_timeout: int = 60
    max_attempts: int = 3


def _role_fetcher(sts: Any, options: S3Options) -> Callable[[], dict[str, Any]]:
    """A function returning fresh temporary credentials for ``options.role_arn`` (botocore's metadata form)."""

    def fetch() -> dict[str, Any]:
        if options.web_identity_token_file:
            # Re-read at every refresh: EKS and GitHub Actions replace the token before it expires.
            try:
                token = Path(options.web_identity_token_file).read_text().strip()
            except OSError as exc:
                raise StorageError(f"s3: cannot read the web identity token file {options.web_identity_token_file!r} "
                                   f"(setting storage.s3.web_identity_token_file): {exc.strerror or exc}") from exc
            creds = sts.assume_role_with_web_identity(
                RoleArn=options.role_arn, RoleSessionName=options.role_session_name, WebIdentityToken=token
            )["Credentials"]
        else:
            kwargs: dict[str, Any] = {"RoleArn": options.role_arn, "RoleSessionName": options.role_session_name}
            if options.external_id:
                kwargs["ExternalId"] = options.external_id
            creds = sts.assume_role(**kwargs)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    return fetch


def role_credentials(sts: Any, options: S3Options) -> RefreshableCredentials:
    """Credentials of ``options.role_arn`` through ``sts``: fetched now, fetched again before they expire.

    AssumeRole (with ``external_id``) signs with the base credentials of ``sts``;
    AssumeRoleWithWebIdentity is an unsigned call carrying the token read from
    ``web_identity_token_file``.  Fetching at once makes a role that cannot be assumed
    stop start-up with a message naming the setting.
    """
    fetch = _role_fetcher(sts, options)
    try:
        metadata = fetch()
    except (ClientError, BotoCoreError) as exc:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            reason = f"{error.get('Code', '')}: {error.get('Message', exc)}"
        else:
            reason = str(exc)
        raise StorageError(f"s3: cannot assume role {options.role_arn!r} (setting storage.s3.role_arn): "
                           f"{reason}") from exc
    method = "assume-role-with-web-identity" if options.web_identity_token_file else "assume-role"
    return RefreshableCredentials.create_from_metadata(metadata=metadata, refresh_using=fetch, method=method)


def _session(options: S3Options, config: Config) -> boto3.Session:
    """Static keys, the default chain, or an assumed role (refreshed before it expires)."""
    base = boto3.Session(
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        aws_session_token=options.session_token,
        region_name=options.region,
    )
    if not options.role_arn:
        return base
    sts = base.client("sts", endpoint_url=options.sts_endpoint_url or options.endpoint_url, config=config)
    botocore_session = botocore.session.get_session()
    # botocore has no public setter for refreshable credentials; its own providers install them the same way.
    botocore_session._credentials = role_credentials(sts, options)
    return boto3.Session(botocore_session=botocore_session, region_name=options.region)


def _addressing_style(options: S3Options) -> str:
    """``path`` when asked; on AWS ``virtual``; elsewhere boto3's ``auto`` (path style at a custom endpoint).

    Not ``auto`` on AWS: there presigned URLs would name the global endpoint (bucket.s3.amazonaws.com),
    which redirects requests for a bucket outside us-east-1 for a while after it is created, and a
    redirect breaks the signature.  ``virtual`` names the regional host, and botocore still falls back
    to path style for bucket names that cannot be a host name (dots, under TLS).
    """
    if options.path_style:
        return "path"
    return "auto" if options.endpoint_url else "virtual"


def _read_part(reader: HashingReader, size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the stream (a socket or a pipe may return less per read)."""
    data = reader.read(size)
    if not data or len(data) == size:
        return data
    buffer = bytearray(data)
    while len(buffer) < size and (more := reader.read(size - len(buffer))):
        buffer += more
    return bytes(buffer)


class S3Storage(StorageBackend):
    """Objects in one bucket (under an optional key prefix).

    Small objects (up to one part) are written with a single PUT that carries the
    SHA-256 in the object metadata.  Larger ones stream as a multipart upload to a
    temporary key, then a server-side copy puts them in place with their metadata, so
    a reader sees the old object or the whole new one; a failed upload is aborted.
    """

    name = "s3"
    supports_presigned_urls = True

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self.bucket = options.bucket
        self.prefix = options.prefix.lstrip("/")
        self.config = Config(
            signature_version="s3v4",
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            # botocore's "max_attempts" counts retries only; the setting counts the first attempt too.
            retries={"total_max_attempts": options.max_attempts, "mode": "standard"},
            s3={"addressing_style": _addressing_style(options)},
        )
        try:
            session = _session(options, self.config)
            self.client = session.client("s3", endpoint_url=options.endpoint_url, config=self.config)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(f"s3: cannot set up credentials: {exc}") from exc

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # --- helpers -------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str = "") -> Iterator[None]:
        """Vendor errors become StorageError (ObjectNotFound for a missing key) naming bucket and key."""
        where = f"{key!r} in bucket {self.bucket!r}" if key else f"bucket {self.bucket!r}"
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in NOT_FOUND:
                raise ObjectNotFound(f"s3: {key!r} not found in bucket {self.bucket!r}") from exc
            raise StorageError(f"s3: cannot {action} {where}: {code or exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"s3: cannot {action} {where}: {exc}") from exc

    def _extra_args(self, sha256: str | None, content_type: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if sha256:
            extra["Metadata"] = {"sha256": sha256}
        if content_type:
            extra["ContentType"] = content_type
        if self.options.sse:
            extra["ServerSideEncryption"] = self.options.sse
            if self.options.sse == "aws:kms" and self.options.kms_key_id:
                extra["SSEKMSKeyId"] = self.options.kms_key_id
        return extra

    # --- StorageBackend ------------------------------------------------------------------

    def put(self, key: str, fileobj: BinaryIO, *, content_type: str | None = None) -> StoredObject:
        target = self._key(key)
        reader = HashingReader(fileobj)
        first = _read_part(reader, self.options.part_size)
        second = _read_part(reader, self.options.part_size) if len(first) == self.options.part_size else b""
        if not second:
            with self._errors("store", key):
                self.client.put_object(Bucket=self.bucket, Key=target, Body=first,
                                       **self._extra_args(reader.sha256, content_type))
            return StoredObject(key, reader.size, reader.sha256)
        pending = [first, second]
        del first, second  # the list alone holds them, so each part is freed once uploaded
        return self._put_multipart(key, target, reader, pending, content_type)

    def _put_multipart(self, key: str, target: str, reader: HashingReader, pending: list[bytes],
                       content_type: str | None) -> StoredObject:
        temp = f"{self.prefix}{UPLOAD_PREFIX}{uuid.uuid4().hex}"
        with self._errors("start an upload of", key):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=temp,
                                                            **self._extra_args(None, content_type))["UploadId"]
        parts = []
        try:
            number = 0
            while pending:
                chunk = pending.pop(0)
                number += 1
                with self._errors("upload a part of", key):
                    etag = self.client.upload_part(Bucket=self.bucket, Key=temp, UploadId=upload_id,
                                                   PartNumber=number, Body=chunk)["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
                del chunk  # free it before reading the next: at most two parts are held at any time
                next_chunk = _read_part(reader, self.options.part_size)
                if next_chunk:
                    pending.append(next_chunk)
                del next_chunk
            with self._errors("finish the upload of", key):
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=temp, UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=temp, UploadId=upload_id)
            raise
        try:
            extra = {**self._extra_args(reader.sha256, content_type), "MetadataDirective": "REPLACE"}
            with self._errors("store", key):
                self.client.copy({"Bucket": self.bucket, "Key": temp}, self.bucket, target, ExtraArgs=extra,
                                 Config=_transfer_config(self.options.part_size))
        finally:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=temp)
        return StoredObject(key, reader.size, reader.sha256)

    def open(self, key: str) -> BinaryIO:
        with self._errors("read", key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int | None:
        with self._errors("look up", key):
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("list", prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix):]
                    if key.startswith(UPLOAD_PREFIX):
                        continue
                    modified = obj["LastModified"]
                    if modified.tzinfo is None:
                        modified = modified.replace(tzinfo=UTC)
                    yield ObjectInfo(key, int(obj["Size"]), modified.astimezone(UTC))

    def presigned_url(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        with self._errors("sign a download URL for", key):
            return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def check(self) -> list[str]:
        """Check the bucket first (missing, forbidden, unreachable), then the generic write/read probe."""
        try:
            response = self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                return [f"s3: bucket {self.bucket!r} does not exist (setting storage.s3.bucket)"]
            if code in ("403", "AccessDenied"):
                return [f"s3: access to bucket {self.bucket!r} is denied: the credentials need s3:ListBucket, "
                        "s3:GetObject, s3:PutObject and s3:DeleteObject on it"]
            return [f"s3: cannot reach bucket {self.bucket!r}: {code or exc}"]
        except (BotoCoreError, OSError) as exc:
            return [f"s3: cannot reach the S3 endpoint for bucket {self.bucket!r}: {exc}"]
        region = response.get("BucketRegion") or response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-bucket-region")
        if region and self._on_aws() and region != self.client.meta.region_name:
            # Requests follow S3's redirect to the right region, but a presigned URL is signed for one region
            # and S3 refuses it elsewhere: Terraform's downloads would fail while everything else works.
            return [f"s3: bucket {self.bucket!r} is in region {region!r}, not {self.client.meta.region_name!r}: "
                    f"set storage.s3.region = {region!r} (presigned download URLs are signed for one region)"]
        return [f"s3: {problem}" if not problem.startswith("s3:") else problem for problem in super().check()]

    def _on_aws(self) -> bool:
        """Whether the endpoint is AWS itself (S3-compatible services report regions of their own making)."""
        endpoint = self.options.endpoint_url
        return not endpoint or (urlsplit(endpoint).hostname or "").endswith(".amazonaws.com")

    def close(self) -> None:
        self.client.close()


def _transfer_config(part_size: int) -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=5 * 1024**3, multipart_chunksize=part_size)

