"""tfregistry.gpg against the real gpg binary (no mocks).

Test keys are made here with the gpg command line in throw-away homes, independently of the
code under test; ``--faked-system-time`` makes keys that have already expired.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tfregistry import gpg

DATA = b"0123abcd" * 8 + b"  terraform-provider-foo_1.0.0_linux_amd64.zip\n"
PAST = "20200101T000000"  # keys made "then" with a 1y expiry have expired


class GpgHome:
    """A temporary GNUPGHOME driven through the gpg command line."""

    def __init__(self, passphrase: str = "") -> None:
        self.path = Path(tempfile.mkdtemp(prefix="tfrt-", dir="/tmp"))
        self.path.chmod(0o700)
        self.passphrase = passphrase
        if passphrase:  # the agent's calibrated S2K count makes protecting a key take seconds here
            (self.path / "gpg-agent.conf").write_text("s2k-count 65536\n")

    def __call__(self, *args: str, input: bytes | None = None) -> bytes:
        result = subprocess.run(
            [
                "gpg",
                "--homedir",
                str(self.path),
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                self.passphrase,
                *args,
            ],
            input=input,
            capture_output=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout

    def quick_key(self, uid: str, algo: str, usage: str, expire: str = "never", *, at: str | None = None) -> str:
        """Make a primary key; return its fingerprint."""
        faked = ("--faked-system-time", at) if at else ()
        before = set(self.fingerprints())
        self(*faked, "--quick-gen-key", uid, algo, usage, expire)
        return next(fpr for fpr in self.fingerprints() if fpr not in before)

    def add_subkey(
        self, fingerprint: str, algo: str, usage: str, expire: str = "never", *, at: str | None = None
    ) -> str:
        """Add a subkey; return its fingerprint."""
        faked = ("--faked-system-time", at) if at else ()
        before = set(self.fingerprints())
        self(*faked, "--quick-add-key", fingerprint, algo, usage, expire)
        (added,) = set(self.fingerprints()) - before
        return added

    def fingerprints(self) -> list[str]:
        listing = self("--with-colons", "--list-keys").decode()
        return [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]

    def public_armor(self, *fingerprints: str) -> str:
        return self("--armor", "--export", *fingerprints).decode()

    def sign(self, data: bytes, *, user: str | None = None, armor: bool = False, at: str | None = None) -> bytes:
        args = ["--faked-system-time", at] if at else []
        if user:
            args += ["--local-user", user]
        if armor:
            args.append("--armor")
        return self(*args, "--detach-sign", "--output", "-", input=data)

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.path), "--kill", "all"], capture_output=True, check=False)
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture(scope="module")
def homes() -> Iterator[Callable[..., GpgHome]]:
    """A factory of gpg homes, all closed (agent killed, directory removed) at the end of the module."""
    made: list[GpgHome] = []

    def make(passphrase: str = "") -> GpgHome:
        made.append(GpgHome(passphrase))
        return made[-1]

    yield make
    for home in made:
        home.close()


@pytest.fixture(scope="module")
def ed(homes) -> tuple[GpgHome, str]:
    home = homes()
    return home, home.quick_key("Ed Signer <ed@example.test>", "ed25519", "sign")


@pytest.fixture(scope="module")
def rsa(homes) -> tuple[GpgHome, str]:
    home = homes()
    return home, home.quick_key("RSA Signer <rsa@example.test>", "rsa3072", "sign")


@pytest.fixture(scope="module")
def subkeyed(homes) -> tuple[GpgHome, str, str]:
    """A certify-only ed25519 primary key with an ed25519 signing subkey: (home, primary, subkey)."""
    home = homes()
    primary = home.quick_key("Subkey Signer <sub@example.test>", "ed25519", "cert")
    return home, primary, home.add_subkey(primary, "ed25519", "sign")


@pytest.fixture(scope="module")
def expired(homes) -> tuple[GpgHome, str]:
    """An ed25519 signing key made in 2020 that expired at the end of 2020."""
    home = homes()
    return home, home.quick_key("Old Signer <old@example.test>", "ed25519", "sign", "1y", at=PAST)


@pytest.fixture(scope="module")
def managed() -> dict[str, gpg.ManagedKey]:
    return {
        key_type: gpg.generate_key("tfregistry test", "test@tfregistry.invalid", key_type=key_type)
        for key_type in ("ed25519", "rsa3072")
    }


def _revoke_with_certificate(home: GpgHome, fingerprint: str) -> None:
    """Import the revocation certificate gpg 2.2 stored in openpgp-revocs.d when it made the key."""
    certificate = (home.path / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    home("--import", input=certificate.replace(":-----BEGIN PGP", "-----BEGIN PGP").encode())


# -------------------------------------------------------------------------------------------------
# parse_public_key


def test_parse_ed25519_public_key(ed):
    home, fingerprint = ed
    before = datetime.now(UTC)
    key = gpg.parse_public_key(home.public_armor())
    assert key.fingerprint == fingerprint and len(key.fingerprint) == 40 and key.fingerprint.isupper()
    assert key.key_id == fingerprint[-16:]
    assert key.algorithm == "EdDSA-ed25519"
    assert key.uids == ("Ed Signer <ed@example.test>",)
    assert key.can_sign and key.expires is None
    assert key.created.tzinfo is not None and before - timedelta(hours=1) < key.created <= before + timedelta(minutes=1)
    assert key.ascii_armor.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    assert key.ascii_armor.endswith("-----END PGP PUBLIC KEY BLOCK-----\n")
    # The normalised armor parses to the same key; text around the block and CRLF line ends are fine.
    assert gpg.parse_public_key(key.ascii_armor) == key
    pasted = "Here is my key:\r\n\r\n" + key.ascii_armor.replace("\n", "\r\n") + "\r\nthanks\r\n"
    assert gpg.parse_public_key(pasted).fingerprint == fingerprint


def test_parse_rsa_public_key(rsa):
    home, fingerprint = rsa
    key = gpg.parse_public_key(home.public_armor())
    assert (key.fingerprint, key.algorithm, key.key_id) == (fingerprint, "RSA-3072", fingerprint[-16:])


def test_parse_key_with_expiry_and_unusual_user_ids(homes):
    home = homes()
    fingerprint = home.quick_key("Zoë Tëst: Release <zoe@example.test>", "ed25519", "sign", "2y")
    home("--quick-add-uid", fingerprint, "Second ID <second@example.test>")
    key = gpg.parse_public_key(home.public_armor())
    # gpg lists the primary user ID first: the one with the newest self-signature when none is marked,
    # so the order depends on whether the second ID was added in a later second.
    assert sorted(key.uids) == ["Second ID <second@example.test>", "Zoë Tëst: Release <zoe@example.test>"]
    assert key.expires is not None and timedelta(days=700) < key.expires - key.created < timedelta(days=760)


def test_accepts_certify_only_primary_with_signing_subkey(subkeyed):
    home, primary, _ = subkeyed
    key = gpg.parse_public_key(home.public_armor())
    assert key.fingerprint == primary and key.can_sign


@pytest.mark.parametrize(
    "armor",
    [
        "",
        "hello",
        "mDMEXgvhABYJKwYBBAHaRw8BAQdAO3xOpc9ym8x1wbuRxfBcR5V2qgRKuV+9V4hj",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!! not base64 !!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEXgvhABYJKwYBBAHaRw8BAQdA\n",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\naGVsbG8gd29ybGQ=\n-----END PGP PUBLIC KEY BLOCK-----\n",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n",
    ],
    ids=["empty", "text", "bare-base64", "bad-base64", "no-end", "not-packets", "empty-block"],
)
def test_refuses_garbage(armor):
    with pytest.raises(gpg.GpgError, match="not an OpenPGP public key"):
        gpg.parse_public_key(armor)


def test_refuses_a_signature_and_a_damaged_key(ed):
    home, _ = ed
    with pytest.raises(gpg.GpgError, match="not an OpenPGP public key.*PGP SIGNATURE"):
        gpg.parse_public_key(home.sign(DATA, armor=True).decode())
    lines = home.public_armor().splitlines()
    crc = next(i for i, line in enumerate(lines) if line.startswith("="))
    lines[crc] = "=AAAA" if lines[crc] != "=AAAA" else "=AAAB"
    with pytest.raises(gpg.GpgError, match="checksum"):
        gpg.parse_public_key("\n".join(lines))


def test_refuses_two_keys(ed, rsa, homes):
    both = ed[0].public_armor() + rsa[0].public_armor()
    with pytest.raises(gpg.GpgError, match="upload one key at a time"):
        gpg.parse_public_key(both)
    one_block = homes()
    one_block("--import", input=both.encode())
    with pytest.raises(gpg.GpgError, match="2 keys: upload one key at a time"):
        gpg.parse_public_key(one_block.public_armor())


def test_refuses_a_private_key(ed):
    home, fingerprint = ed
    secret = home("--armor", "--export-secret-keys", fingerprint).decode()
    assert "PRIVATE KEY BLOCK" in secret
    with pytest.raises(gpg.GpgError, match="PRIVATE key: upload only the public key"):
        gpg.parse_public_key(secret)
    # Relabelled as a public key block, the secret-key packets still give it away (before gpg sees it).
    relabelled = secret.replace("PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK")
    with pytest.raises(gpg.GpgError, match="PRIVATE key"):
        gpg.parse_public_key(relabelled)


def test_refuses_an_expired_key(expired):
    home, _ = expired
    with pytest.raises(gpg.GpgError, match="the key has expired on 2020-12-31"):
        gpg.parse_public_key(home.public_armor())


def test_refuses_a_key_whose_signing_subkeys_expired(homes):
    home = homes()
    primary = home.quick_key("Expired Subkey <es@example.test>", "ed25519", "cert", at=PAST)
    home.add_subkey(primary, "ed25519", "sign", "1y", at=PAST)
    with pytest.raises(gpg.GpgError, match="the key has expired: every key or subkey that can sign has expired"):
        gpg.parse_public_key(home.public_armor())


def test_refuses_encryption_only_keys(homes):
    ecc = homes()
    primary = ecc.quick_key("Encrypt Only <enc@example.test>", "ed25519", "cert")
    ecc.add_subkey(primary, "cv25519", "encr")
    with pytest.raises(gpg.GpgError, match="the key cannot sign"):
        gpg.parse_public_key(ecc.public_armor())
    rsa_encrypt = homes()
    rsa_encrypt(
        "--gen-key",
        input=b"%no-protection\nKey-Type: RSA\nKey-Length: 2048\nKey-Usage: encrypt\nName-Real: RSA Encrypt\n"
        b"Expire-Date: 0\n%commit\n",
    )
    with pytest.raises(gpg.GpgError, match="the key cannot sign"):
        gpg.parse_public_key(rsa_encrypt.public_armor())


def test_refuses_a_revoked_key(homes):
    home = homes()
    fingerprint = home.quick_key("Revoked <rev@example.test>", "ed25519", "sign")
    assert gpg.parse_public_key(home.public_armor()).fingerprint == fingerprint
    _revoke_with_certificate(home, fingerprint)
    with pytest.raises(gpg.GpgError, match="the key has been revoked"):
        gpg.parse_public_key(home.public_armor())


def test_refuses_a_key_whose_only_signing_subkey_is_revoked(homes):
    home = homes()
    primary = home.quick_key("Revoked Subkey <rs@example.test>", "ed25519", "cert")
    home.add_subkey(primary, "ed25519", "sign")
    home("--command-fd", "0", "--edit-key", primary, input=b"key 1\nrevkey\ny\n0\n\ny\nsave\n")
    assert "\nsub:r:" in home("--with-colons", "--list-keys").decode()
    with pytest.raises(gpg.GpgError, match="every key or subkey that can sign has been revoked"):
        gpg.parse_public_key(home.public_armor())


# -------------------------------------------------------------------------------------------------
# dearmor_signature


def test_dearmor_matches_gpg_dearmor(ed):
    home, _ = ed
    armored = home.sign(DATA, armor=True)
    binary = gpg.dearmor_signature(armored)
    assert binary == home("--dearmor", input=armored)
    assert binary[0] & 0x80
    assert gpg.dearmor_signature(binary) is binary  # binary input is returned unchanged


def test_dearmor_accepts_headers_crlf_and_no_checksum(ed):
    home, _ = ed
    armored = home.sign(DATA, armor=True).decode()
    binary = gpg.dearmor_signature(armored.encode())
    lines = armored.splitlines()
    with_header = [lines[0], "Version: GnuPG v2", "Comment: https://example.test/key", *lines[1:]]
    assert gpg.dearmor_signature("\r\n".join(with_header).encode()) == binary
    without_crc = [line for line in lines if not line.startswith("=")]
    assert gpg.dearmor_signature("\n".join(without_crc).encode()) == binary
    assert gpg.dearmor_signature(b"\n  " + armored.encode() + b"\n\n") == binary


def test_dearmor_refuses_damaged_armor(ed):
    home, _ = ed
    lines = home.sign(DATA, armor=True).decode().splitlines()
    crc = next(i for i, line in enumerate(lines) if line.startswith("="))
    bad_crc = [*lines[:crc], "=AAAA" if lines[crc] != "=AAAA" else "=AAAB", *lines[crc + 1 :]]
    with pytest.raises(gpg.GpgError, match="checksum"):
        gpg.dearmor_signature("\n".join(bad_crc).encode())
    flipped = list(lines)
    body = crc - 1  # the last base64 line: change one character, keep the CRC line
    flipped[body] = ("B" if flipped[body][0] != "B" else "C") + flipped[body][1:]
    with pytest.raises(gpg.GpgError, match="checksum"):
        gpg.dearmor_signature("\n".join(flipped).encode())
    with pytest.raises(gpg.GpgError, match="END PGP SIGNATURE"):
        gpg.dearmor_signature("\n".join(lines[:-1]).encode())
    with pytest.raises(gpg.GpgError, match="base64"):
        gpg.dearmor_signature(b"-----BEGIN PGP SIGNATURE-----\n\n@@@@\n-----END PGP SIGNATURE-----\n")
    with pytest.raises(gpg.GpgError, match="expected an armored PGP SIGNATURE"):
        gpg.dearmor_signature(home.public_armor().encode())


@pytest.mark.parametrize("data", [b"", b"plain text", b"\x00\x01\x02", b"\x7fELF", b"  -----BEGIN PGP"])
def test_dearmor_refuses_other_data(data):
    with pytest.raises(gpg.GpgError, match="neither a binary nor an armored|empty"):
        gpg.dearmor_signature(data)


# -------------------------------------------------------------------------------------------------
# verify_detached


def test_verify_with_the_right_key(ed, rsa):
    (ed_home, ed_fpr), (rsa_home, rsa_fpr) = ed, rsa
    ed_armor, rsa_armor = ed_home.public_armor(), rsa_home.public_armor()
    assert gpg.verify_detached(DATA, ed_home.sign(DATA), [ed_armor]) == ed_fpr
    assert gpg.verify_detached(DATA, ed_home.sign(DATA, armor=True), [rsa_armor, ed_armor]) == ed_fpr
    assert gpg.verify_detached(DATA, rsa_home.sign(DATA), [ed_armor, rsa_armor]) == rsa_fpr


def test_verify_refuses_unknown_issuer_and_bad_signatures(ed, rsa):
    (ed_home, _), (rsa_home, _) = ed, rsa
    signature = ed_home.sign(DATA)
    for keys in ([rsa_home.public_armor()], [], ["", "garbage"]):
        with pytest.raises(gpg.GpgError, match="does not verify against any key of this namespace"):
            gpg.verify_detached(DATA, signature, keys)
    with pytest.raises(gpg.GpgError, match="bad signature: SHA256SUMS does not match its signature"):
        gpg.verify_detached(DATA + b"x", signature, [ed_home.public_armor()])
    rsa_signature = rsa_home.sign(DATA)
    with pytest.raises(gpg.GpgError, match="bad signature"):
        gpg.verify_detached(DATA.replace(b"0", b"1"), rsa_signature, [rsa_home.public_armor()])


def test_verify_refuses_what_is_not_one_detached_signature(ed):
    home, fingerprint = ed
    armor = home.public_armor()
    signature = home.sign(DATA)
    with pytest.raises(gpg.GpgError, match="exactly one"):
        gpg.verify_detached(DATA, signature + signature, [armor])
    with pytest.raises(gpg.GpgError, match="something other than an OpenPGP signature"):
        gpg.verify_detached(DATA, home("--export", fingerprint), [armor])
    with pytest.raises(gpg.GpgError, match="truncated or malformed"):
        gpg.verify_detached(DATA, signature[:-10], [armor])
    with pytest.raises(gpg.GpgError, match="neither"):
        gpg.verify_detached(DATA, b"not a signature", [armor])


def test_signature_by_a_subkey_maps_to_the_primary(subkeyed):
    home, primary, subkey = subkeyed
    signature = home.sign(DATA, user=subkey + "!")
    assert gpg.verify_detached(DATA, signature, [home.public_armor()]) == primary


def test_verify_refuses_an_expired_signing_key(expired):
    home, fingerprint = expired
    signature = home.sign(DATA, at="20200601T000000")
    with pytest.raises(gpg.GpgError, match="the signing key has expired"):
        gpg.verify_detached(DATA, signature, [home.public_armor()])
    # Terraform only warns about an expired key; allow_expired does the same (mirroring upstream packages).
    assert gpg.verify_detached(DATA, signature, [home.public_armor()], allow_expired=True) == fingerprint
    with pytest.raises(gpg.GpgError, match="bad signature"):
        gpg.verify_detached(DATA + b"x", signature, [home.public_armor()], allow_expired=True)
    key = gpg.parse_public_key(home.public_armor(), allow_expired=True)
    assert key.fingerprint == fingerprint and key.expires == datetime(2020, 12, 31, tzinfo=UTC)


def test_verify_refuses_a_revoked_signing_key(homes):
    home = homes()
    fingerprint = home.quick_key("Revoked Later <rl@example.test>", "ed25519", "sign")
    signature = home.sign(DATA)
    assert gpg.verify_detached(DATA, signature, [home.public_armor()]) == fingerprint
    _revoke_with_certificate(home, fingerprint)
    for allow_expired in (False, True):
        with pytest.raises(gpg.GpgError, match="the signing key has been revoked"):
            gpg.verify_detached(DATA, signature, [home.public_armor()], allow_expired=allow_expired)


def test_verify_refuses_a_key_that_may_no_longer_sign(homes):
    """Sign, then change the key's usage to certify-only: gpg reports 'Wrong key usage'."""
    home = homes()
    fingerprint = home.quick_key("Usage Changed <uc@example.test>", "ed25519", "sign")
    signature = home.sign(DATA)
    home("--expert", "--command-fd", "0", "--edit-key", fingerprint, input=b"change-usage\nS\nQ\nsave\n")
    with pytest.raises(gpg.GpgError, match="not allowed to sign"):
        gpg.verify_detached(DATA, signature, [home.public_armor()])


