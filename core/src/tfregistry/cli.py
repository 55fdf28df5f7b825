"""The ``tfr`` command line."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from tfregistry import StartupError, __version__
from tfregistry.app import Bootstrap, bootstrap, build_app
from tfregistry.client import ClientError, RegistryClient, error_message
from tfregistry.interfaces import StorageError
from tfregistry.models import ApiToken
from tfregistry.services import ServiceError
from tfregistry.services import tokens as token_svc
from tfregistry.services.audit import CLI_ACTOR, record
from tfregistry.services.storage import storage_fault
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
    except (DBAPIError, SATimeoutError) as exc:
        click.echo(f"error: {database_problem(exc)}", err=True)
        sys.exit(2)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        click.echo(f"error: the job queue (Redis, setting redis_url) is unavailable: {exc}", err=True)
        sys.exit(2)
    except StorageError as exc:
        click.echo(f"error: {storage_fault(exc)[1]}", err=True)
        sys.exit(2)


def database_problem(exc: BaseException) -> str:
    """What a command that failed on the database should tell the operator (never a traceback)."""
    from tfregistry.db import is_schema_missing, is_unavailable

    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if is_schema_missing(exc):
        return f"the database schema is missing or out of date ({detail}): run `tfr db upgrade`"
    if is_unavailable(exc):
        return f"the database is unavailable: {detail}"
    return f"the database refused the command: {detail}"


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
            _, secret = token_svc.create_token(session, CLI_ACTOR, name="initial admin", scopes=["admin"])
            session.commit()
            shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            click.echo("First start: created an admin token (shown once; keep it safe):")
            click.echo(f"  {secret}")
            click.echo("Use it from Terraform:")
            click.echo(_cli_config_snippet(shown_host, port, secret))
    click.echo(f"Serving {scheme}://{host}:{port}/ (data in {boot.settings.data_dir.resolve()})")
    if "tfr_webui.home" in app.view_functions:  # tfregistry-webui is installed
        browse_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        click.echo(f"Web UI: open {scheme}://{browse_host}:{port}/ in a browser")
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


# --- search ------------------------------------------------------------------------------


@cli.group()
def search() -> None:
    """The module search index."""


@search.command("reindex")
@pass_ctx
def search_reindex(ctx: Context) -> None:
    """Rebuild the search index from every module's latest version (it is kept current on its own; this
    repairs it, e.g. after restoring a database from a copy taken without it)."""
    from tfregistry.services.search import reindex_all

    with ctx.boot.database().session() as session:
        count = reindex_all(session)
        session.commit()
    click.echo(f"indexed {count} module(s)")


# --- tokens ------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--name", required=True, help="What the token is for (shown in listings and the audit log).")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="A scope (repeatable): modules:read, providers:write, mirrors:manage, admin... "
              "or the shorthands read, publish, admin.")
@click.option("--org", help="Make an organization service token (for CI) instead of a registry-wide one.")
@click.option("--user", "user_email", help="Make a personal token of this user (e-mail) instead.")
@click.option("--namespace", help="Limit the token to one namespace.")
@click.option("--expires", help="Lifetime, e.g. 30d, 12h (default: never).")
@pass_ctx
def token_create(ctx: Context, name: str, scopes: tuple[str, ...], org: str | None, user_email: str | None,
                 namespace: str | None, expires: str | None) -> None:
    """Create a token; its secret is printed once, as the last line."""
    from tfregistry.models import User
    from tfregistry.services import identity

    try:
        lifetime = timedelta(seconds=parse_duration(expires)) if expires else None
    except ValueError as exc:
        fail(f"--expires: {exc}")
    if org and user_email:
        fail("--org and --user exclude each other")
    database = ctx.boot.database()
    with database.session() as session:
        try:
            organization = identity.get_organization(session, org) if org else None
            user = session.scalar(select(User).where(User.email == user_email.lower())) if user_email else None
            if user_email and user is None:
                fail(f"no user with e-mail {user_email}")
            kind = "service" if organization else "personal" if user else "site"
            if user is not None and not user.site_admin:  # never wider than the user's roles
                identity.check_grantable({s for m in user.memberships for s in m.role.scopes}, scopes)
            row, secret = token_svc.create_token(session, CLI_ACTOR, name=name, scopes=scopes, kind=kind, user=user,
                                                 organization=organization, namespace=namespace, expires_in=lifetime)
        except ServiceError as exc:
            fail(exc.message)
        session.commit()
        expiry = row.expires_at.isoformat() if row.expires_at else "never"
        click.echo(f"created {kind} token {row.id} {name!r} scopes={' '.join(row.scopes)}"
                   f"{' namespace=' + namespace if namespace else ''} expires={expiry}")
    click.echo(secret)


@token.command("list")
@pass_ctx
def token_list(ctx: Context) -> None:
    """List tokens (never their secrets)."""
    with ctx.boot.database().session() as session:
        for row in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if row.revoked_at else "active"
            click.echo(f"{row.id}\t{row.display_prefix}…\t{row.name}\t{row.kind}\t{' '.join(row.scopes)}\t"
                       f"{row.namespace or '*'}\t{state}\t"
                       f"expires={row.expires_at.isoformat() if row.expires_at else 'never'}\t"
                       f"last_used={row.last_used_at.isoformat() if row.last_used_at else 'never'}"
                       f"{' from ' + row.last_used_ip if row.last_used_ip else ''}")


@token.command("rotate")
@click.argument("token_id", type=int)
@click.option("--grace", help="Keep the old secret working this long, e.g. 1h (default: it stops at once).")
@pass_ctx
def token_rotate(ctx: Context, token_id: int, grace: str | None) -> None:
    """Give a token a new secret (printed once, as the last line)."""
    try:
        period = timedelta(seconds=parse_duration(grace)) if grace else None
    except ValueError as exc:
        fail(f"--grace: {exc}")
    with ctx.boot.database().session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            fail(f"no token with id {token_id}")
        try:
            secret = token_svc.rotate_token(session, CLI_ACTOR, row, period)
        except ServiceError as exc:
            fail(exc.message)
        session.commit()
    old = f"works for {grace} more" if grace else "stopped working"
    click.echo(f"rotated token {token_id}; the old secret {old}")
    click.echo(secret)


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
@click.option("--visibility", type=click.Choice(["inherit", "public", "authenticated", "private"]),
              help="public: anyone may read; authenticated: anyone with a valid token; private: members of its "
              "organization; inherit: follow auth.anonymous_read.")
@click.option("--org", help="The organization the namespace belongs to (multi-tenant sites).")
@pass_ctx
def namespace_cmd(ctx: Context, name: str, visibility: str | None, org: str | None) -> None:
    """Create a namespace, or change who may read it and which organization owns it."""
    from tfregistry.services import identity
    from tfregistry.services.modules import NAME_RE, get_or_create_namespace

    if not NAME_RE.match(name):
        fail(f"invalid namespace {name!r}")
    with ctx.boot.database().session() as session:
        try:
            organization = identity.get_organization(session, org) if org else None
        except ServiceError as exc:
            fail(exc.message)
        ns = get_or_create_namespace(session, name, organization.id if organization else None)
        if visibility:
            ns.visibility = visibility
            record(session, CLI_ACTOR, "namespace.visibility", name, visibility=visibility)
        if organization is not None and ns.organization_id != organization.id:
            ns.organization_id = organization.id
            record(session, CLI_ACTOR, "namespace.move", name, organization=organization.name)
        session.commit()
        owner = identity.get_organization_by_id(session, ns.organization_id)
        click.echo(f"namespace {name}: visibility {ns.visibility}, organization {owner.name if owner else '-'}")


# --- users and organizations ---------------------------------------------------------------


@cli.group("user")
def user_group() -> None:
    """Users (people signing in through an identity provider are added on their first sign-in)."""


@user_group.command("create")
@click.argument("email")
@click.option("--name", default="")
@click.option("--site-admin", is_flag=True, help="Administer the whole registry (every organization).")
@pass_ctx
def user_create(ctx: Context, email: str, name: str, site_admin: bool) -> None:
    """Add a user ahead of their first sign-in (e.g. to give them a personal token)."""
    from tfregistry.services import identity

    with ctx.boot.database().session() as session:
        try:
            user = identity.create_user(session, CLI_ACTOR, email, name, site_admin=site_admin)
        except ServiceError as exc:
            fail(exc.message)
        session.commit()
        click.echo(f"created user {user.id} {user.email}{' (site admin)' if site_admin else ''}")


@user_group.command("list")
@pass_ctx
def user_list(ctx: Context) -> None:
    """List users with their memberships."""
    from tfregistry.models import User

    with ctx.boot.database().session() as session:
        for user in session.scalars(select(User).order_by(User.id)):
            roles = ", ".join(f"{m.organization.name}:{m.role.name}" for m in user.memberships) or "-"
            flags = " ".join(f for f, on in (("site-admin", user.site_admin), ("disabled", user.disabled)) if on)
            click.echo(f"{user.id}\t{user.email or '-'}\t{user.name}\t{roles}\t{flags}")


@cli.group("org")
def org_group() -> None:
    """Organizations and their members."""


@org_group.command("create")
@click.argument("name")
@click.option("--display-name", default="")
@pass_ctx
def org_create(ctx: Context, name: str, display_name: str) -> None:
    """Create an organization."""
    from tfregistry.services import identity

    with ctx.boot.database().session() as session:
        try:
            identity.create_organization(session, CLI_ACTOR, name, display_name)
        except ServiceError as exc:
            fail(exc.message)
        session.commit()
    click.echo(f"created organization {name}")


@org_group.command("member")
@click.argument("org")
@click.argument("email")
@click.option("--role", required=True, help="admin, mirror-manager, publisher, viewer or a custom role template.")
@pass_ctx
def org_member(ctx: Context, org: str, email: str, role: str) -> None:
    """Give a user a role in an organization (adding the membership if needed)."""
    from tfregistry.models import User
    from tfregistry.services import identity

    with ctx.boot.database().session() as session:
        user = session.scalar(select(User).where(User.email == email.lower()))
        if user is None:
            fail(f"no user with e-mail {email} (`tfr user create` adds one)")
        try:
            identity.set_membership(session, CLI_ACTOR, user, identity.get_organization(session, org),
                                    identity.get_role(session, role))
        except ServiceError as exc:
            fail(exc.message)
        session.commit()
    click.echo(f"{email} is {role} in {org}")


@cli.group("auth")
def auth_group() -> None:
    """Sign-in providers."""


@auth_group.command("check")
@pass_ctx
def auth_check(ctx: Context) -> None:
    """Build the providers named in auth.providers and probe each (discovery document, keys)."""
    try:
        providers = ctx.boot.auth_providers()
    except StartupError as exc:
        fail(str(exc))
    if not providers:
        click.echo("auth.providers is empty: only API tokens are accepted (no sign-in, no terraform login)")
        return
    failed = False
    for name, provider in providers.items():
        problems = provider.check()
        failed = failed or bool(problems)
        click.echo(f"{name}: " + ("ok" if not problems else "; ".join(problems)))
    if failed:
        sys.exit(1)


# --- publish ---------------------------------------------------------------------------


@cli.group()
def publish() -> None:
    """Publish to a registry over its API."""


def oidc_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--token``, ``--oidc`` and ``--audience``: a publish token, or trusted publishing from CI."""
    command = click.option("--audience", envvar="TFR_OIDC_AUDIENCE", default="tfregistry", show_default=True,
                           help="With --oidc: the audience to ask the CI platform for (the registry's "
                           "trusted_publishing.audience; default: $TFR_OIDC_AUDIENCE).")(command)
    command = click.option("--oidc", is_flag=True, help="Trusted publishing: exchange the CI platform's OIDC token "
                           "for a short-lived publish token (automatic without --token when GitHub Actions', "
                           "GitLab's or Azure DevOps' OIDC variables are set).")(command)
    return click.option("--token", envvar="TFR_TOKEN", help="Publish token (default: $TFR_TOKEN).")(command)


