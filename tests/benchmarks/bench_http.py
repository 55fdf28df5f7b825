"""Protocol reads over HTTP: the registry under gunicorn against nginx replaying its own answers (issue #10).

The registry starts with the README's production command (``tfr db upgrade``, then
``gunicorn -c python:tfregistry.gunicorn_conf -w N "tfregistry.app:create_app()"``) on 127.0.0.1;
one real module and one
signed provider are published through the API in a public namespace (``pub``, read
anonymously) and a private one (``priv``, read with a token); bulk modules and a module
with 1,000 versions are inserted with SQLAlchemy Core on the models' tables.  Each
endpoint's answer is recorded once, with Terraform's request headers (its User-Agent, and the
``Accept-Encoding: gzip`` Go's HTTP client adds, so larger answers come compressed), and replayed
by nginx (same status, body, and Content-Type / X-Terraform-Get / Location / Content-Encoding /
Vary headers); ``wrk -t2 -c16 --latency`` then
alternates registry and nginx over several rounds and the medians are printed, with the
registry/nginx request-rate ratio (issue #10 asks for 0.1 or better).  At the larger
scales only the registry's scale-sensitive endpoints are measured (anonymously), and
their p50 is printed relative to the smallest scale.

Environment (defaults finish the whole matrix in about 20 minutes on a 2-core machine):

``TFR_BENCH_DB``        databases, ``sqlite,postgresql``
``TFR_BENCH_WORKERS``   gunicorn worker counts (nginx gets as many), ``2,4``
``TFR_BENCH_SCALES``    bulk module counts, smallest first, ``100,10000,100000``
``TFR_BENCH_AUTH``      ``anonymous,token``
``TFR_BENCH_DURATION``  seconds per wrk run, ``2``
``TFR_BENCH_ROUNDS``    alternating registry/nginx rounds (medians are printed), ``2``

Example: ``TFR_BENCH_DB=sqlite TFR_BENCH_WORKERS=2 TFR_BENCH_SCALES=100 tox -e bench -- tests/benchmarks/bench_http.py``
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.benchmarks._http import (
    PRIVATE_NS,
    PUBLIC_NS,
    TERRAFORM_HEADERS,
    Gunicorn,
    Nginx,
    Recorded,
    WrkResult,
    check_replay,
    env_list,
    env_number,
    fetch,
    median_result,
    publish_module,
    publish_provider,
    record,
    registry,
    seed_modules,
    seed_versions,
    wrk,
)
from tests.providers_kit import build_release
from tfregistry.testing.plugin import build_module_archive

DATABASES = env_list("TFR_BENCH_DB", "sqlite,postgresql")
WORKERS = [int(w) for w in env_list("TFR_BENCH_WORKERS", "2,4")]
SCALES = sorted(int(s) for s in env_list("TFR_BENCH_SCALES", "100,10000,100000"))
AUTHS = env_list("TFR_BENCH_AUTH", "anonymous,token")
DURATION = int(env_number("TFR_BENCH_DURATION", 2))
ROUNDS = int(env_number("TFR_BENCH_ROUNDS", 2))
MANY_VERSIONS = 1000
#: Requests one after another for the unloaded latency of the 1,000-version document and the 1-version one.
ALONE_REPEAT = 21
PROVIDER = "bench"
#: Endpoints measured again at every scale (registry only, anonymous).
SCALE_SENSITIVE = ("module versions", "module download", "module latest", "provider versions", "module list",
                   "module search", "namespace list")
#: Endpoints Terraform reads without its token: measured in anonymous runs only.
TOKENLESS = ("discovery", "signed file")


def endpoints(ns: str, host: str, file_target: str) -> list[tuple[str, str]]:
    """(label, request target) for every read endpoint, in namespace ``ns``."""
    return [
        ("discovery", "/.well-known/terraform.json"),
        ("module versions", f"/v1/modules/{ns}/real/aws/versions"),
        (f"module versions ({MANY_VERSIONS})", f"/v1/modules/{ns}/many/aws/versions"),
        ("module download", f"/v1/modules/{ns}/real/aws/1.0.0/download"),
        ("module latest", f"/v1/modules/{ns}/real/aws"),
        ("module version", f"/v1/modules/{ns}/real/aws/1.0.0"),
        ("provider versions", f"/v1/providers/{ns}/{PROVIDER}/versions"),
        ("provider download", f"/v1/providers/{ns}/{PROVIDER}/1.0.0/download/linux/amd64"),
        ("mirror index.json", f"/v1/providers/{host}/{ns}/{PROVIDER}/index.json"),
        ("mirror VERSION.json", f"/v1/providers/{host}/{ns}/{PROVIDER}/1.0.0.json"),
        ("signed file", file_target),
        ("module list", "/v1/modules"),
        ("module search", "/v1/modules/search?q=real"),
        ("namespace list", f"/v1/modules/{ns}"),
    ]


def _headers(token: str | None) -> dict[str, str]:
    return {**TERRAFORM_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}


def _publish_real_things(srv: Gunicorn, work: Path, signer: Any) -> None:
    """One module archive and one signed provider release in both namespaces, through the API."""
    admin = srv.create_token("admin", name="bench-admin")
    archive = work / "real.tar.gz"
    archive.write_bytes(build_module_archive("real"))
    release = build_release(work / "dist", PROVIDER, "1.0.0", platforms=("linux_amd64",), key=signer)
    srv.start(1)
    try:
        for ns in (PUBLIC_NS, PRIVATE_NS):
            publish_module(srv, admin, f"{ns}/real/aws", "1.0.0", archive)
            publish_provider(srv, admin, ns, release.dist, signer.public_armor)
    finally:
        srv.stop()
    srv.tfr("namespace", PUBLIC_NS, "--visibility", "public")
    srv.tfr("namespace", PRIVATE_NS, "--visibility", "private")


def _record_checked(srv: Gunicorn, targets: list[tuple[str, str]], token: str | None) -> list[Recorded]:
    """The registry's answers; correctness: 204 + X-Terraform-Get for the module download, else 200."""
    answers = record(srv.url, [t for _, t in targets], _headers(token))
    for (label, _), answer in zip(targets, answers, strict=True):
        if label == "module download":
            assert answer.status == 204 and answer.headers.get("x-terraform-get"), (label, answer)
        else:
            assert answer.status == 200, (label, answer.status, answer.body[:300])
    return answers