# -------------------------------------------------------------------------------------------------
# generate_key, sign_detached


@pytest.mark.parametrize(("key_type", "algorithm"), [("ed25519", "EdDSA-ed25519"), ("rsa3072", "RSA-3072")])
def test_generate_sign_verify(managed, homes, key_type, algorithm):
    key = managed[key_type]
    assert key.public.algorithm == algorithm and key.public.expires is None and key.public.can_sign
    assert key.public.uids == ("tfregistry test <test@tfregistry.invalid>",)
    assert key.private_armor.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert "PRIVATE" not in key.public.ascii_armor
    signature = gpg.sign_detached(DATA, key.private_armor)
    # Terraform's rules: a binary detached signature (first byte has the MSB set) ...
    assert signature[0] & 0x80 and not signature.startswith(b"-----")
    # ... holding one v4 signature packet over a binary document, with a SHA-256 digest ...
    (packet,) = gpg._packets(signature)
    assert packet[0] == 2 and packet[1][:2] == b"\x04\x00" and packet[1][3] == 8
    # ... by a key whose public armor the registry accepts.
    public = gpg.parse_public_key(key.public.ascii_armor)
    assert gpg.verify_detached(DATA, signature, [public.ascii_armor]) == key.public.fingerprint
    # The stock gpg agrees, in a keyring of its own.
    home = homes()
    home("--import", input=key.public.ascii_armor.encode())
    sig_file = home.path / "SHA256SUMS.sig"
    sig_file.write_bytes(signature)
    status = home("--status-fd", "1", "--verify", str(sig_file), "-", input=DATA).decode()
    assert f"VALIDSIG {key.public.fingerprint}" in status


