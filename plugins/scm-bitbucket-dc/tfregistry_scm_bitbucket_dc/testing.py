"""Test kit: a fake Bitbucket Data Center REST API 1.0 at the HTTP boundary, over real git repositories.

Bitbucket Data Center cannot run here, so :class:`FakeBitbucketDC` answers the few REST calls the provider
makes, shaped as Atlassian's REST documentation describes them (links in
:mod:`tfregistry_scm_bitbucket_dc.provider`), and nothing else (any other route is 404 with
``{"errors": [{"message": ...}]}``, the documented error shape):

* ``GET /rest/api/1.0/repos`` — a paged list of repository objects (``slug``, ``name``, ``project.key``,
  ``links.clone[]`` with ``http`` and ``ssh``, ``links.self[]``) and the ``X-AUSERNAME`` header; a missing
  or unknown token is 401;
* ``GET /rest/api/1.0/projects/{key}/repos/{slug}`` — one repository;
* ``GET .../tags[/{name}]`` — ``{"id", "displayId", "type": "TAG", "latestCommit", "latestChangeset",
  "hash"}`` read from the real repository (``latestCommit`` the commit, ``hash`` the tag object);
* ``POST .../webhooks`` (201, the webhook; the secret is never echoed) and ``DELETE .../webhooks/{id}``
  (204, 404 when gone);
* paging with ``start``/``limit``: ``{size, limit, start, isLastPage, nextPageStart, values}``.

The ``http`` clone link points at the same repository served by ``git http-backend``
(:class:`tfregistry.testing.git.GitHttpServer`) behind HTTP Basic ``<user>:<token>``.
:meth:`FakeBitbucketDC.refs_changed_delivery` builds the ``repo:refs_changed`` delivery (headers
``X-Event-Key``, ``X-Request-Id``, ``X-Hub-Signature``; body as the example in
https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html#Eventpayload-Push).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from tfregistry.interfaces import ZERO_SHA
from tfregistry.testing.git import GitRepo
from tfregistry.testing.scm_api import FakeScmApi

API = "/rest/api/1.0"


class FakeBitbucketDC(FakeScmApi):
    """``with FakeBitbucketDC(tmp_path, user="bot", token="BBDC-x", project="ACME") as bb: bb.create_repo("net")``.

    ``url`` is the connection's ``base_url``.  ``calls`` records ``(method, path)`` of every API request;
    ``hooks`` the live webhooks by id, with their secret.
    """

    def __init__(self, root: Path, *, user: str, token: str, project: str = "ACME") -> None:
        self.user = user
        self.token = token
        self.project = project
        self._ids = itertools.count(1)
        super().__init__(root, git_credentials=(user, token))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_repo(self, slug: str) -> GitRepo:
        full = f"{self.project}/{slug}"
        self.repos[full] = self.git.create_repo(full)
        return self.repos[full]

    # --- webhook deliveries -----------------------------------------------------------------

    def refs_changed_delivery(self, secret: str, slug: str, tag: str, before: str, after: str,
                              delivery: str | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and body of the ``repo:refs_changed`` delivery for tag ``tag`` going ``before`` -> ``after``
        (``ADD`` from :data:`ZERO_SHA`, ``DELETE`` to it, else ``UPDATE``)."""
        kind = "ADD" if before == ZERO_SHA else "DELETE" if after == ZERO_SHA else "UPDATE"
        repo = self._repo_json(f"{self.project}/{slug}")
        body = json.dumps({
            "eventKey": "repo:refs_changed", "date": "2026-12-04T10:00:00+0000",
            "actor": {"name": self.user, "emailAddress": f"{self.user}@example.com", "id": 1,
                      "displayName": self.user, "active": True, "slug": self.user, "type": "NORMAL"},
            "repository": {k: repo[k] for k in ("slug", "id", "name", "scmId", "state", "statusMessage",
                                                "forkable", "project", "public")},
            "changes": [{"ref": {"id": f"refs/tags/{tag}", "displayId": tag, "type": "TAG"},
                         "refId": f"refs/tags/{tag}", "fromHash": before, "toHash": after, "type": kind}],
        }).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Event-Key": "repo:refs_changed", "X-Request-Id": delivery or str(uuid.uuid4()),
                   "X-Hub-Signature": signature, "Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Atlassian HttpClient 4.0.0 / Bitbucket-9.4.0 (9004000) / Default"}
        return headers, body

    # --- the API ------------------------------------------------------------------------------

    def _repo_json(self, full: str) -> dict[str, Any]:
        key, slug = full.split("/")
        return {"slug": slug, "id": abs(hash(full)) % 10**6, "name": slug, "scmId": "git", "state": "AVAILABLE",
                "statusMessage": "Available", "forkable": True, "public": False,
                "project": {"key": key, "id": 1, "name": key.title(), "public": False, "type": "NORMAL"},
                "links": {"clone": [{"href": self.git.repo_url(full), "name": "http"},
                                    {"href": f"ssh://git@bitbucket.example:7999/{full.lower()}.git", "name": "ssh"}],
                          "self": [{"href": f"https://bitbucket.example/projects/{key}/repos/{slug}/browse"}]}}

    def _tags(self, full: str) -> list[dict[str, Any]]:
        return [{"id": f"refs/tags/{name}", "displayId": name, "type": "TAG", "latestCommit": commit or target,
                 "latestChangeset": commit or target, "hash": target if commit else None}
                for name, target, commit in self.tag_refs(full)]

    def _build(self) -> Flask:
        app = Flask("fake-bitbucket-dc")
        fake = self

        def error(status: int, message: str) -> Any:
            response = jsonify(errors=[{"context": None, "message": message, "exceptionName": None}])
            response.status_code = status
            return response

        def page(items: list[Any]) -> Any:
            limit = min(int(request.args.get("limit", 25)), 1000)
            start = max(int(request.args.get("start", 0)), 0)
            values = items[start:start + limit]
            last = start + limit >= len(items)
            body: dict[str, Any] = {"size": len(values), "limit": limit, "start": start, "isLastPage": last,
                                    "values": values}
            if not last:
                body["nextPageStart"] = start + limit
            return jsonify(body)

        def repo_or_404(key: str, slug: str) -> str | None:
            full = f"{key}/{slug}"
            return full if full in fake.repos else None

        @app.before_request
        def authenticate() -> Any:
            fake.calls.append((request.method, request.path))
            if request.headers.get("Authorization") != f"Bearer {fake.token}":
                return error(401, "Authentication failed. Please check your credentials and try again.")
            return None

        @app.after_request
        def username(response: Any) -> Any:
            if response.status_code < 400:
                response.headers["X-AUSERNAME"] = fake.user
            return response

        @app.get(f"{API}/repos")
        def repos() -> Any:
            return page([fake._repo_json(full) for full in sorted(fake.repos)])

        @app.get(f"{API}/projects/<key>/repos/<slug>")
        def repo(key: str, slug: str) -> Any:
            full = repo_or_404(key, slug)
            return jsonify(fake._repo_json(full)) if full else error(404, f"Repository {key}/{slug} does not exist.")

        @app.get(f"{API}/projects/<key>/repos/<slug>/tags")
        def tags(key: str, slug: str) -> Any:
            full = repo_or_404(key, slug)
            return page(fake._tags(full)) if full else error(404, f"Repository {key}/{slug} does not exist.")

        @app.get(f"{API}/projects/<key>/repos/<slug>/tags/<path:name>")
        def tag(key: str, slug: str, name: str) -> Any:
            full = repo_or_404(key, slug)
            found = [t for t in fake._tags(full) if t["displayId"] == name] if full else []
            return jsonify(found[0]) if found else error(404, f"Tag {name} does not exist.")

        @app.post(f"{API}/projects/<key>/repos/<slug>/webhooks")
        def create_hook(key: str, slug: str) -> Any:
            full = repo_or_404(key, slug)
            if full is None:
                return error(404, f"Repository {key}/{slug} does not exist.")
            body = request.get_json(silent=True) or {}
            if not body.get("url") or not body.get("events"):
                return error(400, "url and events are required")
            hook_id = next(fake._ids)
            fake.hooks[hook_id] = {"repo": full, **body}
            shown = {**body, "configuration": {k: v for k, v in (body.get("configuration") or {}).items()
                                               if k != "secret"}}
            response = jsonify(id=hook_id, createdDate=0, updatedDate=0, **shown)
            response.status_code = 201
            return response

        @app.delete(f"{API}/projects/<key>/repos/<slug>/webhooks/<int:hook_id>")
        def delete_hook(key: str, slug: str, hook_id: int) -> Any:
            if fake.hooks.get(hook_id, {}).get("repo") != f"{key}/{slug}":
                return error(404, f"Webhook {hook_id} does not exist.")
            del fake.hooks[hook_id]
            return "", 204

        @app.errorhandler(404)
        def not_found(_exc: Any) -> Any:
            return error(404, "Not found")

        return app