def resolve_publish_token(url: str, token: str | None, oidc: bool, audience: str, namespace: str) -> str:
    """The token to publish with: ``token``, or (``--oidc``, or no token in a CI job that can get an OIDC
    token) one minted by the registry's trusted publishing."""
    from tfregistry import ci_oidc

    if token and not oidc:
        return token
    platform = ci_oidc.detect()
    if not oidc and platform is None:
        fail("no publish token: pass --token (or set TFR_TOKEN), or run in a CI job with trusted publishing (--oidc)")
    try:
        answer = ci_oidc.publish_token(url, namespace, audience)
    except ClientError as exc:
        fail(str(exc))
    click.echo(f"trusted publishing ({platform}): publish token for {answer['namespace']} "
               f"({', '.join(answer['packages'])}) until {answer['expires_at']}", err=True)
    return answer["token"]


@publish.command("module")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--namespace", required=True)
@click.option("--name", required=True)
@click.option("--system", required=True, help="Target system, e.g. aws.")
@click.option("--version", "version", required=True)
@click.option("--description", default="")
@click.option("--url", envvar="TFR_URL", required=True, help="Registry base URL (default: $TFR_URL).")
@oidc_options
def publish_module(source: Path, namespace: str, name: str, system: str, version: str, description: str,
                   url: str, token: str | None, oidc: bool, audience: str) -> None:
    """Publish SOURCE (a module directory, packed honouring .terraformignore, or a .tar.gz)."""
    token = resolve_publish_token(url, token, oidc, audience, namespace)
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
            response = client.upload("/api/v1/modules", fields, [("archive", archive)])
        except ClientError as exc:
            fail(str(exc))
    if response.status in (200, 201):
        body = response.body
        verb = "published" if response.status == 201 else "already published (identical)"
        click.echo(f"{verb}: {body['id']} sha256={body['sha256']}")
        return
    fail(f"the registry answered {response.status}: {error_message(response)}")