def _alternate(targets: list[tuple[str, str]], bases: dict[str, str],
               token: str | None) -> dict[tuple[str, str], WrkResult]:
    """wrk each (target, server) for ROUNDS rounds, alternating which server goes first; the medians."""
    runs: dict[tuple[str, str], list[WrkResult]] = {}
    names = list(bases)
    for rnd in range(ROUNDS):
        for label, target in targets:
            for who in names if rnd % 2 == 0 else reversed(names):
                runs.setdefault((label, who), []).append(wrk(bases[who] + target, DURATION, _headers(token)))
    return {key: median_result(results) for key, results in runs.items()}


def _print_comparison(title: str, targets: list[tuple[str, str]], figures: dict[tuple[str, str], WrkResult]) -> None:
    load = os.getloadavg()[0]
    print(f"\n[bench] {title}: median of {ROUNDS} round(s) x {DURATION} s, wrk -t2 -c16 (load average {load:.1f} "
          f"on {os.cpu_count()} CPUs)")
    print(f"  {'endpoint':<24} {'reg req/s':>10} {'p50 ms':>8} {'p99 ms':>8} | {'nginx req/s':>11} {'p50 ms':>8} "
          f"{'p99 ms':>8} | {'ratio':>7}  errors")
    print("  (ratio: registry req/s / nginx req/s, issue #10 asks for >= 0.1; errors: registry/nginx non-2xx/3xx "
          "answers and socket errors)")
    for label, _ in targets:
        r, n = figures[(label, "registry")], figures[(label, "nginx")]
        ratio = r.rps / n.rps if n.rps else 0.0
        flag = f"{r.errors}/{n.errors}" if r.errors or n.errors else ""
        print(f"  {label:<24} {r.rps:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} | {n.rps:>11.0f} {n.p50_ms:>8.2f} "
              f"{n.p99_ms:>8.2f} | {ratio:>7.3f}  {flag}")


