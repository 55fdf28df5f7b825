"""SCM publishing: connections, links, webhook deliveries, the publish job, reconcile, violations.

Tags are how versions are found; commits are what is published.  A tag is resolved to a commit
SHA at once; a version that already exists with a different SHA is never republished: the move is
recorded as a violation (:func:`_tag_moved`).  No Flask imports: the API and the jobs call these.
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tfregistry import gpg
from tfregistry.events import emit
from tfregistry.interfaces import (
    ScmCredentials,
    ScmError,
    ScmNotSupported,
    ScmProvider,
    ScmRefRefused,
    WebhookRejected,
    WebhookRequest,
)
from tfregistry.models import (
    ModuleVersion,
    ScmConnection,
    ScmDelivery,
    ScmLink,
    ScmProvenance,
    ScmViolation,
    utcnow,
)
from tfregistry.packing import pack_module
from tfregistry.services import Conflict, NotFound, ServiceError
from tfregistry.services import modules as modules_svc
from tfregistry.services.audit import Actor, record

#: Encryption purposes (HKDF info) of stored connection secrets and link webhook secrets.
SCM_SECRETS = b"tfregistry scm connection secrets"
SCM_WEBHOOK_SECRET = b"tfregistry scm webhook secret"
#: A delivery id seen within this window is acknowledged and ignored.
DEDUP_WINDOW = timedelta(hours=24)
#: Headers never kept in the delivery log, whatever the provider says.
ALWAYS_SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization")
AUTH_METHODS = ("token", "oauth", "ssh_key", "none")

_SEMVER = r"(?P<version>(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)"


class ScmServiceError(ServiceError):
    """The source-control system failed a call the operator asked for (502: the far side failed)."""

    status = 502


class OAuthAuthorizationNeeded(ServiceError):
    """An ``oauth`` connection has no usable token: never authorized, or its refresh failed (409)."""

    status = 409


# --- tag patterns ---------------------------------------------------------------------------------


def check_tag_pattern(pattern: str) -> str:
    """``pattern`` if it holds ``{version}`` exactly once and only the ``{name}`` placeholder besides."""
    if pattern.count("{version}") != 1:
        raise ServiceError(f"tag pattern {pattern!r} must contain {{version}} exactly once (e.g. v{{version}})")
    rest = pattern.replace("{version}", "").replace("{name}", "")
    if "{" in rest or "}" in rest or not re.fullmatch(r"[A-Za-z0-9._/+-]*", rest):
        raise ServiceError(f"tag pattern {pattern!r} may hold letters, digits, . _ / + - and the placeholders "
                           "{version} and {name}")
    return pattern


#: A module name (services.modules.NAME_RE) captured by ``{name}`` in a discovering link's pattern.
_NAME_GROUP = r"(?P<name>[0-9A-Za-z](?:[0-9A-Za-z_-]*[0-9A-Za-z])?)"
#: The name a discovering link stores: its modules are named after their folders.
DISCOVERED = "*"


def tag_regex(pattern: str, name: str) -> re.Pattern[str]:
    """The regular expression of the tags ``pattern`` matches for module ``name``; for
    :data:`DISCOVERED`, ``{name}`` matches any module name (the ``name`` group)."""
    parts = re.split(r"(\{version\}|\{name\})", pattern)
    out, named = [], False
    for p in parts:
        if p == "{version}":
            out.append(_SEMVER)
        elif p == "{name}" and name == DISCOVERED:
            out.append("(?P=name)" if named else _NAME_GROUP)
            named = True
        else:
            out.append(re.escape(name) if p == "{name}" else re.escape(p))
    return re.compile("^" + "".join(out) + "$")


def module_of_tag(link: ScmLink, tag: str) -> tuple[ScmLink, str] | None:
    """``(target, version)``: the link of the module ``tag`` publishes and its version, or ``None`` when
    the tag does not match.  For a discovering link (``discover_modules``) the target is a transient
    copy of the link (never added to the session) for the module named by the tag's ``{name}``, whose
    subdirectory is that name's folder under the link's subdirectory."""
    found = tag_regex(link.tag_pattern, DISCOVERED if link.discover_modules else link.name).match(tag)
    if found is None:
        return None
    if not link.discover_modules:
        return link, found.group("version")
    name = found.group("name")
    view = ScmLink(id=link.id, connection_id=link.connection_id, repository=link.repository,
                   repository_url=link.repository_url, namespace=link.namespace, name=name, system=link.system,
                   subdirectory=str(PurePosixPath(link.subdirectory, name)) if link.subdirectory else name,
                   tag_pattern=link.tag_pattern, webhook_secret_encrypted=link.webhook_secret_encrypted,
                   hook_id=link.hook_id, enabled=link.enabled, branch_mode=False, discover_modules=True,
                   created_by=link.created_by, created_at=link.created_at)
    view.connection = link.connection
    return view, found.group("version")


def version_of_tag(link: ScmLink, tag: str) -> str | None:
    """The module version ``tag`` publishes for ``link``, or ``None`` when it does not match."""
    found = module_of_tag(link, tag)
    return found[1] if found else None


def check_subdirectory(subdirectory: str) -> str:
    """A relative POSIX path inside the repository (no ``..``), normalised; ``""`` for the root."""
    sub = subdirectory.strip().strip("/")
    if not sub:
        return ""
    path = PurePosixPath(sub)
    if path.is_absolute() or any(part in ("..", ".", "") for part in path.parts) or "\\" in sub:
        raise ServiceError(f"subdirectory {subdirectory!r} must be a relative path inside the repository")
    return str(path)


# --- connections ----------------------------------------------------------------------------------


#: A ``known_hosts`` line: optional marker, host patterns, key type, base64 key, optional comment.
_KNOWN_HOST = re.compile(r"^(@(cert-authority|revoked)\s+)?\S+\s+(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+)"
                         r"(-cert-v01@openssh\.com)?\s+[A-Za-z0-9+/]+={0,2}(\s.*)?$")


def check_known_hosts(text: str | None) -> str:
    """``text`` if it holds at least one host key line in ``known_hosts`` format (comments and blank
    lines allowed), as ``ssh-keyscan -p PORT HOST`` prints it; else a 400 saying so."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ServiceError("an ssh_key connection needs ssh_known_hosts: the server's host keys, as "
                           "`ssh-keyscan -p PORT HOST` prints them (ssh accepts no other key)")
    for number, line in enumerate(lines, 1):
        if not _KNOWN_HOST.match(line):
            raise ServiceError(f"ssh_known_hosts line {number} is not a known_hosts entry (HOST KEYTYPE BASE64KEY)")
    return "\n".join(lines)


