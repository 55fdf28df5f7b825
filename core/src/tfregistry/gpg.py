"""OpenPGP for the provider registry: a stateless wrapper over python-gnupg and the ``gpg`` binary.

Terraform checks a provider package with ``openpgp.CheckDetachedSignature`` over the SHA256SUMS
file: the signature must be a *binary* detached signature, made by a key or subkey that may sign,
whose public key the registry lists for the namespace.  This module checks uploaded keys and
signatures by the same rules, and makes and signs with registry-managed keys.

Every operation runs in its own throw-away GNUPGHOME (mode 0700, under a short temporary
directory); the gpg-agent started for it is killed and the directory removed afterwards, even on
error.  Nothing is shared between threads or requests and no keyring persists.  Operations that
only handle public keys run gpg with ``--no-autostart``: no agent exists then, so secret key
material cannot even be imported by accident.

Every :class:`GpgError` message is meant for the user (it becomes the body of an HTTP 400).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gnupg
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "GpgError",
    "ManagedKey",
    "PublicKey",
    "dearmor_signature",
    "decrypt_private_key",
    "decrypt_secret",
    "encrypt_private_key",
    "encrypt_secret",
    "generate_key",
    "parse_public_key",
    "sign_detached",
    "verify_detached",
]

GPG_BINARY = "gpg"
#: Upper bound for an uploaded armored public key (keys with many certifications are large, not this large).
MAX_KEY_SIZE = 4 * 1024 * 1024
#: HKDF ``info`` of the Fernet key that encrypts managed private keys.
PRIVATE_KEY_PURPOSE = b"tfregistry gpg private key"
#: GnuPG hash algorithm ids (RFC 4880 §9.4) that count as "SHA-256 or stronger".
_STRONG_DIGESTS = {"8": "SHA256", "9": "SHA384", "10": "SHA512", "11": "SHA224"}
_KEY_TYPES = {
    "ed25519": "Key-Type: EDDSA\nKey-Curve: ed25519\n",
    "rsa3072": "Key-Type: RSA\nKey-Length: 3072\n",
}
# OpenPGP public-key algorithm ids (RFC 4880 §9.1, RFC 6637, RFC 9580).
_ALGORITHMS = {
    "1": "RSA",
    "2": "RSA",
    "3": "RSA",
    "16": "ElGamal",
    "17": "DSA",
    "18": "ECDH",
    "19": "ECDSA",
    "20": "ElGamal",
    "22": "EdDSA",
    "25": "X25519",
    "26": "X448",
    "27": "Ed25519",
    "28": "Ed448",
}
_TAG_SIGNATURE, _TAG_SECRET_KEY, _TAG_PUBLIC_KEY, _TAG_SECRET_SUBKEY = 2, 5, 6, 7
_PRIVATE_KEY_MESSAGE = "this is a PRIVATE key: upload only the public key (gpg --armor --export FINGERPRINT)"
_UNKNOWN_ISSUER_MESSAGE = "the signature does not verify against any key of this namespace"
_BEGIN_RE = re.compile(r"-----BEGIN (PGP [A-Z0-9 ,/]+)-----")
_HEADER_RE = re.compile(r"[!-9;-~]+: ?.*")  # "Key: value"; base64 never contains ':'
_ASCII_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class GpgError(ValueError):
    """A key or signature the registry cannot use; the message is shown to the user as is."""


@dataclass(frozen=True)
class PublicKey:
    """An OpenPGP public key the registry accepts for signing provider packages."""

    fingerprint: str
    """40 upper-case hex digits: the fingerprint of the primary key."""
    key_id: str
    """16 upper-case hex digits: the last 16 of :attr:`fingerprint` (the primary key's long ID)."""
    ascii_armor: str
    """The normalised ``gpg --export --armor`` of exactly this key."""
    uids: tuple[str, ...]
    """The user IDs that are not revoked, primary user ID first, e.g. ``("Release <release@example.com>",)``."""
    algorithm: str
    """The primary key's algorithm and size or curve, e.g. ``RSA-3072`` or ``EdDSA-ed25519``."""
    created: datetime
    """Creation time of the primary key (UTC)."""
    expires: datetime | None
    """Expiry of the primary key (UTC), ``None`` when it does not expire."""
    can_sign: bool
    """Whether the primary key or a valid subkey may sign (true for every key parse_public_key accepts)."""


@dataclass(frozen=True)
class ManagedKey:
    """A signing key made by the registry: its public half and its unprotected private armor."""

    public: PublicKey
    private_armor: str


# --------------------------------------------------------------------------------------------------
# Throw-away GnuPG homes


def _base_dir() -> str:
    """A directory for temporary homes, short enough for the agent's Unix sockets (~108 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 60 and os.path.isdir("/tmp") and os.access("/tmp", os.W_OK):
        return "/tmp"
    return base


def _kill_agent(home: str) -> None:
    gpgconf = shutil.which("gpgconf")
    if gpgconf is None:
        return
    with suppress(OSError, subprocess.SubprocessError):
        subprocess.run([gpgconf, "--homedir", home, "--kill", "all"], capture_output=True, check=False, timeout=30)


@contextmanager
def _keyring(*, agent: bool = False) -> Iterator[gnupg.GPG]:
    """A python-gnupg handle on a new, empty GNUPGHOME that is destroyed on exit.

    Without ``agent`` gpg runs with ``--no-autostart``: public keys only, no gpg-agent process.
    """
    home = tempfile.mkdtemp(prefix="tfr-gnupg-", dir=_base_dir())
    os.chmod(home, 0o700)
    options = ["--trust-model", "always", "--no-auto-key-locate", "--no-auto-key-retrieve"]
    if not agent:
        options.append("--no-autostart")
    try:
        try:
            handle = gnupg.GPG(gpgbinary=GPG_BINARY, gnupghome=home, options=options)
        except (OSError, ValueError) as exc:
            raise GpgError(f"the OpenPGP tool (gpg) is not usable on the server: {exc}") from None
        yield handle
    finally:
        _kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def _run(handle: gnupg.GPG, *args: str) -> str:
    """Run the gpg binary on ``handle``'s home (for listings python-gnupg does not expose raw)."""
    command = [handle.gpgbinary, "--homedir", handle.gnupghome, "--batch", "--no-tty", *handle.options, *args]
    result = subprocess.run(command, capture_output=True, check=False, timeout=60)
    if result.returncode not in (0, 2):
        raise GpgError(f"gpg failed: {_last_error(result.stderr.decode(errors='replace'))}")
    return result.stdout.decode("utf-8", errors="replace")


def _last_error(stderr: str) -> str:
    """The most telling human-readable line gpg wrote (not a ``[GNUPG:]`` status line)."""
    lines = [line.removeprefix("gpg: ").strip() for line in stderr.splitlines() if not line.startswith("[GNUPG:]")]
    lines = [line for line in lines if line and "WARNING" not in line and "trustdb" not in line]
    return lines[-1] if lines else "unknown error"


def _status_lines(stderr: str) -> list[list[str]]:
    """The ``[GNUPG:] KEYWORD args…`` status lines python-gnupg collected on stderr, split."""
    return [line.split()[1:] for line in stderr.splitlines() if line.startswith("[GNUPG:] ")]


# --------------------------------------------------------------------------------------------------
# ASCII armor (RFC 4880 §6) and packet framing (§4.2)


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _armor_blocks(text: str) -> list[tuple[str, bytes, int]]:
    """Every ``-----BEGIN PGP …-----`` block in ``text``: (label, decoded packets, index of the line after END).

    Text before, between and after the blocks is skipped, as gpg does.  Raises GpgError for a
    damaged block: no END line, malformed header, invalid base64 or a CRC24 mismatch.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    blocks: list[tuple[str, bytes, int]] = []
    index = 0
    while index < len(lines):
        match = _BEGIN_RE.fullmatch(lines[index].strip())
        if not match:
            index += 1
            continue
        label = match.group(1)
        end_line = f"-----END {label}-----"
        try:
            end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == end_line)
        except StopIteration:
            raise GpgError(f"the armored {label} has no '{end_line}' line") from None
        body = [line.strip() for line in lines[index + 1 : end]]
        start = 0
        if body and _HEADER_RE.fullmatch(body[0]):
            while start < len(body) and body[start]:
                if not _HEADER_RE.fullmatch(body[start]):
                    raise GpgError(f"the armored {label} has a malformed header line")
                start += 1
        data_lines = [line for line in body[start:] if line]
        checksum = data_lines.pop() if data_lines and data_lines[-1].startswith("=") else None
        try:
            packets = base64.b64decode("".join(data_lines), validate=True)
        except (binascii.Error, ValueError):
            raise GpgError(f"the armored {label} is damaged: its body is not valid base64") from None
        if checksum is not None:
            try:
                expected = base64.b64decode(checksum[1:], validate=True)
            except (binascii.Error, ValueError):
                raise GpgError(f"the armored {label} has a malformed checksum line") from None
            if len(expected) != 3 or int.from_bytes(expected, "big") != _crc24(packets):
                raise GpgError(f"the armored {label} is damaged: its checksum (CRC24) does not match")
        blocks.append((label, packets, end + 1))
        index = end + 1
    return blocks


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """Split binary OpenPGP data into (tag, body) packets; GpgError when the framing is broken."""
    packets: list[tuple[int, bytes]] = []
    pos = 0

    def take(count: int) -> bytes:
        nonlocal pos
        if count < 0 or pos + count > len(data):
            raise GpgError("the OpenPGP data is truncated or malformed")
        chunk = data[pos : pos + count]
        pos += count
        return chunk

    while pos < len(data):
        header = take(1)[0]
        if not header & 0x80:
            raise GpgError("the OpenPGP data is malformed (a packet header lacks its high bit)")
        if header & 0x40:  # new format: tag in the low 6 bits, lengths may be partial
            tag, body = header & 0x3F, b""
            while True:
                first = take(1)[0]
                if first < 192:
                    body += take(first)
                elif first < 224:
                    body += take(((first - 192) << 8) + take(1)[0] + 192)
                elif first == 255:
                    body += take(int.from_bytes(take(4), "big"))
                else:  # partial body length: more chunks follow
                    body += take(1 << (first & 0x1F))
                    continue
                break
        else:  # old format: tag in bits 5-2, length type in bits 1-0
            tag, length_type = (header >> 2) & 0x0F, header & 0x03
            if length_type == 3:
                body = take(len(data) - pos)
            else:
                body = take(int.from_bytes(take((1, 2, 4)[length_type]), "big"))
        packets.append((tag, body))
    return packets


def dearmor_signature(data: bytes) -> bytes:
    """The binary OpenPGP packets of a signature.

    An ASCII-armored ``PGP SIGNATURE`` block is decoded (armor headers skipped, the optional CRC24
    checksum verified); binary data (first byte with the 0x80 bit set) is returned unchanged.
    Anything else raises :class:`GpgError`.
    """
    if not data:
        raise GpgError("the signature is empty")
    if data[0] & 0x80:
        return data
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        text = ""
    if not text.lstrip().startswith("-----BEGIN PGP "):
        raise GpgError("the signature is neither a binary nor an armored OpenPGP signature")
    blocks = _armor_blocks(text)
    if not blocks:
        raise GpgError("the signature is neither a binary nor an armored OpenPGP signature")
    label, packets, after = blocks[0]
    if label != "PGP SIGNATURE":
        raise GpgError(f"expected an armored PGP SIGNATURE, got a {label}")
    if len(blocks) > 1 or any(line.strip() for line in text.splitlines()[after:]):
        raise GpgError("unexpected data after the armored signature")
    if not packets or not packets[0] & 0x80:
        raise GpgError("the armored signature holds no OpenPGP packets")
    return packets


# --------------------------------------------------------------------------------------------------
# Public keys


@dataclass
class _Key:
    """One ``pub``/``sub`` record of gpg's colon listing."""

    validity: str
    length: str
    algo: str
    created: datetime | None
    expires: datetime | None
    capabilities: str  # the key's own capabilities (lower case letters)
    curve: str
    fingerprint: str = ""

    def expired(self, now: datetime) -> bool:
        return self.validity == "e" or (self.expires is not None and self.expires <= now)

    def revoked(self) -> bool:
        return self.validity == "r"

    def may_sign(self, now: datetime, *, allow_expired: bool = False) -> bool:
        if "s" not in self.capabilities or self.revoked() or self.validity in ("i", "d"):
            return False
        return allow_expired or not self.expired(now)


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    if "T" in value:  # ISO 8601 ("20200101T000000") when gpg is not in fixed-list mode
        return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value), UTC)


