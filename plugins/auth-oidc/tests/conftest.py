"""A real oidc-provider-mock server (a subprocess on 127.0.0.1) and providers configured against it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tfregistry_auth_oidc.plugin as plugin
from tfregistry_auth_oidc.provider import OIDCProvider
from tfregistry_auth_oidc.testing import Browser, IDTokenProxy, OIDCMock

from tfregistry.testing.plugin import declared_settings, plugin_settings

CLIENT_ID = "tfregistry-tests"
CLIENT_SECRET = "tests-client-secret-0123456789"


def declared() -> dict[str, dict[str, Any]]:
    return declared_settings(plugin)


def settings_with(**values: Any) -> dict[str, Any]:
    """Every ``auth.oidc.*`` key at its declared default, then ``values`` (short names) on top."""
    return plugin_settings(plugin, "auth.oidc", **values)


@pytest.fixture(scope="session")
def oidc_mock() -> Iterator[OIDCMock]:
    with OIDCMock() as mock:
        yield mock


@pytest.fixture
def make_provider(oidc_mock: OIDCMock) -> Callable[..., OIDCProvider]:
    """Build the ``oidc`` provider through the plugin's factory; keyword arguments are ``auth.oidc.*`` values."""

    def make(**values: Any) -> OIDCProvider:
        base = {"issuer": oidc_mock.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        return plugin.make_oidc_provider(settings_with(**{**base, **values}))

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
def new_user(oidc_mock: OIDCMock) -> Callable[..., str]:
    """Define a person with a fresh subject and the given claims at the mock; return the subject."""

    def make(**claims: Any) -> str:
        sub = f"user-{uuid.uuid4().hex[:10]}"
        oidc_mock.add_user(sub, claims)
        return sub

    return make


@pytest.fixture
def browser(oidc_mock: OIDCMock) -> Callable[[OIDCProvider], Browser]:
    return lambda provider: Browser(provider, oidc_mock)