def provider_for(providers: Mapping[str, ScmProvider], name: str) -> ScmProvider:
    if name not in providers:
        offered = ", ".join(sorted(providers)) or "none: install an SCM plugin such as tfregistry-scm-git"
        raise ServiceError(f"unknown SCM provider {name!r} (installed: {offered})")
    return providers[name]


#: A connection's name (unique in its organization).
CONNECTION_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def create_connection(session: Session, actor: Actor, providers: Mapping[str, ScmProvider], enc_key: bytes, *,
                      organization_id: int, name: str, provider: str, auth_method: str,
                      base_url: str | None = None, username: str | None = None, token: str | None = None,
                      ssh_private_key: str | None = None, ssh_known_hosts: str | None = None,
                      verify: bool = True) -> ScmConnection:
    """Store a connection, its secrets encrypted; with ``verify``, the provider checks them first.
    An ``ssh_key`` connection names the server's host keys (``ssh_known_hosts``): ssh accepts no other."""
    if not CONNECTION_NAME.fullmatch(name):
        raise ServiceError(f"connection name {name!r}: 1 to 64 letters, digits, '.', '_' or '-'")
    scm = provider_for(providers, provider)
    if auth_method not in scm.auth_methods:
        raise ServiceError(f"{scm.label or scm.name} connections accept {', '.join(scm.auth_methods)}, "
                           f"not {auth_method!r}")
    if auth_method == "oauth" and _oauth_endpoints(scm, base_url or None) is None:
        raise ServiceError(f"{scm.label or scm.name} has no OAuth client configured for "
                           f"{base_url or 'the public service'}: set its OAuth client settings, or use a token")
    if auth_method == "token" and not token:
        raise ServiceError("a token connection needs a token")
    if auth_method == "ssh_key" and not ssh_private_key:
        raise ServiceError("an ssh_key connection needs ssh_private_key")
    if auth_method == "ssh_key":
        ssh_known_hosts = check_known_hosts(ssh_known_hosts)
    conn = ScmConnection(organization_id=organization_id, name=name, provider=provider, auth_method=auth_method,
                         base_url=base_url or None, username=username or None, created_by=actor.name)
    secrets_doc = {k: v for k, v in {"token": token, "ssh_private_key": ssh_private_key,
                                     "ssh_known_hosts": ssh_known_hosts}.items() if v}
    if auth_method == "oauth":  # no token until the authorization completes (start_oauth)
        secrets_doc, conn.oauth_status, verify = {}, "pending", False
    conn.secrets_encrypted = gpg.encrypt_secret(json.dumps(secrets_doc), enc_key, SCM_SECRETS) if secrets_doc else None
    if verify:
        try:
            scm.check_credentials(credentials(conn, enc_key))
        except ScmError as exc:
            raise ScmServiceError(f"{scm.label or scm.name} refused the credentials: {exc}") from None
    session.add(conn)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a connection named {name!r} already exists in this organization") from None
    record(session, actor, "scm.connection.create", name, provider=provider, auth_method=auth_method,
           base_url=conn.base_url)
    return conn


def _secrets(conn: ScmConnection, enc_key: bytes) -> dict[str, Any]:
    if not conn.secrets_encrypted:
        return {}
    return json.loads(gpg.decrypt_secret(conn.secrets_encrypted, enc_key, SCM_SECRETS))


def credentials(conn: ScmConnection, enc_key: bytes) -> ScmCredentials:
    """The connection's decrypted :class:`ScmCredentials`; an ``oauth`` connection's access token is
    refreshed first when it expires within :data:`OAUTH_REFRESH_MARGIN` (:func:`refresh_oauth`)."""
    if conn.auth_method == "oauth":
        _oauth_usable(conn, enc_key)
    doc = _secrets(conn, enc_key)
    return ScmCredentials(conn.auth_method, base_url=conn.base_url, username=conn.username, token=doc.get("token"),
                          ssh_private_key=doc.get("ssh_private_key"), expires_at=conn.expires_at,
                          ssh_known_hosts=doc.get("ssh_known_hosts"))


def get_connection(session: Session, connection_id: int) -> ScmConnection:
    conn = session.get(ScmConnection, connection_id)
    if conn is None:
        raise NotFound(f"SCM connection {connection_id} not found")
    return conn


def delete_connection(session: Session, actor: Actor, conn: ScmConnection) -> None:
    record(session, actor, "scm.connection.delete", conn.name, provider=conn.provider)
    session.delete(conn)


def connection_json(conn: ScmConnection) -> dict[str, Any]:
    """What the API shows of a connection: never its secrets."""
    return {"id": conn.id, "organization_id": conn.organization_id, "name": conn.name, "provider": conn.provider,
            "auth_method": conn.auth_method, "base_url": conn.base_url, "username": conn.username,
            "has_secret": conn.secrets_encrypted is not None and conn.oauth_status != "pending",
            "created_by": conn.created_by, "created_at": conn.created_at, "oauth_status": conn.oauth_status,
            "expires_at": conn.expires_at}


# --- OAuth 2.0 connections ----------------------------------------------------------------------------

#: An ``oauth`` connection's access token is refreshed when it expires within this margin.
OAUTH_REFRESH_MARGIN = timedelta(minutes=5)
#: How long an authorization started by :func:`start_oauth` may take to come back.
OAUTH_STATE_TTL = timedelta(minutes=15)


def _oauth_endpoints(scm: ScmProvider, base_url: str | None) -> Any:
    """``scm.oauth_endpoints(base_url)``; a provider that refuses OAuth for that server (``ScmNotSupported``:
    Azure DevOps Server, say) gives a 400 with its reason."""
    try:
        return scm.oauth_endpoints(base_url)
    except ScmNotSupported as exc:
        raise ServiceError(str(exc)) from None


