"""The ``bitbucket-dc`` SCM provider: Bitbucket Data Center's REST API 1.0 and its signed webhooks.

API reference (https://developer.atlassian.com/server/bitbucket/rest/), the only calls made, with an HTTP
access token as ``Authorization: Bearer <token>``
(https://confluence.atlassian.com/bitbucketserver/http-access-tokens-939515499.html):

* ``GET /rest/api/1.0/repos?permission=REPO_READ`` — the repositories the token can read (its response's
  ``X-AUSERNAME`` header names the user the token acts as);
* ``GET /rest/api/1.0/projects/{projectKey}/repos/{repositorySlug}`` — ``slug``, ``project.key``,
  ``links.clone[]`` (``name: http``) and ``links.self[]``;
* ``GET .../tags`` and ``.../tags/{name}`` — ``displayId`` and ``latestCommit`` (the commit, annotated tags
  included);
* ``POST``/``DELETE .../webhooks`` — events, ``configuration.secret``, ``url``;
* paged responses ``{values, isLastPage, nextPageStart}`` with ``start``/``limit``
  (https://developer.atlassian.com/server/bitbucket/rest/v1000/intro/#paged-apis).

Webhooks — https://confluence.atlassian.com/bitbucketserver/manage-webhooks-938025878.html and
https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html: ``X-Event-Key:
repo:refs_changed``, ``X-Request-Id`` (the delivery), ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the
body keyed with the hook's secret>``; body ``repository.{slug, project.key}`` and ``changes[]`` of
``{ref: {id, displayId, type}, refId, fromHash, toHash, type: ADD|UPDATE|DELETE}`` — ``UPDATE`` of a
``TAG`` is a moved tag.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests

from tfregistry.interfaces import (
    ZERO_SHA,
    ScmCredentials,
    ScmError,
    ScmProvider,
    ScmRepository,
    ScmTag,
    WebhookEvent,
    WebhookRequest,
    api_request,
    check_hmac_sha256,
    missing_is_fine,
    ref_update_event,
)

API = "/rest/api/1.0"
#: Most pages followed in one listing (100 items a page).
MAX_PAGES = 50
#: What a change's ``type`` means for the ref's old and new commit.
CHANGE_TYPES = ("ADD", "UPDATE", "DELETE")


class BitbucketDataCenterScm(ScmProvider):
    """Bitbucket Data Center (or Server) at the connection's ``base_url`` (``https://HOST``)."""

    name = "bitbucket-dc"
    label = "Bitbucket Data Center"
    auth_methods = ("token",)
    supports_webhooks = True
    secret_headers = ("x-hub-signature",)

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    # --- REST -------------------------------------------------------------------------------

    def _request(self, credentials: ScmCredentials, method: str, path: str, **kwargs: Any) -> requests.Response:
        if not credentials.base_url:
            raise ScmError("a Bitbucket Data Center connection needs base_url (https://HOST)")
        url = credentials.base_url.rstrip("/") + API + path
        headers = {"Authorization": f"Bearer {credentials.token}", "Accept": "application/json",
                   "User-Agent": "tfregistry-scm-bitbucket-dc"}
        return api_request("Bitbucket Data Center", method, url, headers=headers, timeout=self.timeout,
                           shown_path=path.split("?")[0], **kwargs)

    def _pages(self, credentials: ScmCredentials, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        start = 0
        for _ in range(MAX_PAGES):
            page = self._request(credentials, "GET", f"{path}{'&' if '?' in path else '?'}limit=100&start={start}")
            body = page.json()
            items.extend(body.get("values", []))
            if body.get("isLastPage", True) or body.get("nextPageStart") is None:
                break
            start = int(body["nextPageStart"])
        return items

    @staticmethod
    def _path(repository: str) -> str:
        project, _, slug = repository.partition("/")
        if not project or not slug or "/" in slug:
            raise ScmError(f"a Bitbucket Data Center repository is PROJECT/slug, not {repository!r}")
        return f"/projects/{quote(project, safe='')}/repos/{quote(slug, safe='')}"

    @staticmethod
    def _repo(data: dict[str, Any]) -> ScmRepository:
        ident = f"{data['project']['key']}/{data['slug']}"
        links = data.get("links", {})
        clone = [c["href"] for c in links.get("clone", []) if c.get("name") == "http"]
        if not clone:
            raise ScmError(f"Bitbucket Data Center offers no http clone URL for {ident}")
        web = [s["href"] for s in links.get("self", [])]
        return ScmRepository(id=ident, name=ident, clone_url=clone[0], web_url=web[0] if web else None)

    def check_credentials(self, credentials: ScmCredentials) -> str:
        if not credentials.username:
            raise ScmError("set the connection's username: git sends it with the token over https")
        response = self._request(credentials, "GET", "/repos?permission=REPO_READ&limit=1")
        return response.headers.get("X-AUSERNAME", credentials.username)

    def list_repositories(self, credentials: ScmCredentials) -> list[ScmRepository]:
        repos = self._pages(credentials, "/repos?permission=REPO_READ")
        return sorted((self._repo(r) for r in repos), key=lambda r: r.id)

    def get_repository(self, credentials: ScmCredentials, repository: str) -> ScmRepository:
        return self._repo(self._request(credentials, "GET", self._path(repository)).json())

    def list_tags(self, credentials: ScmCredentials, repository: str) -> list[ScmTag]:
        return [ScmTag(t["displayId"], t["latestCommit"])
                for t in self._pages(credentials, self._path(repository) + "/tags")]

    def resolve_tag(self, credentials: ScmCredentials, repository: str, tag: str) -> str | None:
        try:
            found = self._request(credentials, "GET", f"{self._path(repository)}/tags/{quote(tag, safe='')}").json()
        except ScmError as exc:
            if " 404 " in f"{exc} ":
                return None
            raise
        return str(found["latestCommit"])

    def clone_url(self, credentials: ScmCredentials, repository: str) -> str:
        return self.get_repository(credentials, repository).clone_url

    def create_webhook(self, credentials: ScmCredentials, repository: str, url: str, secret: str) -> str:
        body = {"name": "tfregistry", "events": ["repo:refs_changed"], "configuration": {"secret": secret},
                "url": url, "active": True}
        return str(self._request(credentials, "POST", self._path(repository) + "/webhooks", json=body).json()["id"])

    def delete_webhook(self, credentials: ScmCredentials, repository: str, hook_id: str) -> None:
        with missing_is_fine():
            self._request(credentials, "DELETE", f"{self._path(repository)}/webhooks/{quote(hook_id, safe='')}")

    # --- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        check_hmac_sha256(request, "X-Hub-Signature", secret)

    def delivery_id(self, request: WebhookRequest) -> str | None:
        return request.header("X-Request-Id")

    def parse_webhook(self, request: WebhookRequest) -> list[WebhookEvent]:
        if request.header("X-Event-Key") != "repo:refs_changed":
            return []  # diagnostics:ping and anything else
        payload = json.loads(request.body)
        repo = payload["repository"]
        repository = f"{repo['project']['key']}/{repo['slug']}"
        events = []
        for change in payload.get("changes", []):
            kind = change.get("type")
            if kind not in CHANGE_TYPES:
                continue
            before = ZERO_SHA if kind == "ADD" else change.get("fromHash")
            after = ZERO_SHA if kind == "DELETE" else change.get("toHash")
            ref = change.get("refId") or change.get("ref", {}).get("id", "")
            event = ref_update_event(repository, ref, before, after, delivery_id=self.delivery_id(request))
            if event is not None:
                events.append(event)
        return events
