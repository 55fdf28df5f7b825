"""The ``github`` SCM provider: GitHub's REST API and its signed webhooks.

API reference (version ``2022-11-28``), the only calls made:

* ``GET /user`` — https://docs.github.com/en/rest/users/users#get-the-authenticated-user
* ``GET /user/repos`` — https://docs.github.com/en/rest/repos/repos#list-repositories-for-the-authenticated-user
* ``GET /repos/{owner}/{repo}`` — https://docs.github.com/en/rest/repos/repos#get-a-repository
* ``GET /repos/{owner}/{repo}/tags`` — https://docs.github.com/en/rest/repos/repos#list-repository-tags
  (each tag's ``commit.sha`` is the commit, annotated tags included)
* ``POST``/``DELETE /repos/{owner}/{repo}/hooks`` —
  https://docs.github.com/en/rest/repos/webhooks#create-a-repository-webhook
* pagination through the ``Link`` header — https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api

Webhooks: ``push`` events (tags are pushes of ``refs/tags/...``), verified with
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`` —
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries — and de-duplicated by
``X-GitHub-Delivery``; payload fields ``ref``, ``before``, ``after``, ``created``, ``deleted``,
``repository.full_name`` — https://docs.github.com/en/webhooks/webhook-events-and-payloads#push
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests

from tfregistry.interfaces import (
    ZERO_SHA,
    OAuthEndpoints,
    ScmCredentials,
    ScmError,
    ScmProvider,
    ScmRepository,
    ScmTag,
    WebhookEvent,
    WebhookRequest,
    api_request,
    check_hmac_sha256,
    link_header_pages,
    missing_is_fine,
    ref_update_event,
)

#: github.com's API; a GitHub Enterprise Server connection sets ``base_url`` to ``https://HOST/api/v3``.
GITHUB_API = "https://api.github.com"
API_VERSION = "2022-11-28"
#: Most pages followed in one listing (100 items a page).
MAX_PAGES = 50


class GitHubScm(ScmProvider):
    """github.com, or GitHub Enterprise Server when the connection's ``base_url`` is its API URL."""

    name = "github"
    label = "GitHub"
    auth_methods = ("token",)
    supports_webhooks = True
    secret_headers = ("x-hub-signature-256", "x-hub-signature")

    def __init__(self, timeout: float = 30.0, *, oauth_client_id: str = "", oauth_client_secret: str = "") -> None:
        self.timeout = timeout
        self.oauth_client_id = oauth_client_id
        self.oauth_client_secret = oauth_client_secret
        if oauth_client_id:
            self.auth_methods = ("token", "oauth")

    def oauth_endpoints(self, base_url: str | None) -> OAuthEndpoints | None:
        """The OAuth app endpoints of github.com, or of the GitHub Enterprise Server whose API is
        ``base_url`` (``https://HOST/api/v3`` -> ``https://HOST/login/oauth/...``), from
        https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps
        (PKCE S256 is accepted there:
        https://github.blog/changelog/2025-07-14-pkce-support-for-oauth-and-github-app-authentication).
        Scopes ``repo`` (read private repositories and tags) and
        ``admin:repo_hook`` (create and delete the webhook), from
        https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps.
        Tokens of an OAuth app do not expire; a GitHub App's user tokens expire after 8 hours and
        come with a refresh token, which the core uses."""
        if not self.oauth_client_id:
            return None
        api = (base_url or GITHUB_API).rstrip("/")
        site = "https://github.com" if api == GITHUB_API else api.removesuffix("/api/v3")
        return OAuthEndpoints(authorize_url=f"{site}/login/oauth/authorize",
                              token_url=f"{site}/login/oauth/access_token", scopes=("repo", "admin:repo_hook"),
                              client_id=self.oauth_client_id, client_secret=self.oauth_client_secret)

    # --- REST -------------------------------------------------------------------------------

    def _api(self, credentials: ScmCredentials) -> str:
        return (credentials.base_url or GITHUB_API).rstrip("/")

    def _request(self, credentials: ScmCredentials, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith(("https://", "http://")) else self._api(credentials) + path
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
                   "Authorization": f"Bearer {credentials.token}", "User-Agent": "tfregistry-scm-github"}
        return api_request("GitHub API", method, url, headers=headers, timeout=self.timeout,
                           shown_path=path.split("?")[0], **kwargs)

    def _pages(self, credentials: ScmCredentials, path: str) -> list[dict[str, Any]]:
        return link_header_pages(lambda url: self._request(credentials, "GET", url),
                                 path + ("&" if "?" in path else "?") + "per_page=100", MAX_PAGES)

    @staticmethod
    def _repo(data: dict[str, Any]) -> ScmRepository:
        return ScmRepository(id=data["full_name"], name=data["full_name"], clone_url=data["clone_url"],
                             web_url=data.get("html_url"), default_branch=data.get("default_branch"))

    @staticmethod
    def _path(repository: str) -> str:
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise ScmError(f"a GitHub repository is owner/name, not {repository!r}")
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def check_credentials(self, credentials: ScmCredentials) -> str:
        return str(self._request(credentials, "GET", "/user").json().get("login", ""))

    def list_repositories(self, credentials: ScmCredentials) -> list[ScmRepository]:
        return [self._repo(r) for r in self._pages(credentials, "/user/repos?sort=full_name")]

    def get_repository(self, credentials: ScmCredentials, repository: str) -> ScmRepository:
        return self._repo(self._request(credentials, "GET", self._path(repository)).json())

    def list_tags(self, credentials: ScmCredentials, repository: str) -> list[ScmTag]:
        return [ScmTag(t["name"], t["commit"]["sha"]) for t in self._pages(credentials,
                                                                           self._path(repository) + "/tags")]

    def clone_url(self, credentials: ScmCredentials, repository: str) -> str:
        return self.get_repository(credentials, repository).clone_url

    def create_webhook(self, credentials: ScmCredentials, repository: str, url: str, secret: str) -> str:
        body = {"name": "web", "active": True, "events": ["push"],
                "config": {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"}}
        return str(self._request(credentials, "POST", self._path(repository) + "/hooks", json=body).json()["id"])

    def delete_webhook(self, credentials: ScmCredentials, repository: str, hook_id: str) -> None:
        with missing_is_fine():
            self._request(credentials, "DELETE", f"{self._path(repository)}/hooks/{quote(hook_id, safe='')}")

    # --- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        check_hmac_sha256(request, "X-Hub-Signature-256", secret)

    def delivery_id(self, request: WebhookRequest) -> str | None:
        return request.header("X-GitHub-Delivery")

    def parse_webhook(self, request: WebhookRequest) -> list[WebhookEvent]:
        if request.header("X-GitHub-Event") != "push":
            return []  # ping and anything else
        payload = json.loads(request.body)
        before, after = payload.get("before") or ZERO_SHA, payload.get("after") or ZERO_SHA
        if payload.get("deleted"):
            after = ZERO_SHA
        elif payload.get("created"):
            before = ZERO_SHA
        event = ref_update_event(payload["repository"]["full_name"], payload["ref"], before, after,
                                 delivery_id=self.delivery_id(request))
        return [event] if event is not None else []
