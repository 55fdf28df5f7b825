"""Publishing over HTTP through gunicorn: a ~500 MiB signed provider release and a module at the size limit.

Each upload is streamed by the registry's own client (``tfregistry.client.RegistryClient``, what
``tfr publish`` uses) to the README's gunicorn command (``--timeout 600``: a
worker busy with a 500 MiB request longer than gunicorn's default 30 s would be killed).  Printed:
throughput in MiB/s next to plain disk writes of the same byte count (a file in the same data dir,
fsync'd), and the peak RSS (VmHWM) of the gunicorn workers, read from /proc while they still run.

The bytes are random (incompressible) but cheap: one 16 MiB ``os.urandom`` block, written
repeatedly; the release is built once per session under a temporary directory.

Environment: ``TFR_BENCH_DB`` (``sqlite,postgresql``), ``TFR_BENCH_WORKERS`` (the first count is
used, default 2), ``TFR_BENCH_PROVIDER_MB`` (total size of the release's zips, default 500).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks._http import Gunicorn, env_list, env_number, registry
from tfregistry.app import bootstrap
from tfregistry.client import RegistryClient

MiB = 1024 * 1024
DATABASES = env_list("TFR_BENCH_DB", "sqlite,postgresql")
WORKERS = int(env_list("TFR_BENCH_WORKERS", "2")[0])
PROVIDER_BYTES = int(env_number("TFR_BENCH_PROVIDER_MB", 500)) * MiB
PLATFORMS = ("linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64")
BLOCK = os.urandom(16 * MiB)
TYPE, VERSION = "huge", "1.0.0"


def _write_random(fh: Any, size: int) -> None:
    """``size`` incompressible bytes from the shared random block."""
    while size > 0:
        chunk = BLOCK[: min(size, len(BLOCK))]
        fh.write(chunk)
        size -= len(chunk)


class _RandomReader(io.RawIOBase):
    """``size`` incompressible bytes read from the shared random block, never all in memory."""

    def __init__(self, size: int) -> None:
        self.left, self.pos = size, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        start = self.pos % len(BLOCK)
        out = BLOCK[start:start + n]
        self.left -= len(out)
        self.pos += len(out)
        return out


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def big_release(tmp_path_factory: pytest.TempPathFactory, signer: Any) -> Path:
    """A GoReleaser-style dist folder: one stored zip per platform (PROVIDER_BYTES in all), SHA256SUMS, .sig."""
    dist = tmp_path_factory.mktemp("big-release")
    stem = f"terraform-provider-{TYPE}_{VERSION}"
    lines = []
    for platform in PLATFORMS:
        path = dist / f"{stem}_{platform}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            info = zipfile.ZipInfo(f"terraform-provider-{TYPE}_v{VERSION}", date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o100755 << 16
            with zf.open(info, "w", force_zip64=True) as entry:
                _write_random(entry, PROVIDER_BYTES // len(PLATFORMS))
        lines.append(f"{_sha256_file(path)}  {path.name}\n")
    sums = "".join(sorted(lines, key=lambda line: line.split()[1])).encode()
    (dist / f"{stem}_SHA256SUMS").write_bytes(sums)
    (dist / f"{stem}_SHA256SUMS.sig").write_bytes(signer.sign(sums))
    return dist


def _disk_write_mib_s(directory: Path, size: int) -> float:
    """Plain sequential write of ``size`` bytes to a file in ``directory``, fsync'd; MiB/s."""
    path = directory / "disk-baseline.bin"
    start = time.perf_counter()
    with open(path, "wb") as fh:
        _write_random(fh, size)
        fh.flush()
        os.fsync(fh.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return size / MiB / elapsed


def _upload(srv: Gunicorn, token: str, path: str, fields: dict[str, str],
            files: list[tuple[str, Path]]) -> tuple[Any, float, float]:
    """POST through the streaming client; (response, seconds, the workers' peak RSS in MiB afterwards)."""
    start = time.perf_counter()
    response = RegistryClient(srv.url, token, timeout=900).upload(path, fields, files)
    elapsed = time.perf_counter() - start
    return response, elapsed, srv.workers_peak_rss_mib()


def _report(label: str, size: int, elapsed: float, disk: float, rss_before: float, rss_after: float) -> None:
    rate = size / MiB / elapsed
    print(f"\n[bench] {label}: {size / MiB:.0f} MiB in {elapsed:.1f} s = {rate:.0f} MiB/s over HTTP; plain fsync'd "
          f"disk write {disk:.0f} MiB/s (ratio {rate / disk:.2f}); gunicorn workers' peak RSS {rss_before:.0f} -> "
          f"{rss_after:.0f} MiB")


@pytest.mark.parametrize("database", DATABASES)
def test_publish_large_provider_and_module(database: str, tmp_path: Path, big_release: Path, signer: Any) -> None:
    with registry(database, tmp_path / "registry") as srv:
        token = srv.create_token("admin", name="bench-publish")
        key = tmp_path / "key.asc"
        key.write_text(signer.public_armor)
        srv.tfr("gpg", "add", "--namespace", "big", str(key))
        limit = bootstrap(environ=srv.env, load_entrypoints=False).settings["limits.module_archive_max_bytes"]
        archive = tmp_path / "module.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=0) as tar:  # stored deflate blocks: size ~ content
            main = tarfile.TarInfo("main.tf")
            main.size = 2
            tar.addfile(main, io.BytesIO(b"#\n"))
            blob = tarfile.TarInfo("data.bin")
            blob.size = limit - MiB  # room for tar and gzip framing
            tar.addfile(blob, _RandomReader(blob.size))
        assert archive.stat().st_size <= limit, (archive.stat().st_size, limit)

        srv.start(WORKERS, "--timeout", "600")
        data_dir = Path(srv.env["TFR_DATA_DIR"])
        zips = sorted(big_release.glob("*.zip"))
        files = [("packages", z) for z in zips] + [
            ("shasums", next(big_release.glob("*_SHA256SUMS"))), ("shasums_signature", next(big_release.glob("*.sig")))]
        size = sum(p.stat().st_size for _, p in files)
        fields = {"namespace": "big", "type": TYPE, "version": VERSION, "protocols": "5.0"}
        before = srv.workers_peak_rss_mib()
        response, elapsed, after = _upload(srv, token, "/api/v1/providers", fields, files)
        assert response.status == 201, response.body
        assert len(response.body["platforms"]) == len(PLATFORMS)
        disk = _disk_write_mib_s(data_dir, size)
        _report(f"{database}: provider release, {len(zips)} zips + signed SHA256SUMS, {WORKERS} workers",
                size, elapsed, disk, before, after)

        fields = {"namespace": "big", "name": "limit", "system": "aws", "version": "1.0.0"}
        before = after
        response, elapsed, after = _upload(srv, token, "/api/v1/modules", fields, [("archive", archive)])
        assert response.status == 201, response.body
        disk = _disk_write_mib_s(data_dir, archive.stat().st_size)
        _report(f"{database}: module at limits.module_archive_max_bytes ({limit / MiB:.0f} MiB)",
                archive.stat().st_size, elapsed, disk, before, after)
