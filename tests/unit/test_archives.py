from __future__ import annotations

import gzip
import io
import random
import re
import tarfile

import pytest

from tfregistry.archives import ArchiveError, ArchiveLimits, ArchiveReport, inspect_module_archive

Member = tuple[tarfile.TarInfo, bytes | None]


class OneWayReader:
    """A stream that can only be read forward, like an upload (no seek, no tell)."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


def file(name: str, data: bytes | str = b"", mode: int = 0o644) -> Member:
    raw = data.encode() if isinstance(data, str) else data
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(raw), mode
    return info, raw


def entry(name: str, type: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type, linkname
    return info, None


def directory(name: str) -> Member:
    return entry(name, tarfile.DIRTYPE)


def symlink(name: str, target: str) -> Member:
    return entry(name, tarfile.SYMTYPE, target)


def tar_bytes(*members: Member, format: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def targz(*members: Member, format: int = tarfile.PAX_FORMAT) -> bytes:
    return gzip.compress(tar_bytes(*members, format=format), mtime=0)


def inspect(data: bytes, **limits: int) -> ArchiveReport:
    return inspect_module_archive(OneWayReader(data), ArchiveLimits(**limits))  # type: ignore[arg-type]


def rejects(data: bytes, match: str, **limits: int) -> None:
    with pytest.raises(ArchiveError, match=match):
        inspect(data, **limits)


NOISE = random.Random(0).randbytes(50_000)  # does not compress
GOOD = (
    file("main.tf", 'variable "x" {}\n'),
    file("README.md", "# Example\n\nHello.\n"),
    directory("modules"),
    directory("modules/sub"),
    file("modules/sub/main.tf", "# sub\n"),
    file("modules/sub/README.md", "# not the root readme\n"),
    file("scripts/run.sh", "#!/bin/sh\n", mode=0o755),
    symlink("modules/sub/shared.tf", "../../main.tf"),
)


# -- valid archives -----------------------------------------------------------------------


def test_good_archive() -> None:
    report = inspect(targz(*GOOD))
    assert report == ArchiveReport(
        file_count=6,
        uncompressed_bytes=sum(len(data) for _, data in GOOD if data),
        readme="# Example\n\nHello.\n",
        readme_name="README.md",
        readme_truncated=False,
        has_root_tf=True,
    )


def test_leading_dot_slash_and_root_entry_are_accepted() -> None:
    report = inspect(targz(directory("."), file("./main.tf", "x"), file("./README", "hi"), directory("./a/")))
    assert report.readme_name == "README"
    assert report.readme == "hi"
    assert report.has_root_tf
    assert report.file_count == 2


@pytest.mark.parametrize("format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_formats_and_long_names(format: int) -> None:
    long_name = "/".join(["d" * 60] * 2) + "/main.tf"  # > 100 characters: prefix, GNU or pax header
    report = inspect(targz(file(long_name, "x"), file("a.tf.json", "{}"), format=format))
    assert report.file_count == 2
    assert report.has_root_tf
    assert report.readme is None


def test_readme_only_counts_at_the_root() -> None:
    report = inspect(targz(file("main.tf"), file("docs/README.md", "nested")))
    assert report.readme is None and report.readme_name is None
    assert not inspect(targz(file("sub/main.tf"))).has_root_tf


def test_readme_md_is_preferred_and_case_is_ignored() -> None:
    assert inspect(targz(file("readme.md", "md"), file("README", "plain"))).readme == "md"
    assert inspect(targz(file("README", "plain"), file("ReadMe.MD", "md"))).readme_name == "ReadMe.MD"


def test_readme_is_truncated_and_decoded_leniently() -> None:
    text = "é" * 10  # two bytes each
    report = inspect(targz(file("README.md", text)), max_readme_bytes=5)
    assert report.readme == "éé"  # the half character at the cut is dropped
    assert report.readme_truncated
    report = inspect(targz(file("README.md", b"\xef\xbb\xbfok \xff!")))
    assert report.readme == "ok \ufffd!"
    assert not report.readme_truncated


def test_gzip_with_several_members_is_read_whole() -> None:
    raw = tar_bytes(file("main.tf", "x" * 5000), file("README.md", "hi"))
    data = gzip.compress(raw[:3000], mtime=0) + gzip.compress(raw[3000:], mtime=0)
    assert inspect(data).readme == "hi"


def test_trailing_garbage_is_ignored() -> None:
    good = targz(*GOOD)
    assert inspect(good + b"this is not gzip data" * 10).file_count == 6
    assert inspect(good + b"\0" * 1000).file_count == 6
    inside = gzip.compress(tar_bytes(*GOOD) + b"junk after the end marker" * 1000, mtime=0)
    assert inspect(inside).file_count == 6


def test_relative_symlinks_are_resolved_through_other_symlinks() -> None:
    # d -> a/b, so d/../../main.tf is a/b/../../main.tf: main.tf, inside the archive.
    data = targz(file("main.tf"), directory("a/b"), symlink("d", "a/b"), symlink("x", "d/../../main.tf"))
    assert inspect(data).file_count == 3


# -- not a gzip'd tar, empty, corrupt -----------------------------------------------------


def test_not_gzip() -> None:
    rejects(b"PK\x03\x04 this is a zip file, or anything else" * 20, "not a gzip-compressed tar file")
    rejects(tar_bytes(*GOOD), "not a gzip-compressed tar file")


def test_gzip_of_something_that_is_not_tar() -> None:
    rejects(gzip.compress(b"hello, this is not a tar file\n" * 100), "not a gzip-compressed tar file")
    rejects(gzip.compress(b"short"), "not a gzip-compressed tar file")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        gzip.compress(b""),
        targz(),
        targz(directory("a"), directory("a/b")),
    ],
    ids=["no-bytes", "empty-gzip", "empty-tar", "only-directories"],
)
def test_empty_archive(data: bytes) -> None:
    rejects(data, "archive is empty")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_gzip(keep: float) -> None:
    data = targz(file("main.tf", NOISE), file("README.md", "hi"))
    rejects(data[: int(len(data) * keep)], "truncated")


def test_gzip_missing_its_trailer_or_with_a_bad_checksum() -> None:
    data = targz(*GOOD)
    rejects(data[:-4], "truncated")
    bad_crc = data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]
    rejects(bad_crc, "corrupt")


def test_corrupt_deflate_data() -> None:
    data = bytearray(targz(file("main.tf", NOISE)))
    data[40:60] = b"\xff" * 20
    rejects(bytes(data), "corrupt|truncated|not a gzip-compressed tar")


def test_malformed_pax_header_does_not_leak_a_value_error_from_tarfile() -> None:
    info, data = file("main.tf", "x")
    info.pax_headers = {"GNU.sparse.map": "not,numbers"}
    rejects(targz(file("a.tf"), (info, data)), "corrupt")


# -- unsafe names and member types --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/x.tf", "absolute path"),
        ("../outside.tf", r"'\.\.' component"),
        ("a/../../outside.tf", r"'\.\.' component"),
        ("./a/../b.tf", r"'\.\.' component"),
        ("dir\\file.tf", "backslash or NUL"),
        ("x" * 120 + "\0.tf", "backslash or NUL"),  # long: the name goes in a pax header, NUL and all
    ],
)
def test_unsafe_names(name: str, match: str) -> None:
    rejects(targz(file("main.tf"), file(name, "x")), match)


def test_names_that_are_not_utf8() -> None:
    data = targz(file("caf\udcff.tf", "x"), format=tarfile.GNU_FORMAT)
    rejects(data, "not valid UTF-8")


def test_path_too_long() -> None:
    rejects(targz(file("a/" * 30 + "main.tf")), r"path of 67 bytes \(rule: paths are at most 50 bytes",
            max_path_length=50)
    rejects(targz(symlink("l", "a/" * 30)), r"its target .* path of 60 bytes", max_path_length=50)


@pytest.mark.parametrize(
    ("type", "kind"),
    [
        (tarfile.LNKTYPE, "hard link"),
        (tarfile.CHRTYPE, "character device"),
        (tarfile.BLKTYPE, "block device"),
        (tarfile.FIFOTYPE, "FIFO"),
        (tarfile.GNUTYPE_SPARSE, "sparse file"),
        (b"V", "entry of unsupported type b.V."),
    ],
)
def test_forbidden_member_types(type: bytes, kind: str) -> None:
    member = entry("evil", type, linkname="main.tf" if type == tarfile.LNKTYPE else "")
    rejects(targz(file("main.tf"), member), f"member 'evil' is an? {kind}, which is not allowed")


def test_duplicate_members() -> None:
    rejects(targz(file("main.tf", "a"), file("./main.tf", "b")), "more than once")
    rejects(targz(symlink("d", "sub"), directory("d")), "more than once")
    assert inspect(targz(directory("d"), directory("d/"), file("d/x.tf"))).file_count == 1


@pytest.mark.parametrize(
    ("links", "match"),
    [
        ({"l": "/etc/passwd"}, "absolute target"),
        ({"l": "C:/x"}, "absolute target"),
        ({"l": "..\\x"}, "backslash or NUL"),
        ({"l": ""}, "empty target"),
        ({"l": "../x"}, "points outside"),
        ({"sub/l": "../../x"}, "points outside"),
        ({"sub/l": "./../sub/../.."}, "points outside"),
        # Each link is inside on its own, but d -> sub makes d/../.. the parent of the root.
        ({"d": "sub", "x": "d/../.."}, "points outside"),
        ({"a": "b", "b": "a"}, "loop"),
        ({"a": "a/x"}, "loop"),
    ],
)
def test_unsafe_symlinks(links: dict[str, str], match: str) -> None:
    members = [file("main.tf"), directory("sub")] + [symlink(name, target) for name, target in links.items()]
    rejects(targz(*members), match)


# -- limits: counts, sizes, bombs ---------------------------------------------------------


def test_too_many_members() -> None:
    members = [file(f"f{i}.tf") for i in range(4)]
    assert inspect(targz(*members[:3]), max_files=3).file_count == 3
    rejects(targz(*members), "more than 3 members", max_files=3)
    rejects(targz(directory("a"), directory("b"), *members[:2]), "more than 3 members", max_files=3)


def test_total_size_is_capped() -> None:
    members = [file(f"f{i}.bin", b"\0" * 400_000) for i in range(3)]
    assert inspect(targz(*members[:2]), max_uncompressed_bytes=1_000_000).uncompressed_bytes == 800_000
    rejects(targz(*members), r"larger than 1000000 bytes uncompressed \(at member 'f2.bin'\)",
            max_uncompressed_bytes=1_000_000)


def test_gzip_bomb_is_stopped_early() -> None:
    bomb = targz(file("main.tf"), file("zeros.bin", b"\0" * 5 * 1024**2))
    assert len(bomb) < 20_000
    rejects(bomb, "larger than 1048576 bytes uncompressed", max_uncompressed_bytes=1024**2)


@pytest.mark.parametrize("type", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_oversized_header_is_not_read_into_memory(type: bytes) -> None:
    # tarfile reads a pax or GNU long-name header whole: its size must not be trusted.
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = type, 50 * 1024**2
    raw = file("main.tf")[0].tobuf(tarfile.USTAR_FORMAT) + header.tobuf(tarfile.USTAR_FORMAT)
    data = gzip.compress(raw + b"1" * header.size, compresslevel=1, mtime=0)
    rejects(data, "oversized tar header after member 'main.tf'")


def test_limits_have_sensible_defaults() -> None:
    limits = ArchiveLimits()
    assert limits.max_files == 10_000
    assert limits.max_uncompressed_bytes == 500 * 1024**2
    assert limits.max_path_length == 4096
    assert limits.max_readme_bytes == 1024**2


# -- hardening: control characters, lengths in bytes, special mode bits, compression ratio ----


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\x9f"])
def test_control_characters_in_names_are_refused(char: str) -> None:
    rule = r"control characters, C0, DEL or C1, in names"
    rejects(targz(file("main.tf"), file(f"a{char}b.tf", "x")), rf"member 'a.*b.tf' has the control character .*{rule}")
    rejects(targz(file("main.tf"), symlink("l", f"main{char}.tf")), rf"symlink 'l': its target .*{rule}")


def test_unicode_names_that_are_not_controls_pass() -> None:
    # U+00A0 and U+2028 are not C0/C1 controls; "é" is two bytes of UTF-8.
    name = "caf\u00e9\u00a0\u2028.tf"
    report = inspect(targz(file("main.tf"), file(name, "x"), symlink("l", name)))
    assert report.file_count == 3


def test_components_are_limited_to_255_bytes_of_utf8() -> None:
    assert inspect(targz(file("é" * 127 + "a"), file("d/" + "x" * 255))).file_count == 2  # 255 bytes each
    rejects(targz(file("é" * 128)), r"component of 256 bytes, .* \(rule: file and directory names are at most 255")
    rejects(targz(directory("x" * 256), file("main.tf")), "component of 256 bytes")
    rejects(targz(file("main.tf"), symlink("l", "x" * 256)), r"symlink 'l': its target .* component of 256 bytes")


def test_paths_are_limited_to_4096_bytes_of_utf8() -> None:
    longest = "/".join(["d" * 200] * 20) + "/" + "f" * 75  # 20 * 201 + 75 = 4095 bytes
    assert inspect(targz(file(longest + "x"))).file_count == 1
    rejects(targz(file(longest + "é")), r"path of 4097 bytes \(rule: paths are at most 4096 bytes of UTF-8\)")
    rejects(targz(file("main.tf"), symlink("l", longest + "xy")), r"its target .* path of 4097 bytes")
    # The finding from issue #11: a 900-character path with a newline.
    rejects(targz(file("main.tf"), file("a/" * 449 + "\n.tf")), "control character")


@pytest.mark.parametrize(
    ("member", "bits"),
    [
        (file("run.sh", "#!/bin/sh\n", mode=0o4755), "setuid bit set (mode 4755)"),
        (file("run.sh", "#!/bin/sh\n", mode=0o2755), "setgid bit set (mode 2755)"),
        (file("run.sh", "#!/bin/sh\n", mode=0o6755), "setuid and setgid bits set (mode 6755)"),
        (file("run.sh", "#!/bin/sh\n", mode=0o7644), "setuid and setgid and sticky bits set (mode 7644)"),
        (entry("tmp", tarfile.DIRTYPE), "sticky bit set (mode 1777)"),
    ],
)
def test_setuid_setgid_and_sticky_bits_are_refused(member: Member, bits: str) -> None:
    info, _ = member
    if info.isdir():
        info.mode = 0o1777
    with pytest.raises(ArchiveError, match=re.escape(f"member {info.name!r} has the {bits}")) as caught:
        inspect(targz(file("main.tf"), member))
    assert "rather than clearing them" in str(caught.value)


def test_plain_modes_pass() -> None:
    members = [file("main.tf", mode=0o644), file("run.sh", mode=0o755), file("key", mode=0o600), file("x", mode=0o777)]
    assert inspect(targz(*members)).file_count == 4


class CountingReader(OneWayReader):
    """A one-way stream that counts the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.given = 0

    def read(self, n: int = -1) -> bytes:
        chunk = super().read(n)
        self.given += len(chunk)
        return chunk