def _oauth_client(scm: ScmProvider, conn: ScmConnection, redirect_uri: str | None = None) -> tuple[Any, Any]:
    """An Authlib ``OAuth2Session`` for ``conn`` and its provider's :class:`OAuthEndpoints`."""
    from authlib.integrations.requests_client import OAuth2Session

    endpoints = _oauth_endpoints(scm, conn.base_url)
    if endpoints is None:
        raise ServiceError(f"{scm.label or scm.name} has no OAuth client configured for "
                           f"{conn.base_url or 'the public service'}")
    client = OAuth2Session(client_id=endpoints.client_id, client_secret=endpoints.client_secret,
                           token_endpoint_auth_method="client_secret_post", redirect_uri=redirect_uri,
                           scope=" ".join(endpoints.scopes) or None,
                           code_challenge_method="S256" if endpoints.pkce else None)
    return client, endpoints


def _store_token(conn: ScmConnection, enc_key: bytes, token: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    """Keep the access and refresh token (encrypted) and the expiry of a token endpoint answer."""
    if not token.get("access_token"):
        raise ScmError("the token endpoint answered without an access_token")
    doc = {"token": token["access_token"],
           # a system that does not rotate refresh tokens answers without one: keep the old
           "refresh_token": token.get("refresh_token") or old.get("refresh_token")}
    conn.secrets_encrypted = gpg.encrypt_secret(json.dumps({k: v for k, v in doc.items() if v}), enc_key,
                                                SCM_SECRETS)
    expires_in = token.get("expires_in")
    conn.expires_at = utcnow() + timedelta(seconds=int(expires_in)) if expires_in else None
    conn.oauth_status = "active"


def _oauth_error(exc: Exception) -> str:
    """What a failed token request says, without any secret (Authlib's error code and description)."""
    error = getattr(exc, "error", None)
    if error:
        description = getattr(exc, "description", None)
        return f"{error}: {description}" if description else str(error)
    return type(exc).__name__


def start_oauth(session: Session, actor: Actor, scm: ScmProvider, conn: ScmConnection, enc_key: bytes,
                redirect_uri: str, return_to: str | None = None) -> str:
    """Begin (or repeat, to re-authorize) the authorization-code flow of an ``oauth`` connection: the
    URL to send the person to.  ``state`` (``<connection id>.<random>``) and the PKCE verifier are
    kept encrypted with the connection until :func:`finish_oauth`; a new start replaces them.
    ``return_to``: a path of this registry the callback sends the browser back to (the web UI's page)."""
    if conn.auth_method != "oauth":
        raise ServiceError(f"connection {conn.name!r} authenticates with {conn.auth_method}, not oauth")
    if return_to is not None and (not return_to.startswith("/") or return_to.startswith("//") or "\\" in return_to
                                  or any(c.isspace() or ord(c) < 32 for c in return_to)):
        raise ServiceError("return_to must be a path of this registry")
    client, endpoints = _oauth_client(scm, conn, redirect_uri)
    state = f"{conn.id}.{secrets.token_urlsafe(32)}"
    verifier = secrets.token_urlsafe(48) if endpoints.pkce else None
    with client:
        url, _ = client.create_authorization_url(endpoints.authorize_url, state=state, code_verifier=verifier,
                                                 **dict(endpoints.authorize_params))
    doc = _secrets(conn, enc_key) | {"oauth_state": state, "oauth_verifier": verifier,
                                     "oauth_started": utcnow().isoformat(), "oauth_return": return_to}
    conn.secrets_encrypted = gpg.encrypt_secret(json.dumps(doc), enc_key, SCM_SECRETS)
    record(session, actor, "scm.connection.oauth_start", conn.name, provider=conn.provider)
    return str(url)


def finish_oauth(session: Session, providers: Mapping[str, ScmProvider], enc_key: bytes, *, state: str | None,
                 code: str | None, error: str | None, redirect_uri: str) -> OAuthFinished:
    """The callback: check ``state`` against the one :func:`start_oauth` kept (single use, at most
    :data:`OAUTH_STATE_TTL` old), exchange ``code`` for tokens and store them encrypted."""
    conn_id, _, _ = (state or "").partition(".")
    conn = session.get(ScmConnection, int(conn_id)) if conn_id.isdigit() and len(conn_id) < 10 else None
    doc = _secrets(conn, enc_key) if conn is not None and conn.auth_method == "oauth" else {}
    kept = doc.get("oauth_state")
    if not state or not kept or not secrets.compare_digest(state, kept):
        raise ServiceError("unknown or already used OAuth state: start the authorization again")
    assert conn is not None
    verifier = doc.pop("oauth_verifier", None)
    started = datetime.fromisoformat(doc.pop("oauth_started"))
    doc.pop("oauth_state")
    return_to = doc.pop("oauth_return", None)
    conn.secrets_encrypted = gpg.encrypt_secret(json.dumps(doc), enc_key, SCM_SECRETS) if doc else None
    session.commit()  # the state is used up, whatever happens next
    try:
        _exchange_code(session, providers, enc_key, conn, doc, started, code, error, verifier, redirect_uri)
    except ServiceError as exc:
        exc.return_to = return_to  # type: ignore[attr-defined]  (where the web UI shows the failure)
        raise
    return OAuthFinished(conn, return_to)


@dataclass(frozen=True)
class OAuthFinished:
    """A completed authorization: the connection, and the path to send the browser back to (or ``None``)."""

    connection: ScmConnection
    return_to: str | None


def _exchange_code(session: Session, providers: Mapping[str, ScmProvider], enc_key: bytes, conn: ScmConnection,
                   doc: dict[str, Any], started: datetime, code: str | None, error: str | None, verifier: str | None,
                   redirect_uri: str) -> None:
    if utcnow() - started > OAUTH_STATE_TTL:
        raise ServiceError("the OAuth authorization took too long: start it again")
    if error or not code:
        raise ServiceError(f"the authorization was not granted: {error or 'no code in the callback'}")
    scm = provider_for(providers, conn.provider)
    client, endpoints = _oauth_client(scm, conn, redirect_uri)
    try:
        with client:
            token = client.fetch_token(endpoints.token_url, grant_type="authorization_code", code=code,
                                       code_verifier=verifier, redirect_uri=redirect_uri)
        _store_token(conn, enc_key, token, doc)
    except Exception as exc:  # Authlib's OAuthError, requests' errors, ScmError: no secret in the message
        raise ScmServiceError(f"{scm.label or scm.name} refused the authorization code: {_oauth_error(exc)}") from None
    record(session, Actor(name=conn.created_by or f"scm:{conn.provider}"), "scm.connection.oauth_authorized",
           conn.name, provider=conn.provider)
    session.commit()


def _oauth_usable(conn: ScmConnection, enc_key: bytes) -> None:
    """Refuse an ``oauth`` connection that has no token; refresh one that expires soon."""
    if conn.oauth_status == "pending":
        raise OAuthAuthorizationNeeded(f"connection {conn.name!r} is waiting for its OAuth authorization: "
                                       f"POST /api/v1/scm/connections/{conn.id}/oauth/authorize")
    if conn.oauth_status == "reauthorize":
        raise OAuthAuthorizationNeeded(f"connection {conn.name!r} needs re-authorization (its OAuth token could not "
                                       f"be refreshed): POST /api/v1/scm/connections/{conn.id}/oauth/authorize")
    if conn.expires_at is not None and conn.expires_at - utcnow() <= OAUTH_REFRESH_MARGIN:
        refresh_oauth(conn, enc_key)


def refresh_oauth(conn: ScmConnection, enc_key: bytes) -> None:
    """Refresh ``conn``'s access token with its refresh token (the ``refresh_token`` grant).

    Runs in its own session and transaction holding the connection's row lock (the write lock on
    SQLite) from before it reads the row, so concurrent callers refresh once: the others find
    the new token.  A refused refresh marks the connection ``reauthorize`` and raises
    :class:`OAuthAuthorizationNeeded`.  ``conn`` (in the caller's session) then holds the stored values.
    """
    from sqlalchemy.orm import object_session
    from sqlalchemy.orm.attributes import set_committed_value

    caller = object_session(conn)
    registry = caller.info.get("tfr_registry") if caller is not None else None
    if registry is None:
        raise ServiceError("cannot refresh an OAuth token outside a registry session")
    scm = provider_for(registry.scm_providers, conn.provider)
    with registry.db.session() as session:
        # a no-op write first: it takes the row lock on PostgreSQL and the write lock on SQLite (where
        # FOR UPDATE does not exist) before anything is read, so a second refresher waits, then reads
        # the token the first one stored
        session.execute(update(ScmConnection).where(ScmConnection.id == conn.id)
                        .values(oauth_status=ScmConnection.oauth_status))
        row = session.scalars(select(ScmConnection).where(ScmConnection.id == conn.id).with_for_update()
                              .execution_options(populate_existing=True)).one()
        if (row.oauth_status == "active" and row.expires_at is not None
                and row.expires_at - utcnow() <= OAUTH_REFRESH_MARGIN):
            doc = _secrets(row, enc_key)
            client, endpoints = _oauth_client(scm, row)
            try:
                if not doc.get("refresh_token"):
                    raise ScmError("no refresh token was issued")
                with client:
                    token = client.refresh_token(endpoints.token_url, refresh_token=doc["refresh_token"])
                _store_token(row, enc_key, token, doc)
                record(session, Actor(name=f"scm:{row.provider}"), "scm.connection.oauth_refreshed", row.name)
            except Exception as exc:  # refused (invalid_grant...), unreachable: the person must authorize again
                row.oauth_status = "reauthorize"
                record(session, Actor(name=f"scm:{row.provider}"), "scm.connection.oauth_refresh_failed", row.name,
                       error=_oauth_error(exc))
                failure = _oauth_error(exc)
            else:
                failure = None
            session.commit()
        else:
            failure = None if row.oauth_status == "active" else "the connection needs re-authorization"
        values = (row.secrets_encrypted, row.expires_at, row.oauth_status)
    for attr, value in zip(("secrets_encrypted", "expires_at", "oauth_status"), values, strict=True):
        set_committed_value(conn, attr, value)
    if failure is not None:
        raise OAuthAuthorizationNeeded(f"connection {conn.name!r} needs re-authorization: refreshing its OAuth "
                                       f"token failed ({failure}): POST /api/v1/scm/connections/{conn.id}"
                                       "/oauth/authorize")


def call(scm: ScmProvider, what: str, fn: Any, *args: Any) -> Any:
    """Call a provider method; its :class:`ScmError` becomes a 502 (400 for "not supported")."""
    try:
        return fn(*args)
    except ScmNotSupported as exc:
        raise ServiceError(str(exc)) from None
    except ScmError as exc:
        raise ScmServiceError(f"{scm.label or scm.name}: cannot {what}: {exc}") from None


# --- links ----------------------------------------------------------------------------------------


def webhook_secret(link: ScmLink, enc_key: bytes) -> str:
    return gpg.decrypt_secret(link.webhook_secret_encrypted, enc_key, SCM_WEBHOOK_SECRET)


def create_link(session: Session, actor: Actor, scm: ScmProvider, conn: ScmConnection, enc_key: bytes, *,
                repository: str, namespace: str, name: str, system: str, subdirectory: str = "",
                tag_pattern: str = "v{version}", webhook_url: str | None = None,
                branch_mode: bool = False, discover_modules: bool = False) -> tuple[ScmLink, str]:
    """Link module ``namespace/name/system`` to ``repository``; returns the link and its webhook secret
    (shown once).  With ``webhook_url`` (a system that sends webhooks), the hook is created there.
    With ``discover_modules``, ``name`` is ignored (stored as :data:`DISCOVERED`): each module folder
    directly under ``subdirectory`` is a module named after its folder, published by the tags whose
    ``{name}`` is that folder's name (the pattern must hold ``{name}``)."""
    if discover_modules:
        if "{name}" not in tag_pattern:
            raise ServiceError(f"a link that discovers module folders needs {{name}} in its tag pattern "
                               f"(e.g. {{name}}-v{{version}}), not {tag_pattern!r}")
        if branch_mode:
            raise ServiceError("branch mode is not supported on a link that discovers module folders: "
                               "link each module folder on its own for branch mode")
        name = DISCOVERED
        modules_svc.validate_address(namespace, "discovered", system)
    else:
        modules_svc.validate_address(namespace, name, system)
    creds = credentials(conn, enc_key)
    try:
        repo = scm.get_repository(creds, repository)
        repo_url = repo.web_url or repo.clone_url
    except ScmNotSupported:
        repo_url = call(scm, "build the clone URL", scm.clone_url, creds, repository)
    except ScmError as exc:
        raise ScmServiceError(f"{scm.label or scm.name}: {exc}") from None
    secret = secrets.token_urlsafe(32)
    link = ScmLink(connection_id=conn.id, repository=repository, repository_url=repo_url, namespace=namespace,
                   name=name, system=system, subdirectory=check_subdirectory(subdirectory),
                   tag_pattern=check_tag_pattern(tag_pattern), created_by=actor.name, branch_mode=branch_mode,
                   discover_modules=discover_modules,
                   webhook_secret_encrypted=gpg.encrypt_secret(secret, enc_key, SCM_WEBHOOK_SECRET))
    session.add(link)
    session.flush()
    if webhook_url and scm.supports_webhooks:
        try:
            link.hook_id = scm.create_webhook(creds, repository, webhook_url.replace("{id}", str(link.id)), secret)
        except ScmNotSupported:
            pass  # the system sends webhooks but cannot create them: the operator adds the hook by hand
        except ScmError as exc:
            raise ScmServiceError(f"{scm.label or scm.name}: cannot create the webhook: {exc}") from None
    record(session, actor, "scm.link.create", f"{namespace}/{name}/{system}", link=link.id, repository=repository,
           subdirectory=link.subdirectory or None, tag_pattern=link.tag_pattern, hook_id=link.hook_id,
           branch_mode=link.branch_mode, discover_modules=link.discover_modules)
    return link, secret


def get_link(session: Session, link_id: int) -> ScmLink:
    link = session.get(ScmLink, link_id)
    if link is None:
        raise NotFound(f"SCM link {link_id} not found")
    return link


def delete_link(session: Session, actor: Actor, scm: ScmProvider, link: ScmLink, enc_key: bytes) -> None:
    """Remove a link (and its webhook); published versions stay."""
    if link.hook_id:
        call(scm, "delete the webhook", scm.delete_webhook, credentials(link.connection, enc_key), link.repository,
             link.hook_id)
    record(session, actor, "scm.link.delete", f"{link.namespace}/{link.name}/{link.system}", link=link.id)
    session.delete(link)


def link_json(link: ScmLink) -> dict[str, Any]:
    return {"id": link.id, "connection_id": link.connection_id, "provider": link.connection.provider,
            "repository": link.repository, "repository_url": link.repository_url,
            "module": f"{link.namespace}/{link.name}/{link.system}", "namespace": link.namespace, "name": link.name,
            "system": link.system, "subdirectory": link.subdirectory, "tag_pattern": link.tag_pattern,
            "hook_id": link.hook_id, "enabled": link.enabled, "branch_mode": link.branch_mode,
            "discover_modules": link.discover_modules,
            "created_by": link.created_by,
            "created_at": link.created_at, "last_reconciled_at": link.last_reconciled_at}


@dataclass(frozen=True)
class MatchingTag:
    tag: str
    version: str
    commit_sha: str
    #: The module's name (the folder's, for a discovering link).
    module: str = ""


def matching_tags(scm: ScmProvider, creds: ScmCredentials, link: ScmLink) -> list[MatchingTag]:
    """The repository's tags that match the link's pattern, with their versions and commits."""
    tags = call(scm, "list tags", scm.list_tags, creds, link.repository)
    found = []
    for t in tags:
        target = module_of_tag(link, t.name)
        if target is not None:
            found.append(MatchingTag(t.name, target[1], t.commit_sha, target[0].name))
    return sorted(found, key=lambda m: modules_svc.parse_version(m.version))


def preview_tags(scm: ScmProvider, creds: ScmCredentials, *, repository: str, name: str | None,
                 tag_pattern: str, discover_modules: bool = False) -> list[MatchingTag]:
    """:func:`matching_tags` for a link not created yet (the link wizard's preview)."""
    draft = ScmLink(repository=repository, name=DISCOVERED if discover_modules else (name or ""),
                    tag_pattern=check_tag_pattern(tag_pattern), discover_modules=discover_modules,
                    subdirectory="", namespace="", system="")
    return matching_tags(scm, creds, draft)


# --- provenance and violations -----------------------------------------------------------------------


def provenance_of(session: Session, module_version_id: int) -> ScmProvenance | None:
    return session.get(ScmProvenance, module_version_id)


def provenance_json(p: ScmProvenance) -> dict[str, Any]:
    return {"repository_url": p.repository_url, "commit_sha": p.commit_sha, "tag": p.tag or None, "branch": p.branch,
            "subdirectory": p.subdirectory, "delivery_id": p.delivery_id, "triggered_by": p.triggered_by,
            "link_id": p.link_id, "published_at": p.created_at}


def provenance_html(data: dict[str, Any]) -> Any:
    """The web UI's "Source" tab: :func:`provenance_json` as a definition list (escaped; no inline style)."""
    from markupsafe import Markup, escape

    url = str(data["repository_url"])
    repo = (Markup('<a href="{0}" rel="noopener">{0}</a>').format(url) if url.startswith(("https://", "http://"))
            else escape(url))
    rows = [("Repository", repo), ("Commit", Markup("<code>{}</code>").format(data["commit_sha"])),
            ("Tag", escape(data["tag"])) if data["tag"] else ("Branch", escape(data["branch"])),
            ("Subdirectory", escape(data["subdirectory"] or "(repository root)")),
            ("Published by", escape(data["triggered_by"])),
            ("Webhook delivery", escape(data["delivery_id"] or "(none: sync, reconcile or branch publish)")),
            ("Published at", escape(data["published_at"].strftime("%Y-%m-%d %H:%M UTC")))]
    return Markup('<dl class="provenance">') + Markup("").join(
        Markup("<dt>{}</dt><dd>{}</dd>").format(k, v) for k, v in rows) + Markup("</dl>")


def _tag_moved(session: Session, link: ScmLink, mv: ModuleVersion, tag: str, published_sha: str, current_sha: str,
               *, detected_by: str, delivery_id: str | None = None) -> ScmViolation | None:
    """Record that ``tag`` moved after ``mv`` was published from ``published_sha``: a violation and an
    audit entry (once per version and new SHA).  The version is never touched.  Returns the new
    violation, or ``None`` when this move was already recorded."""
    existing = session.scalar(select(ScmViolation).where(ScmViolation.module_version_id == mv.id,
                                                         ScmViolation.current_sha == current_sha))
    if existing is not None:
        return None
    violation = ScmViolation(link_id=link.id, module_version_id=mv.id, tag=tag, published_sha=published_sha,
                             current_sha=current_sha, detected_by=detected_by, delivery_id=delivery_id)
    session.add(violation)
    session.flush()
    address = f"{link.namespace}/{link.name}/{link.system}/{mv.version}"
    actor = Actor(name=f"scm:{detected_by}")
    record(session, actor, "scm.tag_moved", address, tag=tag, published_sha=published_sha,
           current_sha=current_sha, repository=link.repository_url, delivery_id=delivery_id, violation=violation.id)
    emit(session, "scm.tag_moved", actor=actor, namespace=link.namespace,
         data={"namespace": link.namespace, "name": link.name, "system": link.system, "version": mv.version,
               "repository": link.repository_url, "tag": tag, "old_commit": published_sha,
               "new_commit": current_sha})
    registry = session.info.get("tfr_registry")
    if registry is not None and registry.observe.active:
        registry.observe("scm_tag_moved", provider=link.connection.provider)
    return violation


def violation_json(v: ScmViolation, session: Session) -> dict[str, Any]:
    mv = session.get(ModuleVersion, v.module_version_id)
    module = mv.module if mv is not None else None
    return {"id": v.id, "link_id": v.link_id, "tag": v.tag, "published_sha": v.published_sha,
            "current_sha": v.current_sha, "detected_by": v.detected_by, "delivery_id": v.delivery_id,
            "detected_at": v.detected_at,
            "module_version": (f"{module.namespace.name}/{module.name}/{module.system}/{mv.version}"
                               if module is not None and mv is not None else None)}


def violations_of_version(session: Session, module_version_id: int) -> list[ScmViolation]:
    return list(session.scalars(select(ScmViolation).where(ScmViolation.module_version_id == module_version_id)
                                .order_by(ScmViolation.id)))


def existing_version(session: Session, link: ScmLink, version: str) -> ModuleVersion | None:
    module = modules_svc.find_module(session, link.namespace, link.name, link.system)
    if module is None:
        return None
    for mv in module.versions:
        if mv.version == version:
            return mv
    return None


# --- publishing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishOutcome:
    #: ``published``, ``unchanged`` (same commit already published), ``tag_moved``, ``gone`` (no such
    #: tag any more), ``ignored`` (tag does not match).
    status: str
    version: str | None = None
    commit_sha: str | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "version": self.version, "commit_sha": self.commit_sha,
                "message": self.message}


