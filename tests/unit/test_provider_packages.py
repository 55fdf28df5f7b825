"""Provider package rules, the h1:/zh: hashes, SHA256SUMS parsing and `terraform providers mirror` folders."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from tests.providers_kit import h1_of_zip, provider_zip
from tfregistry import provider_packages as pkg

# protocols.md §5.3: verified against Terraform's lock file and `terraform providers mirror`.
VECTOR_NAME = "terraform-provider-foo_v1.0.0"
VECTOR_CONTENT = b"#!/bin/sh\necho 'fake linux_amd64 provider for protocol tests; it does not speak gRPC' >&2\nexit 1\n"
VECTOR_H1 = "h1:o82i9HNihB4eCjZliva6djq9Y1j6WWMWjHjSMZ8ADI4="
EXE = "terraform-provider-foo_v1.0.0"
A, B = "a" * 64, "b" * 64


def zip_of(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip with one entry per item, in order (names ending in '/' become directory entries)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_with(*infos: tuple[zipfile.ZipInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in infos:
            zf.writestr(info, data)
    return buf.getvalue()


def inspect(data: bytes, type_: str = "foo", **kwargs: int) -> pkg.PackageReport:
    return pkg.inspect_provider_zip(io.BytesIO(data), type_, **kwargs)


def patch_headers(data: bytes, offset_local: int, offset_central: int, fmt: str, update) -> bytes:
    """Rewrite one field of every local and central-directory header of a zip."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", offset_local), (b"PK\x01\x02", offset_central)):
        at = out.find(signature)
        while at >= 0:
            (value,) = struct.unpack_from(fmt, out, at + offset)
            struct.pack_into(fmt, out, at + offset, update(value))
            at = out.find(signature, at + 4)
    return bytes(out)


# --- h1 / zh -----------------------------------------------------------------------------------


def test_h1_matches_the_published_test_vector():
    assert len(VECTOR_CONTENT) == 97
    assert hashlib.sha256(VECTOR_CONTENT).hexdigest().startswith("37c8b434")
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # h1 ignores the zip encoding
        data = zip_of({VECTOR_NAME: VECTOR_CONTENT}, compression=compression)
        report = inspect(data)
        assert report.h1 == VECTOR_H1
        assert report.sha256 == hashlib.sha256(data).hexdigest()  # the zh: hash / SHA256SUMS entry
        assert report.size == len(data)
        assert (report.executable, report.file_count, report.uncompressed_bytes) == (VECTOR_NAME, 1, 97)


def test_zip_h1_equals_the_unpacked_directory_h1(tmp_path):
    data = provider_zip(
        "foo", "1.0.0", "linux_amd64", extra={"LICENSE": b"MIT\n", "sub/notes.txt": b"x", "a-b": b"", "é.md": b"y"}
    )
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    report = inspect(data)
    assert report.h1 == pkg.h1_of_directory(tmp_path) == h1_of_zip(data)
    assert report.file_count == 5


def test_h1_hashes_raw_entry_names_like_go():
    # Go hashes the stored name bytes; Python decodes names without the UTF-8 flag as cp437.
    flagged = zip_of({EXE: b"x", "é.md": b"y"})
    unflagged = patch_headers(flagged, 6, 8, "<H", lambda flags: flags & ~0x800)
    assert zipfile.ZipFile(io.BytesIO(unflagged)).namelist()[1] != "é.md"
    assert inspect(unflagged).h1 == inspect(flagged).h1


def test_h1_of_directory_follows_dirhash(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"2")
    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / EXE).write_bytes(b"")
    assert pkg.h1_of_directory(tmp_path) == inspect(zip_of({"sub/b": b"2", "a": b"1", EXE: b""})).h1
    (tmp_path / "link").symlink_to(tmp_path / "a")  # symlinks to files are read through
    assert pkg.h1_of_directory(tmp_path) == h1_of_zip(zip_of({"sub/b": b"2", "a": b"1", EXE: b"", "link": b"1"}))
    (tmp_path / "dirlink").symlink_to(tmp_path / "sub")
    with pytest.raises(pkg.PackageError, match="symbolic link to a folder"):
        pkg.h1_of_directory(tmp_path)
    with pytest.raises(pkg.PackageError, match="not a directory"):
        pkg.h1_of_directory(tmp_path / "a")


# --- zip checks --------------------------------------------------------------------------------