def _listing(handle: gnupg.GPG) -> list[tuple[_Key, list[_Key], list[tuple[str, str]]]]:
    """gpg's colon listing of the public keys in ``handle``: [(primary, subkeys, [(uid validity, uid)])]."""
    output = _run(
        handle, "--with-colons", "--fixed-list-mode", "--with-fingerprint", "--with-fingerprint", "--list-keys"
    )
    keys: list[tuple[_Key, list[_Key], list[tuple[str, str]]]] = []
    last: _Key | None = None
    for line in output.splitlines():
        fields = line.split(":")
        kind = fields[0]
        if kind in ("pub", "sub"):
            fields += [""] * (20 - len(fields))
            last = _Key(
                validity=fields[1],
                length=fields[2],
                algo=fields[3],
                created=_timestamp(fields[5]),
                expires=_timestamp(fields[6]),
                capabilities="".join(c for c in fields[11] if c.islower()),
                curve=fields[16],
            )
            if kind == "pub":
                keys.append((last, [], []))
            elif keys:
                keys[-1][1].append(last)
        elif kind == "fpr" and last is not None and not last.fingerprint and len(fields) > 9:
            last.fingerprint = fields[9].upper()
        elif kind == "uid" and keys and len(fields) > 9:
            keys[-1][2].append((fields[1], _unescape(fields[9])))
    return keys


