"""Providers through the Flask test client: keys, publishing, the registry protocol and the mirror protocol."""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.conftest import bearer
from tests.providers_kit import SigningKey, h1_of_zip, provider_zip, shasums
from tfregistry.models import AuditEntry, ProviderVersion


def add_key(client: Any, token: str, namespace: str, armor: str) -> Any:
    return client.post("/api/v1/gpg-keys", json={"namespace": namespace, "ascii_armor": armor}, headers=bearer(token))


def publish_provider(
    client: Any,
    token: str,
    namespace: str = "acme",
    type_: str = "foo",
    version: str = "1.0.0",
    platforms: tuple[str, ...] = ("linux_amd64", "darwin_arm64"),
    key: SigningKey | None = None,
    zips: dict[str, bytes] | None = None,
    sums: bytes | None = None,
    signature: bytes | None = None,
    protocols: str = "",
    sign: bool = True,
) -> Any:
    zips = (
        zips
        if zips is not None
        else {f"terraform-provider-{type_}_{version}_{p}.zip": provider_zip(type_, version, p) for p in platforms}
    )
    data: dict[str, Any] = {
        "namespace": namespace,
        "type": type_,
        "version": version,
        "protocols": protocols,
        "packages": [(io.BytesIO(b), name) for name, b in zips.items()],
    }
    if sign:
        sums = sums if sums is not None else shasums(zips)
        if signature is None and key is not None:
            signature = key.sign(sums)
        data["shasums"] = (io.BytesIO(sums), f"terraform-provider-{type_}_{version}_SHA256SUMS")
        data["shasums_signature"] = (
            io.BytesIO(signature or b""),
            f"terraform-provider-{type_}_{version}_SHA256SUMS.sig",
        )
    return client.post("/api/v1/providers", data=data, headers=bearer(token), content_type="multipart/form-data")


@pytest.fixture
def keyed(client, admin_token, signer):
    """Namespace ``acme`` with the test signer registered."""
    r = add_key(client, admin_token, "acme", signer.public_armor)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


# --- keys ------------------------------------------------------------------------------


def test_register_list_and_revoke_keys(client, admin_token, signer, keyed, make_token):
    assert keyed["key_id"] == signer.key_id and keyed["fingerprint"] == signer.fingerprint
    assert keyed["managed"] is False and "BEGIN PGP PUBLIC KEY BLOCK" in keyed["ascii_armor"]
    listed = client.get("/api/v1/gpg-keys?namespace=acme", headers=bearer(admin_token)).get_json()
    assert [k["key_id"] for k in listed] == [signer.key_id]
    again = add_key(client, admin_token, "acme", signer.public_armor)
    assert again.status_code == 409
    assert client.delete(f"/api/v1/gpg-keys/{keyed['id']}", headers=bearer(make_token("read"))).status_code == 403
    revoked = client.delete(f"/api/v1/gpg-keys/{keyed['id']}", headers=bearer(admin_token)).get_json()
    assert revoked["revoked_at"] is not None


def test_form_fields_work_for_key_upload(client, admin_token, signer):
    r = client.post(
        "/api/v1/gpg-keys",
        data={"namespace": "formns", "ascii_armor": signer.public_armor},
        headers=bearer(admin_token),
    )
    assert r.status_code == 201 and r.get_json()["namespace"] == "formns"


@pytest.mark.parametrize(
    ("armor", "message"),
    [
        ("not a key at all", "unusable signing key"),
        ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n", "unusable signing key"),
    ],
)
def test_unusable_keys_are_400(client, admin_token, armor, message):
    r = add_key(client, admin_token, "acme", armor)
    assert r.status_code == 400 and message in r.get_json()["message"]


# --- publishing --------------------------------------------------------------------------