def test_directory_entries_are_refused_with_an_explanation():
    with pytest.raises(pkg.PackageError, match="directory entry 'docs/'") as caught:
        inspect(zip_of({EXE: b"x", "docs/": b"", "docs/index.md": b"x"}))
    assert "lock file" in str(caught.value) and "zip -D" in str(caught.value) and "GoReleaser" in str(caught.value)


@pytest.mark.parametrize(
    ("create_system", "attr"),
    [(3, (stat.S_IFDIR | 0o755) << 16), (0, 0x10), (11, 0x10)],
    ids=["unix-mode-dir", "msdos-dir", "ntfs-dir"],
)
def test_directory_entries_without_a_trailing_slash_are_refused(create_system, attr):
    info = zipfile.ZipInfo("docs")
    info.create_system, info.external_attr = create_system, attr
    with pytest.raises(pkg.PackageError, match="directory entry 'docs'"):
        inspect(zip_with((zipfile.ZipInfo(EXE), b"x"), (info, b"")))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil", "unsafe path"),
        ("/etc/evil", "unsafe path"),
        ("a\\b", "unsafe path"),
        ("./terraform-provider-foo", "unsafe path"),
        ("a//b", "unsafe path"),
        ("a/./b", "unsafe path"),
        ("C:evil", "unsafe path"),
        ("bad\nname", "control characters"),
    ],
)
def test_unsafe_names_are_refused(name, message):
    with pytest.raises(pkg.PackageError, match=message):
        inspect(zip_of({EXE: b"x", name: b"x"}))


def test_symlinks_and_special_files_are_refused():
    link = zipfile.ZipInfo("terraform-provider-foo")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(pkg.PackageError, match="symbolic link 'terraform-provider-foo'"):
        inspect(zip_with((link, b"/usr/bin/evil")))
    fifo = zipfile.ZipInfo("pipe")
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    with pytest.raises(pkg.PackageError, match="not a regular file"):
        inspect(zip_with((zipfile.ZipInfo(EXE), b"x"), (fifo, b"")))


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ((EXE, EXE), "two entries named"),
        ((EXE, "LICENSE", "license"), "differ only in case"),
        ((EXE, "docs", "docs/a.md"), "both as a file and as the folder"),
    ],
)
def test_colliding_names_are_refused(names, message):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in names:
            if name in zf.namelist():
                with pytest.warns(UserWarning, match="Duplicate name"):
                    zf.writestr(name, b"y")
            else:
                zf.writestr(name, b"x")
    with pytest.raises(pkg.PackageError, match=message):
        inspect(buf.getvalue())


def test_compression_methods_terraform_cannot_unpack_are_refused():
    with pytest.raises(pkg.PackageError, match="compression method 12"):
        inspect(zip_of({EXE: b"x" * 100}, compression=zipfile.ZIP_BZIP2))


def test_encrypted_entries_are_refused():
    data = patch_headers(zip_of({EXE: b"x"}), 6, 8, "<H", lambda flags: flags | 0x1)
    with pytest.raises(pkg.PackageError, match="encrypted"):
        inspect(data)


@pytest.mark.parametrize(
    "name",
    [
        "terraform-provider-foo",
        "terraform-provider-foo_v1.2.3",
        "terraform-provider-foo_v1.2.3.exe",
        "terraform-provider-foo.exe",
    ],
)
def test_executable_names_terraform_accepts(name):
    assert inspect(zip_of({"README.md": b"r", name: b"x"})).executable == name


def test_the_first_executable_in_lexical_order_wins():
    data = zip_of({"terraform-provider-foo_v1.0.0": b"x", "terraform-provider-foo": b"y", "LICENSE": b""})
    assert inspect(data).executable == "terraform-provider-foo"


@pytest.mark.parametrize(
    ("entries", "found"),
    [
        ({"terraform-provider-foobar": b"x"}, "'terraform-provider-foobar'"),
        ({"terraform-provider-bar_v1.0.0": b"x"}, "'terraform-provider-bar_v1.0.0'"),
        ({"bin/terraform-provider-foo": b"x", "README.md": b""}, "'README.md', 'bin/terraform-provider-foo'"),
        ({}, "no entries"),
    ],
    ids=["longer-type", "other-type", "only-in-subfolder", "empty-zip"],
)
def test_missing_executable_names_what_was_found(entries, found):
    with pytest.raises(pkg.PackageError, match="no provider executable") as caught:
        inspect(zip_of(entries))
    assert "terraform-provider-foo_" in str(caught.value) and found in str(caught.value)


def test_not_a_zip():
    for data in (b"", b"not a zip", b"PK\x03\x04" + b"\0" * 100):
        with pytest.raises(pkg.PackageError, match="not a zip archive"):
            inspect(data)


