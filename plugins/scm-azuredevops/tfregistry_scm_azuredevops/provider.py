"""The ``azuredevops`` SCM provider: Azure DevOps' Git REST API and its service hooks.

API reference (``api-version=6.0``, also answered by later versions), the only calls made, with a personal
access token as HTTP Basic with an empty user name
(https://learn.microsoft.com/en-us/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate):

* ``GET {org}/_apis/git/repositories`` and ``GET {org}/{project}/_apis/git/repositories/{repository}`` —
  https://learn.microsoft.com/en-us/rest/api/azure/devops/git/repositories (``id``, ``name``,
  ``project.{id,name}``, ``remoteUrl``, ``webUrl``, ``defaultBranch``);
* ``GET .../refs?filter=tags/&peelTags=true`` — https://learn.microsoft.com/en-us/rest/api/azure/devops/git/refs/list
  (``peeledObjectId`` is the commit of an annotated tag, ``objectId`` that of a lightweight one), continued
  with the ``x-ms-continuationtoken`` header;
* ``POST``/``DELETE {org}/_apis/hooks/subscriptions`` —
  https://learn.microsoft.com/en-us/rest/api/azure/devops/hooks/subscriptions and
  https://learn.microsoft.com/en-us/azure/devops/service-hooks/services/webhooks (consumer ``webHooks``,
  action ``httpRequest``, inputs ``url``, ``basicAuthUsername``, ``basicAuthPassword``, ``httpHeaders``).

Service hooks are not signed: the registry accepts a delivery only with the link's secret as the HTTP Basic
password or in the ``X-Tfr-Webhook-Secret`` header (both set on the subscriptions it creates); a delivery with
neither is always refused.  Events — https://learn.microsoft.com/en-us/azure/devops/service-hooks/events#git.push:
``eventType: git.push``, ``resource.refUpdates[]`` of ``{name, oldObjectId, newObjectId}`` (a non-zero
``oldObjectId`` on a tag is a moved tag), ``resource.repository.{name, project.name}``; repeats carry the same
``subscriptionId`` and ``notificationId``.

OAuth 2.0 (``auth_method: oauth``, Azure DevOps Services only): Azure DevOps OAuth apps are deprecated, so the
registry uses the Microsoft identity platform (Microsoft Entra ID) v2.0 authorization code flow with PKCE —
https://learn.microsoft.com/en-us/azure/devops/integrate/get-started/authentication/entra-oauth and
https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow — asking for the Azure DevOps
resource (``499b84ac-1321-427f-aa17-267ca6975798/.default``) and ``offline_access`` (a refresh token).  The
access token is sent as ``Authorization: Bearer`` to the REST API and to git over https
(https://learn.microsoft.com/en-us/azure/devops/integrate/get-started/authentication/service-principal-managed-identity,
"git -c http.extraheader='AUTHORIZATION: bearer <token>'").  Azure DevOps Server (on-premises) cannot take
Entra ID tokens: ``oauth`` is refused there.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from tfregistry.interfaces import (
    OAuthEndpoints,
    ScmCredentials,
    ScmError,
    ScmHttpError,
    ScmNotSupported,
    ScmProvider,
    ScmRepository,
    ScmTag,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    api_request,
    missing_is_fine,
    ref_update_event,
)

#: The oldest version with every call used, so Azure DevOps Server 2020 and later are served too.
API_VERSION = "6.0"
#: Most pages followed in one listing.
MAX_PAGES = 50
#: The header the registry's subscriptions carry the link's secret in (besides HTTP Basic).
SECRET_HEADER = "X-Tfr-Webhook-Secret"
#: The Basic user name of the registry's subscriptions (the password is the link's secret).
BASIC_USER = "tfregistry"
#: The Microsoft identity platform's authority (a sovereign cloud has its own, set in the plugin's settings).
ENTRA_AUTHORITY = "https://login.microsoftonline.com"
#: The Azure DevOps resource's application id: its ``/.default`` scope asks for Azure DevOps access
#: (https://learn.microsoft.com/en-us/azure/devops/integrate/get-started/authentication/entra-oauth).
AZURE_DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
#: Hosts of Azure DevOps Services (``https://dev.azure.com/ORG``, the older ``https://ORG.visualstudio.com``);
#: any other host is an Azure DevOps Server, which takes no Entra ID tokens.
SERVICES_HOSTS = ("dev.azure.com", ".visualstudio.com")


def is_services(base_url: str | None) -> bool:
    """Whether ``base_url`` is an Azure DevOps Services organization (not an on-premises Server)."""
    host = (urlsplit(base_url).hostname or "") if base_url else ""
    return any(host == h or (h.startswith(".") and host.endswith(h)) for h in SERVICES_HOSTS)


class AzureDevOpsScm(ScmProvider):
    """Azure DevOps Services (``base_url`` ``https://dev.azure.com/ORG``) or Server (``https://HOST/COLLECTION``)."""

    name = "azuredevops"
    label = "Azure DevOps"
    auth_methods = ("token",)
    supports_webhooks = True
    secret_headers = (SECRET_HEADER.lower(),)

    def __init__(self, timeout: float = 30.0, *, oauth_client_id: str = "", oauth_client_secret: str = "",
                 oauth_tenant: str = "organizations", oauth_authority: str = ENTRA_AUTHORITY) -> None:
        self.timeout = timeout
        self.oauth_client_id = oauth_client_id
        self.oauth_client_secret = oauth_client_secret
        self.oauth_tenant = oauth_tenant or "organizations"
        self.oauth_authority = (oauth_authority or ENTRA_AUTHORITY).rstrip("/")
        if oauth_client_id:
            self.auth_methods = ("token", "oauth")

    def oauth_endpoints(self, base_url: str | None) -> OAuthEndpoints | None:
        """The Microsoft identity platform v2.0 endpoints of the configured tenant
        (``{authority}/{tenant}/oauth2/v2.0/authorize`` and ``.../token``, from
        https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow), scopes
        ``499b84ac-1321-427f-aa17-267ca6975798/.default`` (Azure DevOps) and ``offline_access`` (a refresh
        token), PKCE S256.  Access tokens last about an hour; the core refreshes them before expiry.
        Azure DevOps Server has no Entra ID OAuth: :class:`ScmNotSupported` (a 400)."""
        if not self.oauth_client_id:
            return None
        if base_url and not is_services(base_url):
            raise ScmNotSupported("Azure DevOps Server does not accept Microsoft Entra ID OAuth tokens: use a "
                                  "personal access token (auth_method token) for it")
        tenant = quote(self.oauth_tenant, safe="")
        return OAuthEndpoints(authorize_url=f"{self.oauth_authority}/{tenant}/oauth2/v2.0/authorize",
                              token_url=f"{self.oauth_authority}/{tenant}/oauth2/v2.0/token",
                              scopes=(f"{AZURE_DEVOPS_RESOURCE}/.default", "offline_access"),
                              client_id=self.oauth_client_id, client_secret=self.oauth_client_secret)

    # --- REST -------------------------------------------------------------------------------

    def _request(self, credentials: ScmCredentials, method: str, path: str, *, params: dict[str, str] | None = None,
                 **kwargs: Any) -> requests.Response:
        if not credentials.base_url:
            raise ScmError("an Azure DevOps connection needs base_url: https://dev.azure.com/ORG or "
                           "https://HOST/COLLECTION")
        url = credentials.base_url.rstrip("/") + path
        headers = {"Accept": "application/json", "User-Agent": "tfregistry-scm-azuredevops",
                   **self.git_http_headers(credentials)}
        response = api_request("Azure DevOps", method, url, headers=headers, timeout=self.timeout,
                               allow_redirects=False, params={**(params or {}), "api-version": API_VERSION},
                               shown_path=path, error_from=300, **kwargs)
        if response.status_code != 204 and "json" not in response.headers.get("Content-Type", ""):
            # A refused token may also be answered with a 203 sign-in page.
            raise ScmHttpError(f"Azure DevOps answered 401 to {method} {path}", 401)
        return response

    def _values(self, credentials: ScmCredentials, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            response = self._request(credentials, "GET", path,
                                     params={**params, **({"continuationToken": token} if token else {})})
            items.extend(response.json().get("value", []))
            token = response.headers.get("x-ms-continuationtoken")
            if not token:
                break
        return items

    @staticmethod
    def _split(repository: str) -> tuple[str, str]:
        project, _, name = repository.partition("/")
        if not project or not name or "/" in name:
            raise ScmError(f"an Azure DevOps repository is project/repository, not {repository!r}")
        return project, name

    def _path(self, repository: str) -> str:
        project, name = self._split(repository)
        return f"/{quote(project, safe='')}/_apis/git/repositories/{quote(name, safe='')}"

    @staticmethod
    def _repo(data: dict[str, Any]) -> ScmRepository:
        ident = f"{data['project']['name']}/{data['name']}"
        branch = data.get("defaultBranch")
        return ScmRepository(id=ident, name=ident, clone_url=data["remoteUrl"], web_url=data.get("webUrl"),
                             default_branch=branch.removeprefix("refs/heads/") if branch else None)

    def git_http_headers(self, credentials: ScmCredentials) -> dict[str, str]:
        """HTTP Basic with an empty user name (or ``username``) and the personal access token; an OAuth
        (Entra ID) access token as ``Authorization: Bearer``."""
        if not credentials.token:
            return {}
        if credentials.method == "oauth":
            return {"Authorization": f"Bearer {credentials.token}"}
        pair = base64.b64encode(f"{credentials.username or ''}:{credentials.token}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def check_credentials(self, credentials: ScmCredentials) -> str:
        self._request(credentials, "GET", "/_apis/git/repositories", params={"$top": "1"})
        return credentials.username or ""

    def list_repositories(self, credentials: ScmCredentials) -> list[ScmRepository]:
        repos = self._values(credentials, "/_apis/git/repositories", {})
        return sorted((self._repo(r) for r in repos), key=lambda r: r.id)

    def _get(self, credentials: ScmCredentials, repository: str) -> dict[str, Any]:
        return dict(self._request(credentials, "GET", self._path(repository)).json())

    def get_repository(self, credentials: ScmCredentials, repository: str) -> ScmRepository:
        return self._repo(self._get(credentials, repository))

    def list_tags(self, credentials: ScmCredentials, repository: str) -> list[ScmTag]:
        refs = self._values(credentials, self._path(repository) + "/refs", {"filter": "tags/", "peelTags": "true"})
        return [ScmTag(r["name"].removeprefix("refs/tags/"), r.get("peeledObjectId") or r["objectId"])
                for r in refs if r["name"].startswith("refs/tags/")]

    def clone_url(self, credentials: ScmCredentials, repository: str) -> str:
        return self.get_repository(credentials, repository).clone_url

    def create_webhook(self, credentials: ScmCredentials, repository: str, url: str, secret: str) -> str:
        repo = self._get(credentials, repository)
        body = {"publisherId": "tfs", "eventType": "git.push", "resourceVersion": "1.0",
                "consumerId": "webHooks", "consumerActionId": "httpRequest",
                "publisherInputs": {"projectId": repo["project"]["id"], "repository": repo["id"]},
                "consumerInputs": {"url": url, "basicAuthUsername": BASIC_USER, "basicAuthPassword": secret,
                                   "httpHeaders": f"{SECRET_HEADER}: {secret}"}}
        return str(self._request(credentials, "POST", "/_apis/hooks/subscriptions", json=body).json()["id"])

    def delete_webhook(self, credentials: ScmCredentials, repository: str, hook_id: str) -> None:
        with missing_is_fine():
            self._request(credentials, "DELETE", f"/_apis/hooks/subscriptions/{quote(hook_id, safe='')}")

    # --- webhooks ---------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        header = request.header(SECRET_HEADER)
        authorization = request.header("Authorization") or ""
        if header is None and not authorization:
            raise WebhookRejected(f"no credentials: service hooks must send the secret (Basic auth or {SECRET_HEADER})")
        if header is not None and not hmac.compare_digest(header.encode(), secret.encode()):
            raise WebhookRejected(f"{SECRET_HEADER} does not match the link's secret")
        if authorization:
            scheme, _, value = authorization.partition(" ")
            try:
                password = base64.b64decode(value, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                raise WebhookRejected("Authorization is not HTTP Basic") from None
            if scheme.lower() != "basic" or not hmac.compare_digest(password.encode(), secret.encode()):
                raise WebhookRejected("the Basic auth password does not match the link's secret")

    def delivery_id(self, request: WebhookRequest) -> str | None:
        try:
            payload = json.loads(request.body)
        except ValueError:
            return None
        if not isinstance(payload, dict) or payload.get("notificationId") is None:
            return None
        return f"{payload.get('subscriptionId', '')}/{payload['notificationId']}"

    def parse_webhook(self, request: WebhookRequest) -> list[WebhookEvent]:
        payload = json.loads(request.body)
        if payload.get("eventType") != "git.push":
            return []
        resource = payload["resource"]
        repo = resource["repository"]
        repository = f"{repo['project']['name']}/{repo['name']}"
        events = []
        for update in resource.get("refUpdates", []):
            event = ref_update_event(repository, update["name"], update.get("oldObjectId"), update.get("newObjectId"),
                                     delivery_id=self.delivery_id(request))
            if event is not None:
                events.append(event)
        return events
