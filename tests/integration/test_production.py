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

from tests.conftest import bearer

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gunicorn_serves_the_app_factory(tmp_path, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TFR_")}
    env.update(TFR_DATA_DIR=str(tmp_path / "data"), TFR_DATABASE_URL=database_url,
               TFR_PUBLIC_URL="https://registry.example.com", TFR_SECRET_KEY="0123456789abcdef0123456789",
               TFR_PLUGINS="tfregistry-storage-local")
    subprocess.run([BIN / "tfr", "db", "upgrade"], env=env, check=True, capture_output=True)
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