def test_zip_bomb_stops_at_the_uncompressed_limit():
    data = zip_of({EXE: b"\0" * (8 * 1024 * 1024)}, compression=zipfile.ZIP_DEFLATED)
    assert len(data) < 20_000
    with pytest.raises(pkg.PackageError, match="unpacks to more than 1048576 bytes"):
        inspect(data, max_uncompressed_bytes=1024 * 1024)
    # the total counts across entries
    data = zip_of({EXE: b"\0" * 600_000, "b": b"\0" * 600_000}, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(pkg.PackageError, match="stopped while reading 'b'"):
        inspect(data, max_uncompressed_bytes=1_000_000)
    assert inspect(data, max_uncompressed_bytes=1_200_000).uncompressed_bytes == 1_200_000


def test_header_sizes_are_not_trusted():
    data = zip_of({EXE: b"\0" * (4 * 1024 * 1024)}, compression=zipfile.ZIP_DEFLATED)
    # uncompressed size (local header offset 22, central directory offset 24) claims 1 byte
    lying = patch_headers(data, 22, 24, "<I", lambda size: 1)
    with pytest.raises(pkg.PackageError, match="is corrupt"):
        inspect(lying)


def test_entry_count_limit():
    data = zip_of({EXE: b"x", **{f"f{i}": b"" for i in range(10)}})
    assert inspect(data, max_files=11).file_count == 11
    with pytest.raises(pkg.PackageError, match="11 entries, more than the limit of 10"):
        inspect(data, max_files=10)


def test_crc_and_deflate_corruption_are_refused():
    data = bytearray(zip_of({EXE: b"hello world" * 100}))
    data[30 + len(EXE) + 5] ^= 0xFF  # inside the stored entry's data
    with pytest.raises(pkg.PackageError, match=f"entry '{EXE}' is corrupt: Bad CRC-32"):
        inspect(bytes(data))
    data = bytearray(zip_of({EXE: os.urandom(2000)}, compression=zipfile.ZIP_DEFLATED))
    for i in range(30 + len(EXE), 30 + len(EXE) + 40):
        data[i] ^= 0x55
    with pytest.raises(pkg.PackageError, match="is corrupt"):
        inspect(bytes(data))


def test_the_file_object_is_left_at_the_start():
    fh = io.BytesIO(zip_of({EXE: b"x"}))
    fh.seek(7)
    pkg.inspect_provider_zip(fh, "foo")
    assert fh.tell() == 0


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("terraform-provider-foo_1.0.0_linux_amd64.zip", ("foo", "1.0.0", "linux", "amd64")),
        (
            "terraform-provider-foo_1.0.0-rc.1+build.5_darwin_arm64.zip",
            ("foo", "1.0.0-rc.1+build.5", "darwin", "arm64"),
        ),
        ("terraform-provider-my-thing_2.0.0_windows_386.zip", ("my-thing", "2.0.0", "windows", "386")),
        ("terraform-provider-foo_0.1.0-beta-2_linux_mips64le.zip", ("foo", "0.1.0-beta-2", "linux", "mips64le")),
    ],
)
def test_parse_package_filename(filename, expected):
    assert pkg.parse_package_filename(filename) == pkg.PackageName(*expected)
    assert pkg.package_filename(*expected) == filename


@pytest.mark.parametrize(
    ("filename", "kwargs", "message"),
    [
        ("terraform-provider-foo_1.0.0_plan9_amd64.zip", {}, "unknown operating system 'plan9'"),
        ("terraform-provider-foo_1.0.0_linux_vax.zip", {}, "unknown architecture 'vax'"),
        ("terraform-provider-foo_1.0_linux_amd64.zip", {}, "not a valid semantic version"),
        ("terraform-provider-foo_v1.0.0_linux_amd64.zip", {}, "drop the leading 'v'"),
        ("terraform-provider-foo_bar_1.0.0_linux_amd64.zip", {}, "separated by '_'"),
        ("terraform-provider-foo_1.0.0_linux.zip", {}, "is not named"),
        ("terraform-provider-Foo_1.0.0_linux_amd64.zip", {}, "lower case"),
        ("foo.zip", {}, "'foo.zip' is not named"),
        ("terraform-provider-foo_1.0.0_linux_amd64.tar.gz", {}, "is not named"),
        (
            "terraform-provider-foo_1.0.0_linux_amd64.zip",
            {"version": "1.1.0"},
            "file terraform-provider-foo_1.0.0_linux_amd64.zip is for version 1.0.0, not 1.1.0",
        ),
        ("terraform-provider-foo_1.0.0_linux_amd64.zip", {"type_": "bar"}, "type 'foo', not 'bar'"),
    ],
)
def test_parse_package_filename_errors(filename, kwargs, message):
    with pytest.raises(pkg.PackageError, match=re.escape(message)):
        pkg.parse_package_filename(filename, **kwargs)