def publish_tag(session: Session, storage: Any, scm: ScmProvider, link: ScmLink, enc_key: bytes,
                limits: modules_svc.ArchiveLimits, tag: str, *, delivery_id: str | None = None,
                triggered_by: str = "", detected_by: str = "webhook") -> PublishOutcome:
    """Publish ``tag`` of ``link``'s repository as a module version, pinned to the commit it points at now.

    The tree of exactly that commit is fetched with git, the link's subdirectory packed with the
    same packer as ``tfr publish module`` (honouring ``.terraformignore``) and published through the
    module publish service, with the provenance in the same transaction.  A version that exists with
    the same commit is left alone; with another commit, the tag moved: :func:`_tag_moved`.
    """
    target = module_of_tag(link, tag)
    if target is None:
        return PublishOutcome("ignored", message=f"tag {tag!r} does not match {link.tag_pattern!r}")
    link, version = target
    creds = credentials(link.connection, enc_key)
    sha = call(scm, "resolve the tag", scm.resolve_tag, creds, link.repository, tag)
    if sha is None:
        return PublishOutcome("gone", version, message=f"tag {tag!r} no longer exists")
    mv = existing_version(session, link, version)
    if mv is not None:
        prov = provenance_of(session, mv.id)
        if prov is not None and prov.commit_sha == sha:
            return PublishOutcome("unchanged", version, sha)
        published = prov.commit_sha if prov is not None else "(uploaded, not from this repository)"
        _tag_moved(session, link, mv, tag, published, sha, detected_by=detected_by, delivery_id=delivery_id)
        session.commit()
        return PublishOutcome("tag_moved", version, sha, f"version {version} was published from {published}; "
                              f"tag {tag!r} now points at {sha}: not republished")
    with tempfile.TemporaryDirectory(prefix="tfr-scm-") as tmp:
        tree = Path(tmp) / "tree"
        call(scm, "fetch the tree", scm.fetch_tree, creds, link.repository, sha, tree)
        result = _pack_and_publish(session, storage, link, tree, limits, version=version, tag=tag, sha=sha,
                                   delivery_id=delivery_id, triggered_by=triggered_by)
    return PublishOutcome("published" if result else "unchanged", version, sha)


