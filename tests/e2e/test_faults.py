"""Faults with real processes: a web process killed mid-upload, PostgreSQL, the object store and Redis
stopped under a running gunicorn, a full filesystem, racing publishes, and a CLI on an unmigrated database.

Every server here is a real subprocess on 127.0.0.1 started and stopped by the test (by its own pid or
process group).  Each test asserts what a client and an operator see, never how long something took.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import create_postgres_database
from tests.e2e.conftest import HttpResponse
from tests.e2e.conftest import _stop as stop_group
from tfregistry.testing.plugin import build_module_archive

BIN = Path(sys.executable).parent
PGBIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/lib/postgresql/15/bin"))
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFR_")}
    env.update({"TFR_DATA_DIR": str(data_dir), "TFR_SECRET_KEY": "0123456789abcdef0123456789",
                "TFR_PUBLIC_URL": "http://127.0.0.1", "TFR_PLUGINS": "tfregistry-storage-local", **extra})
    return env


def tfr(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "tfregistry", *args], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"`tfr {' '.join(args)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def multipart(fields: dict[str, str], archive: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="m.tar.gz"\r\n'
                 "Content-Type: application/gzip\r\n\r\n".encode() + archive + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def big_archive(size: int, seed: str = "") -> bytes:
    """A valid module archive of roughly ``size`` bytes (incompressible content)."""
    rnd = os.urandom(size // 2).hex()[:size]
    return build_module_archive(files={"main.tf": f'# {seed}\nvariable "x" {{}}\n', "blob.txt": rnd})


@dataclass
class Server:
    """A gunicorn serving ``tfregistry.app:create_app()`` in its own process group."""

    env: dict[str, str]
    port: int
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> HttpResponse:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Authorization": f"Bearer {self.token}",
                                                           **(headers or {})})
            resp = conn.getresponse()
            return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def publish(self, ns: str, name: str, version: str, archive: bytes) -> HttpResponse:
        body, ctype = multipart({"namespace": ns, "name": name, "system": "aws", "version": version}, archive)
        return self.request("POST", "/api/v1/modules", body, {"Content-Type": ctype})

    def versions(self, ns: str, name: str) -> HttpResponse:
        return self.request("GET", f"/v1/modules/{ns}/{name}/aws/versions")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_gunicorn(env: dict[str, str], tmp: Path, workers: int = 2, threads: int = 1) -> Server:
    """Migrate, create an admin token, start gunicorn and wait until discovery answers."""
    tfr(env, "db", "upgrade")
    token = tfr(env, "token", "create", "--name", "faults", "--scope", "admin").stdout.strip().splitlines()[-1]
    return launch(env, tmp, token, workers, threads)


def launch(env: dict[str, str], tmp: Path, token: str, workers: int = 2, threads: int = 1) -> Server:
    port = free_port()
    log = tmp / f"gunicorn-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [BIN / "gunicorn", "--workers", str(workers), "--threads", str(threads), "--timeout", "60",
             "--bind", f"127.0.0.1:{port}", "--no-control-socket", "tfregistry.app:create_app()"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(env, port, token, proc, log)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited {proc.returncode}:\n{server.output()}")
        with contextlib.suppress(OSError):
            if server.request("GET", "/.well-known/terraform.json", timeout=5).status == 200:
                return server
        time.sleep(0.1)
    stop_group(proc)
    pytest.fail(f"gunicorn did not answer in time:\n{server.output()}")


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        stop_group(server.proc)


def stored_files(root: Path) -> list[str]:
    """Every file under ``root``, temporary and hidden ones included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_fault_reply(reply: HttpResponse, status: int, *words: str) -> None:
    """A JSON error with ``status`` naming each of ``words``; never a traceback."""
    text = reply.body.decode(errors="replace")
    assert reply.status == status, text
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    assert "Traceback" not in text
    for word in words:
        assert word in text.lower(), text


# --- 1. the web process killed mid-upload -------------------------------------------