def test_publish_signed_release_and_serve_it(client, admin_token, signer, keyed):
    r = publish_provider(client, admin_token, key=signer, protocols="5.0,6.0")
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["id"] == "acme/foo/1.0.0" and body["created"] is True
    assert body["added_platforms"] == ["darwin_arm64", "linux_amd64"]
    assert body["signing_key_id"] == signer.key_id and body["protocols"] == ["5.0", "6.0"]
    linux = next(p for p in body["platforms"] if p["os"] == "linux")
    data = provider_zip("foo", "1.0.0", "linux_amd64")
    assert linux["sha256"] == hashlib.sha256(data).hexdigest()
    assert linux["h1"] == h1_of_zip(data)

    versions = client.get("/v1/providers/acme/foo/versions", headers=bearer(admin_token)).get_json()
    assert versions["versions"] == [
        {
            "version": "1.0.0",
            "protocols": ["5.0", "6.0"],
            "platforms": [{"os": "darwin", "arch": "arm64"}, {"os": "linux", "arch": "amd64"}],
        }
    ]

    dl = client.get("/v1/providers/acme/foo/1.0.0/download/linux/amd64", headers=bearer(admin_token)).get_json()
    assert dl["filename"] == "terraform-provider-foo_1.0.0_linux_amd64.zip" and dl["shasum"] == linux["sha256"]
    assert dl["os"] == "linux" and dl["arch"] == "amd64" and dl["protocols"] == ["5.0", "6.0"]
    key = dl["signing_keys"]["gpg_public_keys"][0]
    assert key["key_id"] == signer.key_id and key["trust_signature"] == ""
    # the three URLs work with no token, and serve exactly what was signed
    fetched = {name: client.get(dl[name]) for name in ("download_url", "shasums_url", "shasums_signature_url")}
    assert all(r.status_code == 200 for r in fetched.values())
    assert fetched["download_url"].data == data
    assert fetched["shasums_url"].data == shasums(
        {
            f"terraform-provider-foo_1.0.0_{p}.zip": provider_zip("foo", "1.0.0", p)
            for p in ("linux_amd64", "darwin_arm64")
        }
    )
    assert fetched["shasums_signature_url"].data[0] & 0x80  # binary, not armored
    assert urlsplit(dl["download_url"]).path.endswith(".zip")

    assert (
        client.get("/v1/providers/acme/foo/1.0.0/download/windows/amd64", headers=bearer(admin_token)).status_code
        == 404
    )


def test_armored_signature_is_dearmored(client, admin_token, signer, keyed):
    zips = {"terraform-provider-foo_1.0.0_linux_amd64.zip": provider_zip("foo", "1.0.0", "linux_amd64")}
    sums = shasums(zips)
    r = publish_provider(client, admin_token, zips=zips, sums=sums, signature=signer.sign(sums, armor=True))
    assert r.status_code == 201, r.get_json()
    dl = client.get("/v1/providers/acme/foo/1.0.0/download/linux/amd64", headers=bearer(admin_token)).get_json()
    assert client.get(dl["shasums_signature_url"]).data[0] & 0x80


@pytest.mark.parametrize("case", ["unknown-key", "tampered-sums", "tampered-zip", "no-keys"])
def test_bad_signatures_and_checksums_are_refused(client, admin_token, signer, other_signer, case, registry):
    if case != "no-keys":
        assert add_key(client, admin_token, "acme", signer.public_armor).status_code == 201
    zips = {f"terraform-provider-foo_1.0.0_{p}.zip": provider_zip("foo", "1.0.0", p) for p in ("linux_amd64",)}
    sums = shasums(zips)
    signature = (other_signer if case == "unknown-key" else signer).sign(sums)
    if case == "tampered-sums":
        sums = sums.replace(b"linux_amd64", b"linux_arm64") + b""
    if case == "tampered-zip":
        zips = {name: data + b"\0" for name, data in zips.items()}
    r = publish_provider(client, admin_token, zips=zips, sums=sums, signature=signature)
    assert r.status_code == 400, r.get_json()
    message = r.get_json()["message"]
    expected = {
        "unknown-key": "signature",
        "tampered-sums": "signature",
        "tampered-zip": "SHA256SUMS",
        "no-keys": "no signing keys",
    }[case]
    assert expected in message
    assert list(registry.storage.list("providers/")) == []
    with registry.db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ProviderVersion)) == 0


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("terraform-provider-foo_1.0.0_plan9_amd64.zip", "plan9"),
        ("terraform-provider-bar_1.0.0_linux_amd64.zip", "bar"),
        ("terraform-provider-foo_1.0.1_linux_amd64.zip", "1.0.1"),
        ("foo.zip", "foo.zip"),
    ],
)
def test_package_names_are_checked(client, admin_token, signer, keyed, filename, message):
    zips = {filename: provider_zip("foo", "1.0.0", "linux_amd64")}
    r = publish_provider(client, admin_token, key=signer, zips=zips)
    assert r.status_code == 400 and message in r.get_json()["message"]