def _unescape(value: str) -> str:
    """Undo gpg's C-style ``\\xNN`` escaping in colon listings (e.g. ``:`` in user IDs)."""
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), value.encode("utf-8"))
    return raw.decode("utf-8", errors="replace")


def _algorithm(key: _Key) -> str:
    name = _ALGORITHMS.get(key.algo, f"algorithm-{key.algo}")
    if name in ("RSA", "DSA", "ElGamal") or not key.curve:
        return f"{name}-{key.length}"
    return f"{name}-{key.curve}"


def _check_signing_ability(primary: _Key, subkeys: list[_Key], now: datetime, *, allow_expired: bool) -> None:
    """Refuse a key that is revoked, expired or cannot sign (primary and every subkey considered)."""
    if primary.revoked():
        raise GpgError("the key has been revoked")
    if primary.expired(now) and not allow_expired:
        when = f" on {primary.expires:%Y-%m-%d}" if primary.expires else ""
        raise GpgError(f"the key has expired{when}")
    signers = [key for key in (primary, *subkeys) if "s" in key.capabilities]
    if not signers:
        raise GpgError(
            "the key cannot sign: neither the primary key nor a subkey has signing capability "
            "(is it an encryption-only key?)"
        )
    if any(key.may_sign(now, allow_expired=allow_expired) for key in signers):
        return
    if any(key.expired(now) for key in signers) and not allow_expired:
        raise GpgError("the key has expired: every key or subkey that can sign has expired")
    if any(key.revoked() for key in signers):
        raise GpgError("the key cannot sign: every key or subkey that can sign has been revoked")
    raise GpgError("the key cannot sign: no valid key or subkey with signing capability")


