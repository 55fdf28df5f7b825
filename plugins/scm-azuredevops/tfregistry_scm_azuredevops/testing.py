"""Test kit: a fake Azure DevOps REST API at the HTTP boundary, over real git repositories.

Azure DevOps cannot run here, so :class:`FakeAzureDevOps` answers the few REST calls the provider makes, shaped
as Microsoft's REST documentation describes them (links in :mod:`tfregistry_scm_azuredevops.provider`), and
nothing else (any other route is 404 ``{"message": ...}``); every call needs ``api-version``:

* ``GET /{org}/_apis/git/repositories`` (``{"count", "value"}``) and
  ``GET /{org}/{project}/_apis/git/repositories/{name}`` — ``id``, ``name``, ``url``, ``project.{id, name}``,
  ``defaultBranch``, ``remoteUrl``, ``sshUrl``, ``webUrl``; a missing or unknown token is 401;
* ``GET .../refs?filter=tags/&peelTags=true`` — ``{"name", "objectId", "peeledObjectId"}`` read from the real
  repository (``peeledObjectId`` only for annotated tags), 100 a page with ``x-ms-continuationtoken``;
* ``POST /{org}/_apis/hooks/subscriptions`` (200, the subscription; ``basicAuthPassword`` masked) and
  ``DELETE /{org}/_apis/hooks/subscriptions/{id}`` (204, 404 when gone).

``remoteUrl`` points at the same repository served by ``git http-backend``
(:class:`tfregistry.testing.git.GitHttpServer`) behind HTTP Basic ``:<token>``.
:meth:`FakeAzureDevOps.push_delivery` builds the ``git.push`` service hook delivery as the web hooks consumer
sends it for the subscription's inputs (Basic auth and extra headers from ``consumerInputs``; body as the
example in https://learn.microsoft.com/en-us/azure/devops/service-hooks/events#git.push).

With ``oauth_client=(client_id, client_secret)``, the Microsoft identity platform v2.0 authorization code flow
as https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow describes it, served on
the same root as ``authority`` (standing for ``https://login.microsoftonline.com``):

* ``GET /{tenant}/oauth2/v2.0/authorize`` (``client_id``, ``response_type=code``, ``redirect_uri``, ``scope``,
  ``state``, ``code_challenge``, ``code_challenge_method``): the person signs in and consents at once; 302 to
  ``redirect_uri?code=...&state=...``; an unknown ``client_id`` is 400 ``unauthorized_client`` (AADSTS700016);
* ``POST /{tenant}/oauth2/v2.0/token`` (form: ``client_id``, ``client_secret``, ``grant_type``, ``code``,
  ``redirect_uri``, ``code_verifier``, ``scope``; or ``grant_type=refresh_token`` with ``refresh_token``):
  JSON ``token_type`` ``Bearer``, ``scope``, ``expires_in`` (3599), ``ext_expires_in``, ``access_token``,
  ``refresh_token`` (given with ``offline_access``).  Errors are 400 (401 for the client) documents with
  ``error``, ``error_description`` (``AADSTS...`` text), ``error_codes``, ``timestamp``, ``trace_id``,
  ``correlation_id``: ``invalid_client`` (AADSTS7000215), ``invalid_grant`` (AADSTS70008 used or unknown code,
  AADSTS50148/501481 PKCE mismatch, AADSTS700082 refused refresh token).  Codes are single use.

Issued access tokens work for the API and git over https as ``Authorization: Bearer <token>``
(https://learn.microsoft.com/en-us/azure/devops/integrate/get-started/authentication/entra-oauth).
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


class FakeAzureDevOps(FakeScmApi):
    """``with FakeAzureDevOps(tmp_path, token="pat", project="Infra") as az: az.create_repo("net")``.

    ``url`` is the connection's ``base_url`` (the organization URL).  ``calls`` records ``(method, path)`` of
    every API request; ``hooks`` the live subscriptions by id, with their unmasked inputs.
    """

    def __init__(self, root: Path, *, token: str, organization: str = "acme", project: str = "Infra",
                 oauth_client: tuple[str, str] | None = None, oauth_expires_in: int = 3599) -> None:
        self.token = token
        self.oauth_client = oauth_client
        self.oauth_expires_in = oauth_expires_in
        #: Access tokens the OAuth flow issued (accepted as ``Bearer``); live refresh tokens; codes.
        self.oauth_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.oauth_codes: dict[str, dict[str, str]] = {}
        self.organization = organization
        self.project = project
        self.project_id = str(uuid.uuid5(uuid.NAMESPACE_URL, project))
        self._notifications = itertools.count(1)
        super().__init__(root, git_credentials=("", token))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.organization}"

    @property
    def authority(self) -> str:
        """The fake Microsoft identity platform (``https://login.microsoftonline.com``)."""
        return f"http://127.0.0.1:{self.port}"

    def create_repo(self, name: str) -> GitRepo:
        self.repos[name] = self.git.create_repo(f"{self.project}/{name}")
        return self.repos[name]

    # --- service hook deliveries --------------------------------------------------------------

    def push_delivery(self, subscription: dict[str, Any], repo: str, tag: str, before: str, after: str, *,
                      notification_id: int | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and body of the ``git.push`` delivery for ``refs/tags/<tag>`` going ``before`` -> ``after``,
        sent as the web hooks consumer does for ``subscription`` (a :attr:`hooks` value: its Basic auth and
        ``httpHeaders``)."""
        inputs = subscription.get("consumerInputs", {})
        repository = self._repo_json(repo)
        body = json.dumps({
            "subscriptionId": subscription.get("id", str(uuid.uuid4())),
            "notificationId": notification_id if notification_id is not None else next(self._notifications),
            "id": str(uuid.uuid4()), "eventType": "git.push", "publisherId": "tfs",
            "message": {"text": f"Bot pushed updates to {repo}:{tag}."},
            "detailedMessage": {"text": f"Bot pushed updates to {repo}:{tag}."},
            "resource": {"commits": [], "refUpdates": [{"name": f"refs/tags/{tag}", "oldObjectId": before,
                                                        "newObjectId": after}],
                         "repository": {k: repository[k] for k in ("id", "name", "url", "project", "defaultBranch",
                                                                   "remoteUrl")},
                         "pushedBy": {"displayName": "Bot", "uniqueName": "bot@example.com"},
                         "pushId": 14, "date": "2026-12-04T10:00:00Z", "url": f"{self.url}/_apis/git/pushes/14"},
            "resourceVersion": "1.0",
            "resourceContainers": {"collection": {"id": str(uuid.uuid4())}, "account": {"id": str(uuid.uuid4())},
                                   "project": {"id": self.project_id}},
            "createdDate": "2026-12-04T10:00:01Z",
        }).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if inputs.get("basicAuthUsername") or inputs.get("basicAuthPassword"):
            pair = f"{inputs.get('basicAuthUsername', '')}:{inputs.get('basicAuthPassword', '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        for line in (inputs.get("httpHeaders") or "").splitlines():
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip()] = value.strip()
        return headers, body

    # --- the API ------------------------------------------------------------------------------

    def _repo_json(self, name: str) -> dict[str, Any]:
        repo_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.project}/{name}"))
        return {"id": repo_id, "name": name, "url": f"{self.url}/_apis/git/repositories/{repo_id}",
                "project": {"id": self.project_id, "name": self.project, "state": "wellFormed",
                            "visibility": "private"},
                "defaultBranch": "refs/heads/main", "size": 0, "isDisabled": False,
                "remoteUrl": self.git.repo_url(f"{self.project}/{name}"),
                "sshUrl": f"git@ssh.dev.azure.com:v3/{self.organization}/{self.project}/{name}",
                "webUrl": f"https://dev.azure.example/{self.organization}/{self.project}/_git/{name}"}

    def _refs(self, name: str) -> list[dict[str, Any]]:
        return [{"name": f"refs/tags/{tag}", "objectId": target, "creator": {"displayName": "Bot"},
                 "url": f"{self.url}/_apis/git/repositories/{name}/refs?filter=tags/{tag}",
                 **({"peeledObjectId": commit} if commit else {})}
                for tag, target, commit in self.tag_refs(name)]

    def _build(self) -> Flask:
        app = Flask("fake-azure-devops")
        fake = self
        org = f"/{self.organization}"

        def error(status: int, message: str) -> Any:
            response = jsonify(message=message, typeKey="ApiException", errorCode=0, eventId=3000)
            response.status_code = status
            return response

        def entra_error(status: int, code: str, aadsts: int, text: str) -> Any:
            response = jsonify(error=code, error_description=f"AADSTS{aadsts}: {text}", error_codes=[aadsts],
                               timestamp=time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                               trace_id=str(uuid.uuid4()), correlation_id=str(uuid.uuid4()))
            response.status_code = status
            return response

        def issue(scope: str) -> Any:
            access, refresh = "eyJ0eXAi." + uuid.uuid4().hex, "0.AR" + uuid.uuid4().hex * 2
            fake.oauth_tokens.add(access)
            fake.git.authorizations.add(f"Bearer {access}")
            answer: dict[str, Any] = {"token_type": "Bearer", "scope": scope, "expires_in": fake.oauth_expires_in,
                                      "ext_expires_in": fake.oauth_expires_in, "access_token": access}
            if "offline_access" in scope.split():
                fake.refresh_tokens.add(refresh)
                answer["refresh_token"] = refresh
            return jsonify(answer)

        @app.get("/<tenant>/oauth2/v2.0/authorize")
        def oauth_authorize(tenant: str) -> Any:
            args = request.args
            if fake.oauth_client is None or args.get("client_id") != fake.oauth_client[0]:
                return entra_error(400, "unauthorized_client", 700016, "Application with identifier "
                                   f"'{args.get('client_id')}' was not found in the directory '{tenant}'.")
            code = "1.AR" + uuid.uuid4().hex * 2
            fake.oauth_codes[code] = {k: args.get(k, "") for k in ("redirect_uri", "scope", "code_challenge",
                                                                    "code_challenge_method")}
            return redirect(f"{args['redirect_uri']}?{urlencode({'code': code, 'state': args.get('state', '')})}", 302)

        @app.post("/<tenant>/oauth2/v2.0/token")
        def oauth_token(tenant: str) -> Any:
            form = request.form
            if fake.oauth_client is None or (form.get("client_id"), form.get("client_secret")) != fake.oauth_client:
                return entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") not in fake.refresh_tokens:
                    return entra_error(400, "invalid_grant", 700082, "The refresh token has expired due to "
                                       "inactivity.")
                fake.refresh_tokens.discard(form["refresh_token"])  # replaced by the new one
                return issue(form.get("scope", ""))
            grant = fake.oauth_codes.pop(form.get("code", ""), None)
            if grant is None:
                return entra_error(400, "invalid_grant", 70008, "The provided authorization code or refresh token "
                                   "has expired due to inactivity.")
            if form.get("redirect_uri") != grant["redirect_uri"]:
                return entra_error(400, "invalid_grant", 50148, "The redirect_uri does not match.")
            if grant["code_challenge"]:
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["code_challenge"]:
                    return entra_error(400, "invalid_grant", 501481, "The Code_Verifier does not match the "
                                       "code_challenge supplied in the authorization request.")
            return issue(grant["scope"])

        @app.before_request
        def authenticate() -> Any:
            fake.calls.append((request.method, request.path))
            if "/oauth2/v2.0/" in request.path:
                return None
            expected = "Basic " + base64.b64encode(f":{fake.token}".encode()).decode()
            scheme, _, bearer = (request.headers.get("Authorization") or "").partition(" ")
            if request.headers.get("Authorization") != expected and not (
                    scheme == "Bearer" and bearer in fake.oauth_tokens):
                return "", 401, {"WWW-Authenticate": "Basic realm=\"https://dev.azure.com/\""}
            if not request.args.get("api-version"):
                return error(400, "No api-version was supplied for the request.")
            return None

        @app.get(f"{org}/_apis/git/repositories")
        def repositories() -> Any:
            value = [fake._repo_json(name) for name in sorted(fake.repos)]
            return jsonify(count=len(value), value=value)

        @app.get(f"{org}/<project>/_apis/git/repositories/<name>")
        def repository(project: str, name: str) -> Any:
            if project != fake.project or name not in fake.repos:
                return error(404, f"TF401019: The Git repository with name or identifier {name} does not exist "
                                  "or you do not have permissions for the operation you are attempting.")
            return jsonify(fake._repo_json(name))

        @app.get(f"{org}/<project>/_apis/git/repositories/<name>/refs")
        def refs(project: str, name: str) -> Any:
            if project != fake.project or name not in fake.repos:
                return error(404, f"TF401019: The Git repository with name or identifier {name} does not exist.")
            prefix = "refs/" + request.args.get("filter", "")
            items = [r for r in fake._refs(name) if r["name"].startswith(prefix)]
            if request.args.get("peelTags") != "true":
                items = [{k: v for k, v in r.items() if k != "peeledObjectId"} for r in items]
            start = int(request.args.get("continuationToken", 0))
            page = items[start:start + 100]
            response = jsonify(count=len(page), value=page)
            if start + 100 < len(items):
                response.headers["x-ms-continuationtoken"] = str(start + 100)
            return response

        @app.post(f"{org}/_apis/hooks/subscriptions")
        def subscribe() -> Any:
            body = request.get_json(silent=True) or {}
            inputs = body.get("publisherInputs") or {}
            known = {fake._repo_json(n)["id"] for n in fake.repos}
            if body.get("consumerId") != "webHooks" or not (body.get("consumerInputs") or {}).get("url") \
                    or inputs.get("projectId") != fake.project_id or inputs.get("repository") not in known:
                return error(400, "The subscription's consumer or publisher inputs are not valid.")
            sub_id = str(uuid.uuid4())
            fake.hooks[sub_id] = {"id": sub_id, **body}
            shown = {**body["consumerInputs"]}
            if "basicAuthPassword" in shown:
                shown["basicAuthPassword"] = "********"
            return jsonify(id=sub_id, status="enabled", **{**body, "consumerInputs": shown},
                           url=f"{fake.url}/_apis/hooks/subscriptions/{sub_id}")

        @app.delete(f"{org}/_apis/hooks/subscriptions/<sub_id>")
        def unsubscribe(sub_id: str) -> Any:
            if fake.hooks.pop(sub_id, None) is None:
                return error(404, f"Subscription {sub_id} not found.")
            return "", 204

        @app.errorhandler(404)
        def not_found(_exc: Any) -> Any:
            return error(404, "The resource cannot be found.")

        return app