GORELEASER_ZIP = re.compile(r"^terraform-provider-(?P<type>[^_]+)_(?P<version>[^_]+)_[^_]+_[^_]+\.zip$")


def goreleaser_release(dist: Path) -> tuple[str, str, list[Path], Path | None, Path | None, list[str]]:
    """Type, version, zips, SHA256SUMS, signature and protocols found in a GoReleaser ``dist`` folder."""
    zips = sorted(p for p in dist.iterdir() if GORELEASER_ZIP.match(p.name))
    if not zips:
        fail(f"no terraform-provider-TYPE_VERSION_OS_ARCH.zip files in {dist}")
    found = {GORELEASER_ZIP.match(p.name).group("type", "version") for p in zips}  # type: ignore[union-attr]
    if len(found) != 1:
        fail(f"{dist} holds zips of several providers/versions: {sorted(found)}; publish one release at a time")
    type_, version = found.pop()
    stem = f"terraform-provider-{type_}_{version}"
    sums = dist / f"{stem}_SHA256SUMS"
    sig = dist / f"{stem}_SHA256SUMS.sig"
    manifest = dist / f"{stem}_manifest.json"
    protocols: list[str] = []
    if manifest.exists():
        from tfregistry.provider_packages import PackageError, read_goreleaser_manifest

        try:
            protocols = read_goreleaser_manifest(manifest.read_bytes())
        except PackageError as exc:
            fail(f"{manifest.name}: {exc}")
    return type_, version, zips, sums if sums.exists() else None, sig if sig.exists() else None, protocols