def test_sums_and_signature_names():
    assert pkg.sums_filename("foo", "1.2.0") == "terraform-provider-foo_1.2.0_SHA256SUMS"
    assert pkg.signature_filename("foo", "1.2.0") == "terraform-provider-foo_1.2.0_SHA256SUMS.sig"


@pytest.mark.parametrize(
    ("namespace", "type_"), [("acme", "foo"), ("a", "b"), ("acme-corp", "my-cloud2"), ("x" * 64, "y")]
)
def test_valid_provider_addresses(namespace, type_):
    pkg.validate_provider_address(namespace, type_)


@pytest.mark.parametrize(
    ("namespace", "type_", "message"),
    [
        ("Acme", "foo", "must be lower case ('acme')"),
        ("acme", "-foo", "start or end with a dash"),
        ("acme", "foo-", "start or end with a dash"),
        ("ac--me", "foo", "consecutive dashes"),
        ("a.b", "foo", "dots are not allowed"),
        ("acme", "foo_bar", "only letters"),
        ("", "foo", "empty"),
        ("x" * 65, "foo", "65 characters"),
        ("acme", "terraform-foo", "drop the 'terraform-' prefix"),
    ],
)
def test_invalid_provider_addresses(namespace, type_, message):
    with pytest.raises(pkg.PackageError, match=re.escape(message)) as caught:
        pkg.validate_provider_address(namespace, type_)
    assert "e.g." in str(caught.value)


# --- SHA256SUMS --------------------------------------------------------------------------------


def test_shasums_accepted_forms():
    assert pkg.parse_shasums(f"{A}  x.zip\n{B}  y.zip\n".encode()) == {"x.zip": A, "y.zip": B}
    assert list(pkg.parse_shasums(f"{B}  y.zip\n{A}  x.zip\n".encode())) == ["y.zip", "x.zip"]  # file order
    assert pkg.parse_shasums(f"{A} x.zip\n{B} y.zip".encode()) == {"x.zip": A, "y.zip": B}  # one space, no final \n
    assert pkg.parse_shasums(f"{A}  x.zip\r\n{B}  y.zip\r\n".encode()) == {"x.zip": A, "y.zip": B}  # CRLF


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{A}  x.zip\n\n{B}  y.zip\n", "blank line at line 2: Terraform 1.15 crashes on it; remove it"),
        (f"{A}  x.zip\n\n", "blank line at line 2"),
        (f"{A}  x.zip\n   \n", "only spaces at line 2"),
        (f"\n{A}  x.zip\n", "blank line at line 1"),
        ("\n", "blank line at line 1"),
        ("", "empty"),
        (f"{A[:-1]}  x.zip\n", "line 1 is not '<64 hex digits>  <file name>'"),
        (f"{A[:-1]}g  x.zip\n", "line 1 is not"),
        (f"{A}   x.zip\n", "line 1 is not"),
        (f"{A}\tx.zip\n", "line 1 is not"),
        (f"{A}  x.zip extra\n", "line 1 is not"),
        (f"{A}  x.zip\n{A}\n", "line 2 is not"),
        (f"{A.upper()}  x.zip\n", "upper-case"),
        (f"{A}  x.zip\n{B}  x.zip\n", "lists x.zip twice (lines 1 and 2)"),
        (f"{A} *x.zip\n", "marks x.zip with '*'"),
        (f"\ufeff{A}  x.zip\n", "byte-order mark"),
    ],
)
def test_shasums_refused(text, message):
    with pytest.raises(pkg.PackageError, match=re.escape(message)):
        pkg.parse_shasums(text.encode())


def test_shasums_must_be_utf8():
    with pytest.raises(pkg.PackageError, match="not UTF-8"):
        pkg.parse_shasums(f"{A}  x.zip\n".encode() + b"\xff\n")


def test_render_shasums_is_canonical():
    sums = pkg.render_shasums({"b.zip": B, "a.zip": A.upper()})
    assert sums == f"{A}  a.zip\n{B}  b.zip\n".encode()
    assert pkg.parse_shasums(sums) == {"a.zip": A, "b.zip": B}
    for bad in ({}, {"a.zip": "123"}, {"a b.zip": A}, {"*a.zip": A}):
        with pytest.raises(pkg.PackageError):
            pkg.render_shasums(bad)