def test_zip_contents_are_checked(client, admin_token, signer, keyed):
    with_dir = io.BytesIO()
    with zipfile.ZipFile(with_dir, "w") as zf:
        zf.writestr("terraform-provider-foo_v1.0.0", "#!/bin/sh\n")
        zf.writestr("docs/", "")
    no_binary = io.BytesIO()
    with zipfile.ZipFile(no_binary, "w") as zf:
        zf.writestr("README.md", "hello")
    for data, message in (
        (with_dir.getvalue(), "director"),
        (no_binary.getvalue(), "terraform-provider-foo"),
        (b"not a zip", "zip"),
    ):
        zips = {"terraform-provider-foo_1.0.0_linux_amd64.zip": data}
        r = publish_provider(client, admin_token, key=signer, zips=zips)
        assert r.status_code == 400, r.get_json()
        assert message in r.get_json()["message"]


def test_the_zips_of_a_release_are_checked_side_by_side_and_the_first_refused_is_reported(
        client, admin_token, signer, keyed, registry):
    """Zips are checked in threads (``PACKAGE_CHECK_THREADS``); the answer names the first refused zip in
    upload order, whichever thread finishes first, and nothing is stored."""
    platforms = ("linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64", "windows_amd64")
    good = {f"terraform-provider-foo_1.0.0_{p}.zip": provider_zip("foo", "1.0.0", p) for p in platforms}
    broken = dict(good)
    broken["terraform-provider-foo_1.0.0_linux_arm64.zip"] = b"not a zip"  # second in upload order
    broken["terraform-provider-foo_1.0.0_windows_amd64.zip"] = b"nor this"  # last
    r = publish_provider(client, admin_token, key=signer, zips=broken)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["message"].startswith("terraform-provider-foo_1.0.0_linux_arm64.zip: not a zip archive")
    assert list(registry.storage.list("")) == []

    r = publish_provider(client, admin_token, key=signer, zips=good)
    assert r.status_code == 201, r.get_json()
    assert len(list(registry.storage.list(""))) >= len(platforms)  # the listing sees what a publish stores
    hashes = {p["os"] + "_" + p["arch"]: p for p in r.get_json()["platforms"]}
    for platform in platforms:
        data = good[f"terraform-provider-foo_1.0.0_{platform}.zip"]
        assert hashes[platform]["h1"] == h1_of_zip(data)
        assert hashes[platform]["sha256"] == hashlib.sha256(data).hexdigest()


def test_bad_version_protocols_and_names(client, admin_token, signer, keyed):
    """What the form schema declares is refused with 422 naming the field; the rest by the service (400)."""
    for field, value, kwargs in (("version", "1.0", {"version": "1.0"}), ("protocols", "7.0", {"protocols": "7.0"}),
                                 ("namespace", "Acme", {"namespace": "Acme"})):
        r = publish_provider(client, admin_token, key=signer, **kwargs)
        assert r.status_code == 422 and list(r.get_json()["errors"]["form"]) == [field], (field, value)
    r = publish_provider(client, admin_token, key=signer, type_="terraform-foo")
    assert r.status_code == 400 and "terraform-" in r.get_json()["message"]


def test_sums_without_signature_is_400(client, admin_token, signer, keyed):
    zips = {"terraform-provider-foo_1.0.0_linux_amd64.zip": provider_zip("foo", "1.0.0", "linux_amd64")}
    data = {
        "namespace": "acme",
        "type": "foo",
        "version": "1.0.0",
        "packages": [(io.BytesIO(b), n) for n, b in zips.items()],
        "shasums": (io.BytesIO(shasums(zips)), "S"),
    }
    r = client.post("/api/v1/providers", data=data, headers=bearer(admin_token), content_type="multipart/form-data")
    assert r.status_code == 400 and "both" in r.get_json()["message"]


