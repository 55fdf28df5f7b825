"""How settings map onto boto3, checked without a server: what the S3 emulator cannot show.

Region, endpoint and addressing style are read from the client and from presigned URLs
(signing is local).  The STS calls behind assume-role and web identity are checked with
botocore's Stubber: the exact parameters sent, and that the token file is read again when
the temporary credentials are refreshed.  The same flows run against moto's STS in test_s3.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.stub import Stubber
from tfregistry_storage_s3.backend import S3Options, S3Storage, role_credentials

from tfregistry.interfaces import StorageError

ROLE = "arn:aws:iam::123456789012:role/registry"
KEYS = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "secret"}


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch, tmp_path):
    """No credentials, region or profile from the machine running the tests."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def storage(**options) -> S3Storage:
    return S3Storage(S3Options(**{"bucket": "acme-registry", **options}))


def presign(s: S3Storage, key: str = "modules/acme/x/1.0.0/m.tar.gz", ttl: int = 900) -> tuple[str, dict]:
    url = s.presigned_url(key, expires_in=ttl)
    return url, {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_aws_region_and_virtual_host_addressing():
    """The regional host, not the global bucket.s3.amazonaws.com that redirects (and so breaks the signature)."""
    s = storage(region="eu-west-1", **KEYS)
    assert s.client.meta.region_name == "eu-west-1"
    url, query = presign(s)
    assert url.startswith("https://acme-registry.s3.eu-west-1.amazonaws.com/modules/acme/x/1.0.0/m.tar.gz?")
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Credential"].startswith("AKIAEXAMPLE/")
    assert query["X-Amz-Credential"].endswith("/eu-west-1/s3/aws4_request")
    assert query["X-Amz-Expires"] == "900"
    assert "X-Amz-Security-Token" not in query


def test_a_bucket_name_with_dots_falls_back_to_path_style():
    url, _ = presign(storage(bucket="acme.registry", region="eu-west-1", **KEYS))
    assert url.startswith("https://s3.eu-west-1.amazonaws.com/acme.registry/modules/")


def test_presigned_url_lifetime_is_the_one_asked_for():
    _, query = presign(storage(region="eu-west-1", **KEYS), ttl=37)
    assert query["X-Amz-Expires"] == "37"


def test_path_style_on_aws():
    url, _ = presign(storage(region="eu-west-1", path_style=True, **KEYS))
    assert url.startswith("https://s3.eu-west-1.amazonaws.com/acme-registry/modules/")


def test_custom_endpoint_path_style_and_prefix():
    s = storage(region="us-east-1", endpoint_url="https://minio.example:9000", path_style=True, prefix="registry/",
                **KEYS)
    assert s.client.meta.endpoint_url == "https://minio.example:9000"
    assert s.client.meta.config.s3["addressing_style"] == "path"
    url, _ = presign(s)
    assert url.startswith("https://minio.example:9000/acme-registry/registry/modules/acme/x/1.0.0/m.tar.gz?")


def test_custom_endpoint_without_path_style_keeps_boto3s_choice():
    url, _ = presign(storage(region="us-east-1", endpoint_url="https://minio.example:9000", **KEYS))
    assert url.startswith("https://minio.example:9000/acme-registry/modules/")


def test_timeouts_and_retries():
    config = storage(region="eu-west-1", connect_timeout=2, read_timeout=7, max_attempts=4, **KEYS).client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 7)
    assert config.retries == {"total_max_attempts": 4, "mode": "standard"}  # the first attempt counts
    assert config.signature_version == "s3v4"


def test_static_keys_with_a_session_token():
    s = storage(region="eu-west-1", session_token="FQoGZXIvYXdz", **KEYS)
    creds = s.client._request_signer._credentials
    assert creds.method == "explicit"
    assert (creds.access_key, creds.secret_key, creds.token) == ("AKIAEXAMPLE", "secret", "FQoGZXIvYXdz")
    _, query = presign(s)
    assert query["X-Amz-Security-Token"] == "FQoGZXIvYXdz"