def test_generate_key_refuses_bad_parameters():
    with pytest.raises(gpg.GpgError, match="unknown key type"):
        gpg.generate_key("x", "x@example.test", key_type="dsa1024")
    with pytest.raises(gpg.GpgError, match="control characters"):
        gpg.generate_key("evil\n%pubring /tmp/x", "x@example.test")
    with pytest.raises(gpg.GpgError, match="not an e-mail address"):
        gpg.generate_key("name", "not-an-address")


def test_sign_detached_refuses_unusable_private_keys(ed, homes):
    home, _ = ed
    with pytest.raises(gpg.GpgError, match="expected exactly one private key"):
        gpg.sign_detached(DATA, home.public_armor())
    with pytest.raises(gpg.GpgError, match="expected exactly one private key"):
        gpg.sign_detached(DATA, "garbage")
    protected = homes("secret")
    protected.quick_key("Protected <protected@example.test>", "ed25519", "sign")
    armor = protected("--armor", "--export-secret-keys").decode()
    started = time.monotonic()
    with pytest.raises(gpg.GpgError, match="cannot sign with the registry-managed signing key"):
        gpg.sign_detached(DATA, armor)
    assert time.monotonic() - started < 10  # no pinentry waiting for a passphrase


def test_concurrent_operations_do_not_interfere(managed):
    key = managed["ed25519"]

    def round_trip(index: int) -> str:
        data = DATA + str(index).encode()
        return gpg.verify_detached(data, gpg.sign_detached(data, key.private_armor), [key.public.ascii_armor])

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(round_trip, range(12))) == {key.public.fingerprint}