def multipart_files(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with ``fields`` and ``(field, filename, bytes)`` files."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    for field, filename, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload_for(kind: str, ns: str) -> tuple[str, bytes, str, str]:
    """(path, body, content type, versions path) of a large module version or a provider release."""
    if kind == "module":
        body, ctype = multipart({"namespace": ns, "name": "net", "system": "aws", "version": "1.0.0"},
                                big_archive(4 * 1024 * 1024))
        return "/api/v1/modules", body, ctype, f"/v1/modules/{ns}/net/aws/versions"
    from tests.providers_kit import provider_zip

    blob = {"blob.bin": os.urandom(2 * 1024 * 1024)}
    packages = [("packages", f"terraform-provider-demo_1.0.0_{p}.zip", provider_zip("demo", "1.0.0", p, blob))
                for p in ("linux_amd64", "darwin_arm64")]
    body, ctype = multipart_files({"namespace": ns, "type": "demo", "version": "1.0.0"}, packages)
    return "/api/v1/providers", body, ctype, f"/v1/providers/{ns}/demo/versions"


def send_partial(server: Server, path: str, body: bytes, ctype: str, upto: int) -> socket.socket:
    """A slow client: headers and the first ``upto`` bytes of ``body``, in 64 KiB pieces."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n"
                  f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode())
    for start in range(0, upto, 64 * 1024):
        sock.sendall(body[start:min(start + 64 * 1024, upto)])
    return sock


def wait_for(predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("kind", ["module", "provider"])
def test_sigkill_mid_publish_leaves_nothing_after_gc_and_the_version_publishes_afterwards(
        tmp_path: Path, kind: str) -> None:
    import sqlite3

    env = base_env(tmp_path / "data")
    storage = tmp_path / "data" / "storage"
    ns = f"kill{uuid.uuid4().hex[:8]}"
    server = start_gunicorn(env, tmp_path, workers=1)
    path, body, ctype, versions = upload_for(kind, ns)
    with running(server):
        if kind == "provider":  # unsigned uploads are signed with the namespace's managed key
            key = server.request("POST", "/api/v1/gpg-keys/managed", json.dumps({"namespace": ns}).encode(),
                                 {"Content-Type": "application/json"})
            assert key.status == 201, key.body
        else:  # the namespace exists (publishing into a new one writes it before the bytes are stored)
            assert server.publish(ns, "other", "0.1.0", build_module_archive()).status == 201
        before = stored_files(storage)
        # Kill point 1: the client has sent half the body; the worker is blocked reading the rest.
        sock = send_partial(server, path, body, ctype, len(body) // 2)
        time.sleep(0.5)
        assert server.proc.poll() is None
        stop_group(server.proc, signal.SIGKILL)
        sock.close()
    assert stored_files(storage) == before

    server = launch(env, tmp_path, server.token, workers=1)
    with running(server):
        # Kill point 2: the bytes are in storage, the row is not committed yet.  A writer holding the
        # SQLite lock parks the publish between the two; the process dies there.
        assert server.request("GET", "/api/v1/me").status == 200  # the token's last-use write happens now
        lock = sqlite3.connect(tmp_path / "data" / "registry.db", timeout=5, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            sock = send_partial(server, path, body, ctype, len(body))
            wait_for(lambda: len(stored_files(storage)) > len(before), "the upload's bytes in storage")
            stop_group(server.proc, signal.SIGKILL)
            sock.close()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    orphans = sorted(set(stored_files(storage)) - set(before))
    assert orphans, "the kill came before any byte was stored"
    gc = tfr(env, "storage", "gc", "--grace", "0s")
    assert stored_files(storage) == before, gc.stdout  # no unreferenced bytes remain

    with running(launch(env, tmp_path, server.token, workers=1)) as again:
        assert again.request("GET", versions).status == 404  # no version exists
        reply = again.request("POST", path, body, {"Content-Type": ctype})
        assert reply.status == 201, reply.body
        listed = again.request("GET", versions).json()
        assert [v["version"] for v in (listed.get("modules") or [listed])[0]["versions"]] == ["1.0.0"]
        assert len(stored_files(storage)) > len(before)


# --- 2. PostgreSQL stopped under gunicorn ------------------------------------------------


@contextlib.contextmanager
def postgres_cluster(tmp: Path) -> Iterator[tuple[str, Any, Any, tuple[Path, int]]]:
    """A second PostgreSQL cluster owned by the ``postgres`` user: its URL, stop(), start(), (data dir, port)."""
    root = Path(tempfile.mkdtemp(prefix="tfrpg", dir="/tmp"))
    shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    data, port = root / "data", free_port()

    def as_postgres(*cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=60)

    def start() -> None:
        as_postgres(str(PGBIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off", "start")

    def stop() -> None:
        as_postgres(str(PGBIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")

    as_postgres(str(PGBIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    start()
    try:
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "create database reg"],
                       check=True, capture_output=True, timeout=30)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/reg", stop, start, (data, port)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            stop()
        shutil.rmtree(root, ignore_errors=True)


def test_database_stopped_answers_503_and_service_resumes_without_restart(tmp_path: Path) -> None:
    with postgres_cluster(tmp_path) as (url, stop_db, start_db, (pgdata, pgport)):
        env = base_env(tmp_path / "data", TFR_DATABASE_URL=url, TFR_DATABASE__CONNECT_TIMEOUT="2")
        ns = f"pg{uuid.uuid4().hex[:8]}"
        with running(start_gunicorn(env, tmp_path, workers=2)) as server:
            assert server.publish(ns, "net", "1.0.0", build_module_archive()).status == 201
            assert server.versions(ns, "net").status == 200
            stop_db()
            for _ in range(3):  # both workers, pooled connections now dead
                assert_fault_reply(server.versions(ns, "net"), 503, "database")
            reply = server.publish(ns, "net", "1.1.0", build_module_archive(files={"main.tf": "# 1.1\n"}))
            assert_fault_reply(reply, 503, "database")
            assert reply.headers.get("retry-after")
            api = server.request("GET", "/api/v1/tokens")
            assert_fault_reply(api, 503, "database")
            assert api.json()["code"] == 503
            start_db()
            for _ in range(4):
                listed = server.versions(ns, "net")
                assert listed.status == 200, listed.body
                assert [v["version"] for v in listed.json()["modules"][0]["versions"]] == ["1.0.0"]
            assert server.publish(ns, "net", "1.1.0", build_module_archive(files={"main.tf": "# 1.1\n"})
                                  ).status == 201

            # A database that accepts TCP connections but never answers (postmaster frozen, pooled
            # connections gone): requests end with 503 after database.connect_timeout, not never.
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pgport), "-U", "postgres", "-d", "reg", "-c",
                            "select pg_terminate_backend(pid) from pg_stat_activity "
                            "where datname = 'reg' and pid <> pg_backend_pid()"], check=True, capture_output=True,
                           timeout=30)
            postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
            os.kill(postmaster, signal.SIGSTOP)
            try:
                frozen = server.versions(ns, "net")  # the client waits up to 30 s; the server answers first
                assert_fault_reply(frozen, 503, "database", "timeout")
            finally:
                os.kill(postmaster, signal.SIGCONT)
            assert server.versions(ns, "net").status == 200
        assert stored_files(tmp_path / "data" / "storage") and len(stored_files(tmp_path / "data" / "storage")) == 2


# --- 3. the data directory's filesystem fills up ---------------------------------------


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted for the test (we are root)."""
    mount = Path(tempfile.mkdtemp(prefix="tfrfull", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True,
                   capture_output=True, timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True, timeout=30)
        shutil.rmtree(mount, ignore_errors=True)


def test_full_filesystem_answers_507_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    with small_filesystem("8m") as mount:
        data = mount / "data"
        env = base_env(data)
        ns = f"full{uuid.uuid4().hex[:8]}"
        with running(start_gunicorn(env, tmp_path, workers=1)) as server:
            storage = data / "storage"
            assert server.publish(ns, "net", "1.0.0", build_module_archive()).status == 201
            before = stored_files(storage)
            filler = mount / "filler"
            with open(filler, "wb") as fh:  # fill all but ~256 KiB
                free = shutil.disk_usage(mount).free
                fh.write(b"\0" * max(0, free - 256 * 1024))
            archive = big_archive(1024 * 1024)
            reply = server.publish(ns, "net", "2.0.0", archive)
            assert_fault_reply(reply, 507, "out of space", "no space left")
            assert stored_files(storage) == before  # no partial object, no temporary file
            listed = server.versions(ns, "net").json()["modules"][0]["versions"]
            assert [v["version"] for v in listed] == ["1.0.0"]
            filler.unlink()
            assert server.publish(ns, "net", "2.0.0", archive).status == 201
        tfr(env, "storage", "gc", "--grace", "0s")
        assert len(stored_files(storage)) == 2


# --- 4. the object store killed mid-publish -----------------------------------------------


def test_object_store_killed_mid_publish_answers_503_with_retry_after(tmp_path: Path) -> None:
    import boto3

    port = free_port()
    moto = subprocess.Popen([BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        for _ in range(100):
            with contextlib.suppress(Exception):
                s3.create_bucket(Bucket="faults")
                break
            time.sleep(0.1)
        env = base_env(tmp_path / "data", TFR_PLUGINS="tfregistry-storage-s3", TFR_STORAGE__BACKEND="s3",
                       TFR_STORAGE__S3__BUCKET="faults", TFR_STORAGE__S3__ENDPOINT_URL=endpoint,
                       TFR_STORAGE__S3__REGION="us-east-1", TFR_STORAGE__S3__PATH_STYLE="true",
                       TFR_STORAGE__S3__ACCESS_KEY_ID="testing", TFR_STORAGE__S3__SECRET_ACCESS_KEY="testing",
                       TFR_STORAGE__S3__MAX_ATTEMPTS="2", TFR_STORAGE__S3__CONNECT_TIMEOUT="2")
        ns = f"s3{uuid.uuid4().hex[:8]}"
        with running(start_gunicorn(env, tmp_path, workers=1)) as server:
            assert server.publish(ns, "net", "1.0.0", build_module_archive()).status == 201
            archive = big_archive(2 * 1024 * 1024)
            body, ctype = multipart({"namespace": ns, "name": "net", "system": "aws", "version": "2.0.0"}, archive)
            conn = HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.putrequest("POST", "/api/v1/modules")
            for key, value in (("Authorization", f"Bearer {server.token}"), ("Content-Type", ctype),
                               ("Content-Length", str(len(body)))):
                conn.putheader(key, value)
            conn.endheaders()
            conn.send(body[: len(body) // 2])
            stop_group(moto, signal.SIGKILL)  # the object store dies while the upload streams in
            conn.send(body[len(body) // 2:])
            resp = conn.getresponse()
            reply = HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
            conn.close()
            assert_fault_reply(reply, 503, "storage backend is unavailable")
            assert reply.headers.get("retry-after")
            listed = server.versions(ns, "net").json()["modules"][0]["versions"]
            assert [v["version"] for v in listed] == ["1.0.0"]  # nothing recorded
    finally:
        stop_group(moto, signal.SIGKILL)


# --- 5. Redis stopped with workers configured ------------------------------------------------


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[tuple[str, Any, Any]]:
    """A redis-server persisting to ``directory`` (append-only file): URL, stop(), start()."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
                                 "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def stop() -> None:
        proc = procs.pop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", stop, start
    finally:
        for proc in procs:
            stop_group(proc, signal.SIGKILL)


def test_redis_stopped_jobs_api_answers_503_and_nothing_is_lost(tmp_path: Path) -> None:
    from tfregistry.app import bootstrap
    from tfregistry.jobs import make_queue

    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as (url, stop_redis, start_redis):
        env = base_env(tmp_path / "data", TFR_REDIS_URL=url)
        settings = bootstrap(environ=env, load_entrypoints=False).settings  # what the web process reads
        with running(start_gunicorn(env, tmp_path, workers=1)) as server:
            queue = make_queue(settings)
            job = queue.enqueue("tfregistry.jobs:storage_gc", 3600, queue="default", job_id="faults-gc")
            listed = server.request("GET", "/api/v1/jobs")
            assert listed.status == 200, listed.body
            assert job.id in listed.body.decode()
            stop_redis()
            down = server.request("GET", "/api/v1/jobs")
            assert_fault_reply(down, 503, "redis", "redis_url")
            assert down.headers.get("retry-after")
            cli = tfr(env, "jobs", "list", check=False)
            assert cli.returncode != 0 and "Traceback" not in cli.stderr and "redis" in cli.stderr.lower(), cli
            assert server.request("GET", "/v1/modules").status == 200  # the registry itself keeps serving
            mirror = server.request("POST", "/api/v1/mirrors", json.dumps(
                {"upstream_host": "registry.example.test", "upstream_url": "http://127.0.0.1:9",
                 "namespace": "hashicorp", "type": "null"}).encode(), {"Content-Type": "application/json"})
            assert mirror.status == 201, mirror.body  # the database still takes writes
            sync_path = f"/api/v1/mirrors/{mirror.json()['id']}/sync"
            refused = server.request("POST", sync_path)
            assert_fault_reply(refused, 503, "redis", "nothing was enqueued")
            start_redis()
            back = server.request("GET", "/api/v1/jobs")
            assert back.status == 200, back.body
            assert job.id in back.body.decode()  # the job queued before the outage survived it
            again = server.request("POST", sync_path)
            assert again.status == 202, again.body
            assert again.json()["job"] in server.request("GET", "/api/v1/jobs").body.decode()


# --- 6. racing publishes of one version ------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_twenty_simultaneous_publishes_of_one_version(tmp_path: Path, database: str) -> None:
    drop = None
    extra: dict[str, str] = {}
    if database == "postgresql":
        url, drop = create_postgres_database("tfr_faults")
        extra["TFR_DATABASE_URL"] = url
    env = base_env(tmp_path / "data", **extra)
    try:
        with running(start_gunicorn(env, tmp_path, workers=3, threads=4)) as server:
            ns = f"race{uuid.uuid4().hex[:8]}"
            same = build_module_archive(files={"main.tf": "# same\n"})
            with ThreadPoolExecutor(20) as pool:
                statuses = list(pool.map(lambda _: server.publish(ns, "net", "1.0.0", same).status, range(20)))
            assert sorted(set(statuses)) in ([201], [200, 201]) and statuses.count(201) == 1, statuses
            with ThreadPoolExecutor(20) as pool:
                statuses = list(pool.map(
                    lambda i: server.publish(ns, "net", "2.0.0",
                                             build_module_archive(files={"main.tf": f"# {i}\n"})).status,
                    range(20)))
            assert statuses.count(201) == 1 and statuses.count(409) == 19, statuses
            versions = server.versions(ns, "net").json()["modules"][0]["versions"]
            assert sorted(v["version"] for v in versions) == ["1.0.0", "2.0.0"]

            # The same for a provider release (signed with the namespace's managed key).
            from tests.providers_kit import provider_zip

            key = server.request("POST", "/api/v1/gpg-keys/managed", json.dumps({"namespace": ns}).encode(),
                                 {"Content-Type": "application/json"})
            assert key.status == 201, key.body

            def provider(version: str, marker: str) -> int:
                body, ctype = multipart_files(
                    {"namespace": ns, "type": "demo", "version": version},
                    [("packages", f"terraform-provider-demo_{version}_linux_amd64.zip",
                      provider_zip("demo", version, "linux_amd64", {"marker": marker.encode()}))])
                reply = server.request("POST", "/api/v1/providers", body, {"Content-Type": ctype})
                return reply.status

            with ThreadPoolExecutor(20) as pool:
                statuses = list(pool.map(lambda _: provider("1.0.0", "same"), range(20)))
            assert statuses.count(201) == 1 and statuses.count(200) == 19, statuses
            with ThreadPoolExecutor(20) as pool:
                statuses = list(pool.map(lambda i: provider("2.0.0", str(i)), range(20)))
            assert statuses.count(201) == 1 and statuses.count(409) == 19, statuses
        tfr(env, "storage", "gc", "--grace", "0s")
        # the losers' bytes are gone: 2 module archives, 2 x (zip + SHA256SUMS + signature)
        assert len(stored_files(tmp_path / "data" / "storage")) == 8, stored_files(tmp_path / "data" / "storage")
    finally:
        if drop:
            drop()


# --- 7. CLI commands on a database without the schema --------------------------------------


def test_cli_on_an_unmigrated_or_old_database_says_run_db_upgrade(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data")
    result = tfr(env, "token", "create", "--name", "t", "--scope", "admin", check=False)
    assert result.returncode != 0
    assert "run `tfr db upgrade`" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    tfr(env, "db", "upgrade", "--revision", "0001")
    old = tfr(env, "gpg", "list", check=False)
    assert old.returncode != 0
    assert "run `tfr db upgrade`" in old.stderr, old.stderr
    assert "Traceback" not in old.stderr + old.stdout
    tfr(env, "db", "upgrade")
    assert tfr(env, "token", "create", "--name", "t", "--scope", "admin").stdout.strip()