def parse_public_key(armor: str, *, allow_expired: bool = False) -> PublicKey:
    """Check an uploaded ASCII-armored public key and return it normalised.

    Refused with :class:`GpgError`: anything that is not exactly one armored OpenPGP public key
    (garbage, several primary keys, a private key - which is never handed to gpg), and a key that
    Terraform could not use to check a provider's signature: revoked, without signing capability,
    or expired (the primary key, or every signing-capable subkey).  ``allow_expired`` accepts an
    expired key, as Terraform does with a warning (for keys of upstream registries, say).
    """
    if isinstance(armor, bytes):
        armor = armor.decode("utf-8", errors="replace")
    if not isinstance(armor, str) or not armor.strip():
        raise GpgError("not an OpenPGP public key: the key is empty")
    if len(armor) > MAX_KEY_SIZE:
        raise GpgError(f"the key is too large (more than {MAX_KEY_SIZE // (1024 * 1024)} MiB)")
    if "PRIVATE KEY BLOCK-----" in armor:
        raise GpgError(_PRIVATE_KEY_MESSAGE)
    try:
        blocks = _armor_blocks(armor)
    except GpgError as exc:
        raise GpgError(f"not an OpenPGP public key: {exc}") from None
    if not blocks:
        raise GpgError("not an OpenPGP public key (expected an ASCII-armored '-----BEGIN PGP PUBLIC KEY BLOCK-----')")
    for label, _, _ in blocks:
        if label != "PGP PUBLIC KEY BLOCK":
            raise GpgError(f"not an OpenPGP public key (got a {label})")
    binary = b"".join(packets for _, packets, _ in blocks)
    try:
        tags = [tag for tag, _ in _packets(binary)]
    except GpgError as exc:
        raise GpgError(f"not an OpenPGP public key: {exc}") from None
    if _TAG_SECRET_KEY in tags or _TAG_SECRET_SUBKEY in tags:
        raise GpgError(_PRIVATE_KEY_MESSAGE)
    primaries = tags.count(_TAG_PUBLIC_KEY)
    if primaries == 0:
        raise GpgError("not an OpenPGP public key (the armor holds no public key packet)")
    if primaries > 1:
        raise GpgError(f"the upload holds {primaries} keys: upload one key at a time")

    with _keyring() as handle:
        imported = handle.import_keys(binary)
        if not imported.fingerprints:
            reason = _last_error(imported.stderr or "")
            raise GpgError(f"not a usable OpenPGP public key: gpg refused it ({reason})")
        listing = _listing(handle)
        if len(listing) != 1:
            raise GpgError(f"the upload holds {len(listing)} keys: upload one key at a time")
        primary, subkeys, uids = listing[0]
        _check_signing_ability(primary, subkeys, datetime.now(UTC), allow_expired=allow_expired)
        fingerprint = primary.fingerprint
        exported = handle.export_keys(fingerprint, armor=True)
    if not exported or not fingerprint or primary.created is None:
        raise GpgError("not a usable OpenPGP public key: gpg could not export it")
    return PublicKey(
        fingerprint=fingerprint,
        key_id=fingerprint[-16:],
        ascii_armor=exported if exported.endswith("\n") else exported + "\n",
        uids=tuple(uid for validity, uid in uids if validity != "r"),
        algorithm=_algorithm(primary),
        created=primary.created,
        expires=primary.expires,
        can_sign=True,
    )


