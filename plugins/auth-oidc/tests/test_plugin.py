"""The hooks, the settings and the factory's start-up checks."""

from __future__ import annotations

from typing import Any

import pluggy
import pytest
import tfregistry_auth_oidc.plugin as plugin
from tfregistry_auth_oidc.mapping import MappingRule, claim_strings, grants_for, parse_mapping
from tfregistry_auth_oidc.provider import OIDCProvider

from tfregistry import StartupError
from tfregistry.interfaces import AuthProvider, LoginError
from tfregistry.testing.plugin import BackendCollector, SettingsCollector, plugin_manager


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return plugin_manager(plugin)


def declarations(pm: pluggy.PluginManager) -> dict[str, dict[str, Any]]:
    decls = SettingsCollector()
    pm.hook.tfr_add_settings(settings=decls)
    return decls.added


def settings(pm: pluggy.PluginManager, **values: Any) -> dict[str, Any]:
    result = {key: decl["default"] for key, decl in declarations(pm).items()}
    result.update({f"auth.oidc.{name}": value for name, value in values.items()})
    return result


def test_the_plugin_declares_its_settings(pm):
    decls = declarations(pm)
    assert set(decls) == {f"auth.oidc.{n}" for n in ("issuer", "client_id", "client_secret", "scopes", "label",
                                                     "groups_claim", "group_mapping", "allowed_domains",
                                                     "timeout")}
    assert decls["auth.oidc.client_secret"]["secret"] is True
    assert not any(d["secret"] for k, d in decls.items() if k != "auth.oidc.client_secret")
    assert decls["auth.oidc.scopes"]["default"] == ["openid", "profile", "email"]
    assert decls["auth.oidc.groups_claim"]["default"] == "groups"
    assert decls["auth.oidc.label"]["default"] == "Sign in with OpenID Connect"
    assert decls["auth.oidc.group_mapping"]["type"] is list
    assert all(d["help"] for d in decls.values())


def test_the_plugin_registers_the_oidc_provider(pm):
    register = BackendCollector()
    pm.hook.tfr_register_auth_providers(register=register)
    factory, description = register.added["oidc"]
    assert "auth.oidc" in description
    provider = factory(settings(pm, issuer="https://login.example.com/realms/acme", client_id="registry"))
    assert isinstance(provider, AuthProvider) and isinstance(provider, OIDCProvider)
    assert (provider.name, provider.label) == ("oidc", "Sign in with OpenID Connect")
    assert provider.options.scopes == ("openid", "profile", "email")
    assert provider.options.client_secret is None
    assert provider.metadata_url == "https://login.example.com/realms/acme/.well-known/openid-configuration"


def test_the_factory_reads_every_setting(pm):
    provider = plugin.make_oidc_provider(settings(
        pm, issuer="https://idp.example.com/", client_id="registry", client_secret="s3cret-s3cret-s3cret",
        scopes=["profile", "email groups"], label="Sign in with Acme", groups_claim="roles",
        group_mapping=["cn=admins,ou=groups=platform:admin", "devs = apps : publisher"],
        allowed_domains=["@Example.com", " example.org "], timeout=3.5))
    options = provider.options
    assert provider.label == "Sign in with Acme"
    assert options.scopes == ("openid", "profile", "email", "groups")
    assert options.client_secret == "s3cret-s3cret-s3cret"
    assert options.groups_claim == "roles"
    assert options.group_mapping == (MappingRule("cn=admins,ou=groups", "platform", "admin"),
                                     MappingRule("devs", "apps", "publisher"))
    assert options.allowed_domains == ("example.com", "example.org")
    assert options.timeout == 3.5


@pytest.mark.parametrize("key", ["issuer", "client_id"])
def test_a_missing_required_setting_stops_start_up_naming_it(pm, key):
    values = {"issuer": "https://idp.example.com", "client_id": "registry", key: None}
    with pytest.raises(StartupError) as info:
        plugin.make_oidc_provider(settings(pm, **values))
    assert str(info.value).startswith(f"auth.oidc.{key} (TFR_AUTH__OIDC__{key.upper()}) is required for the "
                                      "'oidc' sign-in: ")


def test_a_blank_issuer_counts_as_missing(pm):
    with pytest.raises(StartupError, match=r"^auth\.oidc\.issuer \(TFR_AUTH__OIDC__ISSUER\) is required"):
        plugin.make_oidc_provider(settings(pm, issuer="  ", client_id="registry"))


def test_a_plain_http_issuer_is_refused_unless_it_is_local(pm):
    with pytest.raises(StartupError, match=r"^auth\.oidc\.issuer must be an https URL"):
        plugin.make_oidc_provider(settings(pm, issuer="http://idp.example.com", client_id="registry"))
    assert plugin.make_oidc_provider(settings(pm, issuer="http://127.0.0.1:9400", client_id="registry"))


def test_the_issuer_converter_refuses_what_is_not_a_url():
    assert plugin.parse_issuer(" https://idp.example.com/realms/acme ") == "https://idp.example.com/realms/acme"
    for bad in ("idp.example.com", "ftp://idp.example.com", "https://idp.example.com/?x=1"):
        with pytest.raises(ValueError, match="is not an absolute https URL"):
            plugin.parse_issuer(bad)


def test_a_bad_mapping_stops_start_up_naming_the_setting(pm):
    with pytest.raises(StartupError) as info:
        plugin.make_oidc_provider(settings(pm, issuer="https://idp.example.com", client_id="registry",
                                           group_mapping=["admins=platform:admin", "devs=apps"]))
    assert str(info.value) == ("auth.oidc.group_mapping: 'devs=apps' is not of the form GROUP=ORGANIZATION:ROLE "
                               "(for example platform-admins=platform:admin)")


def test_a_non_positive_timeout_stops_start_up(pm):
    expected = r"^auth\.oidc\.timeout \(TFR_AUTH__OIDC__TIMEOUT\) must be a positive number of seconds$"
    with pytest.raises(StartupError, match=expected):
        plugin.make_oidc_provider(settings(pm, issuer="https://idp.example.com", client_id="registry", timeout=0))


@pytest.mark.parametrize("entry", ["=org:role", "group=:role", "group=org:", "group", "group=org role:x"])
def test_parse_mapping_refuses_incomplete_entries(entry):
    with pytest.raises(StartupError, match="is not of the form APPROLE=ORGANIZATION:ROLE"):
        parse_mapping([entry], "auth.x.role_mapping", left="APPROLE", example="R=o:r")


def test_grants_follow_rule_order_once_each():
    rules = parse_mapping(["b=org2:viewer", "a=org1:admin", "c=org1:admin", "A=org3:viewer"], "k")
    assert grants_for(["a", "b", "c"], rules) == [("org2", "viewer"), ("org1", "admin")]
    assert grants_for(["A"], rules, ignore_case=True) == [("org1", "admin"), ("org3", "viewer")]
    assert grants_for([], rules) == []


def test_claim_strings_accepts_a_single_string_and_refuses_other_types():
    assert claim_strings({"groups": "admins"}, "groups") == ["admins"]
    assert claim_strings({}, "groups") == []
    with pytest.raises(LoginError, match="'groups' claim that is not a list of strings"):
        claim_strings({"groups": [1, 2]}, "groups")
