"""The ``gitlab`` SCM provider: GitLab's REST API v4 and its tag push webhooks.

API reference, the only calls made (``Authorization: Bearer <token>``, which GitLab accepts for personal,
project, group and OAuth tokens — https://docs.gitlab.com/api/rest/authentication/):

* ``GET /user`` — https://docs.gitlab.com/api/users/#retrieve-the-current-user
* ``GET /projects?membership=true`` — https://docs.gitlab.com/api/projects/#list-all-projects
* ``GET /projects/:id`` (``:id`` the URL-encoded path) — https://docs.gitlab.com/api/projects/#retrieve-a-project
* ``GET /projects/:id/repository/tags`` and ``.../tags/:tag_name`` — https://docs.gitlab.com/api/tags/
  (each tag's ``commit.id`` is the commit, annotated tags included)
* ``POST``/``DELETE /projects/:id/hooks`` — https://docs.gitlab.com/api/project_webhooks/
* pagination through the ``Link`` header — https://docs.gitlab.com/api/rest/#pagination

Webhooks — https://docs.gitlab.com/user/project/integrations/webhooks/ and
https://docs.gitlab.com/user/project/integrations/webhook_events/#tag-events: ``Tag Push Hook`` events
(``X-Gitlab-Event``), body fields ``object_kind: tag_push``, ``ref``, ``before``, ``after``,
``project.path_with_namespace``; ``before`` not zero means an existing tag was moved.  The secret token
arrives in ``X-Gitlab-Token``; repeats carry the same ``Idempotency-Key``.  When the hook has a signing
token (https://gitlab.com/gitlab-org/gitlab/-/merge_requests/230944, Standard Webhooks format), GitLab
also sends ``webhook-id`` (equal to ``Idempotency-Key``), ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}">``, keyed with
the base64 key of the ``whsec_<base64>`` signing token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from tfregistry.interfaces import (
    OAuthEndpoints,
    ScmCredentials,
    ScmError,
    ScmProvider,
    ScmRepository,
    ScmTag,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    api_request,
    link_header_pages,
    missing_is_fine,
    ref_update_event,
)

#: gitlab.com's API; a self-managed instance sets the connection's ``base_url`` to ``https://HOST/api/v4``.
GITLAB_API = "https://gitlab.com/api/v4"
#: Most pages followed in one listing (100 items a page).
MAX_PAGES = 50
#: How far ``webhook-timestamp`` may be from the time of receipt, in seconds.
SIGNATURE_WINDOW = 300


def signing_token(secret: str) -> str:
    """The ``whsec_<base64>`` signing token (a 32-byte key) the registry derives from a link's secret and
    sets on the hooks it creates; :meth:`GitLabScm.verify_webhook` checks ``webhook-signature`` with it."""
    key = hashlib.sha256(b"tfregistry-gitlab-signing-token\0" + secret.encode()).digest()
    return "whsec_" + base64.b64encode(key).decode()


def standard_webhook_signature(token: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{webhook_id}.{timestamp}.{body}`` with a ``whsec_`` signing token."""
    key = base64.b64decode(token.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class GitLabScm(ScmProvider):
    """gitlab.com, or GitLab self-managed when the connection's ``base_url`` is its API URL."""

    name = "gitlab"
    label = "GitLab"
    auth_methods = ("token",)
    supports_webhooks = True
    secret_headers = ("x-gitlab-token", "webhook-signature")

    def __init__(self, timeout: float = 30.0, *, oauth_client_id: str = "", oauth_client_secret: str = "") -> None:
        self.timeout = timeout
        self.oauth_client_id = oauth_client_id
        self.oauth_client_secret = oauth_client_secret
        if oauth_client_id:
            self.auth_methods = ("token", "oauth")

    def oauth_endpoints(self, base_url: str | None) -> OAuthEndpoints | None:
        """The OAuth 2.0 endpoints of gitlab.com, or of the self-managed instance whose API is ``base_url``
        (``https://HOST/api/v4`` -> ``https://HOST/oauth/authorize`` and ``https://HOST/oauth/token``),
        from https://docs.gitlab.com/api/oauth2/ (authorization code flow with PKCE S256; access tokens
        expire after two hours and come with a refresh token, which the core uses before expiry).
        Scopes ``api`` (the webhooks need write access to the project's hooks) and ``read_repository``
        (git over https), from https://docs.gitlab.com/integration/oauth_provider/#view-all-authorized-applications
        and https://docs.gitlab.com/user/profile/personal_access_tokens/#personal-access-token-scopes.
        Git over https uses the user ``oauth2`` with the access token (:meth:`git_http_headers`)."""
        if not self.oauth_client_id:
            return None
        site = (base_url or GITLAB_API).rstrip("/").removesuffix("/api/v4")
        return OAuthEndpoints(authorize_url=f"{site}/oauth/authorize", token_url=f"{site}/oauth/token",
                              scopes=("api", "read_repository"), client_id=self.oauth_client_id,
                              client_secret=self.oauth_client_secret)

    # --- REST -------------------------------------------------------------------------------

    def _request(self, credentials: ScmCredentials, method: str, path: str, **kwargs: Any) -> requests.Response:
        api = (credentials.base_url or GITLAB_API).rstrip("/")
        url = path if path.startswith(("https://", "http://")) else api + path
        headers = {"Authorization": f"Bearer {credentials.token}", "User-Agent": "tfregistry-scm-gitlab"}
        return api_request("GitLab", method, url, headers=headers, timeout=self.timeout, **kwargs)

    def _pages(self, credentials: ScmCredentials, path: str) -> list[dict[str, Any]]:
        return link_header_pages(lambda url: self._request(credentials, "GET", url),
                                 path + ("&" if "?" in path else "?") + "per_page=100", MAX_PAGES)

    @staticmethod
    def _project(repository: str) -> str:
        if not repository or repository.startswith("/") or repository.endswith("/") or "/" not in repository:
            raise ScmError(f"a GitLab project is its path, group/name (or group/subgroup/name), not {repository!r}")
        return "/projects/" + quote(repository, safe="")

    @staticmethod
    def _repo(data: dict[str, Any]) -> ScmRepository:
        return ScmRepository(id=data["path_with_namespace"], name=data["path_with_namespace"],
                             clone_url=data["http_url_to_repo"], web_url=data.get("web_url"),
                             default_branch=data.get("default_branch"))

    def check_credentials(self, credentials: ScmCredentials) -> str:
        return str(self._request(credentials, "GET", "/user").json().get("username", ""))

    def list_repositories(self, credentials: ScmCredentials) -> list[ScmRepository]:
        projects = self._pages(credentials, "/projects?membership=true&order_by=path&sort=asc&simple=true")
        return sorted((self._repo(p) for p in projects), key=lambda r: r.id)

    def get_repository(self, credentials: ScmCredentials, repository: str) -> ScmRepository:
        return self._repo(self._request(credentials, "GET", self._project(repository)).json())

    def list_tags(self, credentials: ScmCredentials, repository: str) -> list[ScmTag]:
        tags = self._pages(credentials, self._project(repository) + "/repository/tags")
        return [ScmTag(t["name"], t["commit"]["id"]) for t in tags]

    def resolve_tag(self, credentials: ScmCredentials, repository: str, tag: str) -> str | None:
        try:
            found = self._request(credentials, "GET",
                                  f"{self._project(repository)}/repository/tags/{quote(tag, safe='')}").json()
        except ScmError as exc:
            if " 404 " in f"{exc} ":
                return None
            raise
        return str(found["commit"]["id"])

    def clone_url(self, credentials: ScmCredentials, repository: str) -> str:
        return self.get_repository(credentials, repository).clone_url

    def git_http_headers(self, credentials: ScmCredentials) -> dict[str, str]:
        """HTTP Basic with the token as the password; GitLab wants user ``oauth2`` for OAuth tokens and
        accepts any user name for access tokens (``username``, else ``oauth2``)."""
        if not credentials.token:
            return {}
        user = "oauth2" if credentials.method == "oauth" else credentials.username or "oauth2"
        pair = base64.b64encode(f"{user}:{credentials.token}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def create_webhook(self, credentials: ScmCredentials, repository: str, url: str, secret: str) -> str:
        body = {"url": url, "token": secret, "signing_token": signing_token(secret), "push_events": False,
                "tag_push_events": True, "enable_ssl_verification": True}
        return str(self._request(credentials, "POST", self._project(repository) + "/hooks", json=body).json()["id"])

    def delete_webhook(self, credentials: ScmCredentials, repository: str, hook_id: str) -> None:
        with missing_is_fine():
            self._request(credentials, "DELETE", f"{self._project(repository)}/hooks/{quote(hook_id, safe='')}")

    # --- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        sent = request.header("X-Gitlab-Token")
        if not sent:
            raise WebhookRejected("X-Gitlab-Token header missing")
        if not hmac.compare_digest(sent.encode(), secret.encode()):
            raise WebhookRejected("X-Gitlab-Token does not match the link's secret")
        signature, timestamp = request.header("webhook-signature"), request.header("webhook-timestamp")
        if signature is None and timestamp is None:
            return  # the hook has no signing token (GitLab before the feature, or it is turned off)
        webhook_id = request.header("webhook-id")
        if not signature or not timestamp or not webhook_id:
            raise WebhookRejected("webhook-signature, webhook-timestamp and webhook-id must come together")
        try:
            sent_at = datetime.fromtimestamp(int(timestamp), UTC)
        except (ValueError, OverflowError, OSError):
            raise WebhookRejected("webhook-timestamp is not a Unix time") from None
        if abs((request.received_at - sent_at).total_seconds()) > SIGNATURE_WINDOW:
            raise WebhookRejected(f"webhook-timestamp is more than {SIGNATURE_WINDOW} s from now (stale or replayed)")
        try:
            expected = standard_webhook_signature(signing_token(secret), webhook_id, timestamp, request.body)
        except (binascii.Error, ValueError):
            raise WebhookRejected("webhook-signature cannot be checked") from None
        # Several space-separated signatures may be sent (key rotation); one matching is enough.
        if not any(hmac.compare_digest(s.encode(), expected.encode()) for s in signature.split()):
            raise WebhookRejected("webhook-signature does not match the body and the link's secret")

    def delivery_id(self, request: WebhookRequest) -> str | None:
        return request.header("webhook-id") or request.header("Idempotency-Key")

    def parse_webhook(self, request: WebhookRequest) -> list[WebhookEvent]:
        if request.header("X-Gitlab-Event") not in ("Tag Push Hook", "Push Hook"):
            return []
        payload = json.loads(request.body)
        if payload.get("object_kind") not in ("tag_push", "push"):
            return []
        event = ref_update_event(payload["project"]["path_with_namespace"], payload["ref"], payload.get("before"),
                                 payload.get("after"), delivery_id=self.delivery_id(request))
        return [event] if event is not None else []