def test_platforms_can_be_added_only_when_signed_sums_cover_them(client, admin_token, signer, keyed):
    all_zips = {
        f"terraform-provider-foo_1.0.0_{p}.zip": provider_zip("foo", "1.0.0", p)
        for p in ("linux_amd64", "darwin_arm64")
    }
    sums = shasums(all_zips)
    sig = signer.sign(sums)
    linux = {k: v for k, v in all_zips.items() if "linux" in k}
    darwin = {k: v for k, v in all_zips.items() if "darwin" in k}
    assert publish_provider(client, admin_token, zips=linux, sums=sums, signature=sig).status_code == 201
    r = publish_provider(client, admin_token, zips=darwin, sums=sums, signature=sig)
    assert r.status_code == 201 and r.get_json()["added_platforms"] == ["darwin_arm64"]
    again = publish_provider(client, admin_token, zips=darwin, sums=sums, signature=sig)
    assert again.status_code == 200 and again.get_json()["added_platforms"] == []
    windows = {"terraform-provider-foo_1.0.0_windows_amd64.zip": provider_zip("foo", "1.0.0", "windows_amd64")}
    r = publish_provider(
        client, admin_token, zips=windows, sums=shasums(windows), signature=signer.sign(shasums(windows))
    )
    assert r.status_code == 409 and "immutable" in r.get_json()["message"]
    r = publish_provider(client, admin_token, zips=windows, sums=sums, signature=sig)
    assert r.status_code == 409 and "does not cover" in r.get_json()["message"]


def test_registry_managed_key_signs_unsigned_uploads(client, admin_token, make_token, registry):
    assert publish_provider(client, admin_token, namespace="managed", sign=False).status_code == 400
    assert (
        client.post(
            "/api/v1/gpg-keys/managed", json={"namespace": "managed"}, headers=bearer(make_token("publish"))
        ).status_code
        == 403
    )
    created = client.post("/api/v1/gpg-keys/managed", json={"namespace": "managed"}, headers=bearer(admin_token))
    assert created.status_code == 201 and created.get_json()["managed"] is True
    assert "PRIVATE" not in created.get_json()["ascii_armor"]
    dup = client.post("/api/v1/gpg-keys/managed", json={"namespace": "managed"}, headers=bearer(admin_token))
    assert dup.status_code == 409
    r = publish_provider(client, admin_token, namespace="managed", sign=False)
    assert r.status_code == 201 and r.get_json()["signed_by_managed_key"] is True
    dl = client.get("/v1/providers/managed/foo/1.0.0/download/linux/amd64", headers=bearer(admin_token)).get_json()
    sums = client.get(dl["shasums_url"]).data
    assert sums == shasums(
        {
            f"terraform-provider-foo_1.0.0_{p}.zip": provider_zip("foo", "1.0.0", p)
            for p in ("linux_amd64", "darwin_arm64")
        }
    )
    # the private key is stored encrypted, never as armor
    from tfregistry.models import GpgKey

    with registry.db.session() as session:
        stored = session.scalars(sa.select(GpgKey).where(GpgKey.private_key_encrypted.is_not(None))).one()
        assert "BEGIN PGP" not in stored.private_key_encrypted


def test_revoked_key_is_no_longer_offered_and_version_flagged(client, admin_token, signer, keyed):
    assert publish_provider(client, admin_token, key=signer).status_code == 201
    client.delete(f"/api/v1/gpg-keys/{keyed['id']}", headers=bearer(admin_token))
    dl = client.get("/v1/providers/acme/foo/1.0.0/download/linux/amd64", headers=bearer(admin_token)).get_json()
    assert dl["signing_keys"]["gpg_public_keys"] == []
    versions = client.get("/v1/providers/acme/foo/versions", headers=bearer(admin_token)).get_json()
    assert any("revoked" in w for w in versions["warnings"])
    detail = client.get("/api/v1/providers/acme/foo/1.0.0", headers=bearer(admin_token)).get_json()
    assert detail["signing_key_revoked"] is True


