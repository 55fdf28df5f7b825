"""The ``tfr`` command line against a real database (and a real HTTP server for ``publish``)."""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from werkzeug.serving import make_server

from tests.conftest import bearer
from tfregistry.cli import Context, cli
from tfregistry.models import ApiToken, AuditEntry, Namespace
from tfregistry.services.storage import find_orphans
from tfregistry.tls import ensure_self_signed


@pytest.fixture
def run(tmp_path: Path, database_url: str, app: Any):
    """Run ``tfr`` with the same data dir and database as the ``app`` fixture."""
    env = {"TFR_DATA_DIR": str(tmp_path / "data"), "TFR_DATABASE_URL": database_url,
           "TFR_PLUGINS": "tfregistry-storage-local"}

    def invoke(*args: str, **kwargs: Any) -> Any:
        result = CliRunner(env=env).invoke(cli, list(args), obj=Context(None), catch_exceptions=False, **kwargs)
        return result

    return invoke


def test_token_create_prints_secret_last_and_stores_only_a_digest(run, registry, client):
    result = run("token", "create", "--name", "ci", "--scope", "publish", "--namespace", "acme", "--expires", "30d")
    assert result.exit_code == 0
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("tfr_") and len(secret) == 47
    assert "scopes=modules:write providers:write mirrors:read keys:manage namespace=acme" in result.output
    with registry.db.session() as session:
        row = session.scalars(sa.select(ApiToken).where(ApiToken.name == "ci")).one()
        assert secret not in (row.digest, row.display_prefix) and row.display_prefix == secret[:8]
        assert timedelta(days=29) < row.expires_at - row.created_at <= timedelta(days=30, seconds=5)
        assert session.scalars(sa.select(AuditEntry.action)).all()[-1] == "token.create"
    assert client.get("/v1/modules", headers=bearer(secret)).status_code == 200
    listing = run("token", "list").output
    assert "ci\tsite\tmodules:write providers:write mirrors:read keys:manage\tacme\tactive" in listing
    assert secret not in listing


def test_token_revoke(run, client):
    secret = run("token", "create", "--name", "x", "--scope", "read").output.strip().splitlines()[-1]
    assert client.get("/v1/modules", headers=bearer(secret)).status_code == 200
    token_id = run("token", "list").output.strip().splitlines()[-1].split("\t")[0]
    assert run("token", "revoke", token_id).exit_code == 0
    assert client.get("/v1/modules", headers=bearer(secret)).status_code == 401


def test_token_create_errors(run):
    result = run("token", "create", "--name", "x", "--scope", "admin", "--namespace", "acme")
    assert result.exit_code == 1 and "cannot be limited to a namespace" in result.output
    result = run("token", "create", "--name", "x", "--scope", "read", "--expires", "soon")
    assert result.exit_code == 1 and "not a duration" in result.output


def test_config_show_masks_secrets(run, monkeypatch):
    monkeypatch.setenv("TFR_SECRET_KEY", "super-secret-signing-key-123")
    output = run("config", "show").output
    assert "secret_key = ********    # environment TFR_SECRET_KEY" in output
    assert "super-secret" not in output
    assert "storage.local.path = (unset)" in output
    assert "limits.module_archive_max_bytes = 104857600    # default" in output


def test_namespace_visibility(run, client, publish, registry):
    publish(namespace="opensource")
    assert client.get("/v1/modules/opensource/network/aws/versions").status_code == 401
    assert run("namespace", "opensource", "--visibility", "public").exit_code == 0
    assert client.get("/v1/modules/opensource/network/aws/versions").status_code == 200
    with registry.db.session() as session:
        assert session.scalars(sa.select(Namespace.visibility).where(Namespace.name == "opensource")).one() == "public"


def test_db_upgrade_is_idempotent(run, registry):
    result = run("db", "upgrade")
    (head,) = registry.db.head_revisions()
    assert result.exit_code == 0 and f"is at revision {head}" in result.output


def test_storage_check(run):
    result = run("storage", "check")
    assert result.exit_code == 0 and "storage backend 'local': OK" in result.output


def test_storage_gc_removes_only_old_orphans(run, publish, registry):
    assert publish().status_code == 201
    orphan = "modules/acme/network/aws/9.9.9/0123456789abcdef/acme-network-aws-9.9.9.tar.gz"
    import io

    registry.storage.put(orphan, io.BytesIO(b"left behind by a crash"))
    path = Path(registry.settings.data_dir) / "storage" / orphan
    old = time.time() - 7200
    os.utime(path, (old, old))
    with registry.db.session() as session:
        assert [o.key for o in find_orphans(session, registry.storage, timedelta(hours=1))] == [orphan]
    dry = run("storage", "gc", "--dry-run")
    assert f"would remove {orphan}" in dry.output and registry.storage.exists(orphan)
    result = run("storage", "gc")
    assert "1 orphaned object(s) removed" in result.output
    assert not registry.storage.exists(orphan)
    assert len(list(registry.storage.list("modules/"))) == 1  # the published version is untouched


