"""Test kit: a real OpenID provider, a token-rewriting proxy in front of it, and a tiny app that drives a provider.

* :class:`OIDCMock` runs `oidc-provider-mock <https://pypi.org/project/oidc-provider-mock/>`_ (the
  ``test`` extra) in a subprocess on a free port of 127.0.0.1: discovery, authorization form, token
  endpoint, JWKS, and ``PUT /users/<sub>`` to define people and their claims at run time.
* :func:`sign_in` (or :meth:`OIDCMock.sign_in`) does what a person does on the mock's form and
  returns the callback URL the browser would be sent to.
* :class:`IDTokenProxy` stands in front of the mock and re-signs its ID tokens with its own key, so a
  test can give a token claims the mock cannot (an issuer with a path, an expired ``exp``, another
  audience) or tamper with it after signing.
* :func:`login_app` is a Flask app with the two routes the core provides (``/login`` and
  ``/callback``), for driving any :class:`~tfregistry.interfaces.AuthProvider` with Flask's test
  client, which keeps the session cookie like a browser; :class:`Browser` walks through it.

A session-scoped fixture is three lines::

    @pytest.fixture(scope="session")
    def oidc_mock():
        with OIDCMock() as mock:
            yield mock

Nothing here imports pytest or the mock's Python package (it runs as ``python -m oidc_provider_mock``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any
from urllib.parse import quote, urlsplit

import flask
import requests
from joserfc import jws, jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tfregistry.interfaces import AuthProvider, LoginError

__all__ = ["Browser", "IDTokenProxy", "OIDCMock", "deny", "free_port", "login_app", "sign_in"]

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (nor, without a race, soon after)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _redirect_location(response: requests.Response, what: str) -> str:
    if response.status_code not in (302, 303) or "Location" not in response.headers:
        raise RuntimeError(f"the mock identity provider did not redirect after {what}: HTTP {response.status_code} "
                           f"{response.text[:500]}")
    return response.headers["Location"]


def sign_in(authorize_url: str, sub: str, *, timeout: float = 10.0) -> str:
    """Sign in as ``sub`` on the mock's authorization form; return the callback URL (code and state).

    :param authorize_url: the ``Location`` of the provider's ``begin_login`` redirect.
    :param sub: the subject to sign in as; define its claims first with :meth:`OIDCMock.add_user`
        (an unknown subject gets ``{"email": sub}``).
    """
    response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=timeout)
    return _redirect_location(response, "signing in")


def deny(authorize_url: str, *, timeout: float = 10.0) -> str:
    """Press the mock's *Deny* button; return the callback URL (``error=access_denied``)."""
    response = requests.post(authorize_url, data={"action": "deny"}, allow_redirects=False, timeout=timeout)
    return _redirect_location(response, "denying")


