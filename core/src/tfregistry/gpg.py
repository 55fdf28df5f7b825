"""OpenPGP for the provider registry, through python-gnupg and the ``gpg`` binary.

Every operation runs in its own throw-away GNUPGHOME, so nothing is shared between
requests or threads and no keyring persists; the agent is stopped afterwards.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gnupg
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class GpgError(ValueError):
    """A key or signature the registry cannot use; the message is shown to the user."""


@dataclass(frozen=True)
class PublicKey:
    fingerprint: str
    key_id: str
    ascii_armor: str
    uids: tuple[str, ...]
    algorithm: str
    created: datetime
    expires: datetime | None
    can_sign: bool


@dataclass(frozen=True)
class ManagedKey:
    public: PublicKey
    private_armor: str


@contextmanager
def _keyring() -> Iterator[gnupg.GPG]:
    home = tempfile.mkdtemp(prefix="tfr-gnupg-")
    os.chmod(home, 0o700)
    try:
        yield gnupg.GPG(gnupghome=home)
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


_ALGORITHMS = {"1": "RSA", "2": "RSA", "3": "RSA", "16": "ElGamal", "17": "DSA", "18": "ECDH", "19": "ECDSA",
               "22": "EdDSA"}


def _timestamp(value: str) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def parse_public_key(armor: str) -> PublicKey:
    """Check an uploaded public key and return it normalised; refuse what Terraform could not use."""
    if "PRIVATE KEY" in armor:
        raise GpgError("this is a PRIVATE key: upload only the public key (gpg --armor --export FINGERPRINT)")
    with _keyring() as gpg:
        result = gpg.import_keys(armor)
        if result.sec_imported:
            raise GpgError("this is a PRIVATE key: upload only the public key")
        fingerprints = sorted(set(result.fingerprints))
        if not fingerprints:
            raise GpgError("not an OpenPGP public key (expected an armored 'PUBLIC KEY BLOCK')")
        primaries = gpg.list_keys()
        if len(primaries) != 1:
            raise GpgError(f"the upload holds {len(primaries)} keys: upload one key at a time")
        key = primaries[0]
        now = datetime.now(UTC)
        if key.get("trust") == "r":
            raise GpgError("the key has been revoked")
        expires = _timestamp(key.get("expires") or "")
        if expires is not None and expires <= now:
            raise GpgError(f"the key expired on {expires:%Y-%m-%d}")
        # Upper-case letters in the capabilities field are what the whole key (with subkeys) can still do.
        if "S" not in (key.get("cap") or ""):
            raise GpgError("the key cannot sign (it has no valid signing-capable key or subkey)")
        fingerprint = key["fingerprint"]
        exported = gpg.export_keys(fingerprint, armor=True)
        length = key.get("length") or ""
        algo = _ALGORITHMS.get(str(key.get("algo")), f"algorithm {key.get('algo')}")
        algorithm = f"{algo}-{length}" if algo in ("RSA", "DSA") else f"{algo}-{key.get('curve') or length}"
        return PublicKey(
            fingerprint=fingerprint.upper(),
            key_id=fingerprint[-16:].upper(),
            ascii_armor=exported,
            uids=tuple(key.get("uids") or ()),
            algorithm=algorithm,
            created=_timestamp(key.get("date") or "0") or now,
            expires=expires,
            can_sign=True,
        )


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor_signature(data: bytes) -> bytes:
    """Binary OpenPGP packets from an armored signature; binary input is returned unchanged."""
    if data and data[0] & 0x80:
        return data
    text = data.decode("ascii", errors="replace").strip()
    if not text.startswith("-----BEGIN PGP SIGNATURE-----"):
        raise GpgError("the signature is neither a binary nor an armored OpenPGP signature")
    lines = text.splitlines()
    try:
        end = lines.index("-----END PGP SIGNATURE-----")
    except ValueError:
        raise GpgError("the armored signature has no END line") from None
    body_lines = lines[1:end]
    while body_lines and ":" in body_lines[0]:  # armor headers (Version:, Comment:)
        body_lines.pop(0)
    body = [line.strip() for line in body_lines if line.strip()]
    checksum = None
    if body and body[-1].startswith("="):
        checksum = body.pop()[1:]
    try:
        packets = base64.b64decode("".join(body), validate=True)
    except binascii.Error:
        raise GpgError("the armored signature is not valid base64") from None
    if checksum is not None:
        try:
            expected = int.from_bytes(base64.b64decode(checksum), "big")
        except binascii.Error:
            raise GpgError("the armored signature has a malformed checksum line") from None
        if _crc24(packets) != expected:
            raise GpgError("the armored signature's checksum does not match: it was damaged")
    if not packets or not packets[0] & 0x80:
        raise GpgError("the armored signature holds no OpenPGP packets")
    return packets


def verify_detached(data: bytes, signature: bytes, public_keys: Sequence[str]) -> str:
    """Fingerprint of the primary key whose (sub)key made ``signature`` over ``data``; GpgError otherwise."""
    binary = dearmor_signature(signature)
    with _keyring() as gpg:
        for armor in public_keys:
            gpg.import_keys(armor)
        sig_path = Path(gpg.gnupghome) / "detached.sig"
        sig_path.write_bytes(binary)
        verified = gpg.verify_data(str(sig_path), data)
        status = (verified.status or "").lower()
        if verified.valid:
            if getattr(verified, "key_status", None):
                raise GpgError(f"the signing key is not usable: {verified.key_status}")
            return (verified.pubkey_fingerprint or verified.fingerprint).upper()
        if "no public key" in status or verified.key_id and not verified.fingerprint and "bad" not in status:
            raise GpgError("the signature does not verify against any key of this namespace "
                           f"(made by key {verified.key_id or 'unknown'})")
        if "expired" in status:
            raise GpgError("the signing key has expired")
        if "bad" in status:
            raise GpgError("bad signature: SHA256SUMS does not match its signature")
        raise GpgError(f"the signature does not verify ({verified.status or 'no valid OpenPGP signature'})")


def generate_key(name: str, email: str, *, key_type: str = "ed25519") -> ManagedKey:
    """A new signing-only key without passphrase or expiry (``ed25519`` or ``rsa3072``)."""
    if key_type == "ed25519":
        algo = "Key-Type: EDDSA\nKey-Curve: ed25519\n"
    elif key_type == "rsa3072":
        algo = "Key-Type: RSA\nKey-Length: 3072\n"
    else:
        raise GpgError(f"unknown key type {key_type!r} (use ed25519 or rsa3072)")
    params = (f"{algo}Key-Usage: sign\nName-Real: {name}\nName-Email: {email}\nExpire-Date: 0\n"
              "%no-protection\n%commit\n")
    with _keyring() as gpg:
        result = gpg.gen_key(params)
        fingerprint = str(result.fingerprint or "")
        if not fingerprint:
            raise GpgError(f"gpg could not generate a key: {result.stderr.strip()[-300:]}")
        public = gpg.export_keys(fingerprint, armor=True)
        private = gpg.export_keys(fingerprint, secret=True, armor=True, expect_passphrase=False)
    return ManagedKey(parse_public_key(public), private)


def sign_detached(data: bytes, private_armor: str) -> bytes:
    """A binary detached signature over ``data`` (SHA-256 digest) made with ``private_armor``."""
    with _keyring() as gpg:
        imported = gpg.import_keys(private_armor)
        if not imported.fingerprints:
            raise GpgError("cannot load the registry-managed private key")
        fingerprint = imported.fingerprints[0]
        signed = gpg.sign(data, keyid=fingerprint, detach=True, binary=True, extra_args=["--digest-algo", "SHA256"])
        if not signed.data:
            raise GpgError(f"gpg could not sign: {signed.stderr.strip()[-300:]}")
        return bytes(signed.data)


def _fernet(key: bytes, purpose: bytes) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_secret(text: str, key: bytes, purpose: bytes = b"tfregistry gpg private key") -> str:
    """Encrypt a secret (a managed key's private part, an upstream token) for storage in the database."""
    return _fernet(key, purpose).encrypt(text.encode()).decode()


def decrypt_secret(token: str, key: bytes, purpose: bytes = b"tfregistry gpg private key") -> str:
    """Decrypt what :func:`encrypt_secret` stored."""
    try:
        return _fernet(key, purpose).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise GpgError("cannot decrypt the registry-managed signing key: wrong encryption key?") from None


def encrypt_private_key(private_armor: str, key: bytes) -> str:
    """Encrypt a managed key's private part for storage in the database."""
    return encrypt_secret(private_armor, key)


def decrypt_private_key(token: str, key: bytes) -> str:
    """Decrypt what :func:`encrypt_private_key` stored."""
    return decrypt_secret(token, key)