@pytest.fixture
def live_server(app: Any, tmp_path: Path) -> Iterator[str]:
    """The ``app`` fixture on a real HTTPS socket, with a certificate from our local CA."""
    files = ensure_self_signed(tmp_path / "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    os.environ["SSL_CERT_FILE"] = str(files.bundle)
    try:
        yield f"https://127.0.0.1:{server.server_port}"
    finally:
        os.environ.pop("SSL_CERT_FILE", None)
        server.shutdown()


def test_publish_module_directory_over_https(run, live_server, admin_token, client, tmp_path):
    module = tmp_path / "module"
    (module / "modules" / "child").mkdir(parents=True)
    (module / "main.tf").write_text('output "x" { value = 1 }\n')
    (module / "modules" / "child" / "main.tf").write_text("# child\n")
    (module / "README.md").write_text("# Published from a directory\n")
    (module / ".terraformignore").write_text("*.secret\n")
    (module / "creds.secret").write_text("do not ship\n")
    (module / ".git").mkdir()
    (module / ".git" / "config").write_text("[core]\n")
    args = ["publish", "module", str(module), "--namespace", "acme", "--name", "dir", "--system", "aws",
            "--version", "0.1.0", "--url", live_server, "--token", admin_token]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "published: acme/dir/aws/0.1.0" in result.output
    assert "packed 4 files" in result.output  # main.tf, child, README.md, .terraformignore
    again = run(*args)
    assert "already published (identical)" in again.output
    detail = client.get("/v1/modules/acme/dir/aws/0.1.0", headers=bearer(admin_token)).get_json()
    assert detail["root"]["readme"] == "# Published from a directory\n"


def test_publish_reports_registry_errors(run, live_server, tmp_path, make_token):
    module = tmp_path / "m"
    module.mkdir()
    (module / "main.tf").write_text("#\n")
    result = run("publish", "module", str(module), "--namespace", "acme", "--name", "m", "--system", "aws",
                 "--version", "not-semver", "--url", live_server, "--token", make_token("publish"))
    assert result.exit_code == 1
    assert "the registry answered 422" in result.output and "not a valid semantic version" in result.output
    result = run("publish", "module", str(module), "--namespace", "acme", "--name", "m", "--system", "aws",
                 "--version", "1.0.0", "--url", live_server, "--token", "tfr_" + "0" * 43)
    assert result.exit_code == 1 and "401" in result.output


def test_publish_unreachable_registry(run, tmp_path):
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(b"irrelevant")
    result = run("publish", "module", str(archive), "--namespace", "a", "--name", "b", "--system", "c",
                 "--version", "1.0.0", "--url", "http://127.0.0.1:9", "--token", "x")
    assert result.exit_code == 1 and "cannot reach the registry" in result.output


def test_tf_token_variable_encoding():
    from tfregistry.cli import tf_token_variable

    assert tf_token_variable("127.0.0.1:8443") == "TF_TOKEN_127_0_0_1:8443"
    assert tf_token_variable("my-reg.example.com") == "TF_TOKEN_my__reg_example_com"


def _tfr(*args: str, env: dict[str, str]) -> Any:
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if not k.startswith("TFR_")}
    return subprocess.run([sys.executable, "-m", "tfregistry", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_console_script_honours_config_option(tmp_path):
    config = tmp_path / "tfr.toml"
    config.write_text(f'data_dir = "{tmp_path / "d"}"\nlog_level = "DEBUG"\n')
    result = _tfr("--config", str(config), "config", "show", env={})
    assert result.returncode == 0, result.stderr
    assert f"log_level = DEBUG    # file {config}" in result.stdout


def test_console_script_reports_bad_settings(tmp_path):
    result = _tfr("token", "list", env={"TFR_DATA_DIR": str(tmp_path), "TFR_LIMITS__MODULE_MAX_FILES": "lots"})
    assert result.returncode == 2
    assert "error: configuration error" in result.stderr and "limits.module_max_files" in result.stderr


def test_serve_on_a_busy_port_fails_before_creating_the_first_token(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"TFR_DATA_DIR": str(tmp_path / "data")}
        result = _tfr("serve", "--port", str(port), env=env)
    assert result.returncode == 1 and f"Port {port} is in use" in result.stderr
    assert "admin token" not in result.stdout
    assert _tfr("token", "list", env=env).stdout == ""


def test_auth_check_probes_the_configured_providers(tmp_path):
    from click.testing import CliRunner

    from tfregistry.cli import cli

    runner = CliRunner()
    env = {"TFR_DATA_DIR": str(tmp_path)}
    empty = runner.invoke(cli, ["auth", "check"], env=env)
    assert empty.exit_code == 0 and "only API tokens" in empty.output
    missing = runner.invoke(cli, ["auth", "check"], env={**env, "TFR_AUTH__PROVIDERS": "nope"})
    assert missing.exit_code != 0 and "auth.providers names 'nope'" in missing.output