@pytest.fixture(scope="module")
def zeros_bomb() -> bytes:
    """The issue #11 finding: one 200 MB file of zeros, about 1000:1, under the 500 MiB cap."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 200 * 1000**2

        class Zeros:
            def read(self, n: int) -> bytes:
                return bytes(n)

        tar.addfile(file("main.tf")[0], io.BytesIO(b""))
        tar.addfile(info, Zeros())  # type: ignore[arg-type]
    return buf.getvalue()


def test_gzip_bomb_under_the_size_cap_is_stopped_by_the_ratio(zeros_bomb: bytes) -> None:
    assert 150_000 < len(zeros_bomb) < 300_000  # ~1000:1
    reader = CountingReader(zeros_bomb)
    with pytest.raises(ArchiveError, match=r"compressed more than 100:1 \((\d+) bytes unpacked") as caught:
        inspect_module_archive(reader, ArchiveLimits())  # type: ignore[arg-type]
    unpacked = int(re.search(r"\((\d+) bytes unpacked", str(caught.value)).group(1))  # type: ignore[union-attr]
    # It stopped just past the 4 MiB floor, having read a fraction of the upload: nothing near 200 MB.
    assert 4 * 1024**2 < unpacked < 8 * 1024**2
    assert reader.given <= 64 * 1024 < len(zeros_bomb) / 2  # one read of the upload
    assert ArchiveLimits().max_uncompressed_bytes > 200 * 1000**2  # the size cap alone would let it through


def test_small_highly_compressible_archives_pass_under_the_floor() -> None:
    text = b"resource \"null_resource\" \"x\" {}\n" * 100_000  # 3.3 MB of repetitive text, ~300:1
    data = targz(file("main.tf", text))
    assert len(data) * 100 < len(text)
    assert inspect(data).uncompressed_bytes == len(text)
    rejects(data, "compressed more than 100:1", compression_ratio_floor=1024**2)
    assert inspect(data, compression_ratio_floor=1024**2, max_compression_ratio=0).file_count == 1  # 0: off


def test_the_ratio_is_checked_as_the_stream_is_read() -> None:
    # 9 MB of zeros after 300 kB of noise: 30:1 overall, and at no point over 100:1 ...
    noise = random.Random(1).randbytes(300_000)
    zeros = bytes(9_000_000)
    assert inspect(targz(file("noise.bin", noise), file("zeros.bin", zeros))).file_count == 2
    # ... but the same files the other way round pass 100:1 while the zeros stream in.
    rejects(targz(file("zeros.bin", zeros), file("noise.bin", noise)), "compressed more than 100:1")
    # A lower cap catches the first order too, and the cap is a ratio, not a size.
    rejects(targz(file("noise.bin", noise), file("zeros.bin", zeros)), "compressed more than 20:1",
            max_compression_ratio=20)


def test_nothing_may_lie_below_a_file_or_a_symlink() -> None:
    rule = r"not a directory \(rule: nothing may be unpacked below a file or symlink"
    rejects(targz(file("a"), file("a/x.tf")), rf"member 'a/x.tf' is below 'a', which is a file, {rule}")
    rejects(targz(file("main.tf"), directory("sub"), symlink("l", "sub"), file("l/x.tf")),
            rf"member 'l/x.tf' is below 'l', which is a symlink, {rule}")
    rejects(targz(file("a/x.tf"), file("./a")), "is below 'a', which is a file")  # whatever the order
    assert inspect(targz(directory("a"), file("a/x.tf"), directory("a/b"), file("a/b/y.tf"))).file_count == 2
