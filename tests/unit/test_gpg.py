"""The gpg wrapper against the real gpg binary, with keys made independently by tests.providers_kit."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.providers_kit import SigningKey
from tfregistry import gpg


@pytest.fixture(scope="module")
def ed_key():
    key = SigningKey("unit ed25519")
    yield key
    key.close()


@pytest.fixture(scope="module")
def rsa_key():
    key = SigningKey("unit rsa", key_type="rsa")
    yield key
    key.close()


def test_parse_public_keys(ed_key, rsa_key):
    ed = gpg.parse_public_key(ed_key.public_armor)
    assert ed.fingerprint == ed_key.fingerprint and ed.key_id == ed_key.key_id
    assert ed.algorithm == "EdDSA-ed25519" and ed.can_sign and ed.expires is None
    assert "BEGIN PGP PUBLIC KEY BLOCK" in ed.ascii_armor
    assert gpg.parse_public_key(rsa_key.public_armor).algorithm == "RSA-3072"


def test_refuses_unusable_keys(ed_key, rsa_key):
    with pytest.raises(gpg.GpgError, match="not an OpenPGP public key"):
        gpg.parse_public_key("hello")
    with pytest.raises(gpg.GpgError, match="one key at a time"):
        gpg.parse_public_key(ed_key.public_armor + rsa_key.public_armor)
    secret = ed_key._gpg("--armor", "--export-secret-keys", ed_key.fingerprint).decode()
    with pytest.raises(gpg.GpgError, match="PRIVATE"):
        gpg.parse_public_key(secret)


def _key_with(params: str, *extra_args: str) -> str:
    """Public armor of a key generated with ``params`` in a fresh home (optionally in a faked past)."""
    key = SigningKey.__new__(SigningKey)
    key._tmp = tempfile.TemporaryDirectory(prefix="tfr-gpg-")
    key.home = Path(key._tmp.name)
    key.home.chmod(0o700)
    try:
        key._gpg(*extra_args, "--gen-key", input=params.encode())
        return key._gpg("--armor", "--export").decode()
    finally:
        key.close()


def test_refuses_expired_and_encrypt_only_keys():
    expired = _key_with(
        "%no-protection\nKey-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\nName-Real: old\n"
        "Expire-Date: 1y\n%commit\n",
        "--faked-system-time",
        "20200101T000000",
    )
    with pytest.raises(gpg.GpgError, match="expired"):
        gpg.parse_public_key(expired)
    encrypt_only = _key_with(
        "%no-protection\nKey-Type: RSA\nKey-Length: 2048\nKey-Usage: encrypt\nName-Real: enc\nExpire-Date: 0\n%commit\n"
    )
    with pytest.raises(gpg.GpgError, match="cannot sign"):
        gpg.parse_public_key(encrypt_only)


def test_revoked_key_is_refused(ed_key):
    revoked = SigningKey("to be revoked")
    try:
        cert = next((revoked.home / "openpgp-revocs.d").glob("*.rev")).read_text()
        cert = cert.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----")
        revoked._gpg("--import", input=cert.encode())
        with pytest.raises(gpg.GpgError, match="revoked|cannot sign"):
            gpg.parse_public_key(revoked.public_armor)
    finally:
        revoked.close()


def test_verify_detached(ed_key, rsa_key):
    data = b"deadbeef  terraform-provider-foo_1.0.0_linux_amd64.zip\n"
    assert gpg.verify_detached(data, ed_key.sign(data), [ed_key.public_armor]) == ed_key.fingerprint
    assert (
        gpg.verify_detached(data, ed_key.sign(data, armor=True), [rsa_key.public_armor, ed_key.public_armor])
        == ed_key.fingerprint
    )
    with pytest.raises(gpg.GpgError, match="any key of this namespace"):
        gpg.verify_detached(data, ed_key.sign(data), [rsa_key.public_armor])
    with pytest.raises(gpg.GpgError, match="bad signature"):
        gpg.verify_detached(data + b"x", ed_key.sign(data), [ed_key.public_armor])


def test_subkey_signature_maps_to_primary():
    key = SigningKey("with subkey")
    try:
        key._gpg(
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-add-key",
            key.fingerprint,
            "ed25519",
            "sign",
            "0",
        )
        listing = key._gpg("--list-keys", "--with-colons").decode().splitlines()
        sub_fpr = [line.split(":")[9] for line in listing if line.startswith("fpr")][1]
        data = b"signed by a subkey\n"
        signature = key._gpg("--local-user", sub_fpr + "!", "--detach-sign", "--output", "-", input=data)
        assert gpg.verify_detached(data, signature, [key.public_armor]) == key.fingerprint
    finally:
        key.close()


def test_dearmor(ed_key):
    data = b"payload\n"
    armored = ed_key.sign(data, armor=True)
    binary = gpg.dearmor_signature(armored)
    assert binary[0] & 0x80
    assert gpg.verify_detached(data, binary, [ed_key.public_armor]) == ed_key.fingerprint
    assert gpg.dearmor_signature(binary) == binary
    lines = armored.decode().splitlines()
    crc_index = next(i for i, line in enumerate(lines) if line.startswith("="))
    lines[crc_index] = "=AAAA"
    with pytest.raises(gpg.GpgError, match="checksum"):
        gpg.dearmor_signature("\n".join(lines).encode())
    with pytest.raises(gpg.GpgError, match="neither"):
        gpg.dearmor_signature(b"plain text")


@pytest.mark.parametrize("key_type", ["ed25519", "rsa3072"])
def test_generate_sign_verify(key_type):
    managed = gpg.generate_key("tfregistry test", "t@tfregistry.invalid", key_type=key_type)
    assert "PRIVATE KEY" in managed.private_armor and "PRIVATE" not in managed.public.ascii_armor
    data = b"sums\n"
    signature = gpg.sign_detached(data, managed.private_armor)
    assert signature[0] & 0x80
    assert gpg.verify_detached(data, signature, [managed.public.ascii_armor]) == managed.public.fingerprint


def test_private_key_encryption_round_trip():
    token = gpg.encrypt_private_key("-----BEGIN PGP PRIVATE KEY BLOCK-----\nx\n", b"k" * 32)
    assert "PRIVATE" not in token
    assert gpg.decrypt_private_key(token, b"k" * 32).startswith("-----BEGIN PGP PRIVATE")
    with pytest.raises(gpg.GpgError, match="wrong encryption key"):
        gpg.decrypt_private_key(token, b"j" * 32)


def test_no_agents_left_behind():
    before = subprocess.run(["pgrep", "-fc", "gpg-agent.*tfr-gnupg-"], capture_output=True, text=True).stdout.strip()
    gpg.generate_key("agent check", "a@tfregistry.invalid")
    after = subprocess.run(["pgrep", "-fc", "gpg-agent.*tfr-gnupg-"], capture_output=True, text=True).stdout.strip()
    assert int(after or 0) <= int(before or 0)
