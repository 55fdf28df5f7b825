"""The client half of trusted publishing: get the CI platform's OIDC token, exchange it for a publish token.

Each platform hands a job its OIDC token its own documented way:

* GitHub Actions (``permissions: id-token: write``): ``GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD`` with
  ``Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`` answers ``{"value": "<jwt>"}``
  (https://docs.github.com/en/actions/reference/security/oidc).
* GitLab CI/CD: the job declares ``id_tokens: TFR_ID_TOKEN: {aud: AUD}`` and GitLab sets the variable
  (https://docs.gitlab.com/ci/secrets/id_token_authentication/).
* Azure DevOps: ``POST $SYSTEM_OIDCREQUESTURI?api-version=7.1&serviceConnectionId=ID`` with
  ``Authorization: Bearer $SYSTEM_ACCESSTOKEN`` answers ``{"oidcToken": "<jwt>"}``
  (https://learn.microsoft.com/rest/api/azure/devops/distributedtask/oidctoken/create); the service
  connection's id comes from ``TFR_AZURE_SERVICE_CONNECTION_ID``.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from tfregistry.client import ClientError, RegistryClient, error_message

#: The audience asked for when none is given (the default of ``trusted_publishing.audience``).
DEFAULT_AUDIENCE = "tfregistry"
AZURE_API_VERSION = "7.1"


def detect(env: Mapping[str, str] | None = None) -> str | None:
    """The CI platform whose OIDC token this process can get: ``github``, ``gitlab``, ``azure-devops`` or ``None``."""
    env = os.environ if env is None else env
    if env.get("ACTIONS_ID_TOKEN_REQUEST_URL") and env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        return "github"
    if env.get("TFR_ID_TOKEN"):
        return "gitlab"
    if env.get("SYSTEM_OIDCREQUESTURI") and env.get("SYSTEM_ACCESSTOKEN"):
        return "azure-devops"
    return None


def _fetch(url: str, *, method: str, bearer: str, what: str, field: str, timeout: float = 30) -> str:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None, headers={
        "Authorization": f"Bearer {bearer}", "Accept": "application/json", "User-Agent": "tfregistry-cli",
        "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise ClientError(f"{what} answered HTTP {exc.code} (is the job allowed to request OIDC tokens?)") from None
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot get the OIDC token from {what}: {exc.__class__.__name__}") from None
    token = body.get(field) if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ClientError(f"{what} answered without an OIDC token (no {field!r})")
    return token


def ci_id_token(audience: str = DEFAULT_AUDIENCE, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The platform and its OIDC token for ``audience``; :class:`ClientError` when no platform is found."""
    env = os.environ if env is None else env
    platform = detect(env)
    if platform == "github":
        url = env["ACTIONS_ID_TOKEN_REQUEST_URL"]
        url += ("&" if urlsplit(url).query else "?") + urlencode({"audience": audience})
        return platform, _fetch(url, method="GET", bearer=env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
                                what="GitHub Actions' token endpoint", field="value")
    if platform == "gitlab":
        return platform, env["TFR_ID_TOKEN"].strip()
    if platform == "azure-devops":
        connection = env.get("TFR_AZURE_SERVICE_CONNECTION_ID", "").strip()
        if not connection:
            raise ClientError("Azure DevOps: set TFR_AZURE_SERVICE_CONNECTION_ID to the id of the service connection "
                              "the registry's trusted publisher names")
        url = env["SYSTEM_OIDCREQUESTURI"]
        url += ("&" if urlsplit(url).query else "?") + urlencode({"api-version": AZURE_API_VERSION,
                                                                  "serviceConnectionId": connection})
        return platform, _fetch(url, method="POST", bearer=env["SYSTEM_ACCESSTOKEN"],
                                what="Azure DevOps' OIDC token endpoint", field="oidcToken")
    raise ClientError("no CI OIDC token found: on GitHub Actions grant 'id-token: write'; on GitLab declare "
                      "id_tokens: TFR_ID_TOKEN; on Azure DevOps map SYSTEM_ACCESSTOKEN into the step's environment")


def exchange(url: str, id_token: str, namespace: str | None = None) -> dict[str, str]:
    """Exchange ``id_token`` at the registry for a token publishing in ``namespace``; the answer of
    ``POST /api/v1/trusted-publishing/token``."""
    client = RegistryClient(url)
    body = {"token": id_token, **({"namespace": namespace} if namespace else {})}
    response = client.request("POST", "/api/v1/trusted-publishing/token", body=json.dumps(body),
                              headers={"Content-Type": "application/json"})
    if response.status != 201:
        raise ClientError(f"the registry refused the OIDC token ({response.status}): {error_message(response)}")
    return response.body


def publish_token(url: str, namespace: str | None = None, audience: str = DEFAULT_AUDIENCE,
                  env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Get the CI token and exchange it for a token publishing in ``namespace``: the registry's answer
    (``token``, ``expires_at``, ``packages``...)."""
    _, id_token = ci_id_token(audience, env)
    return exchange(url, id_token, namespace)