def test_check_sums_cover():
    sums = pkg.parse_shasums(f"{A}  terraform-provider-foo_1.0.0_linux_amd64.zip\n{B}  other.json\n".encode())
    pkg.check_sums_cover(sums, {"terraform-provider-foo_1.0.0_linux_amd64.zip": A})
    pkg.check_sums_cover(sums, {})
    with pytest.raises(pkg.PackageError) as caught:
        pkg.check_sums_cover(sums, {"terraform-provider-foo_1.0.0_darwin_arm64.zip": A})
    assert str(caught.value) == "SHA256SUMS has no line for terraform-provider-foo_1.0.0_darwin_arm64.zip"
    with pytest.raises(pkg.PackageError) as caught:
        pkg.check_sums_cover(sums, {"terraform-provider-foo_1.0.0_linux_amd64.zip": B})
    assert str(caught.value) == (
        f"terraform-provider-foo_1.0.0_linux_amd64.zip does not match its SHA256SUMS line (expected {A}, got {B}): "
        "the file was changed after signing"
    )


# --- protocols and the GoReleaser manifest -----------------------------------------------------


def test_validate_protocols():
    assert pkg.validate_protocols(["5.0", "6.0"]) == ["5.0", "6.0"]
    assert pkg.validate_protocols([" 6.0", "6.0", "4.1"]) == ["6.0", "4.1"]
    for bad, message in (
        (["7.0"], "major version must be 4, 5 or 6"),
        (["3.0"], "major version must be 4, 5 or 6"),
        (["5"], "use MAJOR.MINOR"),
        (["x"], "use MAJOR.MINOR"),
        (["05.0"], "use MAJOR.MINOR"),
        ([5.0], "use MAJOR.MINOR"),
        ([], "no plugin protocol versions"),
        ("5.0", "must be a list"),
    ):
        with pytest.raises(pkg.PackageError, match=message):
            pkg.validate_protocols(bad)


def test_read_goreleaser_manifest():
    manifest = {"version": 1, "metadata": {"protocol_versions": ["6.0"]}}
    assert pkg.read_goreleaser_manifest(json.dumps(manifest).encode()) == ["6.0"]
    for bad, message in (
        (b'{"version": 1, "metadata": {"protocol_versions": ["7.0"]}}', "7.0"),
        (b'{"version": 1, "metadata": {"protocol_versions": ["5"]}}', "'5'"),
        (b'{"version": 1, "metadata": {"protocol_versions": []}}', "lists no metadata.protocol_versions"),
        (b'{"version": 1}', "lists no metadata.protocol_versions"),
        (b'{"version": 2, "metadata": {"protocol_versions": ["6.0"]}}', "only version 1"),
        (b"[]", "not a JSON object"),
        (b"{", "not valid JSON"),
    ):
        with pytest.raises(pkg.PackageError, match=message):
            pkg.read_goreleaser_manifest(bad)


# --- mirror folders ----------------------------------------------------------------------------


def mirror_provider(root: Path, host: str, versions: dict[str, tuple[str, ...]], type_: str = "foo") -> Path:
    """Write HOST/acme/TYPE exactly as `terraform providers mirror` does (protocols.md §5.5)."""
    folder = root / host / "acme" / type_
    folder.mkdir(parents=True)
    (folder / "index.json").write_text(json.dumps({"versions": {v: {} for v in versions}}))
    for version, platforms in versions.items():
        archives = {}
        for platform in platforms:
            data = provider_zip(type_, version, platform)
            name = f"terraform-provider-{type_}_{version}_{platform}.zip"
            (folder / name).write_bytes(data)
            archives[platform] = {"url": name, "hashes": [h1_of_zip(data)]}
        (folder / f"{version}.json").write_text(json.dumps({"archives": archives}))
    return folder


def set_url(folder: Path, url: str, version: str = "1.0.0", platform: str = "linux_amd64") -> None:
    doc = json.loads((folder / f"{version}.json").read_text())
    doc["archives"][platform]["url"] = url
    (folder / f"{version}.json").write_text(json.dumps(doc))