def test_deprecate_and_delete_provider_versions(client, admin_token, signer, keyed, make_token, registry):
    assert publish_provider(client, admin_token, key=signer).status_code == 201
    assert publish_provider(client, admin_token, key=signer, version="1.1.0").status_code == 201
    url = "/api/v1/providers/acme/foo/1.0.0"
    r = client.patch(url, json={"deprecated": True, "reason": "use 1.1"}, headers=bearer(make_token("publish")))
    assert r.status_code == 200 and r.get_json()["deprecated"] is True
    versions = client.get("/v1/providers/acme/foo/versions", headers=bearer(admin_token)).get_json()
    assert versions["warnings"] == ["acme/foo 1.0.0 is deprecated: use 1.1"]
    assert client.delete(url, headers=bearer(make_token("publish"))).status_code == 403
    assert client.delete(url, headers=bearer(admin_token)).status_code == 204
    versions = client.get("/v1/providers/acme/foo/versions", headers=bearer(admin_token)).get_json()
    assert [v["version"] for v in versions["versions"]] == ["1.1.0"]
    assert all("/1.0.0/" not in info.key for info in registry.storage.list("providers/"))
    with registry.db.session() as session:
        actions = session.scalars(sa.select(AuditEntry.action)).all()
    assert {"gpg_key.add", "provider.publish", "provider.deprecate", "provider.delete"} <= set(actions)


def test_publish_permissions(client, admin_token, signer, keyed, make_token):
    assert publish_provider(client, make_token("read"), key=signer).status_code == 403
    assert publish_provider(client, make_token("publish", namespace="other"), key=signer).status_code == 403
    assert publish_provider(client, make_token("publish", namespace="acme"), key=signer).status_code == 201
    assert client.get("/v1/providers/acme/foo/versions").status_code == 401


def test_browse_api(client, admin_token, signer, keyed):
    publish_provider(client, admin_token, key=signer)
    publish_provider(client, admin_token, key=signer, type_="bar")
    h = bearer(admin_token)
    listed = client.get("/v1/providers", headers=h).get_json()
    assert [p["id"] for p in listed["providers"]] == ["acme/bar/1.0.0", "acme/foo/1.0.0"]
    assert client.get("/v1/providers/acme", headers=h).get_json()["providers"][1]["name"] == "foo"
    latest = client.get("/v1/providers/acme/foo", headers=h).get_json()
    assert latest["version"] == "1.0.0" and latest["versions"] == ["1.0.0"]
    assert client.get("/v1/providers/acme/foo/1.0.0", headers=h).get_json()["platforms"][0]["os"] == "darwin"


def test_discovery_advertises_providers_with_trailing_slash(client):
    assert client.get("/.well-known/terraform.json").get_json()["providers.v1"] == "/v1/providers/"


# --- network mirror --------------------------------------------------------------------------


def test_mirror_protocol_serves_own_providers_under_own_host(client, admin_token, signer, keyed):
    assert publish_provider(client, admin_token, key=signer).status_code == 201
    h = bearer(admin_token)
    index = client.get("/v1/providers/localhost/acme/foo/index.json", headers=h)
    assert index.status_code == 200 and index.mimetype == "application/json"
    assert index.get_json() == {"versions": {"1.0.0": {}}}
    doc = client.get("/v1/providers/localhost/acme/foo/1.0.0.json", headers=h).get_json()
    linux = doc["archives"]["linux_amd64"]
    data = provider_zip("foo", "1.0.0", "linux_amd64")
    assert linux["hashes"] == [h1_of_zip(data), f"zh:{hashlib.sha256(data).hexdigest()}"]
    assert client.get(linux["url"]).data == data
    # another host name is somebody else's provider: not ours
    assert client.get("/v1/providers/registry.terraform.io/acme/foo/index.json", headers=h).status_code == 404
    assert client.get("/v1/providers/localhost/acme/foo/9.9.9.json", headers=h).status_code == 404