def _pack_and_publish(session: Session, storage: Any, link: ScmLink, tree: Path, limits: modules_svc.ArchiveLimits,
                      *, version: str, tag: str, sha: str, delivery_id: str | None, triggered_by: str,
                      branch: str | None = None) -> bool:
    """Pack the link's subdirectory of the fetched ``tree`` (commit ``sha``) with the packer of
    ``tfr publish module`` and publish it with its provenance; whether a version was created."""
    root = tree / link.subdirectory if link.subdirectory else tree
    if not root.is_dir() or root.is_symlink():
        raise ServiceError(f"commit {sha} has no directory {link.subdirectory!r}")
    if link.discover_modules and not any(p.suffix in (".tf", ".tofu") and p.is_file() and not p.is_symlink()
                                         for p in root.iterdir()):
        raise ServiceError(f"{link.subdirectory!r} at commit {sha} is not a module folder (no *.tf or *.tofu file)")
    with tempfile.TemporaryFile(prefix="tfr-scm-", suffix=".tar.gz") as archive:
        try:
            pack_module(root, archive)
        except ValueError as exc:
            raise ServiceError(f"cannot pack {tag or branch} ({sha}): {exc}") from None
        archive.seek(0)
        actor = Actor(name=triggered_by or f"scm:{link.connection.provider}")
        return publish_with_provenance(session, storage, actor, link, archive, limits, version=version, tag=tag,
                                       sha=sha, delivery_id=delivery_id, branch=branch)