# --------------------------------------------------------------------------------------------------
# Signatures


def verify_detached(data: bytes, signature: bytes, public_keys: Sequence[str], *, allow_expired: bool = False) -> str:
    """The fingerprint of the primary key whose key or subkey made ``signature`` over ``data``.

    ``signature`` is a detached OpenPGP signature, binary or armored (it is dearmored first) and
    must hold exactly one v4/v5 signature packet.  ``public_keys`` are armored public keys (those of
    the namespace).  Terraform only warns about a signature by a key that has expired since; the
    registry refuses it at publish time unless ``allow_expired`` (for mirroring upstream packages).
    Revoked keys, keys without signing capability and unknown issuers are always refused.
    """
    binary = dearmor_signature(signature)
    packets = _packets(binary)
    if any(tag != _TAG_SIGNATURE for tag, _ in packets):
        raise GpgError(
            "the signature file holds something other than an OpenPGP signature "
            "(expected a detached signature made with 'gpg --detach-sign')"
        )
    if len(packets) != 1:
        raise GpgError(f"the signature file holds {len(packets)} signatures: expected exactly one")
    body = packets[0][1]
    if not body or body[0] not in (4, 5):
        version = body[0] if body else "?"
        raise GpgError(f"unsupported OpenPGP signature version {version} (Terraform reads v4 signatures)")

    with _keyring() as handle:
        for armor in public_keys:
            if armor and armor.strip():
                handle.import_keys(armor)
        sig_path = Path(handle.gnupghome) / "detached.sig"
        sig_path.write_bytes(binary)
        verified = handle.verify_data(str(sig_path), data)
        statuses = _status_lines(verified.stderr or "")
    keywords = {fields[0] for fields in statuses if fields}
    errsig_codes = {fields[6] for fields in statuses if fields and fields[0] == "ERRSIG" and len(fields) > 6}
    primary = str(verified.pubkey_fingerprint or verified.fingerprint or "").upper()
    # python-gnupg: GOODSIG sets valid; EXPKEYSIG/REVKEYSIG (a good signature by an expired or revoked
    # key) clear it and set key_status; VALIDSIG (fingerprints) follows in both cases.
    if verified.valid and primary and verified.key_status is None and "GOODSIG" in keywords:
        return primary
    if verified.key_status == "signing key was revoked" or "REVKEYSIG" in keywords:
        raise GpgError("the signing key has been revoked")
    if verified.key_status == "signing key has expired" or "EXPKEYSIG" in keywords:
        if allow_expired and primary and "VALIDSIG" in keywords and "BADSIG" not in keywords:
            return primary
        raise GpgError("the signing key has expired")
    if verified.status == "signature expired" or "EXPSIG" in keywords:
        raise GpgError("the signature has expired")
    if "BADSIG" in keywords or verified.status == "signature bad":
        raise GpgError("bad signature: SHA256SUMS does not match its signature")
    if "NO_PUBKEY" in keywords or "9" in errsig_codes:
        raise GpgError(_UNKNOWN_ISSUER_MESSAGE)
    if "125" in errsig_codes:
        raise GpgError("the key that made the signature is not allowed to sign (wrong key usage)")
    if "4" in errsig_codes:
        raise GpgError("the signature uses an algorithm gpg does not support")
    detail = _last_error(verified.stderr) if verified.stderr else (verified.status or "no signature")
    raise GpgError(f"the signature does not verify ({detail})")


