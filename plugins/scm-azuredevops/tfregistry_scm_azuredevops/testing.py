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
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from tfregistry.testing.git import GitRepo
from tfregistry.testing.scm_api import FakeScmApi


class FakeAzureDevOps(FakeScmApi):
    """``with FakeAzureDevOps(tmp_path, token="pat", project="Infra") as az: az.create_repo("net")``.

    ``url`` is the connection's ``base_url`` (the organization URL).  ``calls`` records ``(method, path)`` of
    every API request; ``hooks`` the live subscriptions by id, with their unmasked inputs.
    """

    def __init__(self, root: Path, *, token: str, organization: str = "acme", project: str = "Infra") -> None:
        self.token = token
        self.organization = organization
        self.project = project
        self.project_id = str(uuid.uuid5(uuid.NAMESPACE_URL, project))
        self._notifications = itertools.count(1)
        super().__init__(root, git_credentials=("", token))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.organization}"

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

        @app.before_request
        def authenticate() -> Any:
            fake.calls.append((request.method, request.path))
            expected = "Basic " + base64.b64encode(f":{fake.token}".encode()).decode()
            if request.headers.get("Authorization") != expected:
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
