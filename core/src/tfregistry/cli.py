"""The ``tfr`` command line."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from tfregistry import StartupError, __version__
from tfregistry.app import Bootstrap, bootstrap, build_app
from tfregistry.client import ClientError, RegistryClient, error_message
from tfregistry.models import ApiToken
from tfregistry.services import ServiceError
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR, record
from tfregistry.settings import parse_duration


class Context:
    """Lazily bootstraps settings and plugins for the sub-command that needs them."""

    def __init__(self, config_path: str | None, boot: Bootstrap | None = None) -> None:
        self.config_path = config_path
        self._boot = boot

    @property
    def boot(self) -> Bootstrap:
        if self._boot is None:
            self._boot = bootstrap(config_path=self.config_path)
        return self._boot


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.version_option(__version__, prog_name="tfregistry")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="TFR_CONFIG",
              help="TOML configuration file (default: $TFR_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """tfregistry: a private Terraform registry."""
    if not isinstance(ctx.obj, Context) or ctx.obj.config_path != config_path:
        ctx.obj = Context(config_path)


def config_path_from_argv(argv: list[str]) -> str | None:
    """``--config PATH`` / ``--config=PATH`` before the sub-command, else ``$TFR_CONFIG``."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if not arg.startswith("-"):
            break  # the sub-command: later options are its own
    return os.environ.get("TFR_CONFIG")


def main() -> None:
    """Console-script entry point: settings and plugins load once, and plugin commands are added."""
    config_path = config_path_from_argv(sys.argv[1:])
    boot: Bootstrap | None = None
    try:
        boot = bootstrap(config_path=config_path)
    except StartupError:
        pass  # the command that needs settings reports it; `tfr --help` must still work
    else:
        boot.pm.hook.tfr_register_cli_commands(cli=cli)
    try:
        cli(standalone_mode=True, obj=Context(config_path, boot))
    except StartupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


# --- serve -------------------------------------------------------------------------


def tf_token_variable(host: str) -> str:
    """The ``TF_TOKEN_`` variable Terraform reads for ``host`` (``-`` → ``__``, ``.`` → ``_``, ``:`` kept)."""
    return "TF_TOKEN_" + host.replace("-", "__").replace(".", "_")


def _cli_config_snippet(host: str, port: int, token: str) -> str:
    address = f"{host}:{port}"
    return (
        f"  # ~/.terraformrc (or the file named by TF_CLI_CONFIG_FILE)\n"
        f'  credentials "{address}" {{\n    token = "{token}"\n  }}\n'
        f"  # or, per command: env '{tf_token_variable(address)}={token}' terraform init\n"
        f'  # modules: source = "{address}/NAMESPACE/NAME/SYSTEM"'
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8443, show_default=True, type=int)
@click.option("--tls", "tls_mode", type=click.Choice(["self-signed"]), help="Make a local CA and certificate.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate (chain).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key.")
@click.option("--hostname", "hostnames", multiple=True, help="Extra name for the self-signed certificate.")
@pass_ctx
def serve(ctx: Context, host: str, port: int, tls_mode: str | None, tls_cert: str | None, tls_key: str | None,
          hostnames: tuple[str, ...]) -> None:
    """Run the registry on the embedded default (development server).

    Applies migrations, and on first start prints an admin token and the Terraform
    CLI configuration to use it.  Production runs gunicorn "tfregistry.app:create_app()".
    """
    from werkzeug.serving import make_server

    from tfregistry.tls import ensure_self_signed

    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together")
    if tls_mode and tls_cert:
        fail("use either --tls self-signed or --tls-cert/--tls-key, not both")
    boot = ctx.boot
    db = boot.database()
    db.upgrade()
    db.dispose()
    ssl_context: Any = None
    scheme = "http"
    if tls_mode == "self-signed":
        files = ensure_self_signed(boot.settings.data_dir / "tls", [host, *hostnames])
        ssl_context = (str(files.cert), str(files.key))
        scheme = "https"
        click.echo(f"TLS: certificate from the local CA {files.ca_cert.resolve()}")
        click.echo(f"     tell Terraform to trust it: export SSL_CERT_FILE={files.bundle.resolve()}")
    elif tls_cert:
        ssl_context = (tls_cert, tls_key)
        scheme = "https"
    if scheme == "http":
        click.echo("warning: without TLS, Terraform can only reach this registry through a CLI `host` block; "
                   "use --tls self-signed to try it locally", err=True)
    app = build_app(boot)
    try:
        server = make_server(host, port, app, threaded=True, ssl_context=ssl_context)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    registry = app.extensions["tfregistry"]
    with registry.db.session() as session:
        if not token_svc.any_tokens(session):
            _, secret = token_svc.create_token(session, CLI_ACTOR, name="initial admin", scope="admin")
            session.commit()
            shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            click.echo("First start: created an admin token (shown once; keep it safe):")
            click.echo(f"  {secret}")
            click.echo("Use it from Terraform:")
            click.echo(_cli_config_snippet(shown_host, port, secret))
    click.echo(f"Serving {scheme}://{host}:{port}/ (data in {boot.settings.data_dir.resolve()})")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        registry.close()