# --------------------------------------------------------------------------------------------------
# Registry-managed keys


def _check_identity(name: str, email: str) -> None:
    if not name.strip() and not email.strip():
        raise GpgError("a signing key needs a name or an e-mail address")
    if _ASCII_CONTROL_RE.search(name) or _ASCII_CONTROL_RE.search(email) or any(c in name for c in "<>"):
        raise GpgError("the key's name and e-mail address must not contain control characters or '<', '>'")
    if email.strip() and not re.fullmatch(r"[^@\s<>()]+@[^@\s<>()]+", email.strip()):
        raise GpgError(f"not an e-mail address: {email!r}")


def generate_key(name: str, email: str, *, key_type: str = "ed25519") -> ManagedKey:
    """Make a new signing-only key without passphrase or expiry: ``ed25519`` (default) or ``rsa3072``."""
    if key_type not in _KEY_TYPES:
        raise GpgError(f"unknown key type {key_type!r}: use one of {', '.join(sorted(_KEY_TYPES))}")
    _check_identity(name, email)
    params = _KEY_TYPES[key_type] + "Key-Usage: sign\n"
    if name.strip():
        params += f"Name-Real: {name.strip()}\n"
    if email.strip():
        params += f"Name-Email: {email.strip()}\n"
    params += "Expire-Date: 0\n%no-protection\n%commit\n"
    with _keyring(agent=True) as handle:
        result = handle.gen_key(params)
        fingerprint = str(result.fingerprint or "")
        if not fingerprint:
            raise GpgError(f"gpg could not generate a key: {_last_error(result.stderr or '')}")
        public = handle.export_keys(fingerprint, armor=True)
        private = handle.export_keys(fingerprint, secret=True, armor=True, expect_passphrase=False)
    if "PRIVATE KEY BLOCK" not in (private or ""):
        raise GpgError("gpg could not export the new private key")
    return ManagedKey(public=parse_public_key(public), private_armor=private)