class OIDCMock:
    """A real ``oidc-provider-mock`` server in a subprocess; a context manager.

    The issuer is ``http://127.0.0.1:<port>`` (the mock names itself after the request's host, so
    always use this spelling, never ``localhost``).  The mock accepts any client id and secret,
    requires a nonce (``require_nonce``), does not enforce PKCE, issues ``aud`` as a list, and puts
    non-standard claims (``groups``, ``tid``...) into every ID token.
    """

    def __init__(self, *, users: Mapping[str, Mapping[str, Any]] | None = None, require_nonce: bool = True,
                 token_max_age: int | None = None, startup_timeout: float = 30.0) -> None:
        """
        :param users: subjects and their claims defined at start-up (more with :meth:`add_user`).
        :param require_nonce: refuse authorization requests without a nonce.
        :param token_max_age: lifetime of issued tokens in seconds (the mock's default: an hour).
        :param startup_timeout: seconds to wait for the discovery document to answer.
        """
        self.users = {sub: dict(claims) for sub, claims in (users or {}).items()}
        self.require_nonce = require_nonce
        self.token_max_age = token_max_age
        self.startup_timeout = startup_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def issuer(self) -> str:
        """The mock's issuer identifier (and base URL)."""
        return f"http://{HOST}:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def _command(self) -> list[str]:
        command = [sys.executable, "-m", "oidc_provider_mock", "--host", HOST, "--port", str(self.port),
                   "--require-nonce", "true" if self.require_nonce else "false"]
        if self.token_max_age is not None:
            command += ["--token-max-age", str(self.token_max_age)]
        for sub, claims in self.users.items():
            command += ["--user-claims", json.dumps({**claims, "sub": sub})]
        return command

    def log_text(self) -> str:
        """What the mock has written to stdout/stderr so far (for failure messages)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def start(self) -> OIDCMock:
        """Start the server and wait until its discovery document answers; retry on a port race."""
        last_error = ""
        for _ in range(3):
            self.port = free_port()
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
            env = {**os.environ, "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"}
            self._process = subprocess.Popen(self._command(), stdout=self._log, stderr=subprocess.STDOUT, env=env)
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                try:
                    if requests.get(self.discovery_url, timeout=1).status_code == 200:
                        return self
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            last_error = self.log_text()[-2000:]
            self.stop()
            if "address already in use" not in last_error.lower():
                break
        raise RuntimeError(f"oidc-provider-mock did not start (is the 'oidc-provider-mock' package installed?):\n"
                           f"{last_error}")

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(10)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> OIDCMock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_user(self, sub: str, claims: Mapping[str, Any]) -> None:
        """Define (or replace) the person ``sub`` and the claims their ID tokens carry."""
        response = requests.put(f"{self.issuer}/users/{quote(sub, safe='')}", json=dict(claims), timeout=10)
        if response.status_code != 204:
            raise RuntimeError(f"the mock refused user {sub!r}: HTTP {response.status_code} {response.text[:500]}")

    def sign_in(self, authorize_url: str, sub: str) -> str:
        """:func:`sign_in` as ``sub``."""
        return sign_in(authorize_url, sub)

    def deny(self, authorize_url: str) -> str:
        """:func:`deny`."""
        return deny(authorize_url)


class IDTokenProxy:
    """An OpenID provider in front of an :class:`OIDCMock` that re-signs its ID tokens; a context manager.

    People still sign in on the mock (the discovery document keeps the mock's
    ``authorization_endpoint``); the proxy serves:

    * the discovery document, at any path ending in ``/.well-known/openid-configuration``, with
      ``issuer`` set to :attr:`issuer` and ``token_endpoint``/``jwks_uri`` pointing at the proxy;
    * ``/jwks``: the public part of :attr:`key` (or whatever :attr:`published_keys` holds);
    * ``/oauth2/token``: forwarded to the mock; the ID token in the answer is replaced by one with the
      same claims, ``iss`` set by :meth:`token_issuer`, passed through :attr:`rewrite_claims`, signed
      with :attr:`key`, then passed through :attr:`rewrite_token` (to tamper with the signed token).

    :param issuer: the issuer; ``{url}`` is replaced by the proxy's base URL.  A ``{tenantid}`` in it is
        kept in the discovery document and replaced by each token's ``tid`` claim in its ``iss``, as
        Microsoft Entra ID's multi-tenant metadata does.
    """

    def __init__(self, upstream: OIDCMock, *, issuer: str = "{url}",
                 rewrite_claims: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 rewrite_token: Callable[[str], str] | None = None) -> None:
        self.upstream = upstream
        self.issuer_template = issuer
        self.rewrite_claims = rewrite_claims
        self.rewrite_token = rewrite_token
        self.key = RSAKey.generate_key(2048, parameters={"kid": "proxy-key-1", "use": "sig", "alg": "RS256"})
        #: The keys published at ``/jwks`` (by default :attr:`key`).
        self.published_keys: list[RSAKey] = [self.key]
        #: The form fields and ``Authorization`` header of every token request received.
        self.token_requests: list[dict[str, Any]] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://{HOST}:{self._server.server_port}"

    @property
    def issuer(self) -> str:
        """The issuer the discovery document names (may contain ``{tenantid}``)."""
        return self.issuer_template.replace("{url}", self.url)

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def token_issuer(self, claims: Mapping[str, Any]) -> str:
        """The ``iss`` given to a re-signed token: :attr:`issuer` with ``{tenantid}`` set from ``tid``."""
        return self.issuer.replace("{tenantid}", str(claims.get("tid", "")))

    def sign(self, claims: Mapping[str, Any], key: RSAKey | None = None, *, alg: str = "RS256") -> str:
        """A compact JWT of ``claims`` signed with ``key`` (default :attr:`key`), its ``kid`` in the header."""
        key = key or self.key
        header = {"alg": alg, "typ": "JWT"}
        if key.kid:
            header["kid"] = key.kid
        return jwt.encode(header, dict(claims), key)

    def start(self) -> IDTokenProxy:
        self._server = make_server(HOST, 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(5)
            self._server = None

    def __enter__(self) -> IDTokenProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            if request.path.endswith("/.well-known/openid-configuration"):
                response = self._discovery()
            elif request.path == "/jwks":
                keys = KeySet(list(self.published_keys)).as_dict(private=False)
                response = Response(json.dumps(keys), content_type="application/json")
            elif request.path == "/oauth2/token" and request.method == "POST":
                response = self._token(request)
            else:
                response = Response("not found", status=404)
        except Exception as exc:  # a test helper: report, do not hang the client
            response = Response(f"proxy error: {exc!r}", status=502)
        return response(environ, start_response)

    def _discovery(self) -> Response:
        document = requests.get(self.upstream.discovery_url, timeout=10).json()
        document.update(issuer=self.issuer, token_endpoint=f"{self.url}/oauth2/token", jwks_uri=f"{self.url}/jwks")
        return Response(json.dumps(document), content_type="application/json")

    def _token(self, request: Request) -> Response:
        form = list(request.form.items(multi=True))
        headers = {}
        if request.headers.get("Authorization"):
            headers["Authorization"] = request.headers["Authorization"]
        self.token_requests.append({"form": dict(form), "authorization": headers.get("Authorization")})
        upstream = requests.post(f"{self.upstream.issuer}/oauth2/token", data=form, headers=headers, timeout=10)
        body = upstream.json()
        if upstream.status_code == 200 and isinstance(body.get("id_token"), str):
            claims = json.loads(jws.extract_compact(body["id_token"].encode()).payload)
            claims["iss"] = self.token_issuer(claims)
            if self.rewrite_claims is not None:
                claims = self.rewrite_claims(claims)
            token = self.sign(claims)
            if self.rewrite_token is not None:
                token = self.rewrite_token(token)
            body["id_token"] = token
        return Response(json.dumps(body), status=upstream.status_code, content_type="application/json")


def login_app(provider: AuthProvider, *, secret_key: str = "tfregistry-auth-oidc-tests") -> flask.Flask:
    """A Flask app with the routes the core gives a provider: ``GET /login`` and ``GET /callback``.

    ``/login`` returns ``provider.begin_login(<callback URL>)``; ``/callback`` returns the
    :class:`~tfregistry.interfaces.ExternalIdentity` of ``provider.finish_login`` as JSON (grants as
    lists), or ``{"error": message}`` with status 400 on :class:`~tfregistry.interfaces.LoginError`.
    The callback URL is ``http://localhost/callback`` with Flask's test client.
    """
    app = flask.Flask(__name__)
    app.secret_key = secret_key

    def callback_url() -> str:
        return flask.url_for("callback", _external=True)

    @app.get("/login")
    def login() -> Any:
        try:
            return provider.begin_login(callback_url())
        except LoginError as exc:
            return {"error": str(exc)}, 400

    @app.get("/callback")
    def callback() -> Any:
        try:
            identity = provider.finish_login(callback_url())
        except LoginError as exc:
            return {"error": str(exc)}, 400
        result = asdict(identity)
        result["grants"] = None if identity.grants is None else [list(g) for g in identity.grants]
        return result

    return app


class Browser:
    """A person at a browser: Flask's test client on :func:`login_app` (keeping its session cookie) and the mock.

    ``Browser(provider, mock).sign_in("alice")`` runs the whole flow and returns the ``/callback``
    response (JSON identity, or 400 with ``{"error": ...}``); :meth:`start` and :meth:`callback` are
    its two halves, for tests that tamper with what passes between them.
    """

    def __init__(self, provider: AuthProvider, mock: OIDCMock) -> None:
        self.provider = provider
        self.mock = mock
        self.app = login_app(provider)
        self.client = self.app.test_client()

    def start(self) -> str:
        """``GET /login``; return the authorization URL it redirects to."""
        response = self.client.get("/login")
        if response.status_code != 302:
            raise RuntimeError(f"/login did not redirect: HTTP {response.status_code} {response.get_data(True)}")
        return str(response.headers["Location"])

    def callback(self, url: str) -> Any:
        """Follow the identity provider's redirect (an absolute callback URL) back to ``/callback``."""
        parts = urlsplit(url)
        return self.client.get(f"{parts.path}?{parts.query}")

    def sign_in(self, sub: str) -> Any:
        """The whole flow as ``sub``: ``/login``, the mock's form, ``/callback``; returns the callback response."""
        return self.callback(self.mock.sign_in(self.start(), sub))