def publish_branch(session: Session, storage: Any, scm: ScmProvider, link: ScmLink, enc_key: bytes,
                   limits: modules_svc.ArchiveLimits, *, branch: str, version: str, commit: str | None = None,
                   triggered_by: str = "") -> PublishOutcome:
    """Branch mode: publish ``version`` from ``commit`` (default: the head) of ``branch``.

    Refused (nothing published) when the link is not in branch mode, ``version`` is not a semantic
    version or already exists (409, even from the same commit: a version number is never reused),
    the branch does not exist, or the commit is not on it (checked with the real ``git``).  The
    provenance records the branch and the commit, and no tag.
    """
    if not link.branch_mode:
        raise ServiceError(f"SCM link {link.id} is not in branch mode: enable branch_mode on the link first")
    if re.fullmatch(_SEMVER, version) is None:
        raise ServiceError(f"version {version!r} is not a semantic version (e.g. 1.3.0)")
    if existing_version(session, link, version) is not None:
        raise Conflict(f"{link.namespace}/{link.name}/{link.system} {version} already exists: a version number "
                       "is never reused; choose a new version")
    creds = credentials(link.connection, enc_key)
    with tempfile.TemporaryDirectory(prefix="tfr-scm-") as tmp:
        tree = Path(tmp) / "tree"
        try:
            sha = scm.fetch_branch_tree(creds, link.repository, branch, commit, tree)
        except ScmRefRefused as exc:
            raise ServiceError(str(exc)) from None
        except ScmError as exc:
            raise ScmServiceError(f"{scm.label or scm.name}: cannot fetch branch {branch!r}: {exc}") from None
        created = _pack_and_publish(session, storage, link, tree, limits, version=version, tag="", sha=sha,
                                    delivery_id=None, triggered_by=triggered_by, branch=branch)
    if not created:  # published concurrently by another request between the check and the commit
        raise Conflict(f"{link.namespace}/{link.name}/{link.system} {version} already exists: a version number "
                       "is never reused; choose a new version")
    return PublishOutcome("published", version, sha, f"published {version} from {branch} at {sha}")


