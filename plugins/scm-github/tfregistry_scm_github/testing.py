"""Test kit: a fake GitHub REST API at the HTTP boundary, over real git repositories.

GitHub cannot run here, so :class:`FakeGitHub` answers the few REST calls the provider makes, shaped as
GitHub's REST documentation describes them (links in :mod:`tfregistry_scm_github.provider`), and
nothing else (any other route is 404 ``{"message": "Not Found"}``):

* ``GET /user`` — ``{"login": ...}``; a missing or unknown token is 401 ``{"message": "Bad credentials"}``;
* ``GET /user/repos`` and ``GET /repos/{owner}/{repo}`` — repository objects (``id``, ``name``,
  ``full_name``, ``private``, ``owner.login``, ``html_url``, ``clone_url``, ``default_branch``);
* ``GET /repos/{owner}/{repo}/tags`` — ``[{"name", "commit": {"sha", "url"}, "zipball_url", "tarball_url",
  "node_id"}]``, read from the real repository (annotated tags peeled to their commit);
* ``POST /repos/{owner}/{repo}/hooks`` (201, the hook object; the secret is never echoed) and
  ``DELETE /repos/{owner}/{repo}/hooks/{id}`` (204, 404 when gone);
* pagination with ``per_page``/``page`` and a ``Link: <...>; rel="next"`` header.

``clone_url`` points at the same repository served by ``git http-backend``
(:class:`tfregistry.testing.git.GitHttpServer`) behind HTTP Basic ``x-access-token:<token>``, as
GitHub accepts tokens for git over https.  :meth:`FakeGitHub.push_delivery` builds the ``push`` webhook
delivery GitHub would send for a tag (headers ``X-GitHub-Event``, ``X-GitHub-Delivery``,
``X-Hub-Signature-256``; body fields ``ref``, ``before``, ``after``, ``created``, ``deleted``, ``forced``,
``repository``), from https://docs.github.com/en/webhooks/webhook-events-and-payloads#push and
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries.

With ``oauth_client=(client_id, client_secret)``, the OAuth web flow as
https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps and
https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
describe it (served on the site root, as ``https://github.com/login/oauth/...``):

* ``GET /login/oauth/authorize`` (``client_id``, ``redirect_uri``, ``scope``, ``state``, ``code_challenge``,
  ``code_challenge_method``): the person approves at once; 302 to ``redirect_uri?code=...&state=...``
  (an unknown ``client_id`` is 404, as on GitHub);
* ``POST /login/oauth/access_token`` (form: ``client_id``, ``client_secret``, ``code``, ``redirect_uri``,
  ``code_verifier``; or ``grant_type=refresh_token`` with ``refresh_token``): JSON ``access_token``,
  ``token_type`` ``bearer``, ``scope``, and with expiring tokens ``expires_in``, ``refresh_token``,
  ``refresh_token_expires_in``.  Errors answer 200 with ``error`` (``incorrect_client_credentials``,
  ``redirect_uri_mismatch``, ``bad_verification_code``, ``bad_refresh_token``), ``error_description``
  and ``error_uri``, as GitHub does.  Codes and refresh tokens are single use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

from tfregistry.interfaces import ZERO_SHA
from tfregistry.testing.git import GitHttpServer, GitRepo


class FakeGitHub:
    """``with FakeGitHub(tmp_path, token="ghp_x", owner="acme") as gh: gh.create_repo("net")``.

    ``api_url`` is the connection's ``base_url`` (as for GitHub Enterprise Server's ``/api/v3``).
    ``calls`` records ``(method, path)`` of every API request; ``hooks`` the live webhooks by id.
    """

    def __init__(self, root: Path, *, token: str, owner: str = "acme",
                 oauth_client: tuple[str, str] | None = None, oauth_expires_in: int | None = 28800) -> None:
        self.token = token
        #: Every access token the API accepts (``token`` and those the OAuth flow issued).
        self.tokens = {token}
        self.oauth_client = oauth_client
        #: ``expires_in`` of issued tokens (``None``: non-expiring OAuth app tokens, no refresh token).
        self.oauth_expires_in = oauth_expires_in
        #: ``code`` -> what the authorization request carried; live refresh tokens.
        self.oauth_codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.owner = owner
        self.git = GitHttpServer(Path(root) / "git", credentials=("x-access-token", token))
        self.repos: dict[str, GitRepo] = {}
        self.hooks: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._ids = itertools.count(1000)
        self._app = self._build()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v3"

    def __enter__(self) -> FakeGitHub:
        self.git.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self.git.__exit__(*exc)

    def create_repo(self, name: str) -> GitRepo:
        full = f"{self.owner}/{name}"
        self.repos[full] = self.git.create_repo(full)
        return self.repos[full]

    # --- webhook deliveries -----------------------------------------------------------------

    def push_delivery(self, hook_secret: str, repo: str, tag: str, before: str, after: str,
                      delivery: str | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and body of the ``push`` delivery for ``refs/tags/<tag>`` moving ``before`` -> ``after``."""
        full = f"{self.owner}/{repo}"
        body = json.dumps({
            "ref": f"refs/tags/{tag}", "before": before, "after": after, "created": before == ZERO_SHA,
            "deleted": after == ZERO_SHA, "forced": before != ZERO_SHA and after != ZERO_SHA, "base_ref": None,
            "compare": f"https://github.com/{full}/compare/{before[:12]}...{after[:12]}", "commits": [],
            "head_commit": None, "repository": self._repo_json(full),
            "pusher": {"name": self.owner, "email": None}, "sender": {"login": self.owner},
        }).encode()
        signature = "sha256=" + hmac.new(hook_secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                   "X-Hub-Signature-256": signature, "Content-Type": "application/json",
                   "User-Agent": "GitHub-Hookshot/fake"}
        return headers, body

    # --- the API ------------------------------------------------------------------------------

    def _repo_json(self, full: str) -> dict[str, Any]:
        owner, name = full.split("/")
        return {"id": abs(hash(full)) % 10**8, "node_id": "R_" + name, "name": name, "full_name": full,
                "private": True, "owner": {"login": owner, "type": "Organization"},
                "html_url": f"https://github.example/{full}", "clone_url": self.git.repo_url(full),
                "default_branch": "main"}

    def _tags(self, full: str) -> list[dict[str, Any]]:
        out = subprocess.run(["git", "--git-dir", str(self.repos[full].bare), "for-each-ref",
                              "--sort=-creatordate", "--format=%(refname:strip=2) %(objectname) %(*objectname)",
                              "refs/tags"], capture_output=True, text=True, check=True).stdout
        tags = []
        for line in out.splitlines():
            name, sha, *peeled = line.split(" ")
            commit = peeled[0] if peeled and peeled[0] else sha
            commit_url = f"{self.api_url}/repos/{full}/commits/{commit}"
            tags.append({"name": name, "commit": {"sha": commit, "url": commit_url},
                         "zipball_url": f"{self.api_url}/repos/{full}/zipball/refs/tags/{name}",
                         "tarball_url": f"{self.api_url}/repos/{full}/tarball/refs/tags/{name}",
                         "node_id": "REF_" + name})
        return tags

    def _build(self) -> Flask:
        app = Flask("fake-github")
        fake = self

        def error(status: int, message: str) -> Any:
            response = jsonify(message=message, documentation_url="https://docs.github.com/rest")
            response.status_code = status
            return response

        def page(items: list[Any]) -> Any:
            per_page = min(int(request.args.get("per_page", 30)), 100)
            number = max(int(request.args.get("page", 1)), 1)
            response = jsonify(items[(number - 1) * per_page:number * per_page])
            if number * per_page < len(items):
                args = {**request.args, "page": str(number + 1), "per_page": str(per_page)}
                query = "&".join(f"{k}={v}" for k, v in args.items())
                response.headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
            return response

        @app.before_request
        def authenticate() -> Any:
            fake.calls.append((request.method, request.path))
            if request.path.startswith("/login/oauth/"):
                return None
            scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
            if scheme not in ("Bearer", "token") or sent not in fake.tokens:
                return error(401, "Bad credentials")
            return None

        def oauth_error(code: str, description: str) -> Any:
            # GitHub answers token errors with 200 and an error document
            return jsonify(error=code, error_description=description,
                           error_uri="https://docs.github.com/apps/managing-oauth-apps/"
                                     "troubleshooting-oauth-app-access-token-request-errors")

        def issue(scope: str) -> Any:
            access = "gho_" + uuid.uuid4().hex
            fake.tokens.add(access)
            answer: dict[str, Any] = {"access_token": access, "token_type": "bearer", "scope": scope}
            if fake.oauth_expires_in is not None:
                refresh = "ghr_" + uuid.uuid4().hex
                fake.refresh_tokens.add(refresh)
                answer |= {"expires_in": fake.oauth_expires_in, "refresh_token": refresh,
                           "refresh_token_expires_in": 15811200}
            return jsonify(answer)

        @app.get("/login/oauth/authorize")
        def oauth_authorize() -> Any:
            args = request.args
            if fake.oauth_client is None or args.get("client_id") != fake.oauth_client[0]:
                return error(404, "Not Found")
            code = uuid.uuid4().hex[:20]
            fake.oauth_codes[code] = {k: args.get(k, "") for k in ("redirect_uri", "scope", "code_challenge",
                                                                    "code_challenge_method")}
            query = urlencode({"code": code, "state": args.get("state", "")})
            return redirect(f"{args['redirect_uri']}?{query}", 302)

        @app.post("/login/oauth/access_token")
        def oauth_token() -> Any:
            form = request.form
            if fake.oauth_client is None or (form.get("client_id"), form.get("client_secret")) != fake.oauth_client:
                return oauth_error("incorrect_client_credentials",
                                   "The client_id and/or client_secret passed are incorrect.")
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") not in fake.refresh_tokens:
                    return oauth_error("bad_refresh_token", "The refresh token passed is incorrect or expired.")
                fake.refresh_tokens.discard(form["refresh_token"])
                return issue("repo,admin:repo_hook")
            grant = fake.oauth_codes.pop(form.get("code", ""), None)
            if grant is None:
                return oauth_error("bad_verification_code", "The code passed is incorrect or expired.")
            if form.get("redirect_uri") and form["redirect_uri"] != grant["redirect_uri"]:
                return oauth_error("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback "
                                   "URL for this application.")
            if grant["code_challenge"]:
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["code_challenge"]:
                    return oauth_error("bad_verification_code", "The code passed is incorrect or expired.")
            return issue(grant["scope"].replace(" ", ","))

        @app.get("/api/v3/user")
        def user() -> Any:
            return jsonify(login=fake.owner, id=1, type="User")

        @app.get("/api/v3/user/repos")
        def user_repos() -> Any:
            return page([fake._repo_json(full) for full in sorted(fake.repos)])

        @app.get("/api/v3/repos/<owner>/<name>")
        def repo(owner: str, name: str) -> Any:
            full = f"{owner}/{name}"
            return jsonify(fake._repo_json(full)) if full in fake.repos else error(404, "Not Found")

        @app.get("/api/v3/repos/<owner>/<name>/tags")
        def tags(owner: str, name: str) -> Any:
            full = f"{owner}/{name}"
            return page(fake._tags(full)) if full in fake.repos else error(404, "Not Found")

        @app.post("/api/v3/repos/<owner>/<name>/hooks")
        def create_hook(owner: str, name: str) -> Any:
            full = f"{owner}/{name}"
            if full not in fake.repos:
                return error(404, "Not Found")
            body = request.get_json(silent=True) or {}
            config = body.get("config") or {}
            if not config.get("url"):
                return error(422, "Validation Failed")
            hook_id = next(fake._ids)
            fake.hooks[hook_id] = {"repo": full, "events": body.get("events", ["push"]), **config}
            shown = {k: v for k, v in config.items() if k != "secret"} | ({"secret": "********"}
                                                                          if "secret" in config else {})
            response = jsonify(type="Repository", id=hook_id, name="web", active=body.get("active", True),
                               events=body.get("events", ["push"]), config=shown,
                               url=f"{fake.api_url}/repos/{full}/hooks/{hook_id}")
            response.status_code = 201
            return response

        @app.delete("/api/v3/repos/<owner>/<name>/hooks/<int:hook_id>")
        def delete_hook(owner: str, name: str, hook_id: int) -> Any:
            if fake.hooks.get(hook_id, {}).get("repo") != f"{owner}/{name}":
                return error(404, "Not Found")
            del fake.hooks[hook_id]
            return "", 204

        @app.errorhandler(404)
        def not_found(_exc: Any) -> Any:
            return error(404, "Not Found")

        return app
