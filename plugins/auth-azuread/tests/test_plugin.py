"""The hooks, the settings and the factory's start-up checks."""

from __future__ import annotations

import pluggy
import pytest
import tfregistry_auth_azuread.plugin as plugin
from tfregistry_auth_azuread.provider import AzureADProvider
from tfregistry_auth_oidc.mapping import MappingRule
from tfregistry_auth_oidc.provider import OIDCProvider

from tfregistry import StartupError
from tfregistry.interfaces import AuthProvider
from tfregistry.testing.plugin import BackendCollector, plugin_manager

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return plugin_manager(plugin)


def test_the_plugin_declares_its_settings(declared):
    assert set(declared) == {f"auth.azuread.{n}" for n in (
        "tenant", "allowed_tenants", "client_id", "client_secret", "authority", "metadata_url", "issuer", "scopes",
        "label", "role_mapping", "group_mapping", "timeout")}
    assert [k for k, d in declared.items() if d["secret"]] == ["auth.azuread.client_secret"]
    assert declared["auth.azuread.authority"]["default"] == "https://login.microsoftonline.com"
    assert declared["auth.azuread.label"]["default"] == "Sign in with Microsoft"
    assert "sovereign clouds and tests" in declared["auth.azuread.metadata_url"]["help"]
    assert "sovereign clouds and tests" in declared["auth.azuread.issuer"]["help"]


def test_the_plugin_registers_the_azuread_provider(pm, settings_with):
    register = BackendCollector()
    pm.hook.tfr_register_auth_providers(register=register)
    factory, description = register.added["azuread"]
    assert "auth.azuread" in description
    provider = factory(settings_with(tenant=TENANT, client_id="app-id", client_secret="s3cret"))
    assert isinstance(provider, AzureADProvider) and isinstance(provider, OIDCProvider)
    assert isinstance(provider, AuthProvider)
    assert (provider.name, provider.label) == ("azuread", "Sign in with Microsoft")
    assert provider.metadata_url == (f"https://login.microsoftonline.com/{TENANT}/v2.0/"
                                     ".well-known/openid-configuration")
    assert provider.session_key == "_tfr_auth_azuread"


def test_the_factory_reads_every_setting(settings_with):
    provider = plugin.make_azuread_provider(settings_with(
        tenant="Organizations", allowed_tenants=[TENANT.upper()], client_id="app-id", client_secret="s3cret",
        authority="https://login.microsoftonline.us/", metadata_url="https://meta.example/doc",
        issuer="https://login.microsoftonline.us/{tenantid}/v2.0", scopes=["openid profile"], label="Contoso",
        role_mapping=["Registry.Admin=platform:admin"], group_mapping=[f"{TENANT}=apps:viewer"], timeout=2))
    options = provider.azure
    assert options.multi_tenant and options.tenant == "organizations"
    assert options.allowed_tenants == (TENANT,)
    assert options.authority == "https://login.microsoftonline.us"
    assert provider.metadata_url == "https://meta.example/doc"
    assert options.issuer == "https://login.microsoftonline.us/{tenantid}/v2.0"
    assert options.scopes == ("openid", "profile")
    assert provider.label == "Contoso"
    assert options.role_mapping == (MappingRule("Registry.Admin", "platform", "admin"),)
    assert options.group_mapping == (MappingRule(TENANT, "apps", "viewer"),)
    assert provider.options.timeout == 2


@pytest.mark.parametrize("key", ["tenant", "client_id"])
def test_a_missing_required_setting_stops_start_up_naming_it(settings_with, key):
    values = {"tenant": TENANT, "client_id": "app-id", key: None}
    with pytest.raises(StartupError) as info:
        plugin.make_azuread_provider(settings_with(**values))
    assert str(info.value).startswith(f"auth.azuread.{key} (TFR_AUTH__AZUREAD__{key.upper()}) is required for "
                                      "the 'azuread' sign-in: ")


@pytest.mark.parametrize("tenant", ["organizations", "common"])
def test_multi_tenant_requires_allowed_tenants(settings_with, tenant):
    with pytest.raises(StartupError) as info:
        plugin.make_azuread_provider(settings_with(tenant=tenant, client_id="app-id"))
    assert str(info.value).startswith("auth.azuread.allowed_tenants (TFR_AUTH__AZUREAD__ALLOWED_TENANTS) is "
                                      f"required when auth.azuread.tenant is '{tenant}'")


def test_allowed_tenants_must_be_tenant_ids(settings_with):
    with pytest.raises(StartupError, match=r"^auth\.azuread\.allowed_tenants lists tenant ids .*not contoso\.com$"):
        plugin.make_azuread_provider(settings_with(tenant="organizations", client_id="app-id",
                                                   allowed_tenants=[TENANT, "contoso.com"]))


def test_personal_accounts_are_refused(settings_with):
    with pytest.raises(StartupError, match=r"^auth\.azuread\.tenant: personal Microsoft accounts"):
        plugin.make_azuread_provider(settings_with(tenant="consumers", client_id="app-id"))


def test_a_plain_http_authority_is_refused(settings_with):
    with pytest.raises(StartupError, match=r"^auth\.azuread\.authority must be an https URL"):
        plugin.make_azuread_provider(settings_with(tenant=TENANT, client_id="app-id",
                                                   authority="http://login.example.com"))


def test_bad_mappings_name_their_setting(settings_with):
    with pytest.raises(StartupError) as info:
        plugin.make_azuread_provider(settings_with(tenant=TENANT, client_id="app-id", role_mapping=["Admin"]))
    assert str(info.value) == ("auth.azuread.role_mapping: 'Admin' is not of the form APPROLE=ORGANIZATION:ROLE "
                               "(for example Registry.Admin=platform:admin)")
    with pytest.raises(StartupError, match=r"^auth\.azuread\.group_mapping: 'x' is not of the form GROUP_OBJECT_ID="):
        plugin.make_azuread_provider(settings_with(tenant=TENANT, client_id="app-id", group_mapping=["x"]))