def test_scan_mirror_directory(tmp_path):
    mirror_provider(tmp_path, "localhost:8443", {"1.0.0": ("linux_amd64",)})
    mirror_provider(
        tmp_path, "registry.example.test", {"1.10.0": ("linux_amd64", "darwin_arm64"), "1.9.0-rc.1": ("linux_amd64",)}
    )
    found = pkg.scan_mirror_directory(tmp_path)
    assert [(a.hostname, a.namespace, a.type, a.version, a.os, a.arch) for a in found] == [
        ("localhost:8443", "acme", "foo", "1.0.0", "linux", "amd64"),
        ("registry.example.test", "acme", "foo", "1.9.0-rc.1", "linux", "amd64"),
        ("registry.example.test", "acme", "foo", "1.10.0", "darwin", "arm64"),
        ("registry.example.test", "acme", "foo", "1.10.0", "linux", "amd64"),
    ]
    first = found[0]
    assert first.path == (tmp_path / "localhost:8443/acme/foo/terraform-provider-foo_1.0.0_linux_amd64.zip").resolve()
    with open(first.path, "rb") as fh:
        report = pkg.inspect_provider_zip(fh, first.type)
    pkg.verify_mirror_hashes(report, first.hashes)


def test_scan_mirror_directory_ignores_hidden_entries(tmp_path):
    folder = mirror_provider(tmp_path, "localhost:8443", {"1.0.0": ("linux_amd64",)})
    (tmp_path / ".DS_Store").write_bytes(b"")
    (folder / ".old.zip").write_bytes(b"")
    assert len(pkg.scan_mirror_directory(tmp_path)) == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("../../x.zip", "points outside"),
        ("../../../../x.zip", "points outside"),
        ("https://cdn.example.test/x.zip", "only local files can be imported"),
        ("http://cdn.example.test/x.zip", "only local files can be imported"),
        ("//cdn.example.test/x.zip", "only local files can be imported"),
        ("file:///etc/passwd", "only local files can be imported"),
        ("/etc/passwd", "only local files can be imported"),
        ("localhost:8443/acme/foo/x.zip", "only local files can be imported"),
        ("x.zip?download=1", "only local files can be imported"),
        ("missing.zip", "missing"),
        ("", "has no 'url'"),
    ],
)
def test_scan_mirror_directory_refuses_bad_urls(tmp_path, url, message):
    root = tmp_path / "mirror"
    folder = mirror_provider(root, "localhost:8443", {"1.0.0": ("linux_amd64",)})
    (folder / "terraform-provider-foo_1.0.0_linux_amd64.zip").rename(tmp_path / "x.zip")  # not left unlisted
    set_url(folder, url)
    with pytest.raises(pkg.PackageError, match=message) as caught:
        pkg.scan_mirror_directory(root)
    assert "1.0.0.json" in str(caught.value)


def test_scan_mirror_directory_refuses_a_symlink_out_of_the_folder(tmp_path):
    folder = mirror_provider(tmp_path / "mirror", "localhost:8443", {"1.0.0": ("linux_amd64",)})
    name = "terraform-provider-foo_1.0.0_linux_amd64.zip"
    (folder / name).rename(tmp_path / "elsewhere.zip")
    (folder / name).symlink_to(tmp_path / "elsewhere.zip")
    with pytest.raises(pkg.PackageError, match="points outside"):
        pkg.scan_mirror_directory(tmp_path / "mirror")


def test_scan_mirror_directory_accepts_an_encoded_url(tmp_path):
    folder = mirror_provider(tmp_path, "example.test", {"1.0.0+build.5": ("linux_amd64",)})
    set_url(folder, "terraform-provider-foo_1.0.0%2Bbuild.5_linux_amd64.zip", version="1.0.0+build.5")
    (archive,) = pkg.scan_mirror_directory(tmp_path)
    assert archive.version == "1.0.0+build.5" and archive.path.name.endswith("1.0.0+build.5_linux_amd64.zip")


def test_scan_mirror_directory_skips_nothing_silently(tmp_path):
    folder = mirror_provider(tmp_path, "localhost:8443", {"1.0.0": ("linux_amd64",)})

    def fails(message: str) -> str:
        with pytest.raises(pkg.PackageError, match=message) as caught:
            pkg.scan_mirror_directory(tmp_path)
        return str(caught.value)

    (folder / "terraform-provider-foo_0.9.0_linux_amd64.zip").write_bytes(b"")
    assert "terraform-provider-foo_0.9.0_linux_amd64.zip: not listed" in fails("would not be imported")
    (folder / "terraform-provider-foo_0.9.0_linux_amd64.zip").unlink()
    (folder / "0.9.0.json").write_text("{}")
    fails("0.9.0.json: not listed")
    (folder / "0.9.0.json").unlink()
    (tmp_path / "README.txt").write_text("hi")
    fails("README.txt: unexpected file")
    (tmp_path / "README.txt").unlink()
    (tmp_path / "localhost:8443" / "acme" / "bar").mkdir()
    fails("acme/bar: no index.json")


