"""Pull-through under a stampede: N clients ask at once for a provider package the mirror has never fetched.

Each client does what ``terraform init`` does through a network mirror (``index.json``, then
``VERSION.json``, then the archive), all N clients in step: first for a version of a provider the
mirror has never seen, then (``VERSION.json`` and archive) for a new version of the provider it
now holds, whose row every request has loaded before it waits for the lock.  On PostgreSQL the clients are spread
over two registry processes sharing the database and the storage, as replicas behind a load
balancer would be; on SQLite (a single-node database) they all hit one process.  The upstream
sits behind :class:`UpstreamProxy`, which counts what reaches it and holds the first download of
the SHA256SUMS and of the archive for a moment, so every other client is certainly in flight
while the first fetch is still running.  The upstream must have served each file exactly once,
every client must have got the same, correct answer, and exactly one copy must be stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPSConnection
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import DATABASES, HttpResponse, RegistryServer, _free_port, running_server, unique
from tests.e2e.upstream_proxy import UpstreamProxy
from tests.providers_kit import build_release

pytestmark = pytest.mark.e2e

T = TypeVar("T")
ORIGIN = "pull.example.test"
CLIENTS = 8
PLATFORM = "linux_amd64"
VERSIONS = ("1.0.0", "1.1.0")
#: How long the first upstream download is held once every client's request is on its way, unless a
#: second download of the same file shows up first (then the lock is broken and waiting is pointless).
#: It only widens the window in which a broken lock would let a second fetch through; a correct lock
#: passes whatever its length.
RACE_WINDOW = 1.5


@contextlib.contextmanager
def replica_of(first: RegistryServer, root: Path) -> Iterator[RegistryServer]:
    """A second ``tfr serve`` process on the same database, storage and secret key as ``first``."""
    srv = None
    try:
        for attempt in range(3):  # the free port may be taken by someone else before we bind it
            srv = RegistryServer(database=first.database, port=_free_port(), data_dir=first.data_dir,
                                 env=first.env, log_out=root / f"replica-{attempt}.out",
                                 log_err=root / f"replica-{attempt}.err", admin_token=first.admin_token)
            srv.start()
            if srv.wait_until_ready():
                break
            srv.stop()
            if "in use" not in srv.output():
                pytest.fail(f"the second replica did not come up\n{srv.output()}")
        else:
            pytest.fail(f"could not find a free port for the second replica\n{srv.output() if srv else ''}")
        yield srv
    finally:
        if srv is not None:
            srv.stop()


def get(server: RegistryServer, target: str, token: str | None = None,
        sent: Callable[[], None] = lambda: None) -> HttpResponse:
    """GET ``target`` (path and query) from ``server``; ``sent()`` is called once the request is on its way."""
    conn = HTTPSConnection("127.0.0.1", server.port, context=server.ssl_context, timeout=60)
    try:
        conn.request("GET", target, headers={"Authorization": f"Bearer {token}"} if token else {})
        sent()
        response = conn.getresponse()
        return HttpResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def stampede(proxy: UpstreamProxy, calls: list[Callable[[Callable[[], None]], T]],
             first_fetch: Callable[[str], bool] | None = None) -> list[T]:
    """Run ``calls`` at once from as many threads (each gets a ``sent`` callback); returns their results.

    With ``first_fetch``, the first upstream request matching it is held until every call's request
    is on its way and then until :data:`RACE_WINDOW` has passed or a second matching request arrived.
    """
    barrier = threading.Barrier(len(calls))
    sent = threading.Semaphore(0)

    def run(call: Callable[[Callable[[], None]], T]) -> T:
        barrier.wait(timeout=30)
        return call(sent.release)

    if first_fetch is not None:
        proxy.hold(first_fetch)
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        try:
            if first_fetch is not None:
                for _ in calls:
                    assert sent.acquire(timeout=30), "a client could not send its request"
                proxy.wait_until(lambda: proxy.held.is_set() or all(f.done() for f in futures), timeout=30)
                if proxy.held.is_set():
                    proxy.wait_until(lambda: proxy.count(first_fetch) > 1, timeout=RACE_WINDOW)
        finally:
            proxy.release()
        return [future.result(timeout=90) for future in futures]


def database_url(server: RegistryServer) -> str:
    return server.env.get("TFR_DATABASE_URL") or f"sqlite:///{server.data_dir / 'registry.db'}"


def download(server: RegistryServer, url: str, sent: Callable[[], None]) -> tuple[int, bytes]:
    """Fetch an archive URL from a ``VERSION.json`` as Terraform does (no token, one redirect followed)."""
    answer = get(server, path_of(url), sent=sent)
    if answer.status != 302:
        return answer.status, answer.body
    redirected = get(server, path_of(answer.headers["location"]))
    return redirected.status, redirected.body


@pytest.mark.parametrize("database", DATABASES)
def test_concurrent_first_requests_fetch_from_the_upstream_once_and_all_get_the_same_package(
        database: str, upstream: RegistryServer, signer: Any, tmp_path: Path) -> None:
    ns = unique("herd")
    upstream.register_key(ns, signer.public_armor, tmp_path)
    shas = {}
    for version in VERSIONS:
        release = build_release(tmp_path / version, "foo", version, platforms=(PLATFORM, "darwin_arm64"), key=signer)
        upstream.publish_provider(release.dist, ns)
        shas[version] = hashlib.sha256(release.zips[release.zip_name(PLATFORM)]).hexdigest()
    upstream.set_visibility(ns, "public")  # pull-through fetches public providers without a token

    root = tmp_path / "downstream"
    root.mkdir()
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(UpstreamProxy(upstream))
        env = {"SSL_CERT_FILE": str(upstream.bundle), "TFR_MIRROR__PULL_THROUGH": "true",
               "TFR_MIRROR__UPSTREAMS": f"{ORIGIN}={proxy.url}"}
        first = stack.enter_context(running_server(database, root, env))
        replicas = [first]
        if database == "postgresql":  # the multi-replica case; SQLite is a single-node database
            replicas.append(stack.enter_context(replica_of(first, root)))
        clients = [replicas[i % len(replicas)] for i in range(CLIENTS)]
        token = first.admin_token
        for server in replicas:
            assert server.ssl_context  # made once here, not lazily by every thread
        base = f"/v1/providers/{ORIGIN}/{ns}/foo"

        indexes = stampede(proxy, [lambda sent, s=s: get(s, f"{base}/index.json", token, sent) for s in clients])
        assert [(r.status, r.json()) for r in indexes] == \
            [(200, {"versions": {v: {} for v in VERSIONS}})] * CLIENTS, [r.body for r in indexes]

        # First a version of a provider the mirror has never seen, then a new version of one it holds.
        for version in VERSIONS:
            sha = shas[version]
            sums = f"foo_{version}_SHA256SUMS"
            target = f"{base}/{version}.json"
            answers = stampede(proxy, [lambda sent, s=s, t=target: get(s, t, token, sent) for s in clients],
                               first_fetch=lambda path, sums=sums: path.endswith(sums))
            assert [r.status for r in answers] == [200] * CLIENTS, [r.body for r in answers]
            archives = [r.json()["archives"] for r in answers]
            assert all(sorted(a) == ["darwin_arm64", PLATFORM] for a in archives), archives
            assert all(f"zh:{sha}" in a[PLATFORM]["hashes"] for a in archives), archives

            package = f"foo_{version}_{PLATFORM}.zip"
            downloads = stampede(proxy, [lambda sent, s=s, a=a: download(s, a[PLATFORM]["url"], sent)
                                         for s, a in zip(clients, archives, strict=True)],
                                 first_fetch=lambda path, package=package: path.endswith(package))
            assert [status for status, _ in downloads] == [200] * CLIENTS, downloads
            assert all(hashlib.sha256(body).hexdigest() == sha for _, body in downloads), "a client got other bytes"

            # The upstream served the signed sums, their signature and the archive once each.
            assert proxy.count(lambda path, sums=sums: path.endswith(sums)) == 1, proxy.paths
            assert proxy.count(lambda path, sums=sums: path.endswith(f"{sums}.sig")) == 1, proxy.paths
            assert proxy.count(lambda path, package=package: path.endswith(package)) == 1, proxy.paths

            # Holding some versions does not hide the upstream's others; the list comes from the cache.
            listings = proxy.count(lambda path: path.endswith("/versions"))
            listed = get(first, f"{base}/index.json", token)
            assert listed.status == 200 and set(listed.json()["versions"]) == set(VERSIONS), listed.body
            assert proxy.count(lambda path: path.endswith("/versions")) == listings, proxy.paths
        assert proxy.count(lambda path: path.endswith(".zip")) == len(VERSIONS), proxy.paths

        # Exactly one stored copy: one provider, one row per version and package, one object in storage each.
        engine = sa.create_engine(database_url(first))
        try:
            with engine.connect() as conn:
                rows = list(conn.execute(sa.text(
                    "SELECT p.id, pv.version, pp.os || '_' || pp.arch, pp.sha256, pp.storage_key FROM providers p "
                    "JOIN namespaces n ON p.namespace_id = n.id "
                    "LEFT JOIN provider_versions pv ON pv.provider_id = p.id "
                    "LEFT JOIN provider_packages pp ON pp.provider_version_id = pv.id "
                    "WHERE n.name = :ns AND p.hostname = :origin ORDER BY pv.version"), {"ns": ns, "origin": ORIGIN}))
        finally:
            engine.dispose()
        assert len({row[0] for row in rows}) == 1, rows
        assert [tuple(row[1:4]) for row in rows] == [(v, PLATFORM, shas[v]) for v in VERSIONS], rows
        storage = first.data_dir / "storage"
        stored = sorted(str(p.relative_to(storage)) for p in (storage / "mirror").rglob("*.zip") if ns in str(p))
        assert stored == sorted(row[4] for row in rows)
        for row in rows:
            assert hashlib.sha256((storage / row[4]).read_bytes()).hexdigest() == shas[row[1]]
