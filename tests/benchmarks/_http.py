"""Machinery of the HTTP benchmarks: the registry under gunicorn, bulk seeding, nginx replaying the
registry's recorded answers, and ``wrk``.

Nothing here knows about the read path's internals: the registry is started with the README's
production command and driven over HTTP, so the figures measure whatever code is installed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import signal
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from tests.benchmarks._streaming import free_port, wait_for_port
from tests.conftest import create_postgres_database
from tests.e2e.conftest import HttpResponse, clean_environ
from tests.e2e.conftest import _stop as stop_process_group

BIN = Path(sys.executable).parent
TERRAFORM_UA = "Terraform/1.15.5"
#: The headers Terraform's requests carry: its User-Agent, and the Accept-Encoding Go's HTTP client adds
#: (it then decompresses a gzip answer itself).
TERRAFORM_HEADERS = {"User-Agent": TERRAFORM_UA, "Accept-Encoding": "gzip"}
#: What the benchmark namespaces are called: anonymous runs read ``pub``, token runs ``priv``.
PUBLIC_NS, PRIVATE_NS = "pub", "priv"
STARTUP_TIMEOUT = 60.0


# --- settings from the environment --------------------------------------------------------------

def env_list(name: str, default: str) -> list[str]:
    """A comma-separated environment variable as a list of non-empty items."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_number(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# --- plain HTTP ------------------------------------------------------------------------------------

def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None, body: Any = None,
          context: ssl.SSLContext | None = None, timeout: float = 60) -> HttpResponse:
    """One request to an absolute URL (redirects are not followed); header names come back lower-case."""
    parts = urlsplit(url)
    conn: HTTPConnection
    if parts.scheme == "https":
        conn = HTTPSConnection(parts.hostname or "", parts.port, context=context, timeout=timeout)
    else:
        conn = HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return HttpResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# --- the registry under gunicorn ---------------------------------------------------------------