# -------------------------------------------------------------------------------------------------
# Encryption at rest


def test_private_key_encryption_round_trip(managed):
    private = managed["ed25519"].private_armor
    secret = b"settings secret of any length"
    token = gpg.encrypt_private_key(private, secret)
    assert "PRIVATE" not in token and token != gpg.encrypt_private_key(private, secret)  # random IV
    assert gpg.decrypt_private_key(token, secret) == private
    for short_or_long in (b"k", b"k" * 200):
        assert gpg.decrypt_private_key(gpg.encrypt_private_key("x", short_or_long), short_or_long) == "x"


def test_private_key_decryption_with_a_wrong_key_or_damaged_token():
    token = gpg.encrypt_private_key("-----BEGIN PGP PRIVATE KEY BLOCK-----\n", b"right")
    message = "cannot decrypt the registry-managed signing key: wrong encryption key?"
    for token_, key in ((token, b"wrong"), (token[:-4] + "AAAA", b"right"), ("not a token", b"right")):
        with pytest.raises(gpg.GpgError) as info:
            gpg.decrypt_private_key(token_, key)
        assert str(info.value) == message


def test_secrets_are_bound_to_their_purpose():
    token = gpg.encrypt_secret("upstream token", b"key", b"tfregistry mirror upstream token")
    assert gpg.decrypt_secret(token, b"key", b"tfregistry mirror upstream token") == "upstream token"
    with pytest.raises(gpg.GpgError, match="cannot decrypt a stored secret: wrong encryption key"):
        gpg.decrypt_secret(token, b"key", b"another purpose")
    with pytest.raises(gpg.GpgError, match="signing key"):
        gpg.decrypt_private_key(token, b"key")
    assert gpg.decrypt_secret(gpg.encrypt_private_key("armor", b"key"), b"key") == "armor"