# --- db ------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Apply migrations."""
    database = ctx.boot.database()
    database.upgrade(revision)
    click.echo(f"database at {database.engine.url!r} is at revision {', '.join(sorted(database.current_revisions()))}")


# --- tokens ------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--name", required=True, help="What the token is for (shown in listings and the audit log).")
@click.option("--scope", type=click.Choice(token_svc.SCOPES), required=True)
@click.option("--namespace", help="Limit the token to one namespace.")
@click.option("--expires", help="Lifetime, e.g. 30d, 12h (default: never).")
@pass_ctx
def token_create(ctx: Context, name: str, scope: str, namespace: str | None, expires: str | None) -> None:
    """Create a token; its secret is printed once, as the last line."""
    try:
        lifetime = timedelta(seconds=parse_duration(expires)) if expires else None
    except ValueError as exc:
        fail(f"--expires: {exc}")
    database = ctx.boot.database()
    with database.session() as session:
        try:
            row, secret = token_svc.create_token(session, CLI_ACTOR, name=name, scope=scope, namespace=namespace,
                                                 expires_in=lifetime)
        except ServiceError as exc:
            fail(exc.message)
        session.commit()
        expiry = row.expires_at.isoformat() if row.expires_at else "never"
        click.echo(f"created token {row.id} {name!r} scope={scope}"
                   f"{' namespace=' + namespace if namespace else ''} expires={expiry}")
    click.echo(secret)


@token.command("list")
@pass_ctx
def token_list(ctx: Context) -> None:
    """List tokens (never their secrets)."""
    with ctx.boot.database().session() as session:
        for row in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if row.revoked_at else "active"
            click.echo(f"{row.id}\t{row.display_prefix}…\t{row.name}\t{row.scope}\t{row.namespace or '*'}\t"
                       f"{state}\texpires={row.expires_at.isoformat() if row.expires_at else 'never'}\t"
                       f"last_used={row.last_used_at.isoformat() if row.last_used_at else 'never'}")


@token.command("revoke")
@click.argument("token_id", type=int)
@pass_ctx
def token_revoke(ctx: Context, token_id: int) -> None:
    """Revoke a token by id."""
    with ctx.boot.database().session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            fail(f"no token with id {token_id}")
        token_svc.revoke_token(session, CLI_ACTOR, row)
        session.commit()
        click.echo(f"revoked token {token_id}")


# --- namespaces ------------------------------------------------------------------------


@cli.command("namespace")
@click.argument("name")
@click.option("--visibility", type=click.Choice(["inherit", "public", "private"]), required=True,
              help="public: anyone may read; private: a token is needed; inherit: follow auth.anonymous_read.")
@pass_ctx
def namespace_cmd(ctx: Context, name: str, visibility: str) -> None:
    """Create a namespace or change who may read it."""
    from tfregistry.services.modules import NAME_RE, get_or_create_namespace

    if not NAME_RE.match(name):
        fail(f"invalid namespace {name!r}")
    with ctx.boot.database().session() as session:
        ns = get_or_create_namespace(session, name)
        ns.visibility = visibility
        record(session, CLI_ACTOR, "namespace.visibility", name, visibility=visibility)
        session.commit()
    click.echo(f"namespace {name}: visibility {visibility}")