def publish_with_provenance(session: Session, storage: Any, actor: Actor, link: ScmLink, archive: Any,
                            limits: modules_svc.ArchiveLimits, *, version: str, tag: str, sha: str,
                            delivery_id: str | None, branch: str | None = None) -> bool:
    """Publish through :func:`tfregistry.services.modules.publish_module`, whose commit also writes the
    provenance row (added to the session first), so a version never exists without its provenance."""
    from sqlalchemy import event

    created: list[int] = []

    def note_version(sess: Session, _ctx: Any) -> None:
        created.extend(obj.id for obj in sess.new if isinstance(obj, ModuleVersion) and obj.version == version)

    def add_provenance(sess: Session, _ctx: Any) -> None:
        while created:  # flushed by the commit's next flush, in the same transaction as the version
            sess.add(ScmProvenance(module_version_id=created.pop(), link_id=link.id, commit_sha=sha, tag=tag,
                                   branch=branch, repository_url=link.repository_url, subdirectory=link.subdirectory,
                                   delivery_id=delivery_id, triggered_by=actor.name))

    event.listen(session, "after_flush", note_version)
    event.listen(session, "after_flush_postexec", add_provenance)
    try:
        result = modules_svc.publish_module(session, storage, actor, namespace=link.namespace, name=link.name,
                                            system=link.system, version=version, archive=archive, limits=limits,
                                            description=f"published from {link.repository_url} "
                                                        f"{tag or f'branch {branch}'}")
    finally:
        event.remove(session, "after_flush", note_version)
        event.remove(session, "after_flush_postexec", add_provenance)
    return result.created


# --- webhooks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookResult:
    status_code: int
    outcome: str
    #: ``(tag, delivery_id)`` publish jobs to enqueue once the delivery is committed.
    publish: tuple[tuple[str, str | None], ...] = ()


def logged_headers(headers: Mapping[str, str], scm: ScmProvider) -> dict[str, str]:
    secret = {*ALWAYS_SECRET_HEADERS, *(h.lower() for h in scm.secret_headers)}
    return {k.lower(): v for k, v in headers.items() if k.lower() not in secret}


def receive_webhook(session: Session, scm: ScmProvider, link: ScmLink, enc_key: bytes, headers: Mapping[str, str],
                    body: bytes, *, received_at: datetime | None = None, redelivery_of: int | None = None
                    ) -> WebhookResult:
    """Verify, de-duplicate, log and act on one delivery for ``link``.

    Rejected (401): nothing else happens.  ``redelivery_of`` (the id of a logged delivery that was
    accepted) processes that delivery again without the signature check, which its logged headers no
    longer allow, and without de-duplication.  A delivery id seen within :data:`DEDUP_WINDOW`: 200 and
    ignored.  A moved tag: a violation at once (:func:`_tag_moved`), nothing published.  A created tag
    matching the pattern: a publish job (the caller enqueues :attr:`WebhookResult.publish`).
    """
    started = time.monotonic()
    received_at = received_at or utcnow()
    request = WebhookRequest({k.lower(): v for k, v in headers.items()}, body, received_at)
    delivery_id = None
    try:
        if redelivery_of is None:  # a redelivery repeats a logged delivery that passed this check
            scm.verify_webhook(request, webhook_secret(link, enc_key))
        delivery_id = scm.delivery_id(request)
        result = _act(session, scm, link, enc_key, request, delivery_id, redelivery_of)
    except WebhookRejected as exc:
        result = WebhookResult(401, f"rejected: {exc}")
    except (ValueError, KeyError, TypeError) as exc:
        result = WebhookResult(400, f"unreadable payload: {type(exc).__name__}")
    except ServiceError as exc:  # the system could not be asked (resolving a moved tag): logged, retry later
        result = WebhookResult(exc.status, f"failed: {exc.message}")
    session.add(ScmDelivery(link_id=link.id, delivery_id=delivery_id, received_at=received_at, body=body,
                            headers=logged_headers(headers, scm), status_code=result.status_code,
                            outcome=result.outcome, latency_ms=int((time.monotonic() - started) * 1000),
                            redelivery_of=redelivery_of))
    return result


