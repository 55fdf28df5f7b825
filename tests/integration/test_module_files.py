"""Files inside a module version's archive (README images and links): services.modules.module_archive_file."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from typing import Any

import pytest

from tests.conftest import post_module
from tfregistry.archives import ArchiveLimits, iter_tar_gz
from tfregistry.services import NotFound, ServiceError
from tfregistry.services import modules as svc

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 16
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
BIG = 6 * 1024 * 1024
BIG_DATA = random.Random(0).randbytes(BIG)  # incompressible: a run of one byte would be refused as a bomb


def archive(links: bool = True) -> bytes:
    """A module with a README, images, a directory, an SVG, an HTML file, a fake PNG, a big file and links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, target: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, 0o755 if kind == tarfile.DIRTYPE else 0o644, 0
            if kind == tarfile.REGTYPE:
                info.size = len(data)
            info.linkname = target
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("main.tf", b'variable "x" {}\n')
        add("README.md", b"# Net\n\n![logo](docs/img/logo.png)\n")
        add("docs", kind=tarfile.DIRTYPE)
        add("docs/img", kind=tarfile.DIRTYPE)
        add("docs/img/logo.png", PNG)
        add("docs/img/photo.JPG", JPEG)
        add("docs/img/anim.gif", GIF)
        add("docs/img/pic.webp", WEBP)
        add("docs/img/diagram.svg", SVG)
        add("docs/page.html", b"<script>alert(1)</script>")
        add("docs/fake.png", b"<html><script>alert(1)</script></html>")
        add("docs/usage.md", "Usage ü\n".encode())
        add("docs/big.txt", BIG_DATA)
        if links:
            add("docs/link.md", kind=tarfile.SYMTYPE, target="usage.md")
        add("zz-last.txt", b"the last member")
    return gzip.compress(buf.getvalue(), mtime=0)


@pytest.fixture
def version(app: Any, client: Any, admin_token: str) -> Any:
    response = post_module(client, admin_token, archive=archive())
    assert response.status_code == 201, response.get_json()
    registry = app.extensions["tfregistry"]
    with registry.db.session() as session:
        mv = svc.get_version(session, "acme", "network", "aws", "1.0.0")
        session.expunge(mv)
        yield registry, mv


@pytest.mark.parametrize(("path", "content_type", "expected"), [
    ("README.md", "text/plain; charset=utf-8", b"# Net\n\n![logo](docs/img/logo.png)\n"),
    ("docs/img/logo.png", "image/png", PNG),
    ("./docs//img/logo.png", "image/png", PNG),
    ("docs/img/photo.JPG", "image/jpeg", JPEG),
    ("docs/img/anim.gif", "image/gif", GIF),
    ("docs/img/pic.webp", "image/webp", WEBP),
    ("docs/img/diagram.svg", "text/plain; charset=utf-8", SVG),
    ("docs/page.html", "text/plain; charset=utf-8", b"<script>alert(1)</script>"),
    ("docs/fake.png", "text/plain; charset=utf-8", b"<html><script>alert(1)</script></html>"),
    ("docs/usage.md", "text/plain; charset=utf-8", "Usage ü\n".encode()),
    ("zz-last.txt", "text/plain; charset=utf-8", b"the last member"),
])
def test_files_are_served_with_a_safe_type(version: Any, path: str, content_type: str, expected: bytes) -> None:
    registry, mv = version
    assert svc.module_archive_file(registry.storage, mv, path) == (expected, content_type)


@pytest.mark.parametrize(("path", "message"), [
    ("docs", "is a directory"),
    ("docs/img/", "is a directory"),
    ("docs/link.md", "is a symbolic link"),
    ("missing.md", "no file"),
    ("../README.md", "no file"),
    ("docs/../../README.md", "no file"),
    ("/README.md", "no file"),
    ("docs\\usage.md", "no file"),
    ("docs/\x00usage.md", "no file"),
    ("", "no file"),
])
def test_directories_links_missing_and_unsafe_paths_are_404(version: Any, path: str, message: str) -> None:
    registry, mv = version
    with pytest.raises(NotFound, match=message):
        svc.module_archive_file(registry.storage, mv, path)


def test_oversize_files_are_refused(version: Any) -> None:
    registry, mv = version
    with pytest.raises(ServiceError, match="larger than") as caught:
        svc.module_archive_file(registry.storage, mv, "docs/big.txt")
    assert caught.value.status == 413
    data, _ = svc.module_archive_file(registry.storage, mv, "docs/big.txt", max_bytes=BIG)
    assert data == BIG_DATA


def test_iter_tar_gz_skips_unread_files_and_reports_kinds() -> None:
    entries = [(e.name, e.kind, e.size) for e in iter_tar_gz(io.BytesIO(archive()), ArchiveLimits())]
    assert ("docs/img", "dir", 0) in entries and ("docs/link.md", "symlink", 0) in entries
    assert ("docs/big.txt", "file", BIG) in entries and entries[-1] == ("zz-last.txt", "file", 15)
