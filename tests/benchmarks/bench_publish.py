"""Publishing over HTTP through gunicorn: a ~500 MiB signed provider release and a module at the size limit.

Each upload is streamed by the registry's own client (``tfregistry.client.RegistryClient``, what
``tfr publish`` uses) to the README's gunicorn command (``--timeout 600``: a
worker busy with a 500 MiB request longer than gunicorn's default 30 s would be killed).  Printed:
throughput in MiB/s next to plain disk writes of the same byte count (a file in the same data dir,
fsync'd), and the peak RSS (VmHWM) of the gunicorn workers, read from /proc while they still run.
A third figure is a floor for any upload that is checked at all: the same files sent over loopback
TCP (``sendfile``) to a thread that only receives them, hashes them once (SHA-256, what checking
them against ``SHA256SUMS`` takes), writes and fsyncs them; no HTTP, no parsing, no unpacking.

The bytes are random (incompressible) but cheap: one 16 MiB ``os.urandom`` block, written
repeatedly; the releases (one version per round) are built once per session under a temporary
directory.  Every measurement starts after ``os.sync()`` (a write that follows another one soon
waits for the first one's write-back, which halved the second figure on the project's VM); rounds
rotate which goes first, and medians are printed with every round's figures.

Environment: ``TFR_BENCH_DB`` (``sqlite,postgresql``), ``TFR_BENCH_WORKERS`` (the first count is
used, default 2), ``TFR_BENCH_PROVIDER_MB`` (total size of the release's zips, default 500),
``TFR_BENCH_PUBLISH_ROUNDS`` (default 3).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import statistics
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
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
TYPE = "huge"
ROUNDS = int(env_number("TFR_BENCH_PUBLISH_ROUNDS", 3))


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
def big_releases(tmp_path_factory: pytest.TempPathFactory, signer: Any) -> list[Path]:
    """One release per round, versions 1.0.0, 1.0.1, ..."""
    return [_big_release(tmp_path_factory, signer, f"1.0.{n}") for n in range(ROUNDS)]


def _big_release(tmp_path_factory: pytest.TempPathFactory, signer: Any, version: str) -> Path:
    """A GoReleaser-style dist folder: one stored zip per platform (PROVIDER_BYTES in all), SHA256SUMS, .sig."""
    dist = tmp_path_factory.mktemp("big-release")
    stem = f"terraform-provider-{TYPE}_{version}"
    lines = []
    for platform in PLATFORMS:
        path = dist / f"{stem}_{platform}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            info = zipfile.ZipInfo(f"terraform-provider-{TYPE}_v{version}", date_time=(2026, 1, 1, 0, 0, 0))
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


def _bare_upload_mib_s(directory: Path, files: list[Path]) -> float:
    """``files`` sent over loopback TCP to a thread that receives, hashes (SHA-256), writes and fsyncs them; MiB/s."""
    path = directory / "bare-upload.bin"
    server = socket.create_server(("127.0.0.1", 0))

    def receive() -> None:
        conn, _ = server.accept()
        buffer = bytearray(MiB)
        view = memoryview(buffer)
        digest = hashlib.sha256()
        with conn, open(path, "wb") as fh:
            while n := conn.recv_into(buffer):
                digest.update(view[:n])
                fh.write(view[:n])
            fh.flush()
            os.fsync(fh.fileno())
            conn.sendall(digest.digest())

    receiver = threading.Thread(target=receive)
    receiver.start()
    size = sum(f.stat().st_size for f in files)
    start = time.perf_counter()
    with socket.create_connection(server.getsockname()) as conn:
        for f in files:
            with open(f, "rb") as fh:
                conn.sendfile(fh)
        conn.shutdown(socket.SHUT_WR)
        assert len(conn.recv(64)) == 32
    elapsed = time.perf_counter() - start
    receiver.join()
    server.close()
    assert path.stat().st_size == size
    path.unlink()
    return size / MiB / elapsed


def _upload(srv: Gunicorn, token: str, path: str, fields: dict[str, str],
            files: list[tuple[str, Path]]) -> tuple[Any, float, float]:
    """POST through the streaming client; (response, seconds, the workers' peak RSS in MiB afterwards)."""
    start = time.perf_counter()
    response = RegistryClient(srv.url, token, timeout=900).upload(path, fields, files)
    elapsed = time.perf_counter() - start
    return response, elapsed, srv.workers_peak_rss_mib()


def _report(label: str, size: int, rates: list[float], disks: list[float], floors: list[float],
            rss_before: float, rss_after: float) -> None:
    rate, disk, floor = statistics.median(rates), statistics.median(disks), statistics.median(floors)
    print(f"\n[bench] {label}: {size / MiB:.0f} MiB, median of {len(rates)} = {rate:.0f} MiB/s over HTTP; plain "
          f"fsync'd disk write {disk:.0f} MiB/s (ratio {rate / disk:.2f}); bare loopback receive + SHA-256 + "
          f"fsync'd write {floor:.0f} MiB/s (ratio {floor / disk:.2f}); gunicorn workers' peak RSS "
          f"{rss_before:.0f} -> {rss_after:.0f} MiB\n        rounds (HTTP / disk / bare MiB/s): "
          + ", ".join(f"{r:.0f} / {d:.0f} / {b:.0f}" for r, d, b in zip(rates, disks, floors, strict=True)))


def _rounds(upload: Callable[[int], float], disk: Callable[[], float],
            bare: Callable[[], float]) -> tuple[list[float], list[float], list[float]]:
    """``ROUNDS`` uploads, disk writes and bare uploads, rotating which goes first; MiB/s of each per round."""
    figures: tuple[list[float], list[float], list[float]] = ([], [], [])

    def settled(measure: Callable[[], float]) -> float:
        os.sync()  # what the previous measurement left to write back must not slow this one down
        return measure()

    for n in range(ROUNDS):
        measures = [lambda n=n: upload(n), disk, bare]
        for k in range(3):
            which = (n + k) % 3
            figures[which].append(settled(measures[which]))
    return figures


@pytest.mark.parametrize("database", DATABASES)
def test_publish_large_provider_and_module(database: str, tmp_path: Path, big_releases: list[Path],
                                           signer: Any) -> None:
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
        size = sum(p.stat().st_size for p in big_releases[0].iterdir())
        first_rss = srv.workers_peak_rss_mib()
        rss = [first_rss]

        def publish_provider(n: int) -> float:
            dist = big_releases[n]
            files = [("packages", z) for z in sorted(dist.glob("*.zip"))] + [
                ("shasums", next(dist.glob("*_SHA256SUMS"))), ("shasums_signature", next(dist.glob("*.sig")))]
            fields = {"namespace": "big", "type": TYPE, "version": f"1.0.{n}", "protocols": "5.0"}
            response, elapsed, after = _upload(srv, token, "/api/v1/providers", fields, files)
            assert response.status == 201, response.body
            assert len(response.body["platforms"]) == len(PLATFORMS)
            rss.append(after)
            return size / MiB / elapsed

        rates, disks, bares = _rounds(publish_provider, lambda: _disk_write_mib_s(data_dir, size),
                                      lambda: _bare_upload_mib_s(data_dir, sorted(big_releases[0].iterdir())))
        _report(f"{database}: provider release, {len(PLATFORMS)} zips + signed SHA256SUMS, {WORKERS} workers",
                size, rates, disks, bares, first_rss, max(rss))

        def publish_module(n: int) -> float:
            fields = {"namespace": "big", "name": "limit", "system": "aws", "version": f"1.0.{n}"}
            response, elapsed, after = _upload(srv, token, "/api/v1/modules", fields, [("archive", archive)])
            assert response.status == 201, response.body
            rss.append(after)
            return archive.stat().st_size / MiB / elapsed

        module_rss = max(rss)
        rates, disks, bares = _rounds(publish_module, lambda: _disk_write_mib_s(data_dir, archive.stat().st_size),
                                      lambda: _bare_upload_mib_s(data_dir, [archive]))
        _report(f"{database}: module at limits.module_archive_max_bytes ({limit / MiB:.0f} MiB)",
                archive.stat().st_size, rates, disks, bares, module_rss, max(rss))