def test_default_chain_reads_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    s = storage()
    creds = s.client._request_signer._credentials
    assert (creds.method, creds.access_key) == ("env", "AKIAFROMENV")
    assert s.client.meta.region_name == "ap-southeast-2"


def test_default_chain_reads_a_shared_profile(monkeypatch, tmp_path):
    (tmp_path / "credentials").write_text("[registry]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = p\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "registry")
    creds = storage(region="eu-west-1").client._request_signer._credentials
    assert (creds.method, creds.access_key) == ("shared-credentials-file", "AKIAPROFILE")


def test_default_chain_includes_eks_web_identity(monkeypatch, tmp_path):
    """With nothing set, botocore's own chain uses AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA)."""
    token = tmp_path / "token"
    token.write_text("projected-service-account-token")
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    creds = storage(region="eu-west-1").client._request_signer._credentials
    assert creds.method == "assume-role-with-web-identity"  # deferred: nothing is fetched until first use


def sts_client():
    return boto3.client("sts", region_name="eu-west-1", aws_access_key_id="AKIABASE", aws_secret_access_key="base")


def issued(n: int, lifetime: timedelta = timedelta(hours=1)) -> dict:
    return {"Credentials": {"AccessKeyId": f"ASIATEMPORARY000{n}", "SecretAccessKey": f"temp-secret-{n}",
                            "SessionToken": f"session-token-{n}", "Expiration": datetime.now(UTC) + lifetime}}


def test_assume_role_sends_role_external_id_and_session_name():
    sts = sts_client()
    with Stubber(sts) as stub:
        stub.add_response("assume_role", issued(1),
                          {"RoleArn": ROLE, "RoleSessionName": "registry-prod", "ExternalId": "acme-42"})
        creds = role_credentials(sts, S3Options(bucket="b", role_arn=ROLE, external_id="acme-42",
                                                role_session_name="registry-prod"))
        stub.assert_no_pending_responses()
    frozen = creds.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("ASIATEMPORARY0001", "temp-secret-1",
                                                                    "session-token-1")
    assert creds.method == "assume-role"


def test_assume_role_without_external_id_sends_none():
    sts = sts_client()
    with Stubber(sts) as stub:
        stub.add_response("assume_role", issued(1), {"RoleArn": ROLE, "RoleSessionName": "tfregistry"})
        role_credentials(sts, S3Options(bucket="b", role_arn=ROLE))
        stub.assert_no_pending_responses()


def test_assume_role_is_refreshed_before_it_expires():
    sts = sts_client()
    expected = {"RoleArn": ROLE, "RoleSessionName": "tfregistry"}
    with Stubber(sts) as stub:
        # Five minutes left is inside botocore's mandatory refresh window (ten minutes).
        stub.add_response("assume_role", issued(1, timedelta(minutes=5)), expected)
        stub.add_response("assume_role", issued(2), expected)
        creds = role_credentials(sts, S3Options(bucket="b", role_arn=ROLE))
        assert creds.get_frozen_credentials().access_key == "ASIATEMPORARY0002"
        stub.assert_no_pending_responses()


def test_web_identity_reads_the_token_file_again_at_each_refresh(tmp_path):
    token = tmp_path / "token"
    token.write_text("first-oidc-token\n")
    options = S3Options(bucket="b", role_arn=ROLE, web_identity_token_file=str(token), role_session_name="ci")
    sts = sts_client()
    with Stubber(sts) as stub:
        stub.add_response("assume_role_with_web_identity", issued(1, timedelta(minutes=5)),
                          {"RoleArn": ROLE, "RoleSessionName": "ci", "WebIdentityToken": "first-oidc-token"})
        stub.add_response("assume_role_with_web_identity", issued(2),
                          {"RoleArn": ROLE, "RoleSessionName": "ci", "WebIdentityToken": "second-oidc-token"})
        creds = role_credentials(sts, options)
        assert creds.method == "assume-role-with-web-identity"
        token.write_text("second-oidc-token\n")  # the kubelet or the CI runner rotated it
        assert creds.get_frozen_credentials().token == "session-token-2"
        stub.assert_no_pending_responses()


def test_a_missing_token_file_names_the_setting(tmp_path):
    options = S3Options(bucket="b", role_arn=ROLE, web_identity_token_file=str(tmp_path / "absent"))
    with pytest.raises(StorageError, match=r"cannot read the web identity token file .*absent.* "
                                           r"\(setting storage.s3.web_identity_token_file\)"):
        role_credentials(sts_client(), options)


def test_a_refused_role_names_the_setting():
    sts = sts_client()
    with Stubber(sts) as stub:
        stub.add_client_error("assume_role", "AccessDenied", "not authorized to perform sts:AssumeRole",
                              http_status_code=403)
        with pytest.raises(StorageError, match=r"cannot assume role '.*role/registry' \(setting storage.s3.role_arn\): "
                                               r"AccessDenied: not authorized"):
            role_credentials(sts, S3Options(bucket="b", role_arn=ROLE))


def test_sts_endpoint_defaults_to_the_custom_endpoint(monkeypatch):
    seen = []
    real = boto3.Session.client

    def client(self, service, *args, **kwargs):
        made = real(self, service, *args, **kwargs)
        if service == "sts":
            seen.append(kwargs.get("endpoint_url"))
            stub = Stubber(made)
            stub.add_response("assume_role", issued(1))
            stub.activate()
        return made

    monkeypatch.setattr(boto3.Session, "client", client)
    storage(region="us-east-1", endpoint_url="https://minio.example:9000", role_arn=ROLE, **KEYS)
    storage(region="us-east-1", endpoint_url="https://bucket.vpce-1.s3.us-east-1.vpce.amazonaws.com",
            sts_endpoint_url="https://sts.us-east-1.amazonaws.com", role_arn=ROLE, **KEYS)
    storage(region="us-east-1", role_arn=ROLE, **KEYS)
    assert seen == ["https://minio.example:9000", "https://sts.us-east-1.amazonaws.com", None]


@pytest.mark.parametrize(("sse", "kms_key_id", "expected"), [
    ("", None, {}),
    ("AES256", None, {"ServerSideEncryption": "AES256"}),
    ("aws:kms", None, {"ServerSideEncryption": "aws:kms"}),
    ("aws:kms", "alias/registry", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/registry"}),
])
def test_encryption_arguments(sse, kms_key_id, expected):
    s = storage(region="eu-west-1", sse=sse, kms_key_id=kms_key_id, **KEYS)
    assert s._extra_args("ab" * 32, None) == {"Metadata": {"sha256": "ab" * 32}, **expected}


def test_check_names_the_region_a_bucket_is_in():
    """Calls follow S3's redirect, presigned URLs do not: a wrong region must stop start-up."""
    s = storage(region="us-east-1", **KEYS)
    with Stubber(s.client) as stub:
        stub.add_response("head_bucket", {"BucketRegion": "eu-west-1"}, {"Bucket": "acme-registry"})
        assert s.check() == ["s3: bucket 'acme-registry' is in region 'eu-west-1', not 'us-east-1': "
                             "set storage.s3.region = 'eu-west-1' (presigned download URLs are signed for one region)"]


def test_check_trusts_the_region_of_an_s3_compatible_service():
    s = storage(region="us-east-1", endpoint_url="https://minio.example:9000", path_style=True, **KEYS)
    with Stubber(s.client) as stub:
        stub.add_response("head_bucket", {"BucketRegion": "garage"}, {"Bucket": "acme-registry"})
        stub.add_client_error("put_object", "AccessDenied", http_status_code=403)  # the probe after the bucket check
        problems = s.check()
    assert problems and "region" not in problems[0] and "cannot write" in problems[0]