@pytest.mark.parametrize(
    ("index", "doc", "message"),
    [
        ("{", None, "index.json: not readable JSON"),
        ("[]", None, "index.json: expected a JSON object"),
        ('{"versions": {}}', None, "with at least one version"),
        ('{"versions": {"v1.0.0": {}}}', None, "drop the leading 'v'"),
        ('{"versions": {"2.0.0": {}}}', None, "lists version 2.0.0 but 2.0.0.json is missing"),
        (None, {"archives": {}}, "1.0.0.json: expected"),
        (None, {"archives": {"plan9_amd64": {"url": "x.zip"}}}, "'plan9_amd64' is not a known OS_ARCH"),
        (None, {"archives": {"linux_amd64": "x.zip"}}, "archive linux_amd64 is not a JSON object"),
        (
            None,
            {"archives": {"linux_amd64": {"url": "terraform-provider-foo_1.0.0_linux_amd64.zip", "hashes": "h1:x"}}},
            "'hashes' must be a list",
        ),
        (
            None,
            {"archives": {"darwin_arm64": {"url": "terraform-provider-foo_1.0.0_linux_amd64.zip", "hashes": []}}},
            "archive darwin_arm64 of foo 1.0.0 points to terraform-provider-foo_1.0.0_linux_amd64.zip",
        ),
    ],
)
def test_scan_mirror_directory_refuses_bad_json(tmp_path, index, doc, message):
    folder = mirror_provider(tmp_path, "localhost:8443", {"1.0.0": ("linux_amd64",)})
    if index is not None:
        (folder / "index.json").write_text(index)
    if doc is not None:
        (folder / "1.0.0.json").write_text(json.dumps(doc))
    with pytest.raises(pkg.PackageError, match=re.escape(message)):
        pkg.scan_mirror_directory(tmp_path)


def test_scan_mirror_directory_checks_names(tmp_path):
    mirror_provider(tmp_path, "localhost:8443", {"1.0.0": ("linux_amd64",)}, type_="terraform-foo")
    with pytest.raises(pkg.PackageError, match="terraform-foo: invalid provider type"):
        pkg.scan_mirror_directory(tmp_path)


def test_scan_empty_or_missing_folder(tmp_path):
    with pytest.raises(pkg.PackageError, match="is it a `terraform providers mirror` folder"):
        pkg.scan_mirror_directory(tmp_path)
    with pytest.raises(pkg.PackageError, match="is not a directory"):
        pkg.scan_mirror_directory(tmp_path / "nope")


def test_verify_mirror_hashes():
    data = zip_of({VECTOR_NAME: VECTOR_CONTENT})
    report = inspect(data)
    zh = f"zh:{hashlib.sha256(data).hexdigest()}"
    pkg.verify_mirror_hashes(report, [VECTOR_H1])
    pkg.verify_mirror_hashes(report, [zh])
    pkg.verify_mirror_hashes(report, ["zh:" + zh[3:].upper()])
    pkg.verify_mirror_hashes(report, ["h1:AAAA", VECTOR_H1, "h9:future"])  # one match is enough
    with pytest.raises(pkg.PackageError, match="matches none of its listed hashes"):
        pkg.verify_mirror_hashes(report, ["h1:AAAA", "zh:" + "0" * 64])
    with pytest.raises(pkg.PackageError, match="no hashes listed: cannot verify"):
        pkg.verify_mirror_hashes(report, [])
    with pytest.raises(pkg.PackageError, match="no h1: or zh: hash listed"):
        pkg.verify_mirror_hashes(report, ["h9:future"])


# --- hardening: names, special mode bits, compression ratio ------------------------------------


@pytest.mark.parametrize("char", ["\0", "\n", "\t", "\x1b", "\x7f", "\x85", "\x9f"])
def test_control_characters_in_entry_names_are_refused(char):
    rule = r"control character .* \(rule: no control characters, C0, DEL or C1"
    if char != "\0":  # Python's zipfile cuts a name at NUL when writing
        with pytest.raises(pkg.PackageError, match=rule):
            inspect(zip_of({EXE: b"x", f"docs{char}.md": b"x"}))
    # The same bytes written raw, without the UTF-8 flag.
    placeholder = "docs" + "X" * len(char.encode()) + ".md"
    data = zip_of({EXE: b"x", placeholder: b"x"}).replace(placeholder.encode(), f"docs{char}.md".encode())
    with pytest.raises(pkg.PackageError, match=rule):
        inspect(data)