@publish.command("provider")
@click.argument("dist", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--namespace", required=True)
@click.option("--protocols", help="Comma-separated plugin protocol versions (default: from the manifest, else 5.0).")
@click.option("--docs", "docs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The provider's docs/ folder (index.md, resources/, data-sources/, guides/ ...): uploaded after "
              "the release, replacing the version's docs.")
@click.option("--url", envvar="TFR_URL", required=True, help="Registry base URL (default: $TFR_URL).")
@oidc_options
def publish_provider(dist: Path, namespace: str, protocols: str | None, docs_dir: Path | None, url: str,
                     token: str | None, oidc: bool, audience: str) -> None:
    """Publish a provider release from a GoReleaser output folder (DIST).

    Uploads every terraform-provider-TYPE_VERSION_OS_ARCH.zip with the release's
    SHA256SUMS and SHA256SUMS.sig; without them the namespace's registry-managed key signs.
    With --docs, the documentation folder follows (nothing in it is built or run).
    """
    type_, version, zips, sums, sig, manifest_protocols = goreleaser_release(dist)
    token = resolve_publish_token(url, token, oidc, audience, namespace)
    if (sums is None) != (sig is None):
        fail(f"found {'SHA256SUMS' if sums else 'SHA256SUMS.sig'} without its partner in {dist}")
    fields = {"namespace": namespace, "type": type_, "version": version,
              "protocols": protocols or ",".join(manifest_protocols)}
    files = [("packages", z) for z in zips]
    if sums and sig:
        files += [("shasums", sums), ("shasums_signature", sig)]
    try:
        response = RegistryClient(url, token).upload("/api/v1/providers", fields, files)
    except ClientError as exc:
        fail(str(exc))
    if response.status not in (200, 201):
        fail(f"the registry answered {response.status}: {error_message(response)}")
    body = response.body
    added = ", ".join(body["added_platforms"]) or "nothing new"
    click.echo(f"published {body['id']} (signed by key {body['signing_key_id']}): {added}")
    if docs_dir is not None:
        with tempfile.TemporaryDirectory() as tmp:
            archive = pack_docs(docs_dir, Path(tmp))
            try:
                response = RegistryClient(url, token).upload(f"/api/v1/providers/{body['id']}/docs", {},
                                                              [("archive", archive)])
            except ClientError as exc:
                fail(f"the release is published, but its docs were not uploaded: {exc}")
        if response.status != 201:
            fail(f"the release is published, but the registry refused its docs ({response.status}): "
                 f"{error_message(response)}")
        click.echo(f"docs: {response.body['page_count']} pages"
                   + (f" (replacing {response.body['replaced']})" if response.body.get("replaced") else ""))
        print_docs_problems(response.body["problems"])


# --- trusted publishers ----------------------------------------------------------------------


@cli.group("trusted-publisher")
def trusted_publisher() -> None:
    """Trusted publishers of a namespace (keyless publishing from CI), over the registry's API."""


def _api_client(url: str, token: str) -> RegistryClient:
    try:
        return RegistryClient(url, token)
    except ClientError as exc:
        fail(str(exc))


def _api_call(client: RegistryClient, method: str, path: str, body: Any = None) -> Any:
    import json

    headers = {"Content-Type": "application/json"} if body is not None else None
    try:
        response = client.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    except ClientError as exc:
        fail(str(exc))
    if response.status >= 300:
        fail(f"the registry answered {response.status}: {error_message(response)}")
    return response.body


def _publisher_line(p: dict[str, Any]) -> str:
    conditions = " ".join(f"{k}={v}" for k, v in p["conditions"].items())
    return f"{p['id']}\t{p['platform']}\t{p['issuer']}\t{conditions}\t{' '.join(p['packages'])}"


_URL = click.option("--url", envvar="TFR_URL", required=True, help="Registry base URL (default: $TFR_URL).")
_TOKEN = click.option("--token", envvar="TFR_TOKEN", required=True,
                      help="A token with tokens:manage in the namespace's organization (default: $TFR_TOKEN).")


@trusted_publisher.command("add")
@click.argument("namespace")
@click.option("--platform", required=True, type=click.Choice(["github", "gitlab", "azure-devops", "oidc"]))
@click.option("--issuer", help="OIDC issuer (default for github and gitlab.com; required for azure-devops and oidc).")
@click.option("--discovery-url", help="Discovery document URL, when not {issuer}/.well-known/openid-configuration.")
@click.option("--condition", "conditions", multiple=True, metavar="CLAIM=PATTERN",
              help="A claim condition (repeatable), e.g. repository=acme/infra, ref=refs/tags/v*.")
@click.option("--package", "packages", multiple=True, required=True,
              help="What it may publish (repeatable): module:NAME/SYSTEM or provider:TYPE.")
@click.option("--description", default="")
@_URL
@_TOKEN
def trusted_publisher_add(namespace: str, platform: str, issuer: str | None, discovery_url: str | None,
                          conditions: tuple[str, ...], packages: tuple[str, ...], description: str, url: str,
                          token: str) -> None:
    """Let a CI identity publish PACKAGES in NAMESPACE with its OIDC token."""
    parsed = {}
    for item in conditions:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--condition {item!r}: use CLAIM=PATTERN")
        parsed[key.strip()] = value.strip()
    body = {"platform": platform, "issuer": issuer, "discovery_url": discovery_url, "conditions": parsed,
            "packages": list(packages), "description": description}
    created = _api_call(_api_client(url, token), "POST", f"/api/v1/namespaces/{namespace}/trusted-publishers", body)
    click.echo(f"added trusted publisher {created['id']} to {namespace}")
    click.echo(_publisher_line(created))


@trusted_publisher.command("list")
@click.argument("namespace")
@_URL
@_TOKEN
def trusted_publisher_list(namespace: str, url: str, token: str) -> None:
    """List NAMESPACE's trusted publishers: id, platform, issuer, conditions, packages."""
    for publisher in _api_call(_api_client(url, token), "GET", f"/api/v1/namespaces/{namespace}/trusted-publishers"):
        click.echo(_publisher_line(publisher))


@trusted_publisher.command("remove")
@click.argument("namespace")
@click.argument("publisher_id", type=int)
@_URL
@_TOKEN
def trusted_publisher_remove(namespace: str, publisher_id: int, url: str, token: str) -> None:
    """Remove a trusted publisher (tokens it minted expire on their own)."""
    _api_call(_api_client(url, token), "DELETE", f"/api/v1/namespaces/{namespace}/trusted-publishers/{publisher_id}")
    click.echo(f"removed trusted publisher {publisher_id} from {namespace}")


# --- provider documentation ------------------------------------------------------------------


def pack_docs(docs_dir: Path, tmp: Path) -> Path:
    """``docs_dir`` (the docs folder, or a checkout holding ``docs/``) packed as a ``.tar.gz`` in ``tmp``."""
    from tfregistry.packing import pack_module

    if (docs_dir / "docs").is_dir() and not (docs_dir / "index.md").exists():
        docs_dir = docs_dir / "docs"
    archive = tmp / "docs.tar.gz"
    with open(archive, "wb") as fh:
        try:
            count = pack_module(docs_dir, fh)
        except ValueError as exc:
            fail(str(exc))
    click.echo(f"packed {count} files from {docs_dir} ({archive.stat().st_size} bytes)", err=True)
    return archive


def print_docs_problems(problems: list[str]) -> None:
    if problems:
        click.echo(f"{len(problems)} files skipped:")
        for problem in problems:
            click.echo(f"  - {problem}")


def print_docs_index(categories: list[dict[str, Any]]) -> None:
    """The index as the registry's sidebar groups it: category, subcategory, ``slug  title``."""
    for category in categories:
        click.echo(category["label"])
        for sub in category["subcategories"]:
            indent = "  "
            if sub["name"]:
                click.echo(f"  {sub['name']}")
                indent = "    "
            for page in sub["pages"]:
                click.echo(f"{indent}{category['category']}/{page['slug']}  {page['title']}")


@cli.group("provider-docs")
def provider_docs() -> None:
    """Provider documentation (the docs/ folder of a provider)."""


@provider_docs.command("preview")
@click.argument("docs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--url", help="Ask this registry (its limits) instead of checking locally.")
@click.option("--token", envvar="TFR_TOKEN", help="With --url: a token that may publish providers ($TFR_TOKEN).")
def provider_docs_preview(docs_dir: Path, url: str | None, token: str | None) -> None:
    """Check a docs folder as the registry will, and print the index it gives and the files it skips.

    Nothing is published.  Exits 1 when the registry would refuse the folder.
    """
    from tfregistry.provider_docs import DocsError, read_docs_archive
    from tfregistry.services.provider_docs import group_pages

    with tempfile.TemporaryDirectory() as tmp:
        archive = pack_docs(docs_dir, Path(tmp))
        if url:
            try:
                response = RegistryClient(url, token).upload("/api/v1/providers/docs/preview", {},
                                                              [("archive", archive)])
            except ClientError as exc:
                fail(str(exc))
            if response.status != 200:
                fail(f"the registry answered {response.status}: {error_message(response)}")
            body = response.body
        else:
            with open(archive, "rb") as fh:
                try:
                    report = read_docs_archive(fh)
                except DocsError as exc:
                    fail(f"the registry would refuse this folder: {exc}")
            body = {"page_count": len(report.pages), "categories": group_pages(report.pages),
                    "problems": report.problems}
    click.echo(f"{body['page_count']} pages")
    print_docs_index(body["categories"])
    print_docs_problems(body["problems"])


# --- signing keys --------------------------------------------------------------------------


@cli.group()
def gpg() -> None:
    """Provider signing keys."""


def _encryption_key(boot: Bootstrap) -> bytes:
    from tfregistry.registry import load_secret_key
    from tfregistry.services.gpgkeys import encryption_key

    settings = boot.settings
    return encryption_key(settings["gpg.encryption_key"], load_secret_key(settings["secret_key"], settings.data_dir))


@gpg.command("create-key")
@click.option("--namespace", required=True)
@click.option("--key-type", type=click.Choice(["ed25519", "rsa3072"]), default="ed25519", show_default=True)
@pass_ctx
def gpg_create_key(ctx: Context, namespace: str, key_type: str) -> None:
    """Create a registry-managed key: unsigned provider uploads to NAMESPACE are signed with it."""
    from tfregistry.services.gpgkeys import create_managed_key

    with ctx.boot.database().session() as session:
        try:
            key = create_managed_key(session, CLI_ACTOR, namespace, _encryption_key(ctx.boot), key_type)
        except ServiceError as exc:
            fail(exc.message)
        click.echo(f"created registry-managed key {key.key_id} (id {key.id}) for namespace {namespace}")


@gpg.command("add")
@click.option("--namespace", required=True)
@click.argument("public_key", type=click.File("r"))
@pass_ctx
def gpg_add(ctx: Context, namespace: str, public_key: Any) -> None:
    """Register an armored public key (file, or - for stdin) for NAMESPACE."""
    from tfregistry.services.gpgkeys import add_public_key

    with ctx.boot.database().session() as session:
        try:
            key = add_public_key(session, CLI_ACTOR, namespace, public_key.read())
        except ServiceError as exc:
            fail(exc.message)
        click.echo(f"registered key {key.key_id} (id {key.id}) for namespace {namespace}")


@gpg.command("list")
@pass_ctx
def gpg_list(ctx: Context) -> None:
    """List signing keys."""
    from tfregistry.services.gpgkeys import list_keys

    with ctx.boot.database().session() as session:
        for key in list_keys(session):
            state = "revoked" if key.revoked_at else "active"
            kind = "managed" if key.managed else "uploaded"
            click.echo(f"{key.id}\t{key.namespace.name}\t{key.key_id}\t{kind}\t{state}\t{key.fingerprint}")


@gpg.command("export")
@click.option("--namespace", required=True)
@pass_ctx
def gpg_export(ctx: Context, namespace: str) -> None:
    """Print the armored public keys of NAMESPACE's active keys."""
    from tfregistry.services.gpgkeys import list_keys

    with ctx.boot.database().session() as session:
        keys = [k for k in list_keys(session, [namespace]) if k.revoked_at is None]
    if not keys:
        fail(f"namespace {namespace} has no active signing keys")
    for key in keys:
        click.echo(key.ascii_armor.rstrip("\n"))


@gpg.command("revoke")
@click.argument("key_id", type=int)
@pass_ctx
def gpg_revoke(ctx: Context, key_id: int) -> None:
    """Revoke a key by id: Terraform is no longer offered it."""
    from tfregistry.services.gpgkeys import get_key, revoke_key

    with ctx.boot.database().session() as session:
        try:
            key = get_key(session, key_id)
        except ServiceError as exc:
            fail(exc.message)
        revoke_key(session, CLI_ACTOR, key)
        click.echo(f"revoked key {key.key_id} of namespace {key.namespace.name}")


# --- network mirror -----------------------------------------------------------------------------


@cli.group()
def mirror() -> None:
    """The provider network mirror."""


@mirror.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@pass_ctx
def mirror_import(ctx: Context, directory: Path) -> None:
    """Load a folder made by `terraform providers mirror DIRECTORY`, verifying every archive's hashes.

    Safe to re-run: archives already stored are skipped.
    """
    from tfregistry.services.providers import ProviderLimits, import_mirror_directory

    settings = ctx.boot.settings
    limits = ProviderLimits(settings["limits.provider_package_max_bytes"],
                            settings["limits.provider_uncompressed_max_bytes"],
                            settings["limits.max_compression_ratio"])
    storage = ctx.boot.storage()
    with ctx.boot.database().session() as session:
        try:
            imported = import_mirror_directory(session, storage, CLI_ACTOR, directory, limits)
        except ServiceError as exc:
            fail(exc.message)
    for label in imported:
        click.echo(f"imported {label}")
    click.echo(f"{len(imported)} package(s) imported from {directory}")


# --- background jobs -----------------------------------------------------------------------


@cli.command()
@click.option("--queues", default=",".join(("default", "mirror", "scm", "notify")), show_default=True,
              help="Comma-separated queues to work, in priority order.")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@pass_ctx
def worker(ctx: Context, queues: str, burst: bool) -> None:
    """Run background jobs from Redis (RQ). Start as many as you need, on any machine."""
    from tfregistry.jobs import JobError, run_worker

    app = build_app(ctx.boot)
    registry = app.extensions["tfregistry"]
    with app.app_context():
        try:
            run_worker(registry, [q.strip() for q in queues.split(",") if q.strip()], burst=burst)
        except JobError as exc:
            fail(str(exc))
        finally:
            registry.close()


@cli.command()
@pass_ctx
def scheduler(ctx: Context) -> None:
    """Enqueue periodic jobs (storage garbage collection...) on schedule; run one per site."""
    from tfregistry.jobs import JobError, run_scheduler

    app = build_app(ctx.boot)
    try:
        run_scheduler(app.extensions["tfregistry"])
    except JobError as exc:
        fail(str(exc))


@cli.group()
def jobs() -> None:
    """Inspect, retry and cancel background jobs (with Redis)."""


def _job_queue(ctx: Context) -> Any:
    from tfregistry.jobs import JobError, make_queue

    try:
        return make_queue(ctx.boot.settings)
    except JobError as exc:
        fail(str(exc))


@jobs.command("list")
@click.option("--status", type=click.Choice(["queued", "started", "finished", "failed", "scheduled", "canceled"]))
@pass_ctx
def jobs_list(ctx: Context, status: str | None) -> None:
    """List jobs (``--status failed`` for the failed-job registry)."""
    for job in _job_queue(ctx).list(status):
        error = (job.error or "").strip().splitlines()[-1:] or [""]
        click.echo(f"{job.id}\t{job.queue}\t{job.status}\t{job.func}{tuple(job.args)!r}\t{error[0]}")


@jobs.command("retry")
@click.argument("job_id")
@pass_ctx
def jobs_retry(ctx: Context, job_id: str) -> None:
    """Queue a failed or canceled job again (audited as ``job.retry`` by ``cli``)."""
    from tfregistry.services.jobs import retry_job

    click.echo(f"job {job_id}: {_change_job(ctx, retry_job, job_id).status}")


@jobs.command("cancel")
@click.argument("job_id")
@pass_ctx
def jobs_cancel(ctx: Context, job_id: str) -> None:
    """Cancel a job that has not finished (audited as ``job.cancel`` by ``cli``)."""
    from tfregistry.services.jobs import cancel_job

    click.echo(f"job {job_id}: {_change_job(ctx, cancel_job, job_id).status}")


def _change_job(ctx: Context, change: Any, job_id: str) -> Any:
    """Retry or cancel a job through the service the API and the web UI use, with its audit entry."""
    from tfregistry.jobs import JobError

    queue = _job_queue(ctx)
    db = ctx.boot.database()
    try:
        with db.session() as session:
            info = change(session, CLI_ACTOR, queue, job_id)
            session.commit()
            return info
    except JobError as exc:
        fail(str(exc))
    finally:
        db.dispose()


# --- modules -------------------------------------------------------------------------------


#: Module versions per ``reanalyse_modules`` job.
REANALYSE_BATCH = 50


@cli.group("modules")
def modules_group() -> None:
    """Module housekeeping."""


@modules_group.command("reanalyze")
@click.argument("address", required=False)
@click.option("--all", "everything", is_flag=True, help="Every version, even those already analysed.")
@pass_ctx
def modules_reanalyze(ctx: Context, address: str | None, everything: bool) -> None:
    """Analyse module versions again from their stored archives (inputs, outputs, providers...).

    ADDRESS is NAMESPACE/NAME/SYSTEM (all its versions) or NAMESPACE/NAME/SYSTEM/VERSION; without it,
    every version never analysed (published before analysis existed), or every version with --all.
    Queued as jobs; without Redis they run here, before the command returns.
    """
    from tfregistry.jobs import InProcessQueue
    from tfregistry.services import modules as module_svc

    app = build_app(ctx.boot)
    registry = app.extensions["tfregistry"]
    try:
        with registry.db.session() as session:
            try:
                ids = module_svc.versions_to_analyse(session, address, everything)
            except ServiceError as exc:
                fail(exc.message)
        batches = [ids[i:i + REANALYSE_BATCH] for i in range(0, len(ids), REANALYSE_BATCH)]
        jobs = [registry.jobs.enqueue("tfregistry.jobs:reanalyse_modules", batch) for batch in batches]
        click.echo(f"{len(ids)} module version(s) queued for analysis in {len(jobs)} job(s)")
        if isinstance(registry.jobs, InProcessQueue):
            registry.jobs.wait_idle(timeout=None)
            failed = [job for job in jobs if job.status != "finished"]
            done = sum(job.result or 0 for job in jobs)
            click.echo(f"{done} module version(s) analysed")
            if failed:
                for job in failed:
                    last = ((job.error or "").strip().splitlines() or [""])[-1]
                    click.echo(f"job {job.id} {job.status}: {last}", err=True)
                sys.exit(1)
    finally:
        registry.close()


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
    for decl, value, source in ctx.boot.settings.effective():
        click.echo(f"{decl.key} = {value}    # {source}")


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


@storage.command("migrate")
@click.option("--to", "target_name", required=True, help="Name of the backend to move to (see `tfr plugins`).")
@pass_ctx
def storage_migrate(ctx: Context, target_name: str) -> None:
    """Copy every object to backend TO, verify each copy, then make TO the active backend.

    Configure TO's settings first (e.g. storage.s3.*). Safe to re-run after an
    interruption: objects already copied and verified are skipped.
    """
    from tfregistry.services.storage import migrate

    boot = ctx.boot
    database = boot.database()
    source_name = boot.active_storage_name(database)
    if target_name == source_name:
        fail(f"{target_name!r} is already the active storage backend")
    source = boot.storage(source_name)
    target = boot.storage(target_name)
    problems = target.check()
    if problems:
        fail(f"the target backend {target_name!r} is not usable: " + "; ".join(problems))
    click.echo(f"migrating objects from {source_name!r} to {target_name!r}")
    with database.session() as session:
        try:
            report = migrate(session, source, target, target_name, progress=click.echo)
        except StorageError as exc:
            fail(str(exc))
    click.echo(f"{len(report.copied)} object(s) copied ({report.bytes_copied} bytes), "
               f"{len(report.skipped)} already there; the active storage backend is now {target_name!r}")
    click.echo(f"set storage.backend = \"{target_name}\" in the configuration to match; the old objects in "
               f"{source_name!r} were left in place")


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


# --- SCM publishing (a running registry's /api/v1/scm) ------------------------------------------------


def _scm_options(fn: Any) -> Any:
    fn = click.option("--token", envvar="TFR_TOKEN", required=True, help="Registry token (default: $TFR_TOKEN).")(fn)
    return click.option("--url", envvar="TFR_URL", required=True, help="Registry base URL (default: $TFR_URL).")(fn)


def _scm_call(url: str, token: str, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
    """Call ``/api/v1/scm`` + ``path`` and print the JSON answer; fail with the registry's message."""
    import json

    client = RegistryClient(url, token)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        response = client.request(method, "/api/v1/scm" + path,
                                  body=json.dumps(body).encode() if body is not None else None, headers=headers)
    except ClientError as exc:
        fail(str(exc))
    if response.status not in ok:
        fail(f"the registry answered {response.status}: {error_message(response)}")
    if response.body is not None:
        click.echo(json.dumps(response.body, indent=2, default=str))
    return response.body


@cli.group("scm")
def scm_group() -> None:
    """Publish modules from source control (see docs/scm.md); talks to a running registry."""


@scm_group.command("providers")
@_scm_options
def scm_providers(url: str, token: str) -> None:
    """List the installed SCM providers."""
    _scm_call(url, token, "GET", "/providers")


@scm_group.command("connections")
@_scm_options
def scm_connections(url: str, token: str) -> None:
    """List connections (never their secrets)."""
    _scm_call(url, token, "GET", "/connections")


@scm_group.command("connect")
@click.argument("name")
@click.option("--provider", required=True, help="git, github... (tfr scm providers)")
@click.option("--auth-method", default="token", show_default=True,
              type=click.Choice(["token", "ssh_key", "none", "oauth"]),
              help="oauth: no secret; open the printed authorize_url in a browser (see docs/scm.md).")
@click.option("--organization", default=None, help="Owning organization (default: your only one).")
@click.option("--base-url", default=None, help="GitHub Enterprise Server API URL, self-managed host...")
@click.option("--username", default=None)
@click.option("--secret-env", default="TFR_SCM_SECRET", show_default=True,
              help="Environment variable holding the access token, or the SSH private key with --auth-method "
              "ssh_key (never a command-line argument).")
@click.option("--known-hosts", "known_hosts", type=click.Path(exists=True, dir_okay=False), default=None,
              help="ssh_key: a file with the server's host keys (`ssh-keyscan -p PORT HOST > FILE`).")
@_scm_options
def scm_connect(name: str, provider: str, auth_method: str, organization: str | None, base_url: str | None,
                username: str | None, secret_env: str, known_hosts: str | None, url: str, token: str) -> None:
    """Create connection NAME; the secret is read from the environment ($TFR_SCM_SECRET by default)."""
    secret = os.environ.get(secret_env) if auth_method not in ("none", "oauth") else None
    if auth_method not in ("none", "oauth") and not secret:
        fail(f"set {secret_env} to the {'SSH private key' if auth_method == 'ssh_key' else 'access token'}")
    body = {"name": name, "provider": provider, "auth_method": auth_method, "organization": organization,
            "base_url": base_url, "username": username,
            ("ssh_private_key" if auth_method == "ssh_key" else "token"): secret}
    if known_hosts:
        body["ssh_known_hosts"] = Path(known_hosts).read_text()
    _scm_call(url, token, "POST", "/connections", body, ok=(201,))


@scm_group.command("authorize")
@click.argument("connection", type=int)
@_scm_options
def scm_authorize(connection: int, url: str, token: str) -> None:
    """Start the OAuth authorization of CONNECTION again (re-authorize): prints the authorize_url to open."""
    _scm_call(url, token, "POST", f"/connections/{connection}/oauth/authorize")


@scm_group.command("repositories")
@click.argument("connection", type=int)
@_scm_options
def scm_repositories(connection: int, url: str, token: str) -> None:
    """List the repositories CONNECTION can read."""
    _scm_call(url, token, "GET", f"/connections/{connection}/repositories")


@scm_group.command("link")
@click.argument("address")
@click.option("--connection", "connection_id", type=int, required=True)
@click.option("--repository", required=True, help="owner/name, or the git URL for plain git.")
@click.option("--subdirectory", default="", help="The module's folder in the repository.")
@click.option("--tag-pattern", default="v{version}", show_default=True,
              help="Also {name}-v{version}, {name}/v{version} for monorepos.")
@click.option("--no-webhook", is_flag=True, help="Do not create the webhook in the system.")
@click.option("--import-tags", is_flag=True, help="Publish every existing matching tag now.")
@click.option("--branch-mode", is_flag=True, help="Also allow `tfr scm publish` from a commit of a branch.")
@click.option("--discover-modules", is_flag=True,
              help="Monorepo: each folder under --subdirectory with *.tf/*.tofu files is a module named after it "
                   "(ADDRESS is NAMESPACE/*/SYSTEM; the tag pattern needs {name}).")
@_scm_options
def scm_link(address: str, connection_id: int, repository: str, subdirectory: str, tag_pattern: str,
             no_webhook: bool, import_tags: bool, branch_mode: bool, discover_modules: bool, url: str,
             token: str) -> None:
    """Link module ADDRESS (NAMESPACE/NAME/SYSTEM) to a repository; prints the webhook URL and secret once."""
    parts = address.split("/")
    if len(parts) != 3:
        fail("ADDRESS is NAMESPACE/NAME/SYSTEM")
    if discover_modules and parts[1] != "*":
        fail("with --discover-modules, ADDRESS is NAMESPACE/*/SYSTEM: modules are named after their folders")
    body = {"connection_id": connection_id, "repository": repository, "namespace": parts[0],
            **({} if discover_modules else {"name": parts[1]}),
            "system": parts[2], "subdirectory": subdirectory, "tag_pattern": tag_pattern,
            "create_webhook": not no_webhook, "import_tags": import_tags, "branch_mode": branch_mode,
            "discover_modules": discover_modules}
    _scm_call(url, token, "POST", "/links", body, ok=(201,))


@scm_group.command("links")
@_scm_options
def scm_links(url: str, token: str) -> None:
    """List links."""
    _scm_call(url, token, "GET", "/links")


@scm_group.command("unlink")
@click.argument("link", type=int)
@_scm_options
def scm_unlink(link: int, url: str, token: str) -> None:
    """Remove LINK and its webhook; published versions stay."""
    _scm_call(url, token, "DELETE", f"/links/{link}", ok=(204,))
    click.echo(f"link {link} removed")


@scm_group.command("tags")
@click.argument("link", type=int)
@_scm_options
def scm_tags(link: int, url: str, token: str) -> None:
    """Preview: the tags of LINK's repository that match its pattern, with their versions."""
    _scm_call(url, token, "GET", f"/links/{link}/tags")


@scm_group.command("sync")
@click.argument("link", type=int)
@_scm_options
def scm_sync(link: int, url: str, token: str) -> None:
    """Sync LINK now: publish missing matching tags, record moved ones (a background job)."""
    _scm_call(url, token, "POST", f"/links/{link}/sync", ok=(202,))


@scm_group.command("publish")
@click.argument("link", type=int)
@click.option("--branch", required=True, help="The branch to publish from.")
@click.option("--commit", default=None, help="Full commit SHA on the branch (default: the branch head).")
@click.option("--version", "version", required=True, help="The new version (never an existing one).")
@_scm_options
def scm_publish(link: int, branch: str, commit: str | None, version: str, url: str, token: str) -> None:
    """Branch mode: publish VERSION of LINK's module from a commit of BRANCH."""
    body = {"branch": branch, "version": version, **({"commit": commit} if commit else {})}
    _scm_call(url, token, "POST", f"/links/{link}/publish", body, ok=(201,))


@scm_group.command("deliveries")
@click.argument("link", type=int)
@_scm_options
def scm_deliveries(link: int, url: str, token: str) -> None:
    """LINK's webhook delivery log, newest first."""
    _scm_call(url, token, "GET", f"/links/{link}/deliveries")


@scm_group.command("redeliver")
@click.argument("link", type=int)
@click.argument("delivery", type=int)
@_scm_options
def scm_redeliver(link: int, delivery: int, url: str, token: str) -> None:
    """Process an accepted delivery of LINK again."""
    _scm_call(url, token, "POST", f"/links/{link}/deliveries/{delivery}/redeliver", ok=(200, 202))


@scm_group.command("violations")
@_scm_options
def scm_violations(url: str, token: str) -> None:
    """Moved tags: versions whose tag now points at another commit."""
    _scm_call(url, token, "GET", "/violations")


@scm_group.command("provenance")
@click.argument("address")
@_scm_options
def scm_provenance(address: str, url: str, token: str) -> None:
    """Where version ADDRESS (NAMESPACE/NAME/SYSTEM/VERSION) came from."""
    if len(address.split("/")) != 4:
        fail("ADDRESS is NAMESPACE/NAME/SYSTEM/VERSION")
    _scm_call(url, token, "GET", f"/provenance/{address}")


__all__ = ["cli", "main"]


# --- production web server (deploy/) ------------------------------------------------------


@cli.command("web", context_settings={"ignore_unknown_options": True})
@click.option("--bind", default=lambda: f"0.0.0.0:{os.environ.get('PORT', '8080')}",
              show_default="0.0.0.0:$PORT (8080)", help="Address gunicorn listens on.")
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def web(ctx: Context, bind: str, gunicorn_args: tuple[str, ...]) -> None:
    """Run the web app under gunicorn with tfregistry.gunicorn_conf (the container image's default command).

    Settings come from the environment and TFR_CONFIG as for every command; WEB_CONCURRENCY sets
    the number of worker processes and GUNICORN_CMD_ARGS or extra arguments override the rest.
    Put TLS in front (a reverse proxy or an ingress): this listens in plain HTTP.
    """
    if ctx.config_path:
        os.environ["TFR_CONFIG"] = ctx.config_path  # create_app() in the gunicorn workers reads it
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:tfregistry.gunicorn_conf", "--bind", bind,
            *gunicorn_args, "tfregistry.app:create_app()"]
    os.execv(sys.executable, argv)


# --- notifications ---------------------------------------------------------------------------------


@cli.group()
def notify() -> None:
    """Notification subscriptions, test notifications, the delivery log and its dead letters."""


@contextmanager
def _notify_registry(ctx: Context) -> Iterator[Any]:
    """The whole application (notifiers, job queue) for a ``tfr notify`` command; without Redis, jobs it
    queues run in this process before the command exits."""
    from tfregistry.jobs import InProcessQueue

    app = build_app(ctx.boot)
    registry = app.extensions["tfregistry"]
    try:
        with app.app_context():
            yield registry
        if isinstance(registry.jobs, InProcessQueue):
            registry.jobs.wait(timeout=600)
    except ServiceError as exc:
        fail(exc.message)
    finally:
        registry.close()


def _parse_target(pairs: tuple[str, ...]) -> dict[str, Any]:
    target: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--target {pair!r}: use KEY=VALUE (repeat a key for a list)")
        if key in target:
            target[key] = [*(target[key] if isinstance(target[key], list) else [target[key]]), value]
        else:
            target[key] = value
    return target


@notify.command("list")
@pass_ctx
def notify_list(ctx: Context) -> None:
    """List subscriptions (secret target settings masked)."""
    from tfregistry.services import notifications as svc

    with _notify_registry(ctx) as registry, registry.db.session() as session:
        for sub in svc.list_subscriptions(session, None):
            org = sub.organization.name if sub.organization else "(site)"
            state = "enabled" if sub.enabled else "disabled"
            click.echo(f"{sub.id}\t{sub.name}\t{org}\t{sub.namespace or '*'}\t{','.join(sub.events)}\t"
                       f"{sub.notifier}\t{json.dumps(svc.shown_target(registry, sub))}\t{state}")


@notify.command("create")
@click.option("--name", required=True, help="A name people recognise.")
@click.option("--org", help="The organization whose events to send; default: site-wide (every organization's).")
@click.option("--event", "events", multiple=True, required=True, help="An event type, or '*' (repeatable).")
@click.option("--namespace", help="Only this namespace's events.")
@click.option("--notifier", required=True, help="webhook, slack, teams, smtp... (tfr plugins lists them).")
@click.option("--target", "pairs", multiple=True, help="Target setting KEY=VALUE (repeatable: to=a@x to=b@x). "
              "Prefer --target-file for secrets: command lines are visible to other users.")
@click.option("--target-file", type=click.File("r"), help="A JSON object of target settings ('-': stdin).")
@pass_ctx
def notify_create(ctx: Context, name: str, org: str | None, events: tuple[str, ...], namespace: str | None,
                  notifier: str, pairs: tuple[str, ...], target_file: Any) -> None:
    """Subscribe an organization (or the whole site) to events (audited as notify.subscribe by cli)."""
    from tfregistry.models import Organization
    from tfregistry.services import notifications as svc

    target = _parse_target(pairs)
    if target_file is not None:
        try:
            loaded = json.load(target_file)
        except json.JSONDecodeError as exc:
            fail(f"--target-file is not JSON: {exc.msg} (line {exc.lineno})")
        if not isinstance(loaded, dict):
            fail("--target-file must hold a JSON object")
        target.update(loaded)
    with _notify_registry(ctx) as registry, registry.db.session() as session:
        organization = None
        if org:
            organization = session.scalar(select(Organization).where(Organization.name == org))
            if organization is None:
                fail(f"no organization {org!r}")
        sub = svc.create_subscription(session, registry, CLI_ACTOR, name=name, organization=organization,
                                      events=list(events), notifier=notifier, target=target, namespace=namespace)
        session.commit()
        click.echo(f"subscription {sub.id} created")


@notify.command("delete")
@click.argument("subscription_id", type=int)
@pass_ctx
def notify_delete(ctx: Context, subscription_id: int) -> None:
    """Delete a subscription and its delivery log."""
    from tfregistry.services import notifications as svc

    with _notify_registry(ctx) as registry, registry.db.session() as session:
        svc.delete_subscription(session, CLI_ACTOR, svc.get_subscription(session, subscription_id, None))
        session.commit()
        click.echo(f"subscription {subscription_id} deleted")


@notify.command("test")
@click.argument("subscription_id", type=int)
@pass_ctx
def notify_test(ctx: Context, subscription_id: int) -> None:
    """Send a notification.test event to a subscription's target now; exit 1 if it was not delivered."""
    from tfregistry.services import notifications as svc

    with _notify_registry(ctx) as registry, registry.db.session() as session:
        error = svc.send_test(registry, svc.get_subscription(session, subscription_id, None), CLI_ACTOR)
    if error:
        fail(f"not delivered: {error}")
    click.echo("delivered")


@notify.command("deliveries")
@click.option("--status", type=click.Choice(["pending", "delivered", "dead"]), help="'dead': the dead letters.")
@click.option("--subscription", type=int, help="Only this subscription's deliveries.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@pass_ctx
def notify_deliveries(ctx: Context, status: str | None, subscription: int | None, limit: int) -> None:
    """The delivery log, newest first: id, subscription, event, status, attempts, last error."""
    from tfregistry.services import notifications as svc

    with _notify_registry(ctx) as registry, registry.db.session() as session:
        for d in svc.list_deliveries(session, None, status=status, subscription_id=subscription, limit=limit):
            click.echo(f"{d.id}\t{d.subscription_id}\t{d.event_type}\t{d.status}\t{d.attempts}\t"
                       f"{d.created_at.isoformat(timespec='seconds')}\t{d.last_error or ''}")


@notify.command("redeliver")
@click.argument("delivery_ids", nargs=-1, required=True)
@pass_ctx
def notify_redeliver(ctx: Context, delivery_ids: tuple[str, ...]) -> None:
    """Queue dead deliveries again, with the same ids (audited as notify.redeliver by cli)."""
    from tfregistry.models import NotificationDelivery
    from tfregistry.services import notifications as svc

    with _notify_registry(ctx) as registry, registry.db.session() as session:
        for delivery_id in delivery_ids:
            delivery = session.get(NotificationDelivery, delivery_id)
            if delivery is None:
                fail(f"no delivery {delivery_id}")
            svc.redeliver(registry, session, CLI_ACTOR, delivery)
            click.echo(f"delivery {delivery_id} queued")
