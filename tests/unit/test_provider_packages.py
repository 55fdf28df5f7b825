"""Provider package rules, the h1:/zh: hashes, SHA256SUMS parsing and mirror folders."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.providers_kit import h1_of_zip, provider_zip
from tfregistry import provider_packages as pkg

VECTOR_CONTENT = b"#!/bin/sh\necho 'fake linux_amd64 provider for protocol tests; it does not speak gRPC' >&2\nexit 1\n"


def zip_of(entries: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for d in dirs:
            zf.writestr(d, b"")
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_h1_matches_the_published_test_vector():
    data = zip_of({"terraform-provider-foo_v1.0.0": VECTOR_CONTENT})
    assert len(VECTOR_CONTENT) == 97
    report = pkg.inspect_provider_zip(io.BytesIO(data), "foo")
    assert report.h1 == "h1:o82i9HNihB4eCjZliva6djq9Y1j6WWMWjHjSMZ8ADI4="
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.executable == "terraform-provider-foo_v1.0.0"


def test_zip_h1_equals_directory_h1(tmp_path):
    data = provider_zip("foo", "1.0.0", "linux_amd64", extra={"LICENSE": b"MIT\n", "sub/notes.txt": b"x"})
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    report = pkg.inspect_provider_zip(io.BytesIO(data), "foo")
    assert report.h1 == pkg.h1_of_directory(tmp_path) == h1_of_zip(data)


@pytest.mark.parametrize(
    ("entries", "dirs", "message"),
    [
        ({"terraform-provider-foo": b"x"}, ("docs/",), "directory entry"),
        ({"README.md": b"x"}, (), "no provider executable"),
        ({"bin/terraform-provider-foo": b"x"}, (), "no provider executable"),
        ({"terraform-provider-foobar": b"x"}, (), "no provider executable"),
        ({"terraform-provider-foo": b"x", "../evil": b"x"}, (), "unsafe path"),
    ],
)
def test_zip_checks(entries, dirs, message):
    with pytest.raises(pkg.PackageError, match=message):
        pkg.inspect_provider_zip(io.BytesIO(zip_of(entries, dirs)), "foo")


@pytest.mark.parametrize(
    "name", ["terraform-provider-foo", "terraform-provider-foo_v1.2.3", "terraform-provider-foo.exe"]
)
def test_executable_names(name):
    assert pkg.inspect_provider_zip(io.BytesIO(zip_of({name: b"x"})), "foo").executable == name


def test_not_a_zip_and_bomb_and_corruption():
    with pytest.raises(pkg.PackageError, match="not a zip"):
        pkg.inspect_provider_zip(io.BytesIO(b"nope"), "foo")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("terraform-provider-foo", b"\0" * (5 * 1024 * 1024))
    with pytest.raises(pkg.PackageError, match="unpacks to more than"):
        pkg.inspect_provider_zip(io.BytesIO(buf.getvalue()), "foo", max_uncompressed_bytes=1024 * 1024)
    data = bytearray(zip_of({"terraform-provider-foo": b"hello world" * 100}))
    data[40] ^= 0xFF  # inside the stored member data
    with pytest.raises(pkg.PackageError):
        pkg.inspect_provider_zip(io.BytesIO(bytes(data)), "foo")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("terraform-provider-foo_1.0.0_linux_amd64.zip", ("foo", "1.0.0", "linux", "amd64")),
        (
            "terraform-provider-foo_1.0.0-rc.1+build.5_darwin_arm64.zip",
            ("foo", "1.0.0-rc.1+build.5", "darwin", "arm64"),
        ),
        ("terraform-provider-my-thing_2.0.0_windows_386.zip", ("my-thing", "2.0.0", "windows", "386")),
    ],
)
def test_parse_package_filename(filename, expected):
    name = pkg.parse_package_filename(filename)
    assert (name.type, name.version, name.os, name.arch) == expected


@pytest.mark.parametrize(
    ("filename", "kwargs", "message"),
    [
        ("terraform-provider-foo_1.0.0_plan9_amd64.zip", {}, "unknown operating system"),
        ("terraform-provider-foo_1.0.0_linux_vax.zip", {}, "unknown architecture"),
        ("terraform-provider-foo_1.0_linux_amd64.zip", {}, "semantic version"),
        ("foo.zip", {}, "is not named"),
        ("terraform-provider-foo_1.0.0_linux_amd64.zip", {"version": "1.1.0"}, "for version 1.0.0, not 1.1.0"),
        ("terraform-provider-foo_1.0.0_linux_amd64.zip", {"type_": "bar"}, "type 'foo', not 'bar'"),
    ],
)
def test_parse_package_filename_errors(filename, kwargs, message):
    with pytest.raises(pkg.PackageError, match=message):
        pkg.parse_package_filename(filename, **kwargs)


@pytest.mark.parametrize(
    ("namespace", "type_"),
    [("Acme", "foo"), ("acme", "-foo"), ("ac--me", "foo"), ("acme", "terraform-foo"), ("a.b", "foo")],
)
def test_provider_address_rules(namespace, type_):
    with pytest.raises(pkg.PackageError):
        pkg.validate_provider_address(namespace, type_)


def test_shasums_parsing():
    a, b = "a" * 64, "b" * 64
    assert pkg.parse_shasums(f"{a}  x.zip\n{b}  y.zip\n".encode()) == {"x.zip": a, "y.zip": b}
    assert pkg.parse_shasums(f"{a} x.zip\n{b} *y.zip".encode()) == {"x.zip": a, "y.zip": b}
    for bad, message in [
        (f"{a}  x.zip\n\n{b}  y.zip\n", "blank line at line 2"),
        (f"{a}  x.zip\n\n", "blank line"),
        (f"{a[:-1]}  x.zip\n", "line 1 is not"),
        (f"{a}  x.zip\n{a}  x.zip\n", "twice"),
        (f"{a.upper()}  x.zip\n", "upper-case"),
        ("", "blank line|empty"),
    ]:
        with pytest.raises(pkg.PackageError, match=message):
            pkg.parse_shasums(bad.encode())


def test_render_and_cover():
    sums = pkg.render_shasums({"b.zip": "2" * 64, "a.zip": "1" * 64})
    assert sums == f"{'1' * 64}  a.zip\n{'2' * 64}  b.zip\n".encode()
    parsed = pkg.parse_shasums(sums)
    pkg.check_sums_cover(parsed, {"a.zip": "1" * 64})
    with pytest.raises(pkg.PackageError, match="no line for c.zip"):
        pkg.check_sums_cover(parsed, {"c.zip": "1" * 64})
    with pytest.raises(pkg.PackageError, match="changed after signing"):
        pkg.check_sums_cover(parsed, {"a.zip": "3" * 64})


def test_protocols_and_manifest():
    assert pkg.validate_protocols(["5.0", "6.0"]) == ["5.0", "6.0"]
    manifest = json.dumps({"version": 1, "metadata": {"protocol_versions": ["6.0"]}}).encode()
    assert pkg.read_goreleaser_manifest(manifest) == ["6.0"]
    for bad in (["7.0"], ["5"], ["x"]):
        with pytest.raises(pkg.PackageError):
            pkg.validate_protocols(bad)
    with pytest.raises(pkg.PackageError):
        pkg.read_goreleaser_manifest(b'{"version": 1}')


def _mirror(root: Path, host: str, url: str | None = None) -> bytes:
    folder = root / host / "acme" / "foo"
    folder.mkdir(parents=True)
    data = provider_zip("foo", "1.0.0", "linux_amd64")
    name = "terraform-provider-foo_1.0.0_linux_amd64.zip"
    (folder / name).write_bytes(data)
    (folder / "index.json").write_text(json.dumps({"versions": {"1.0.0": {}}}))
    archive = {"url": url or name, "hashes": [h1_of_zip(data)]}
    (folder / "1.0.0.json").write_text(json.dumps({"archives": {"linux_amd64": archive}}))
    return data


def test_scan_mirror_directory_and_verify(tmp_path):
    data = _mirror(tmp_path, "localhost:8443")
    (archive,) = pkg.scan_mirror_directory(tmp_path)
    assert (archive.hostname, archive.namespace, archive.type, archive.version, archive.os, archive.arch) == (
        "localhost:8443",
        "acme",
        "foo",
        "1.0.0",
        "linux",
        "amd64",
    )
    report = pkg.inspect_provider_zip(io.BytesIO(data), "foo")
    pkg.verify_mirror_hashes(report, archive.hashes)
    pkg.verify_mirror_hashes(report, [f"zh:{report.sha256}"])
    with pytest.raises(pkg.PackageError, match="none of its listed hashes"):
        pkg.verify_mirror_hashes(report, ["h1:AAAA"])
    with pytest.raises(pkg.PackageError, match="no hashes"):
        pkg.verify_mirror_hashes(report, [])


@pytest.mark.parametrize(
    ("url", "message"),
    [("../../../../x.zip", "outside"), ("https://evil.example/x.zip", "local"), ("missing.zip", "missing")],
)
def test_scan_mirror_directory_refuses_bad_urls(tmp_path, url, message):
    _mirror(tmp_path, "registry.example.test", url)
    with pytest.raises(pkg.PackageError, match=message):
        pkg.scan_mirror_directory(tmp_path)


def test_scan_empty_folder(tmp_path):
    with pytest.raises(pkg.PackageError, match="terraform providers mirror"):
        pkg.scan_mirror_directory(tmp_path)
