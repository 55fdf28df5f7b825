"""Policy hooks see the request they decide for: an IP allow-list plugin, reached through the trusted
proxy middleware and directly, on SQLite and PostgreSQL (the ``app_factory`` fixture runs both)."""

from __future__ import annotations

import io
import ipaddress
import warnings
from typing import Any

from tests.conftest import bearer, new_token
from tfregistry import auth, hookimpl
from tfregistry.auth import Identity
from tfregistry.interfaces import RequestContext
from tfregistry.services.identity import expand
from tfregistry.testing.plugin import build_module_archive

#: Where publishing is allowed from.
OFFICE = ipaddress.ip_network("203.0.113.0/24")
#: The reverse proxy in front of the registry (``proxy.trusted`` is 10.0.0.0/8).
PROXY = "10.1.2.3"
OUTSIDE = "198.51.100.20"


class OfficeOnlyWrites:
    """A site policy: publishing and changes only from the office network, reads from anywhere.

    Written as a plugin author would from docs/hooks.md: it names only the arguments it uses.  A check
    made outside a request (``context`` is ``None``: a ``tfr`` command, a job) is left to the core.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, RequestContext | None]] = []

    @hookimpl
    def tfr_permission_allowed(self, action: str, context: RequestContext | None) -> bool | None:
        self.seen.append((action, context))
        if context is None or not action.endswith(":write"):
            return None
        return context.client_ip is not None and context.client_ip in OFFICE


class FreezeWithoutContext:
    """An implementation written before ``context`` existed (the plugin API 1.0 signature minus it)."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def tfr_permission_allowed(self, identity: Identity, action: str, resource: Any) -> bool | None:
        self.calls += 1
        return False if action.endswith(":write") and resource.namespace == "frozen" else None


def publish(client: Any, token: str, version: str, remote: str, headers: dict[str, str] | None = None,
            namespace: str = "acme") -> Any:
    """POST a module version from ``remote`` (the TCP peer the registry sees)."""
    data = {"namespace": namespace, "name": "network", "system": "aws", "version": version,
            "archive": (io.BytesIO(build_module_archive()), "module.tar.gz")}
    return client.post("/api/v1/modules", data=data, content_type="multipart/form-data",
                       headers={**bearer(token), **(headers or {})}, environ_base={"REMOTE_ADDR": remote})


def versions(client: Any, token: str, remote: str = OUTSIDE) -> list[str]:
    r = client.get("/v1/modules/acme/network/aws/versions", headers=bearer(token), environ_base={"REMOTE_ADDR": remote})
    assert r.status_code == 200, r.get_data(as_text=True)
    return sorted(v["version"] for v in r.get_json()["modules"][0]["versions"])


def writes(policy: OfficeOnlyWrites) -> list[RequestContext | None]:
    return [context for action, context in policy.seen if action == "modules:write"]


def test_hook_tfr_permission_allowed_ip_allow_list_behind_a_trusted_proxy_and_direct(app_factory: Any):
    policy = OfficeOnlyWrites()
    app = app_factory({"proxy.trusted": ["10.0.0.0/8"]}, plugins=(policy,))
    client, token = app.test_client(), new_token(app, "admin")

    # Through the trusted proxy: the client is the X-Forwarded-For address, and the request id,
    # method and path are those of the request (the path without the proxy's mount prefix).
    r = publish(client, token, "1.0.0", PROXY, {"X-Forwarded-For": "203.0.113.7", "X-Request-Id": "office-1",
                                                "X-Forwarded-Prefix": "/registry"})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert writes(policy)[-1] == RequestContext(client_address="203.0.113.7", request_id="office-1",
                                                method="POST", path="/api/v1/modules")
    assert r.headers["X-Request-Id"] == "office-1"

    # Two proxies (the nearest hop is trusted too): walking back, the first untrusted address is the client.
    r = publish(client, token, "1.1.0", PROXY, {"X-Forwarded-For": "203.0.113.8, 10.9.9.9"})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert writes(policy)[-1].client_address == "203.0.113.8"
    assert writes(policy)[-1].request_id == r.headers["X-Request-Id"]

    # Through the trusted proxy from outside the office: refused, and nothing is published.
    r = publish(client, token, "2.0.0", PROXY, {"X-Forwarded-For": OUTSIDE})
    assert r.status_code == 403, r.get_data(as_text=True)
    assert writes(policy)[-1].client_address == OUTSIDE

    # Directly, without a proxy: the TCP peer is the client.
    assert publish(client, token, "1.2.0", "203.0.113.9").status_code == 201
    assert writes(policy)[-1].client_address == "203.0.113.9"
    r = publish(client, token, "2.1.0", OUTSIDE)
    assert r.status_code == 403, r.get_data(as_text=True)
    assert writes(policy)[-1].client_address == OUTSIDE

    # A direct client cannot claim an office address: X-Forwarded-For counts only from a trusted proxy.
    r = publish(client, token, "2.2.0", OUTSIDE, {"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 403, r.get_data(as_text=True)
    assert writes(policy)[-1].client_address == OUTSIDE

    # Reads are not the policy's business: allowed from anywhere, and only the office's versions exist.
    assert versions(client, token) == ["1.0.0", "1.1.0", "1.2.0"]
    reads = [context for action, context in policy.seen if action == "modules:read"]
    assert reads and reads[-1].method == "GET" and reads[-1].path == "/v1/modules/acme/network/aws/versions"


def test_hook_tfr_permission_allowed_without_a_proxy_setting_ignores_forwarded_for(app_factory: Any):
    """With ``proxy.trusted`` empty (the default), no peer is trusted: the policy sees the TCP peer."""
    policy = OfficeOnlyWrites()
    app = app_factory(plugins=(policy,))
    client, token = app.test_client(), new_token(app, "admin")
    assert publish(client, token, "1.0.0", PROXY, {"X-Forwarded-For": "203.0.113.7"}).status_code == 403
    assert writes(policy)[-1].client_address == PROXY
    assert publish(client, token, "1.0.0", "203.0.113.7").status_code == 201


def test_hook_tfr_permission_allowed_old_and_new_signatures_together(app_factory: Any):
    """pluggy passes each implementation only the arguments it names: one written without ``context``
    keeps working next to one that uses it, with no warning; any ``False`` still vetoes."""
    policy, freeze = OfficeOnlyWrites(), FreezeWithoutContext()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pluggy argument mismatch warning would fail the test
        app = app_factory(plugins=(freeze, policy))
        client, token = app.test_client(), new_token(app, "admin")
        assert publish(client, token, "1.0.0", "203.0.113.7").status_code == 201
        assert publish(client, token, "1.0.0", "203.0.113.7", namespace="frozen").status_code == 403
        assert publish(client, token, "1.1.0", OUTSIDE).status_code == 403
    assert freeze.calls >= 3 and len(writes(policy)) >= 3


def test_hook_tfr_permission_allowed_context_is_none_outside_a_request(app_factory: Any):
    """A permission checked with no HTTP request (a command, a job) reaches the hook with ``context=None``."""
    policy = OfficeOnlyWrites()
    app = app_factory(plugins=(policy,))
    site_admin = Identity(name="token:cli", kind="site", token_scopes=expand(["admin"]))
    with app.app_context():
        assert auth.allowed(site_admin, "modules:write", None) is True
    assert policy.seen == [("modules:write", None)]