@dataclass
class Gunicorn:
    """A registry database + data dir, served by the README's gunicorn command when started."""

    database: str
    database_url: str
    root: Path
    port: int
    env: dict[str, str]
    tls: tuple[Path, Path] | None = None  # (cert, key): gunicorn serves HTTPS itself
    proc: subprocess.Popen[bytes] | None = None
    workers: int = 0
    _log: Path | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def tfr(self, *args: str, timeout: float = 120) -> str:
        """``tfr ARGS`` on this registry's settings; returns stdout, raises with the output on failure."""
        result = subprocess.run([str(BIN / "tfr"), *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"`tfr {' '.join(args)}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def create_token(self, scope: str, name: str = "bench") -> str:
        """``tfr token create``: the secret (the command's last line)."""
        return self.tfr("token", "create", "--name", name, "--scope", scope).strip().splitlines()[-1].strip()

    def start(self, workers: int, *extra: str) -> None:
        """Start gunicorn as the README's production command does (``-c python:tfregistry.gunicorn_conf``,
        threaded workers) with ``workers`` workers, and wait until discovery answers."""
        self.workers = workers
        self._log = self.root / f"gunicorn-{self.port}-{workers}-{uuid.uuid4().hex[:6]}.log"
        cmd = [str(BIN / "gunicorn"), "-c", "python:tfregistry.gunicorn_conf", "-w", str(workers), "-b", self.host,
               *extra, *shlex.split(os.environ.get("TFR_BENCH_GUNICORN_ARGS", ""))]
        if self.tls:
            cmd += ["--certfile", str(self.tls[0]), "--keyfile", str(self.tls[1])]
        cmd.append("tfregistry.app:create_app()")
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        context = ssl._create_unverified_context() if self.tls else None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError):
                if fetch(self.url + "/.well-known/terraform.json", context=context, timeout=5).status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn did not answer within {STARTUP_TIMEOUT:.0f} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_text()[-5000:]

    def log_text(self) -> str:
        """Everything gunicorn (and the registry in it) wrote to stdout and stderr since the last start."""
        return self._log.read_text(errors="replace") if self._log and self._log.exists() else ""

    def worker_pids(self) -> list[int]:
        """The gunicorn master's children (its workers)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            return [int(p) for p in children.read_text().split()]
        return []

    def workers_peak_rss_mib(self) -> float:
        """The highest VmHWM (peak RSS) among the live workers, in MiB; read while they run."""
        peaks = [0.0]
        for pid in self.worker_pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
        return max(peaks)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None


@contextlib.contextmanager
def registry(database: str, root: Path, extra_env: dict[str, str] | None = None,
             tls: tuple[Path, Path] | None = None, port: int | None = None) -> Iterator[Gunicorn]:
    """A migrated registry (``tfr db upgrade``) on ``database`` ("sqlite" or "postgresql"), not yet serving.

    The caller starts gunicorn with :meth:`Gunicorn.start` (and may restart it with another worker count);
    it is stopped, and a PostgreSQL database dropped, on exit.
    """
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    drop = None
    if database == "postgresql":
        url, drop = create_postgres_database("tfr_bench")
    elif database == "sqlite":
        url = f"sqlite:///{data / 'registry.db'}"
    else:
        raise ValueError(f"unknown database {database!r} (sqlite or postgresql)")
    port = port or free_port()
    scheme = "https" if tls else "http"
    env = {**clean_environ(), "TFR_DATABASE_URL": url, "TFR_DATA_DIR": str(data),
           "TFR_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex, "TFR_PUBLIC_URL": f"{scheme}://127.0.0.1:{port}",
           "TFR_DOWNLOADS__URL_TTL": "7d", "TFR_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
           **(extra_env or {})}
    server = Gunicorn(database, url, root, port, env, tls)
    try:
        server.tfr("db", "upgrade")
        yield server
    finally:
        server.stop()
        if drop is not None:
            drop()


# --- bulk seeding through the models' tables ---------------------------------------------------------

def _engine(url: str) -> sa.Engine:
    from tfregistry.db import make_engine

    return make_engine(url)


def seed_modules(url: str, total: int, namespaces: Sequence[str], template: str, chunk: int = 20_000) -> float:
    """Grow the registry to ``total`` bulk modules (``bulkNNNNNN/aws``, one version each, spread over
    ``namespaces``) with SQLAlchemy Core inserts on the models' tables; returns the seconds taken.

    Every version row copies the storage key, size and digest of the real version ``template``
    (``ns/name/system/version``), so its download answers point at real bytes.
    """
    from tfregistry.models import Module, ModuleVersion, Namespace

    m, v, n = Module.__table__, ModuleVersion.__table__, Namespace.__table__
    start = time.perf_counter()
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            row = _version_row(conn, template)
            ns_ids = [conn.execute(sa.select(n.c.id).where(n.c.name == name)).scalar_one() for name in namespaces]
            have = conn.execute(sa.select(sa.func.count()).select_from(m).where(m.c.name.like("bulk%"))).scalar_one()
            now = datetime.now(UTC)
            for first in range(have, total, chunk):
                ids = range(first, min(first + chunk, total))
                conn.execute(m.insert(), [
                    {"namespace_id": ns_ids[i % len(ns_ids)], "name": f"bulk{i:06d}", "system": "aws",
                     "description": f"bulk module {i}", "created_at": now} for i in ids])
                names = m.c.name.between(f"bulk{ids[0]:06d}", f"bulk{ids[-1]:06d}")  # zero-padded: sorts as numbers
                new = conn.execute(sa.select(m.c.id).where(names)).scalars().all()
                conn.execute(v.insert(), [{**row, "module_id": mid, "version": "1.0.0"} for mid in new])
    finally:
        engine.dispose()
    return time.perf_counter() - start


def seed_versions(url: str, module: str, count: int, template: str) -> float:
    """Give ``module`` (``ns/name/system``, created if needed) versions 0.0.1 … up to ``count`` in all,
    copying the template version's bytes; returns the seconds taken."""
    from tfregistry.models import Module, ModuleVersion, Namespace

    m, v, n = Module.__table__, ModuleVersion.__table__, Namespace.__table__
    ns, name, system = module.split("/")
    start = time.perf_counter()
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            row = _version_row(conn, template)
            ns_id = conn.execute(sa.select(n.c.id).where(n.c.name == ns)).scalar_one()
            where = (m.c.namespace_id == ns_id) & (m.c.name == name) & (m.c.system == system)
            mid = conn.execute(sa.select(m.c.id).where(where)).scalar()
            if mid is None:
                conn.execute(m.insert(), [{"namespace_id": ns_id, "name": name, "system": system,
                                           "description": f"{count} versions", "created_at": datetime.now(UTC)}])
                mid = conn.execute(sa.select(m.c.id).where(where)).scalar_one()
            have = conn.execute(sa.select(sa.func.count()).select_from(v).where(v.c.module_id == mid)).scalar_one()
            conn.execute(v.insert(), [{**row, "module_id": mid, "version": f"{i // 100}.{i % 100}.0"}
                                      for i in range(have, count)])
    finally:
        engine.dispose()
    return time.perf_counter() - start


def _version_row(conn: sa.Connection, template: str) -> dict[str, Any]:
    """The columns of a published version worth copying into seeded ones."""
    from tfregistry.models import Module, ModuleVersion, Namespace

    m, v, n = Module.__table__, ModuleVersion.__table__, Namespace.__table__
    ns, name, system, version = template.split("/")
    found = conn.execute(
        sa.select(v.c.storage_key, v.c.size, v.c.sha256).join(m, v.c.module_id == m.c.id)
        .join(n, m.c.namespace_id == n.c.id)
        .where(n.c.name == ns, m.c.name == name, m.c.system == system, v.c.version == version)
    ).one()
    return {**found._asdict(), "prerelease": False, "description": "", "deprecated": False,
            "published_at": datetime.now(UTC), "published_by": "bench"}


# --- publishing the real things ---------------------------------------------------------------------

def publish_module(server: Gunicorn, token: str, address: str, version: str, archive: Path) -> None:
    """Publish ``archive`` as ``ns/name/system`` ``version`` through the API (``tfr publish module``)."""
    ns, name, system = address.split("/")
    server.tfr("publish", "module", str(archive), "--namespace", ns, "--name", name, "--system", system,
               "--version", version, "--url", server.url, "--token", token)


def publish_provider(server: Gunicorn, token: str, namespace: str, dist: Path, public_armor: str) -> None:
    """Register the signing key for ``namespace`` (``tfr gpg add``) and publish a GoReleaser ``dist``
    folder through the API (``tfr publish provider``)."""
    key = dist.parent / f"{namespace}-{uuid.uuid4().hex[:6]}.asc"
    key.write_text(public_armor)
    with contextlib.suppress(RuntimeError):  # already registered for this namespace
        server.tfr("gpg", "add", "--namespace", namespace, str(key))
    server.tfr("publish", "provider", str(dist), "--namespace", namespace, "--url", server.url, "--token", token)


# --- recorded answers served by nginx ---------------------------------------------------------------

#: The response headers that matter to Terraform and are replayed by nginx.
REPLAYED_HEADERS = ("content-type", "x-terraform-get", "location", "content-encoding", "vary")



@dataclass
class Recorded:
    """One answer of the registry: the request target (path and query), status, headers that matter, body."""

    target: str
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def record(base_url: str, targets: Sequence[str], headers: dict[str, str] | None = None,
           context: ssl.SSLContext | None = None) -> list[Recorded]:
    """Fetch each target once from the registry and keep what nginx must replay."""
    out = []
    for target in targets:
        r = fetch(base_url + target, headers=headers, context=context)
        kept = {k: v for k, v in r.headers.items() if k in REPLAYED_HEADERS}
        if r.status == 204:
            kept.pop("content-type", None)  # no body to describe (Flask still sends text/html)
        out.append(Recorded(target, r.status, kept, r.body))
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Nginx:
    """nginx (as the current user, ``daemon off``) answering recorded paths with the same status, body and headers.

    Each recorded path becomes an exact ``location``; query strings are ignored, so two recordings
    may not share a path.
    """

    def __init__(self, root: Path, answers: Sequence[Recorded], workers: int,
                 tls: tuple[Path, Path] | None = None, port: int | None = None) -> None:
        self.prefix = root
        self.port = port or free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        paths = [a.path for a in answers]
        assert len(set(paths)) == len(paths), "two recorded answers share a path: nginx cannot tell them apart"
        files = root / "answers"
        files.mkdir(parents=True, exist_ok=True)
        locations = []
        for i, answer in enumerate(answers):
            hdrs = answer.headers
            lines = [f"location = {_quote(answer.path)} {{"]
            for name, spelled in (("x-terraform-get", "X-Terraform-Get"), ("content-encoding", "Content-Encoding"),
                                  ("vary", "Vary")):
                if name in hdrs:
                    lines.append(f"    add_header {spelled} {_quote(hdrs[name])} always;")
            if answer.status in (301, 302, 303, 307, 308):
                lines.append(f"    return {answer.status} {_quote(hdrs.get('location', ''))};")
            elif answer.status == 204:
                lines.append("    return 204;")
            else:
                assert answer.status == 200, f"{answer.target}: replays 200, 204 and redirects, not {answer.status}"
                body = files / f"{i}"
                body.write_bytes(answer.body)
                ctype = hdrs.get("content-type", "application/octet-stream")
                lines += ["    types { }", f"    default_type {_quote(ctype)};", f"    alias {body};"]
            lines.append("}")
            locations.append("\n".join("        " + line for line in lines))
        listen = f"127.0.0.1:{self.port}" + (" ssl" if tls else "")
        ssl_lines = f"ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};" if tls else ""
        temp = "\n    ".join(f"{kind}_temp_path {root / ('tmp-' + kind)};"
                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # as root, nginx would hand its workers to "nobody", who cannot read a private tmp dir
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
        self.conf = root / "nginx.conf"
        self.conf.write_text(f"""\
daemon off;
{user}worker_processes {workers};
pid {root / 'nginx.pid'};
error_log {root / 'error.log'} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000;
    {temp}
    server {{
        listen {listen};
        {ssl_lines}
{chr(10).join(locations)}
        location / {{ return 404; }}
    }}
}}
""")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Nginx:
        self.proc = subprocess.Popen(["/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx",
                                      "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
                                      "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.__exit__()
            raise RuntimeError(f"nginx did not start:\n{(self.prefix / 'error.log').read_text(errors='replace')}") \
                from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop_process_group(self.proc)


def check_replay(nginx_url: str, answers: Sequence[Recorded], headers: dict[str, str] | None = None,
                 context: ssl.SSLContext | None = None) -> None:
    """Correctness: nginx answers every recorded target with the registry's status, headers and body."""
    for answer in answers:
        r = fetch(nginx_url + answer.target, headers=headers, context=context)
        assert r.status == answer.status, (answer.target, r.status, answer.status)
        assert r.body == answer.body, answer.target
        for name, value in answer.headers.items():
            assert r.headers.get(name) == value, (answer.target, name, r.headers.get(name), value)


# --- wrk ---------------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers plus socket errors


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert m, f"unexpected wrk latency {text!r}"
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Requests/sec, the 50% and 99% latency lines and the error counts of ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(x) for x in m.groups())
    return WrkResult(rps, p50, p99, errors)


def wrk(url: str, duration: int, headers: dict[str, str] | None = None) -> WrkResult:
    """``wrk -t2 -c16 -d<duration>s --latency`` against ``url`` (slow answers up to 30 s count, not time out)."""
    cmd = ["wrk", "-t2", "-c16", f"-d{duration}s", "--timeout", "30s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    result = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60, check=False)
    if result.returncode != 0 or "Requests/sec" not in result.stdout:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}\n{result.stderr}")
    return parse_wrk(result.stdout)


def median_result(results: Sequence[WrkResult]) -> WrkResult:
    """The median of each figure over rounds; errors are summed."""
    return WrkResult(statistics.median(r.rps for r in results), statistics.median(r.p50_ms for r in results),
                     statistics.median(r.p99_ms for r in results), sum(r.errors for r in results))