def sign_detached(data: bytes, private_armor: str) -> bytes:
    """A binary detached signature (SHA-256 digest) over ``data`` made with the key in ``private_armor``.

    The key must be unprotected (registry-managed keys are).  If its primary key cannot sign, gpg
    uses a signing subkey.
    """
    try:
        blocks = _armor_blocks(private_armor or "")
        tags = [tag for _, packets, _ in blocks for tag, _ in _packets(packets)]
    except GpgError as exc:
        raise GpgError(f"cannot load the registry-managed signing key: {exc}") from None
    if tags.count(_TAG_SECRET_KEY) != 1:
        raise GpgError("cannot load the registry-managed signing key: expected exactly one private key")
    with _keyring(agent=True) as handle:
        imported = handle.import_keys(private_armor)
        if not imported.fingerprints or not int(imported.sec_imported or 0):
            reason = _last_error(imported.stderr or "")
            raise GpgError(f"cannot load the registry-managed signing key: gpg refused it ({reason})")
        fingerprint = imported.fingerprints[0]
        signed = handle.sign(
            data,
            keyid=fingerprint,
            detach=True,
            binary=True,
            extra_args=["--digest-algo", "SHA256", "--pinentry-mode", "loopback"],
        )
        if signed.status != "signature created" or not signed.data:
            reason = _last_error(signed.stderr or "")
            raise GpgError(f"cannot sign with the registry-managed signing key: {reason}")
        if str(signed.hash_algo) not in _STRONG_DIGESTS:
            raise GpgError(f"gpg signed with a weak digest (algorithm {signed.hash_algo})")
        return bytes(signed.data)


# --------------------------------------------------------------------------------------------------
# Encryption at rest (managed private keys, upstream tokens)


def _fernet(key: bytes, purpose: bytes) -> Fernet:
    material = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not material:
        raise GpgError("the encryption key for stored secrets is empty")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(material)
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_secret(text: str, key: bytes, purpose: bytes = PRIVATE_KEY_PURPOSE) -> str:
    """Encrypt a secret for storage: Fernet with a key derived from ``key`` by HKDF-SHA256 (info=``purpose``)."""
    return _fernet(key, purpose).encrypt(text.encode("utf-8")).decode("ascii")


def decrypt_secret(token: str, key: bytes, purpose: bytes = PRIVATE_KEY_PURPOSE) -> str:
    """Decrypt what :func:`encrypt_secret` returned; GpgError with a wrong ``key``/``purpose`` or a damaged token."""
    try:
        return _fernet(key, purpose).decrypt(token.encode("utf-8") if isinstance(token, str) else token).decode()
    except (InvalidToken, ValueError, TypeError):
        if purpose == PRIVATE_KEY_PURPOSE:
            raise GpgError("cannot decrypt the registry-managed signing key: wrong encryption key?") from None
        raise GpgError("cannot decrypt a stored secret: wrong encryption key?") from None


def encrypt_private_key(private_armor: str, key: bytes) -> str:
    """Encrypt a managed key's private armor for storage in the database."""
    return encrypt_secret(private_armor, key, PRIVATE_KEY_PURPOSE)


def decrypt_private_key(token: str, key: bytes) -> str:
    """Decrypt what :func:`encrypt_private_key` returned; GpgError("… wrong encryption key?") otherwise."""
    return decrypt_secret(token, key, PRIVATE_KEY_PURPOSE)
