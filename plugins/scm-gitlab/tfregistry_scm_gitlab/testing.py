"""Test kit: a fake GitLab REST API v4 at the HTTP boundary, over real git repositories.

GitLab cannot run here, so :class:`FakeGitLab` answers the few REST calls the provider makes, shaped as
GitLab's REST documentation describes them (links in :mod:`tfregistry_scm_gitlab.provider`), and nothing
else (any other route is 404 ``{"message": "404 Not Found"}``):

* ``GET /user`` — ``{"id", "username", "name", "state"}``; a missing or unknown token is 401
  ``{"message": "401 Unauthorized"}`` (https://docs.gitlab.com/api/rest/troubleshooting/#status-codes);
* ``GET /projects`` and ``GET /projects/:id`` (``:id`` the URL-encoded path) — project objects (``id``,
  ``name``, ``path``, ``path_with_namespace``, ``web_url``, ``http_url_to_repo``, ``default_branch``),
  404 ``{"message": "404 Project Not Found"}``;
* ``GET /projects/:id/repository/tags[/:tag_name]`` — ``{"name", "message", "target", "commit": {"id",
  "short_id", "title"}, "release", "protected"}`` read from the real repository (``target`` the tag object,
  ``commit.id`` the commit); 404 ``{"message": "404 Tag Not Found"}``;
* ``POST /projects/:id/hooks`` (201, the hook object; ``token`` and ``signing_token`` never returned) and
  ``DELETE /projects/:id/hooks/:hook_id`` (204, 404 when gone);
* pagination with ``per_page``/``page`` and ``Link: <...>; rel="next"`` (https://docs.gitlab.com/api/rest/#pagination).

``http_url_to_repo`` points at the same repository served by ``git http-backend``
(:class:`tfregistry.testing.git.GitHttpServer`) behind HTTP Basic ``oauth2:<token>``.
:meth:`FakeGitLab.tag_push_delivery` builds the ``Tag Push Hook`` delivery GitLab sends (headers and
body from https://docs.gitlab.com/user/project/integrations/webhook_events/#tag-events and
https://docs.gitlab.com/user/project/integrations/webhooks/#delivery-headers; the signing-token headers
from https://gitlab.com/gitlab-org/gitlab/-/merge_requests/230944).

With ``oauth_client=(application_id, secret)``, the OAuth 2.0 authorization code flow with PKCE as
https://docs.gitlab.com/api/oauth2/ describes it (served on the site root, as ``https://gitlab.com/oauth/...``):

* ``GET /oauth/authorize`` (``client_id``, ``redirect_uri``, ``response_type=code``, ``state``, ``scope``,
  ``code_challenge``, ``code_challenge_method``): the person approves at once; 302 to
  ``redirect_uri?code=...&state=...`` (an unknown ``client_id`` is refused, 401 ``invalid_client``);
* ``POST /oauth/token`` (form: ``client_id``, ``client_secret``, ``code``, ``grant_type=authorization_code``,
  ``redirect_uri``, ``code_verifier``; or ``grant_type=refresh_token`` with ``refresh_token``): JSON
  ``access_token``, ``token_type`` ``Bearer``, ``expires_in`` (7200: access tokens expire after two hours),
  ``refresh_token``, ``scope``, ``created_at``.  Errors are RFC 6749 section 5.2 documents: 401
  ``invalid_client``, 400 ``invalid_grant`` (unknown or used code, PKCE or redirect URI mismatch, revoked
  refresh token).  Codes are single use; a refresh revokes the refresh token it used and issues a new one.

Issued access tokens work for the API (``Authorization: Bearer``) and for git over https as
``oauth2:<token>`` (https://docs.gitlab.com/api/oauth2/#access-git-over-https-with-access-token).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request

from tfregistry.testing.git import GitRepo
from tfregistry.testing.scm_api import FakeScmApi
from tfregistry_scm_gitlab.provider import standard_webhook_signature


class FakeGitLab(FakeScmApi):
    """``with FakeGitLab(tmp_path, token="glpat-x", group="acme") as gl: gl.create_repo("net")``.

    ``api_url`` is the connection's ``base_url`` (as for a self-managed ``https://HOST/api/v4``).
    ``calls`` records ``(method, path)`` of every API request; ``hooks`` the live webhooks by id, with
    the ``token`` and ``signing_token`` they were created with.
    """

    def __init__(self, root: Path, *, token: str, group: str = "acme",
                 oauth_client: tuple[str, str] | None = None, oauth_expires_in: int = 7200) -> None:
        self.token = token
        #: Every access token the API accepts (``token`` and those the OAuth flow issued).
        self.tokens = {token}
        self.oauth_client = oauth_client
        #: ``expires_in`` of issued access tokens (GitLab: two hours).
        self.oauth_expires_in = oauth_expires_in
        #: ``code`` -> what the authorization request carried; live refresh tokens.
        self.oauth_codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.group = group
        self._ids = itertools.count(1)
        super().__init__(root, git_credentials=("oauth2", token))

    @property
    def site_url(self) -> str:
        """The instance's root (``https://gitlab.com``), where ``/oauth/...`` lives."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v4"

    def create_repo(self, name: str) -> GitRepo:
        full = f"{self.group}/{name}"
        self.repos[full] = self.git.create_repo(full)
        return self.repos[full]

    # --- webhook deliveries -----------------------------------------------------------------

    def tag_push_delivery(self, token: str | None, repo: str, tag: str, before: str, after: str, *,
                          signing_token: str | None = None, delivery: str | None = None,
                          timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and body of the ``Tag Push Hook`` delivery for ``refs/tags/<tag>`` going ``before`` ->
        ``after``, with ``X-Gitlab-Token: token`` (none when ``None``) and, given a ``signing_token``, the
        ``webhook-id``/``webhook-timestamp``/``webhook-signature`` headers."""
        full = f"{self.group}/{repo}"
        project = self._project_json(full)
        body = json.dumps({
            "object_kind": "tag_push", "event_name": "tag_push", "before": before, "after": after,
            "ref": f"refs/tags/{tag}", "ref_protected": False, "checkout_sha": after, "user_id": 1,
            "user_name": "Bot", "user_username": "bot", "user_email": "", "user_avatar": None,
            "project_id": project["id"],
            "project": {"id": project["id"], "name": project["name"], "description": "",
                        "web_url": project["web_url"], "avatar_url": None,
                        "git_ssh_url": f"git@gitlab.example:{full}.git", "git_http_url": project["http_url_to_repo"],
                        "namespace": self.group, "visibility_level": 0, "path_with_namespace": full,
                        "default_branch": "main"},
            "commits": [], "total_commits_count": 0,
            "repository": {"name": project["name"], "url": f"git@gitlab.example:{full}.git", "description": "",
                           "homepage": project["web_url"]},
        }).encode()
        delivery = delivery or str(uuid.uuid4())
        headers = {"Content-Type": "application/json", "User-Agent": "GitLab/18.6.0", "X-Gitlab-Event": "Tag Push Hook",
                   "X-Gitlab-Event-UUID": str(uuid.uuid4()), "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
                   "X-Gitlab-Instance": "https://gitlab.example", "Idempotency-Key": delivery}
        if token is not None:
            headers["X-Gitlab-Token"] = token
        if signing_token is not None:
            stamp = str(int(time.time()) if timestamp is None else timestamp)
            headers |= {"webhook-id": delivery, "webhook-timestamp": stamp,
                        "webhook-signature": standard_webhook_signature(signing_token, delivery, stamp, body)}
        return headers, body

    # --- the API ------------------------------------------------------------------------------

    def _project_json(self, full: str) -> dict[str, Any]:
        name = full.rsplit("/", 1)[1]
        return {"id": abs(hash(full)) % 10**6, "name": name, "path": name, "path_with_namespace": full,
                "name_with_namespace": full.replace("/", " / "), "namespace": {"path": self.group},
                "web_url": f"https://gitlab.example/{full}", "http_url_to_repo": self.git.repo_url(full),
                "ssh_url_to_repo": f"git@gitlab.example:{full}.git", "default_branch": "main",
                "visibility": "private"}

    def _tags(self, full: str) -> list[dict[str, Any]]:
        return [{"name": name, "message": "", "target": target,
                 "commit": {"id": commit or target, "short_id": (commit or target)[:8], "title": "change"},
                 "release": None, "protected": False, "created_at": None}
                for name, target, commit in self.tag_refs(full)]

    def _find(self, project: str) -> str | None:
        return project if project in self.repos else None

    def _build(self) -> Flask:
        app = Flask("fake-gitlab")
        fake = self

        def error(status: int, message: str) -> Any:
            response = jsonify(message=message)
            response.status_code = status
            return response

        def page(items: list[Any]) -> Any:
            per_page = min(int(request.args.get("per_page", 20)), 100)
            number = max(int(request.args.get("page", 1)), 1)
            response = jsonify(items[(number - 1) * per_page:number * per_page])
            response.headers["X-Total"] = str(len(items))
            if number * per_page < len(items):
                args = {**request.args, "page": str(number + 1), "per_page": str(per_page)}
                query = "&".join(f"{k}={v}" for k, v in args.items())
                response.headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
            return response

        @app.before_request
        def authenticate() -> Any:
            fake.calls.append((request.method, request.path))
            if request.path.startswith("/oauth/"):
                return None
            scheme, _, sent = (request.headers.get("Authorization") or "").partition(" ")
            if not (scheme == "Bearer" and sent in fake.tokens) and request.headers.get("PRIVATE-TOKEN") != fake.token:
                return error(401, "401 Unauthorized")
            return None

        def oauth_error(status: int, code: str, description: str) -> Any:
            response = jsonify(error=code, error_description=description)
            response.status_code = status
            return response

        def issue(scope: str) -> Any:
            access, refresh = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
            fake.tokens.add(access)
            fake.git.authorizations.add("Basic " + base64.b64encode(f"oauth2:{access}".encode()).decode())
            fake.refresh_tokens.add(refresh)
            return jsonify(access_token=access, token_type="Bearer", expires_in=fake.oauth_expires_in,
                           refresh_token=refresh, scope=scope, created_at=int(time.time()))

        invalid_grant = ("The provided authorization grant is invalid, expired, revoked, does not match the "
                         "redirection URI used in the authorization request, or was issued to another client.")

        @app.get("/oauth/authorize")
        def oauth_authorize() -> Any:
            args = request.args
            if fake.oauth_client is None or args.get("client_id") != fake.oauth_client[0]:
                return oauth_error(401, "invalid_client", "Client authentication failed due to unknown client, "
                                   "no client authentication included, or unsupported authentication method.")
            code = uuid.uuid4().hex * 2
            fake.oauth_codes[code] = {k: args.get(k, "") for k in ("redirect_uri", "scope", "code_challenge",
                                                                    "code_challenge_method")}
            return redirect(f"{args['redirect_uri']}?{urlencode({'code': code, 'state': args.get('state', '')})}", 302)

        @app.post("/oauth/token")
        def oauth_token() -> Any:
            form = request.form
            if fake.oauth_client is None or (form.get("client_id"), form.get("client_secret")) != fake.oauth_client:
                return oauth_error(401, "invalid_client", "Client authentication failed due to unknown client, "
                                   "no client authentication included, or unsupported authentication method.")
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") not in fake.refresh_tokens:
                    return oauth_error(400, "invalid_grant", invalid_grant)
                fake.refresh_tokens.discard(form["refresh_token"])
                return issue("api read_repository")
            if form.get("grant_type") != "authorization_code":
                return oauth_error(400, "unsupported_grant_type", "The authorization grant type is not supported "
                                   "by the authorization server.")
            grant = fake.oauth_codes.pop(form.get("code", ""), None)
            if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
                return oauth_error(400, "invalid_grant", invalid_grant)
            if grant["code_challenge"]:
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["code_challenge"]:
                    return oauth_error(400, "invalid_grant", invalid_grant)
            return issue(grant["scope"])

        @app.get("/api/v4/user")
        def user() -> Any:
            return jsonify(id=1, username="bot", name="Bot", state="active")

        @app.get("/api/v4/projects")
        def projects() -> Any:
            return page([fake._project_json(full) for full in sorted(fake.repos)])

        @app.get("/api/v4/projects/<path:project>")
        def project(project: str) -> Any:
            return jsonify(fake._project_json(project)) if fake._find(project) else error(404, "404 Project Not Found")

        @app.get("/api/v4/projects/<path:project>/repository/tags/<tag>")
        def tag(project: str, tag: str) -> Any:
            if fake._find(project) is None:
                return error(404, "404 Project Not Found")
            found = [t for t in fake._tags(project) if t["name"] == tag]
            return jsonify(found[0]) if found else error(404, "404 Tag Not Found")

        @app.get("/api/v4/projects/<path:project>/repository/tags")
        def tags(project: str) -> Any:
            return page(fake._tags(project)) if fake._find(project) else error(404, "404 Project Not Found")

        @app.post("/api/v4/projects/<path:project>/hooks")
        def create_hook(project: str) -> Any:
            if fake._find(project) is None:
                return error(404, "404 Project Not Found")
            body = request.get_json(silent=True) or {}
            if not body.get("url"):
                return error(400, "url is missing")
            hook_id = next(fake._ids)
            fake.hooks[hook_id] = {"project": project, **body}
            shown = {k: v for k, v in body.items() if k not in ("token", "signing_token")}
            response = jsonify(id=hook_id, project_id=fake._project_json(project)["id"], **shown,
                               token_present=bool(body.get("token")),
                               signing_token_present=bool(body.get("signing_token")))
            response.status_code = 201
            return response

        @app.delete("/api/v4/projects/<path:project>/hooks/<int:hook_id>")
        def delete_hook(project: str, hook_id: int) -> Any:
            if fake.hooks.get(hook_id, {}).get("project") != project:
                return error(404, "404 Not Found")
            del fake.hooks[hook_id]
            return "", 204

        @app.errorhandler(404)
        def not_found(_exc: Any) -> Any:
            return error(404, "404 Not Found")

        return app

