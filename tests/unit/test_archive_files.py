"""archives.read_archive_files: reading a few files back from a stored module archive, bounded."""

from __future__ import annotations

import io

import pytest

from tests.conftest import tar_gz
from tfregistry.archives import ArchiveError, ArchiveLimits, read_archive_files
from tfregistry.testing.plugin import build_module_archive


def test_reads_only_the_wanted_files_in_archive_order():
    archive = build_module_archive("x", {"examples/a/main.tf": "# a", "examples/a/README.md": "# A",
                                         "examples/b/main.tf": "# b"})
    found = read_archive_files(io.BytesIO(archive), lambda name: name.startswith("examples/a/"))
    assert [(f.name, f.data, f.truncated) for f in found] == [("examples/a/README.md", b"# A", False),
                                                              ("examples/a/main.tf", b"# a", False)]


def test_files_are_cut_at_the_caps_and_say_so():
    archive = tar_gz({"./big.txt": b"x" * 1000, "small.txt": b"y" * 10, "other.txt": b"z"})
    found = read_archive_files(io.BytesIO(archive), lambda name: True, max_file_bytes=100, max_total_bytes=105)
    assert [(f.name, len(f.data), f.truncated, f.size) for f in found] == [("big.txt", 100, True, 1000),
                                                                           ("small.txt", 5, True, 10)]
    assert len(read_archive_files(io.BytesIO(archive), lambda name: True, max_files=1)) == 1


def test_a_bomb_stops_at_the_uncompressed_limit():
    archive = tar_gz({"a.txt": b"\0" * 2_000_000, "wanted.tf": b"found"})
    limits = ArchiveLimits(max_uncompressed_bytes=1_000_000, max_files=10, max_compression_ratio=0)
    with pytest.raises(ArchiveError, match="larger than 1000000 bytes uncompressed"):
        read_archive_files(io.BytesIO(archive), lambda name: name == "wanted.tf", limits=limits)


def test_not_an_archive():
    with pytest.raises(ArchiveError, match="not a gzip"):
        read_archive_files(io.BytesIO(b"not gzip at all"), lambda name: True)
