"""A real oidc-provider-mock server standing in for Microsoft Entra ID, and providers configured against it.

The mock names itself ``http://127.0.0.1:<port>`` (no tenant in the path), so tests that need
Entra's issuer shapes (``.../<tenant id>/v2.0`` and the multi-tenant ``.../{tenantid}/v2.0``) put an
:class:`IDTokenProxy` in front of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tfregistry_auth_azuread.plugin as plugin
from tfregistry_auth_azuread.provider import AzureADProvider
from tfregistry_auth_oidc.testing import Browser, IDTokenProxy, OIDCMock

from tfregistry.testing.plugin import declared_settings, plugin_settings

CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
CLIENT_SECRET = "tests-client-secret-0123456789"
TENANT_A = "11111111-1111-4111-8111-111111111111"
TENANT_B = "22222222-2222-4222-8222-222222222222"
TENANT_C = "33333333-3333-4333-8333-333333333333"


@pytest.fixture
def declared() -> dict[str, dict[str, Any]]:
    return declared_settings(plugin)


@pytest.fixture
def settings_with() -> Callable[..., dict[str, Any]]:
    """Every ``auth.azuread.*`` key at its declared default, then the given values (short names) on top."""
    return lambda **values: plugin_settings(plugin, "auth.azuread", **values)


@pytest.fixture(scope="session")
def oidc_mock() -> Iterator[OIDCMock]:
    with OIDCMock() as mock:
        yield mock


@pytest.fixture
def make_provider(oidc_mock: OIDCMock, settings_with: Callable[..., dict[str, Any]]
                  ) -> Callable[..., AzureADProvider]:
    """The ``azuread`` provider through the plugin's factory, by default single-tenant (TENANT_A) on the mock."""

    def make(**values: Any) -> AzureADProvider:
        base = {"tenant": TENANT_A, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "authority": oidc_mock.issuer, "metadata_url": oidc_mock.discovery_url, "issuer": oidc_mock.issuer}
        return plugin.make_azuread_provider(settings_with(**{**base, **values}))

    return make


@pytest.fixture
def make_proxy(oidc_mock: OIDCMock) -> Iterator[Callable[..., IDTokenProxy]]:
    """Start :class:`IDTokenProxy` instances in front of the mock; stopped after the test."""
    started: list[IDTokenProxy] = []

    def make(**kwargs: Any) -> IDTokenProxy:
        proxy = IDTokenProxy(oidc_mock, **kwargs).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def entra(make_proxy: Callable[..., IDTokenProxy], make_provider: Callable[..., AzureADProvider]
          ) -> Callable[..., tuple[IDTokenProxy, AzureADProvider]]:
    """A proxy with Entra's multi-tenant metadata (issuer ``{url}/{tenantid}/v2.0``, tokens' ``iss`` per ``tid``)
    and a provider whose authority is the proxy, with the default metadata URL and issuer."""

    def make(**values: Any) -> tuple[IDTokenProxy, AzureADProvider]:
        proxy = make_proxy(issuer="{url}/{tenantid}/v2.0")
        return proxy, make_provider(authority=proxy.url, metadata_url=None, issuer=None, **values)

    return make


@pytest.fixture
def new_user(oidc_mock: OIDCMock) -> Callable[..., str]:
    """Define a person with a fresh subject and the given claims at the mock; return the subject."""

    def make(**claims: Any) -> str:
        sub = f"pairwise-{uuid.uuid4().hex[:12]}"
        oidc_mock.add_user(sub, claims)
        return sub

    return make


@pytest.fixture
def browser(oidc_mock: OIDCMock) -> Callable[[AzureADProvider], Browser]:
    return lambda provider: Browser(provider, oidc_mock)