def _single_request_ms(url: str, token: str | None, repeat: int = 3) -> float:
    """Median latency of ``repeat`` requests one after another (an unloaded server)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fetch(url, headers=_headers(token))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _print_scales(title: str, by_scale: dict[int, dict[str, tuple[WrkResult, float]]],
                  many: tuple[WrkResult, WrkResult] | None, many_alone: tuple[float, float] | None) -> None:
    base = SCALES[0]
    print(f"\n[bench] {title}: registry by module count: wrk p50 ms, req/s | one request alone, ms "
          f"(xN: relative to {base} modules)")
    print("  " + f"{'endpoint':<20}" + "".join(f"{s:>36}" for s in by_scale))
    for label in SCALE_SENSITIVE:
        cells = []
        for scale, figures in by_scale.items():
            (loaded, alone), (ref, ref_alone) = figures[label], by_scale[base][label]
            if loaded.rps:
                cell = f"{loaded.p50_ms:.1f}" + ("" if scale == base else f" x{loaded.p50_ms / ref.p50_ms:.1f}")
                cell += f" {loaded.rps:.0f}/s"
            else:
                cell = f"none in {DURATION}s"
            cell += f" | {alone:.1f}" + ("" if scale == base else f" x{alone / ref_alone:.1f}")
            cells.append(cell)
        print("  " + f"{label:<20}" + "".join(f"{c:>36}" for c in cells))
    if many:
        one, thousand = many
        print(f"  module versions with {MANY_VERSIONS} versions: p50 {thousand.p50_ms:.2f} ms, "
              f"p99 {thousand.p99_ms:.2f} ms"
              f" = x{thousand.p50_ms / one.p50_ms:.1f} / x{thousand.p99_ms / one.p99_ms:.1f} the 1-version module "
              f"at {base} modules")
    if many_alone:
        one_ms, thousand_ms = many_alone
        print(f"  the same, one request alone (median of {ALONE_REPEAT}): {thousand_ms:.2f} ms against "
              f"{one_ms:.2f} ms = x{thousand_ms / one_ms:.2f}")


@pytest.mark.parametrize("database", DATABASES)
def test_protocol_reads_against_nginx(database: str, tmp_path: Path, signer: Any) -> None:
    started = time.perf_counter()
    with registry(database, tmp_path / "registry") as srv:
        _publish_real_things(srv, tmp_path, signer)
        reader = srv.create_token("read", name="bench-reader")
        host = urlsplit(srv.url).netloc
        for ns in (PUBLIC_NS, PRIVATE_NS):
            took = seed_versions(srv.database_url, f"{ns}/many/aws", MANY_VERSIONS, f"{ns}/real/aws/1.0.0")
        print(f"\n[bench] {database}: seeded a module with {MANY_VERSIONS} versions in {took:.2f} s per namespace")
        by_scale: dict[int, dict[int, dict[str, tuple[WrkResult, float]]]] = {w: {} for w in WORKERS}
        many: dict[int, tuple[WrkResult, WrkResult]] = {}
        many_alone: dict[int, tuple[float, float]] = {}
        for scale in SCALES:
            took = seed_modules(srv.database_url, scale, (PUBLIC_NS, PRIVATE_NS), f"{PUBLIC_NS}/real/aws/1.0.0")
            print(f"\n[bench] {database}: seeded up to {scale} modules in {took:.2f} s")
            for workers in WORKERS:
                srv.start(workers)
                try:
                    figures: dict[tuple[str, str], WrkResult] = {}
                    if scale == SCALES[0]:
                        many[workers], figures = _compare_with_nginx(srv, tmp_path, reader, host, scale)
                        paths = dict(endpoints(PUBLIC_NS, host, ""))
                        one, thousand = (_single_request_ms(srv.url + paths[label], None, ALONE_REPEAT)
                                         for label in ("module versions", f"module versions ({MANY_VERSIONS})"))
                        many_alone[workers] = (one, thousand)
                    targets = [t for t in endpoints(PUBLIC_NS, host, "") if t[0] in SCALE_SENSITIVE]
                    if not all((label, "registry") in figures for label, _ in targets):
                        figures = _alternate(targets, {"registry": srv.url}, None)
                    by_scale[workers][scale] = {
                        label: (figures[(label, "registry")], _single_request_ms(srv.url + target, None))
                        for label, target in targets}
                finally:
                    srv.stop()
        for workers in WORKERS:
            _print_scales(f"{database}, {workers} workers, anonymous", by_scale[workers], many.get(workers),
                          many_alone.get(workers))
    print(f"\n[bench] {database}: matrix took {time.perf_counter() - started:.0f} s")


def _compare_with_nginx(srv: Gunicorn, tmp_path: Path, reader: str, host: str,
                        scale: int) -> tuple[tuple[WrkResult, WrkResult], dict[tuple[str, str], WrkResult]]:
    """The full endpoint table for each auth mode.  Returns the registry's (1-version, 1000-version)
    ``versions`` figures of the first mode, and the anonymous mode's figures (empty without one)."""
    download = f"/v1/modules/{PUBLIC_NS}/real/aws/1.0.0/download"
    location = record(srv.url, [download], _headers(None))[0].headers["x-terraform-get"]
    file_target = urlsplit(location)._replace(scheme="", netloc="").geturl()
    many: tuple[WrkResult, WrkResult] | None = None
    anonymous: dict[tuple[str, str], WrkResult] = {}
    for auth in AUTHS:
        token = reader if auth == "token" else None
        ns = PRIVATE_NS if token else PUBLIC_NS
        targets = [t for t in endpoints(ns, host, file_target) if not (token and t[0] in TOKENLESS)]
        answers = _record_checked(srv, targets, token)
        with Nginx(tmp_path / f"nginx-{srv.workers}-{auth}", answers, srv.workers) as nginx:
            check_replay(nginx.url, answers, _headers(token))
            figures = _alternate(targets, {"registry": srv.url, "nginx": nginx.url}, token)
        _print_comparison(f"{srv.database}, {srv.workers} workers, {auth} ({scale} modules)", targets, figures)
        if not token:
            anonymous = figures
        if many is None:
            many = (figures[("module versions", "registry")],
                    figures[(f"module versions ({MANY_VERSIONS})", "registry")])
    assert many is not None, "TFR_BENCH_AUTH named no auth mode"
    return many, anonymous