# -------------------------------------------------------------------------------------------------
# Nothing left behind


def _live_agents_under(directory: str) -> list[str]:
    """Command lines of running (non-zombie) gpg-agent processes whose home is under ``directory``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "gpg-agent" in cmdline and directory in cmdline:
            found.append(cmdline)
    return found


def test_no_keyring_or_agent_is_left_behind(managed, ed, monkeypatch):
    base = tempfile.mkdtemp(prefix="tfrb-", dir="/tmp")
    try:
        monkeypatch.setattr(tempfile, "tempdir", base)  # where tfregistry.gpg makes its homes
        key = managed["ed25519"]
        signature = gpg.sign_detached(DATA, key.private_armor)  # uses an agent
        gpg.verify_detached(DATA, signature, [key.public.ascii_armor])
        gpg.parse_public_key(key.public.ascii_armor)
        gpg.generate_key("cleanup", "cleanup@example.test")
        with pytest.raises(gpg.GpgError):  # an error inside the keyring
            gpg.verify_detached(DATA + b"x", signature, [key.public.ascii_armor])
        with pytest.raises(gpg.GpgError):
            gpg.parse_public_key(ed[0]("--armor", "--export-secret-keys").decode())
        assert os.listdir(base) == []
        assert _live_agents_under(base) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
