"""``tfr web``, the container image's default command: gunicorn with tfregistry.gunicorn_conf, serving
/health and /ready after ``tfr db upgrade``."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.deploy.conftest import BIN
from tests.e2e.conftest import _free_port, _stop, clean_environ


def test_tfr_web_runs_gunicorn_and_answers_health_and_ready(tmp_path: Path) -> None:
    env = {**clean_environ(), "TFR_DATA_DIR": str(tmp_path / "data"), "WEB_CONCURRENCY": "1",
           "TFR_SECRET_KEY": "web-command-test-secret-key-0123456789"}
    subprocess.run([str(BIN / "tfr"), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    port = _free_port()
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "tfr"), "web", "--bind", f"127.0.0.1:{port}"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    health = r.status
                    break
            except OSError:  # refused, or accepted by the listening socket before a worker has booted (timeout)
                time.sleep(0.2)
        assert health == 200, log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "ready" and body["checks"]["database"] == "ok", body
        assert "Using worker: tfregistry.worker.ReplayWorker" in log.read_text()  # gunicorn_conf's worker
    finally:
        _stop(proc)
    assert proc.returncode is not None