def _act(session: Session, scm: ScmProvider, link: ScmLink, enc_key: bytes, request: WebhookRequest,
         delivery_id: str | None, redelivery_of: int | None) -> WebhookResult:
    if delivery_id and redelivery_of is None:
        seen = session.scalar(select(ScmDelivery.id).where(
            ScmDelivery.link_id == link.id, ScmDelivery.delivery_id == delivery_id, ScmDelivery.status_code < 300,
            ScmDelivery.received_at >= request.received_at - DEDUP_WINDOW).limit(1))
        if seen is not None:
            return WebhookResult(200, f"duplicate of delivery {seen}: ignored")
    if not link.enabled:
        return WebhookResult(200, "link disabled: ignored")
    events = [e for e in scm.parse_webhook(request) if e.repository == link.repository]
    outcomes, publish = [], []
    for e in events:
        target = module_of_tag(link, e.tag) if e.tag else None
        if e.tag is None or target is None:
            outcomes.append(f"{e.kind} {e.tag or e.branch}: not a matching tag")
            continue
        module, version = target  # the link itself, or the discovered module's view of it
        if e.kind == "tag_deleted":
            outcomes.append(f"tag {e.tag} deleted: version {version} kept")
        elif e.kind == "tag_moved" or (e.kind == "tag_created" and existing_version(session, module, version)):
            mv = existing_version(session, module, version)
            prov = provenance_of(session, mv.id) if mv is not None else None
            if mv is None:  # moved before it was ever published: publish what it points at now
                publish.append((e.tag, delivery_id))
                outcomes.append(f"tag {e.tag} (moved, never published): publish queued")
            elif prov is not None and prov.commit_sha == e.sha:
                outcomes.append(f"tag {e.tag}: version {version} already published from {e.sha}")
            else:
                # the event's sha may be an annotated tag's object: compare the commit the tag points at now
                current = call(scm, "resolve the tag", scm.resolve_tag, credentials(link.connection, enc_key),
                               link.repository, e.tag) or e.sha or ""
                published = prov.commit_sha if prov is not None else "(uploaded, not from this repository)"
                if current == published:
                    outcomes.append(f"tag {e.tag}: version {version} already published from {current}")
                else:
                    _tag_moved(session, module, mv, e.tag, published, current, detected_by="webhook",
                               delivery_id=delivery_id)
                    outcomes.append(f"tag {e.tag} moved: version {version} keeps {published}")
        else:
            publish.append((e.tag, delivery_id))
            outcomes.append(f"tag {e.tag}: publish of {version} queued")
    if not events:
        return WebhookResult(200, "no tag events for this repository: ignored")
    return WebhookResult(202 if publish else 200, "; ".join(outcomes), tuple(publish))


def deliveries(session: Session, link_id: int, limit: int = 100) -> list[ScmDelivery]:
    return list(session.scalars(select(ScmDelivery).where(ScmDelivery.link_id == link_id)
                                .order_by(ScmDelivery.id.desc()).limit(limit)))


def delivery_json(d: ScmDelivery) -> dict[str, Any]:
    return {"id": d.id, "link_id": d.link_id, "delivery_id": d.delivery_id, "received_at": d.received_at,
            "headers": d.headers, "status_code": d.status_code, "outcome": d.outcome, "latency_ms": d.latency_ms,
            "redelivery_of": d.redelivery_of}


def publish_job_id(link_id: int, tag: str) -> str:
    """One pending publish per link and tag: a repeated webhook does not queue a second one."""
    return "scm-publish-" + str(link_id) + "-" + re.sub(r"[^A-Za-z0-9._-]", "_", tag)


def reconcile_link(session: Session, storage: Any, scm: ScmProvider, link: ScmLink, enc_key: bytes,
                   limits: modules_svc.ArchiveLimits, *, triggered_by: str = "scm:reconcile") -> dict[str, Any]:
    """List the repository's tags: publish every matching version that is missing, and record a
    violation for every published version whose tag now points at another commit."""
    creds = credentials(link.connection, enc_key)
    published, moved, errors = [], [], []
    for m in matching_tags(scm, creds, link):
        target = module_of_tag(link, m.tag)
        module = target[0] if target else link
        mv = existing_version(session, module, m.version)
        if mv is None:
            try:
                outcome = publish_tag(session, storage, scm, link, enc_key, limits, m.tag,
                                      triggered_by=triggered_by, detected_by="reconcile")
            except ServiceError as exc:
                session.rollback()
                errors.append(f"{m.tag}: {exc.message}")
                continue
            if outcome.status == "published":
                published.append(m.version if module is link else f"{module.name} {m.version}")
            continue
        prov = provenance_of(session, mv.id)
        if (prov is not None and prov.link_id == link.id and prov.commit_sha != m.commit_sha
                and _tag_moved(session, module, mv, m.tag, prov.commit_sha, m.commit_sha,
                               detected_by="reconcile")):
            moved.append(m.version if module is link else f"{module.name} {m.version}")
            session.commit()  # kept even if a later tag's publish fails and rolls back
    link.last_reconciled_at = utcnow()
    session.commit()
    return {"link": link.id, "published": published, "moved": moved, "errors": errors}