# --- publish ---------------------------------------------------------------------------


@cli.group()
def publish() -> None:
    """Publish to a registry over its API."""


@publish.command("module")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--namespace", required=True)
@click.option("--name", required=True)
@click.option("--system", required=True, help="Target system, e.g. aws.")
@click.option("--version", "version", required=True)
@click.option("--description", default="")
@click.option("--url", envvar="TFR_URL", required=True, help="Registry base URL (default: $TFR_URL).")
@click.option("--token", envvar="TFR_TOKEN", required=True, help="Publish token (default: $TFR_TOKEN).")
def publish_module(source: Path, namespace: str, name: str, system: str, version: str, description: str,
                   url: str, token: str) -> None:
    """Publish SOURCE (a module directory, packed honouring .terraformignore, or a .tar.gz)."""
    with tempfile.TemporaryDirectory() as tmp:
        if source.is_dir():
            from tfregistry.packing import pack_module

            archive = Path(tmp) / f"{namespace}-{name}-{system}-{version}.tar.gz"
            with open(archive, "wb") as fh:
                try:
                    count = pack_module(source, fh)
                except ValueError as exc:
                    fail(str(exc))
            click.echo(f"packed {count} files from {source} ({archive.stat().st_size} bytes)", err=True)
        else:
            archive = source
        client = RegistryClient(url, token)
        fields = {"namespace": namespace, "name": name, "system": system, "version": version,
                  "description": description}
        try:
            response = client.upload("/api/v1/modules", fields, "archive", archive)
        except ClientError as exc:
            fail(str(exc))
    if response.status in (200, 201):
        body = response.body
        verb = "published" if response.status == 201 else "already published (identical)"
        click.echo(f"{verb}: {body['id']} sha256={body['sha256']}")
        return
    fail(f"the registry answered {response.status}: {error_message(response)}")


# --- introspection ---------------------------------------------------------------------


@cli.command("plugins")
@pass_ctx
def plugins_cmd(ctx: Context) -> None:
    """List loaded plugins and the hooks they implement."""
    for info in ctx.boot.pm.plugin_infos():
        kind = "builtin" if info.builtin else "plugin"
        click.echo(f"{info.name} {info.version} ({kind}): {', '.join(info.hooks) or '-'}")
    backends = ctx.boot.storage_backends().backends
    click.echo("storage backends: " + ", ".join(f"{b.name} ({b.plugin})" for b in backends.values()))


@cli.group()
def config() -> None:
    """Configuration."""


@config.command("show")
@pass_ctx
def config_show(ctx: Context) -> None:
    """Print the effective settings, secrets masked, with where each value came from."""
    settings = ctx.boot.settings
    for decl in settings.declarations:
        click.echo(f"{decl.key} = {settings.display_value(decl.key)}    # {settings.source(decl.key)}")


# --- storage -----------------------------------------------------------------------------


@cli.group()
def storage() -> None:
    """Storage backend housekeeping."""


@storage.command("check")
@pass_ctx
def storage_check(ctx: Context) -> None:
    """Probe the active backend: write, read, list, delete (and presign, if it can)."""
    backend = ctx.boot.storage()
    problems = backend.check()
    if problems:
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        sys.exit(1)
    click.echo(f"storage backend {backend.name!r}: OK")


@storage.command("gc")
@click.option("--grace", default="1h", show_default=True, help="Leave objects younger than this alone.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@pass_ctx
def storage_gc(ctx: Context, grace: str, dry_run: bool) -> None:
    """Remove stored objects that no version refers to (left by interrupted publishes)."""
    from tfregistry.services.storage import collect_garbage

    backend = ctx.boot.storage()
    with ctx.boot.database().session() as session:
        removed = collect_garbage(session, backend, timedelta(seconds=parse_duration(grace)), dry_run=dry_run)
    for info in removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {info.key} ({info.size} bytes)")
    click.echo(f"{len(removed)} orphaned object(s){' found' if dry_run else ' removed'}")


__all__ = ["cli", "main"]