def test_extra_own_hostnames(app_factory, signer):
    from tests.conftest import new_token

    app = app_factory({"providers.hostnames": ["registry.example.test"]})
    client, token = app.test_client(), new_token(app, "admin")
    assert add_key(client, token, "acme", signer.public_armor).status_code == 201
    assert publish_provider(client, token, key=signer).status_code == 201
    r = client.get("/v1/providers/registry.example.test/acme/foo/index.json", headers=bearer(token))
    assert r.get_json() == {"versions": {"1.0.0": {}}}


def _zip_entries(*entries: tuple[str, bytes, int]) -> bytes:
    """A zip of (name, data, Unix mode) entries, deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.create_system, info.external_attr, info.compress_type = 3, mode << 16, zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def test_special_bits_control_characters_and_bombs_are_refused(client, admin_token, signer, keyed):
    exe = "terraform-provider-foo_v1.0.0"
    for data, message in (
        (_zip_entries((exe, b"#!/bin/sh\n", 0o104755)), f"'{exe}' has the setuid bit set (mode 4755)"),
        (_zip_entries((exe, b"#!/bin/sh\n", 0o100755), ("docs\x85.md", b"x", 0o100644)),
         "control character '\\x85' (rule: no control characters, C0, DEL or C1, in names)"),
        (_zip_entries((exe, b"#!/bin/sh\n", 0o100755), ("x" * 256, b"x", 0o100644)),
         "(rule: file and directory names are at most 255 bytes of UTF-8)"),
        (_zip_entries((exe, bytes(10 * 1024**2), 0o100755)), f"the zip entry '{exe}' is compressed more than 100:1"),
    ):
        zips = {"terraform-provider-foo_1.0.0_linux_amd64.zip": data}
        r = publish_provider(client, admin_token, key=signer, zips=zips)
        assert r.status_code == 400, r.get_json()
        assert message in r.get_json()["message"]


def test_the_compression_ratio_cap_is_a_setting(app_factory, signer):
    from tests.conftest import new_token

    app = app_factory({"limits.max_compression_ratio": "2000"})
    client, token = app.test_client(), new_token(app, "admin")
    assert add_key(client, token, "acme", signer.public_armor).status_code == 201
    bomb = _zip_entries(("terraform-provider-foo_v1.0.0", bytes(10 * 1024**2), 0o100755))  # ~1000:1
    r = publish_provider(client, token, key=signer, zips={"terraform-provider-foo_1.0.0_linux_amd64.zip": bomb})
    assert r.status_code == 201, r.get_json()


def test_large_packages_are_received_hashed_and_stored_in_one_pass(client, admin_token, signer, keyed):
    """A package past the in-memory threshold is spooled into the local storage's root, hashed while it
    arrives and linked into place: the stored file is the spool itself, and nothing is left behind,
    also when a large upload is refused."""
    import os
    import random

    storage = client.application.extensions["tfregistry"].storage
    root = str(storage.root)
    big = random.Random(5).randbytes(700 * 1024)
    data = provider_zip("big", "1.0.0", "linux_amd64", extra={"payload.bin": big})
    name = "terraform-provider-big_1.0.0_linux_amd64.zip"
    r = publish_provider(client, admin_token, type_="big", zips={name: data}, key=signer)
    assert r.status_code == 201, r.get_json()
    [package] = r.get_json()["platforms"]
    assert (package["sha256"], package["h1"]) == (hashlib.sha256(data).hexdigest(), h1_of_zip(data))
    stored = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f == name]
    assert len(stored) == 1 and os.stat(stored[0]).st_nlink == 1
    with open(stored[0], "rb") as fh:
        assert fh.read() == data
    dl = client.get("/v1/providers/acme/big/1.0.0/download/linux/amd64", headers=bearer(admin_token)).get_json()
    assert client.get(dl["download_url"]).data == data

    corrupt = data[: len(data) // 2]  # truncated: not a zip
    r = publish_provider(client, admin_token, type_="big", version="1.0.1",
                         zips={"terraform-provider-big_1.0.1_linux_amd64.zip": corrupt}, key=signer)
    assert r.status_code in (400, 422), r.get_json()
    leftovers = [f for _, _, files in os.walk(root) for f in files if f.startswith(".upload~") or f.endswith(".tmp")]
    assert leftovers == []
