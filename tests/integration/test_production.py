"""The production path: `tfr db upgrade`, then gunicorn "tfregistry.app:create_app()" configured by TFR_ variables."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import bearer

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production deployment (no TFR_ variables of the test run), migrated."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFR_")}
    env.update(TFR_DATA_DIR=str(tmp_path / "data"), TFR_DATABASE_URL=database_url,
               TFR_PUBLIC_URL="https://registry.example.com", TFR_SECRET_KEY="0123456789abcdef0123456789",
               TFR_PLUGINS="tfregistry-storage-local", **extra)
    subprocess.run([BIN / "tfr", "db", "upgrade"], env=env, check=True, capture_output=True)
    return env


def wait_until_serving(server: subprocess.Popen, port: int) -> None:
    for _ in range(150):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health"):
                return
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.kill()
    pytest.fail("gunicorn did not start: " + server.stdout.read().decode())


def test_gunicorn_serves_the_app_factory(tmp_path, database_url):
    env = production_env(tmp_path, database_url)
    token = subprocess.run([BIN / "tfr", "token", "create", "--name", "t", "--scope", "read"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [BIN / "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}", "--no-control-socket",
         "tfregistry.app:create_app()"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/terraform.json") as r:
                    body = json.load(r)
                break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.1)
        output = server.stdout.read().decode() if server.poll() else ""
        assert body == {"modules.v1": "/v1/modules/", "providers.v1": "/v1/providers/"}, output
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/modules", headers=bearer(token))
        with urllib.request.urlopen(request) as r:
            assert json.load(r)["modules"] == []
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_the_readme_command_counts_every_download_by_the_time_a_clean_shutdown_ends(tmp_path, database_url):
    """README: ``gunicorn -c python:tfregistry.gunicorn_conf``; downloads are written in batches, and the
    ones still waiting when the workers are told to stop (SIGTERM) are written before they exit."""
    env = production_env(tmp_path, database_url, TFR_DOWNLOADS__FLUSH_INTERVAL="1h")
    token = subprocess.run([BIN / "tfr", "token", "create", "--name", "t", "--scope", "admin"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [BIN / "gunicorn", "-c", "python:tfregistry.gunicorn_conf", "-w", "2", "--bind", f"127.0.0.1:{port}",
         "--no-control-socket", "tfregistry.app:create_app()"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(server, port)
        module = tmp_path / "module"
        module.mkdir()
        (module / "main.tf").write_text('variable "name" {}\n')
        subprocess.run([BIN / "tfr", "publish", "module", str(module), "--namespace", "acme", "--name", "network",
                        "--system", "aws", "--version", "1.0.0"], check=True, capture_output=True,
                       env={**env, "TFR_URL": f"http://127.0.0.1:{port}", "TFR_TOKEN": token})
        url = f"http://127.0.0.1:{port}/v1/modules/acme/network/aws/1.0.0/download"
        for _ in range(60):
            request = urllib.request.Request(url, headers={**bearer(token), "User-Agent": "Terraform/1.15.5"})
            with urllib.request.urlopen(request) as r:
                assert r.status == 204 and r.headers["X-Terraform-Get"]
        engine = sa.create_engine(database_url)
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM download_events")) == 0  # waiting in the workers
        server.terminate()
        assert server.wait(timeout=40) == 0
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM download_events")) == 60
        engine.dispose()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