def test_entry_names_must_be_utf8_as_go_reads_them():
    data = zip_of({EXE: b"x", "aXb": b"x"}).replace(b"aXb", b"a\x85b")  # a lone C1 byte, no UTF-8 flag
    with pytest.raises(pkg.PackageError, match=r"not valid UTF-8 \(rule: names must be UTF-8\)"):
        inspect(data)
    # UTF-8 bytes without the UTF-8 flag: Go reads them as UTF-8, and so does the check.
    data = zip_of({EXE: b"x", "aXb": b"x"}).replace(b"aXb", "a\x85".encode())
    with pytest.raises(pkg.PackageError, match="control character '\\\\x85'"):
        inspect(data)
    assert inspect(zip_of({EXE: b"x", "docs/caf\u00e9.md": b"x"})).file_count == 2


def test_entry_name_lengths_are_counted_in_utf8_bytes():
    assert inspect(zip_of({EXE: b"x", "é" * 127 + "a": b"x"})).file_count == 2
    with pytest.raises(pkg.PackageError, match=r"component of 256 bytes.*at most 255 bytes of UTF-8"):
        inspect(zip_of({EXE: b"x", "é" * 128: b"x"}))
    longest = "/".join(["d" * 200] * 20) + "/" + "f" * 76  # 4096 bytes
    assert inspect(zip_of({EXE: b"x", longest: b"x"})).file_count == 2
    with pytest.raises(pkg.PackageError, match=r"path of 4097 bytes \(rule: paths are at most 4096 bytes"):
        inspect(zip_of({EXE: b"x", longest + "g": b"x"}))


@pytest.mark.parametrize(
    ("mode", "bits"),
    [(0o4755, "setuid bit"), (0o2755, "setgid bit"), (0o1755, "sticky bit"), (0o6755, "setuid and setgid bits")],
)
@pytest.mark.parametrize("create_system", [3, 0])
def test_setuid_setgid_and_sticky_bits_are_refused(mode, bits, create_system):
    info = zipfile.ZipInfo(EXE)
    info.create_system, info.external_attr = create_system, (stat.S_IFREG | mode) << 16
    with pytest.raises(pkg.PackageError, match=re.escape(f"entry {EXE!r} has the {bits} set (mode {mode:04o})")):
        inspect(zip_with((info, b"x")))
    info.external_attr = (stat.S_IFREG | 0o755) << 16
    assert inspect(zip_with((info, b"x"))).executable == EXE


def test_an_entry_compressed_over_the_ratio_is_refused_while_it_is_read():
    noise = os.urandom(2_000_000)
    data = zip_of({EXE: noise, "zeros": bytes(20_000_000)}, compression=zipfile.ZIP_DEFLATED)
    # As a whole the zip is ~11:1; the entry "zeros" alone is ~1000:1.
    with pytest.raises(pkg.PackageError, match=r"entry 'zeros' is compressed more than 100:1 \(over (\d+) bytes") as e:
        inspect(data)
    unpacked = int(re.search(r"over (\d+) bytes", str(e.value)).group(1))
    assert 4 * 1024**2 < unpacked <= 4 * 1024**2 + 1024**2  # stopped one read past the floor
    assert inspect(data, max_compression_ratio=0).uncompressed_bytes == 22_000_000
    assert inspect(data, max_compression_ratio=2000).file_count == 2


def test_a_zip_compressed_over_the_ratio_as_a_whole_is_refused():
    # Each entry stays under the floor; together they pass it, at ~1000:1.
    data = zip_of({EXE: b"x", **{f"z{i}": bytes(1024**2) for i in range(8)}}, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(pkg.PackageError, match=r"the zip is compressed more than 100:1 .* stopped while reading 'z3'"):
        inspect(data)
    assert inspect(data, compression_ratio_floor=16 * 1024**2).file_count == 9


def test_small_highly_compressible_zips_pass_under_the_floor():
    data = zip_of({EXE: bytes(3 * 1024**2)}, compression=zipfile.ZIP_DEFLATED)
    assert len(data) * 100 < 3 * 1024**2
    assert inspect(data).uncompressed_bytes == 3 * 1024**2
    with pytest.raises(pkg.PackageError, match="compressed more than 100:1"):
        inspect(data, compression_ratio_floor=1024**2)
