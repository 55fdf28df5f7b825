"""CI OIDC tokens for trusted publishing tests, shaped exactly like each platform's documented tokens.

The issuers are :class:`tfregistry_auth_oidc.testing.IDTokenProxy` instances (one per issuer) in front of a
real oidc-provider-mock: each serves a discovery document and a JWKS and signs tokens with its own RSA
key, so a test can give a token any claim the platforms document (``jti``, ``nbf``, ``workflow_ref``...),
which the mock's own ID tokens do not carry.

Claim sets follow:

* GitHub Actions: https://docs.github.com/en/actions/reference/security/oidc (example token in
  "Understanding the OIDC token");
* GitLab CI/CD ``id_tokens``: https://docs.gitlab.com/ci/secrets/id_token_authentication/ ("Token payload");
* Azure DevOps service connection tokens: ``sub`` ``sc://ORG/PROJECT/CONNECTION``, ``aud``
  ``api://AzureADTokenExchange``, ``iss`` ``https://vstoken.dev.azure.com/<org id>``
  (https://learn.microsoft.com/azure/devops/pipelines/release/configure-workload-identity).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tfregistry_auth_oidc.testing import IDTokenProxy
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

AUDIENCE = "tfregistry-tests"


def _times(now: int | None = None, lifetime: int = 300) -> dict[str, int]:
    now = int(time.time()) if now is None else now
    return {"iat": now - 5, "nbf": now - 5, "exp": now + lifetime}


def github_claims(issuer: str, *, repository: str = "acme/infra", ref: str = "refs/tags/v1.0.0",
                  workflow: str = "release.yml", environment: str | None = None, aud: Any = AUDIENCE,
                  **overrides: Any) -> dict[str, Any]:
    owner = repository.split("/")[0]
    ref_type = "tag" if ref.startswith("refs/tags/") else "branch"
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "sub": f"repo:{repository}:environment:{environment}" if environment else f"repo:{repository}:ref:{ref}",
        "aud": aud,
        "ref": ref,
        "sha": "example-sha-d4e5f6",
        "repository": repository,
        "repository_owner": owner,
        "repository_owner_id": "65",
        "repository_id": "74",
        "repository_visibility": "private",
        "run_id": "5719284231",
        "run_number": "10",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "12",
        "workflow": "Release",
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_protected": "true",
        "ref_type": ref_type,
        "workflow_ref": f"{repository}/.github/workflows/{workflow}@{ref}",
        "workflow_sha": "example-sha-d4e5f6",
        "job_workflow_ref": f"{repository}/.github/workflows/{workflow}@{ref}",
        "job_workflow_sha": "example-sha-d4e5f6",
        "runner_environment": "github-hosted",
        "iss": issuer,
        **_times(),
    }
    if environment:
        claims["environment"] = environment
    claims.update(overrides)
    return claims


def gitlab_claims(issuer: str, *, project_path: str = "acme/infra", ref: str = "v1.0.0", ref_type: str = "tag",
                  environment: str | None = None, aud: Any = AUDIENCE, **overrides: Any) -> dict[str, Any]:
    group = project_path.rsplit("/", 1)[0]
    claims: dict[str, Any] = {
        "namespace_id": "72",
        "namespace_path": group,
        "project_id": "20",
        "project_path": project_path,
        "user_id": "1",
        "user_login": "sample-user",
        "user_email": "sample-user@example.com",
        "user_identities": [],
        "pipeline_id": "574",
        "pipeline_source": "push",
        "job_id": "302",
        "ref": ref,
        "ref_type": ref_type,
        "ref_path": f"refs/{'tags' if ref_type == 'tag' else 'heads'}/{ref}",
        "ref_protected": "true",
        "runner_id": 27,
        "runner_environment": "gitlab-hosted",
        "sha": "example-sha-714a629c",
        "project_visibility": "private",
        "ci_config_ref_uri": f"gitlab.example.com/{project_path}//.gitlab-ci.yml@refs/heads/main",
        "ci_config_sha": "example-sha-714a629c",
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}",
        "aud": aud,
        **_times(),
    }
    if environment:
        claims.update(environment=environment, environment_protected="true", deployment_tier="production")
    claims.update(overrides)
    return claims


def azure_devops_claims(issuer: str, *, organization: str = "acme", project: str = "infra",
                        connection: str = "tfregistry", aud: Any = "api://AzureADTokenExchange",
                        **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "sub": f"sc://{organization}/{project}/{connection}",
        "aud": aud,
        "iss": issuer,
        **_times(),
    }
    claims.update(overrides)
    return claims


# --- the CI platforms' token endpoints, at the HTTP boundary -------------------------------------------

#: What GitHub's runner hands the job as ACTIONS_ID_TOKEN_REQUEST_TOKEN, and Azure DevOps as System.AccessToken.
GITHUB_REQUEST_TOKEN = "github-runner-request-token-0123456789"
AZURE_ACCESS_TOKEN = "azure-devops-job-access-token-0123456789"


class LocalEndpoint:
    """A small HTTP endpoint on a free port of 127.0.0.1, served from a thread; a context manager.
    Subclasses answer in :meth:`answer`; every request is kept in :attr:`requests`."""

    def __init__(self, issuer: IDTokenProxy) -> None:
        self.issuer = issuer
        self.requests: list[dict[str, Any]] = []
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def answer(self, request: Request) -> Response:
        raise NotImplementedError

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append({"method": request.method, "args": dict(request.args),
                              "authorization": request.headers.get("Authorization")})
        return self.answer(request)(environ, start_response)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class GitHubTokenEndpoint(LocalEndpoint):
    """What a GitHub-hosted runner's ``ACTIONS_ID_TOKEN_REQUEST_URL`` answers: the job's OIDC token for the
    requested ``audience``, for a caller presenting ``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` as a bearer token;
    ``{"count": ..., "value": "<jwt>"}`` (actions/toolkit's ``core.getIDToken``)."""

    def __init__(self, issuer: IDTokenProxy) -> None:
        super().__init__(issuer)
        #: Claims of the next tokens (besides aud), set by each test.
        self.claims: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"{self.base_url}/_apis/distributedtask/idtoken?api-version=2.0"

    def answer(self, request: Request) -> Response:
        if request.headers.get("Authorization", "").lower() != f"bearer {GITHUB_REQUEST_TOKEN}".lower():
            return Response("unauthorized", status=401)
        audience = request.args.get("audience") or "https://github.com/acme"
        token = self.issuer.sign(github_claims(self.issuer.issuer, aud=audience, **self.claims))
        return Response(json.dumps({"count": len(token), "value": token}), content_type="application/json")


class AzureOidcRequestEndpoint(LocalEndpoint):
    """What ``System.OidcRequestUri`` answers ``POST ?api-version=7.1&serviceConnectionId=ID`` from a job
    presenting ``System.AccessToken``: ``{"oidcToken": ...}`` for that service connection (organization
    acme, project infra), signed by ``issuer``."""

    def __init__(self, issuer: IDTokenProxy) -> None:
        super().__init__(issuer)
        #: service connection id -> its name (the last part of the token's sub).
        self.connections: dict[str, str] = {}

    @property
    def url(self) -> str:
        return (f"{self.base_url}/acme/0f6b1f4e-prj/_apis/distributedtask/hubs/build/plans/9a8b-plan/jobs/"
                "7c6d-job/oidctoken")

    def answer(self, request: Request) -> Response:
        if request.method != "POST" or request.headers.get("Authorization") != f"Bearer {AZURE_ACCESS_TOKEN}":
            return Response("unauthorized", status=401)
        name = self.connections.get(request.args.get("serviceConnectionId", ""))
        if name is None or request.args.get("api-version") != "7.1":
            return Response(json.dumps({"message": "unknown service connection"}), status=400)
        token = self.issuer.sign(azure_devops_claims(self.issuer.issuer, organization="acme", project="infra",
                                                     connection=name))
        return Response(json.dumps({"oidcToken": token}), content_type="application/json")


def module_dir(parent: Path, greeting: str) -> Path:
    """``parent/module``: a one-file module whose output ``greeting`` is ``greeting``."""
    path = parent / "module"
    path.mkdir()
    (path / "main.tf").write_text(f'output "greeting" {{\n  value = "{greeting}"\n}}\n')
    return path
