"""Entra ID sign-in against a real OpenID provider (oidc-provider-mock), with Entra's claims and issuers.

The mock puts any claim into the ID token (``tid``, ``oid``, ``roles``, ``groups``, ``_claim_names``);
the ``entra`` fixture adds a re-signing proxy whose metadata and tokens have Entra's issuer shapes.
"""

from __future__ import annotations

import pytest
from tfregistry_auth_azuread.provider import OVERAGE_MESSAGE
from tfregistry_auth_oidc.testing import free_port

# the same ids as in conftest.py; the providers it builds are single-tenant for TENANT_A by default
TENANT_A = "11111111-1111-4111-8111-111111111111"
TENANT_B = "22222222-2222-4222-8222-222222222222"
TENANT_C = "33333333-3333-4333-8333-333333333333"
OID = "8b1f3c52-3a4d-4f6e-9c1d-0f2e3d4c5b6a"
GROUP_ADMINS = "4E0C8A4E-7F5D-4A4E-9A43-2F1B1C3D5E6F"
GROUP_DEVS = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"


def error_of(response) -> str:
    assert response.status_code == 400, response.get_data(as_text=True)
    return response.get_json()["error"]


def identity_of(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# --- identity --------------------------------------------------------------------------------


def test_the_subject_is_tenant_and_object_id(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, name="Adele Vance", preferred_username="AdeleV@contoso.example")
    identity = identity_of(browser(make_provider()).sign_in(sub))
    assert identity["provider"] == "azuread"
    assert identity["subject"] == f"{TENANT_A}/{OID}"
    assert sub not in identity["subject"]
    assert identity["email"] == "AdeleV@contoso.example"
    assert identity["name"] == "Adele Vance"
    assert identity["grants"] is None
    assert identity["claims"]["tid"] == TENANT_A


def test_the_email_claim_wins_over_preferred_username(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, email="adele@contoso.example", preferred_username="AdeleV@contoso.example")
    assert identity_of(browser(make_provider()).sign_in(sub))["email"] == "adele@contoso.example"


@pytest.mark.parametrize(("claims", "missing"), [({"tid": TENANT_A}, "'oid' claim"),
                                                 ({}, "'tid' and 'oid' claims")])
def test_a_token_without_tid_or_oid_is_refused(make_provider, browser, new_user, claims, missing):
    message = error_of(browser(make_provider()).sign_in(new_user(email="x@contoso.example", **claims)))
    assert message == f"the ID token lacks the {missing} (is the 'profile' scope requested?); sign-in refused"


def test_the_sign_in_uses_pkce_and_a_nonce(make_provider, browser):
    b = browser(make_provider())
    url = b.start()
    assert "code_challenge_method=S256" in url and "&nonce=" in url and "code_challenge=" in url


# --- tenants -------------------------------------------------------------------------------


def test_a_single_tenant_refuses_another_tenants_account(make_provider, browser, new_user):
    message = error_of(browser(make_provider()).sign_in(new_user(tid=TENANT_B, oid=OID)))
    assert message == (f"accounts of the Microsoft Entra tenant {TENANT_B} may not sign in to this registry "
                       f"(it accepts only tenant {TENANT_A})")


def test_single_tenant_with_entra_issuers_accepts_its_tenant(entra, browser, new_user):
    proxy, provider = entra()
    assert provider.metadata_url == f"{proxy.url}/{TENANT_A}/v2.0/.well-known/openid-configuration"
    identity = identity_of(browser(provider).sign_in(new_user(tid=TENANT_A, oid=OID)))
    assert identity["claims"]["iss"] == f"{proxy.url}/{TENANT_A}/v2.0"
    assert identity["subject"] == f"{TENANT_A}/{OID}"


def test_single_tenant_refuses_a_token_issued_by_another_tenant(entra, browser, new_user):
    proxy, provider = entra()
    message = error_of(browser(provider).sign_in(new_user(tid=TENANT_B, oid=OID)))
    assert message == (f"the ID token was issued by '{proxy.url}/{TENANT_B}/v2.0', but this registry trusts only "
                       f"'{proxy.url}/{TENANT_A}/v2.0'; sign-in refused")


def test_single_tenant_by_domain_name_relies_on_the_issuer(make_proxy, make_provider, browser, new_user):
    """A tenant given by domain: its metadata's issuer carries the tenant id, and that is what is checked."""
    proxy = make_proxy(issuer=f"{{url}}/{TENANT_A}/v2.0")
    proxy.token_issuer = lambda claims: f"{proxy.url}/{claims['tid']}/v2.0"
    provider = make_provider(tenant="contoso.example", authority=proxy.url, metadata_url=None, issuer=None)
    assert provider.metadata_url == f"{proxy.url}/contoso.example/v2.0/.well-known/openid-configuration"
    assert identity_of(browser(provider).sign_in(new_user(tid=TENANT_A, oid=OID)))["subject"] == f"{TENANT_A}/{OID}"
    message = error_of(browser(provider).sign_in(new_user(tid=TENANT_B, oid=OID)))
    assert f"issued by '{proxy.url}/{TENANT_B}/v2.0'" in message


def test_multi_tenant_accepts_an_allowed_tenant(entra, browser, new_user):
    proxy, provider = entra(tenant="organizations", allowed_tenants=[TENANT_A, TENANT_C.upper()])
    identity = identity_of(browser(provider).sign_in(new_user(tid=TENANT_C, oid=OID)))
    assert identity["subject"] == f"{TENANT_C}/{OID}"
    assert identity["claims"]["iss"] == f"{proxy.url}/{TENANT_C}/v2.0"
    assert proxy.issuer == f"{proxy.url}/{{tenantid}}/v2.0"


def test_multi_tenant_refuses_a_tenant_not_allowed(entra, browser, new_user):
    _, provider = entra(tenant="common", allowed_tenants=[TENANT_A])
    message = error_of(browser(provider).sign_in(new_user(tid=TENANT_B, oid=OID)))
    assert message == (f"accounts of the Microsoft Entra tenant {TENANT_B} may not sign in to this registry; ask "
                       "a registry administrator to add the tenant to auth.azuread.allowed_tenants")


def test_multi_tenant_refuses_a_token_whose_issuer_is_not_its_tenants(entra, browser, new_user):
    """The ``{tenantid}`` of the issuer is filled with the token's own ``tid``, not with any allowed tenant."""
    proxy, provider = entra(tenant="organizations", allowed_tenants=[TENANT_A, TENANT_B])
    proxy.rewrite_claims = lambda c: {**c, "iss": f"{proxy.url}/{TENANT_B}/v2.0"}
    message = error_of(browser(provider).sign_in(new_user(tid=TENANT_A, oid=OID)))
    assert message == (f"the ID token was issued by '{proxy.url}/{TENANT_B}/v2.0', but this registry trusts only "
                       f"'{proxy.url}/{TENANT_A}/v2.0'; sign-in refused")


def test_multi_tenant_refuses_a_token_without_tid(entra, browser, new_user):
    _, provider = entra(tenant="organizations", allowed_tenants=[TENANT_A])
    message = error_of(browser(provider).sign_in(new_user(oid=OID)))
    assert message == "the ID token has no 'tid' (tenant id) claim; sign-in refused"


def test_a_forged_token_is_refused(entra, browser, new_user):
    proxy, provider = entra()
    proxy.rewrite_token = lambda token: token[:-8] + ("AAAAAAAA" if not token.endswith("AAAAAAAA") else "BBBBBBBB")
    message = error_of(browser(provider).sign_in(new_user(tid=TENANT_A, oid=OID)))
    assert "signature does not verify" in message


def test_a_token_for_another_application_is_refused(entra, browser, new_user):
    proxy, provider = entra()
    proxy.rewrite_claims = lambda c: {**c, "aud": "00000003-0000-0000-c000-000000000000"}
    message = error_of(browser(provider).sign_in(new_user(tid=TENANT_A, oid=OID)))
    assert message.startswith("the ID token was issued for another application")


# --- memberships ---------------------------------------------------------------------------


def test_app_roles_are_mapped(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, roles=["Registry.Admin", "Registry.Publisher", "Unmapped"])
    provider = make_provider(role_mapping=["Registry.Admin=platform:admin", "Registry.Publisher=apps:publisher",
                                           "registry.admin=other:admin"])
    assert identity_of(browser(provider).sign_in(sub))["grants"] == [["platform", "admin"], ["apps", "publisher"]]


def test_group_object_ids_are_mapped_case_insensitively(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, groups=[GROUP_ADMINS.lower(), "ffffffff-0000-4000-8000-000000000000"])
    provider = make_provider(group_mapping=[f"{GROUP_ADMINS}=platform:admin", f"{GROUP_DEVS}=apps:publisher"])
    assert identity_of(browser(provider).sign_in(sub))["grants"] == [["platform", "admin"]]


def test_roles_and_groups_together_each_pair_once(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, roles=["Registry.Viewer"], groups=[GROUP_DEVS, GROUP_ADMINS])
    provider = make_provider(role_mapping=["Registry.Viewer=apps:viewer"],
                             group_mapping=[f"{GROUP_DEVS}=apps:viewer", f"{GROUP_ADMINS}=platform:mirror-manager"])
    assert identity_of(browser(provider).sign_in(sub))["grants"] == [["apps", "viewer"],
                                                                      ["platform", "mirror-manager"]]


def test_a_mapping_with_nothing_matching_grants_nothing(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID)
    provider = make_provider(role_mapping=["Registry.Admin=platform:admin"])
    assert identity_of(browser(provider).sign_in(sub))["grants"] == []


OVERAGE = {"_claim_names": {"groups": "src1"},
           "_claim_sources": {"src1": {"endpoint": f"https://graph.microsoft.com/v1.0/users/{OID}/getMemberObjects"}}}


def test_groups_overage_with_a_group_mapping_is_refused_with_advice(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, roles=["Registry.Admin"], **OVERAGE)
    provider = make_provider(role_mapping=["Registry.Admin=platform:admin"],
                             group_mapping=[f"{GROUP_ADMINS}=platform:admin"])
    message = error_of(browser(provider).sign_in(sub))
    assert message == OVERAGE_MESSAGE
    assert "too many groups" in message and "app roles" in message
    assert '"Groups assigned to the application"' in message


def test_groups_overage_signalled_by_hasgroups_is_refused_too(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, hasgroups=True)
    message = error_of(browser(make_provider(group_mapping=[f"{GROUP_ADMINS}=platform:admin"])).sign_in(sub))
    assert message == OVERAGE_MESSAGE


def test_groups_overage_with_only_a_role_mapping_signs_in(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, roles=["Registry.Admin"], **OVERAGE)
    identity = identity_of(browser(make_provider(role_mapping=["Registry.Admin=platform:admin"])).sign_in(sub))
    assert identity["grants"] == [["platform", "admin"]]


def test_groups_overage_without_any_mapping_signs_in(make_provider, browser, new_user):
    sub = new_user(tid=TENANT_A, oid=OID, **OVERAGE)
    assert identity_of(browser(make_provider()).sign_in(sub))["grants"] is None


# --- diagnostics ---------------------------------------------------------------------------


def test_check_is_empty_when_entra_answers(make_provider, entra):
    assert make_provider().check() == []
    assert entra(tenant="organizations", allowed_tenants=[TENANT_A])[1].check() == []


def test_check_reports_unreachable_metadata(make_provider):
    url = f"http://127.0.0.1:{free_port()}/{TENANT_A}/v2.0/.well-known/openid-configuration"
    problems = make_provider(metadata_url=url).check()
    assert problems == [f"azuread: cannot fetch the OpenID Connect discovery document {url}: connection refused "
                        "(setting auth.azuread.metadata_url)"]


def test_an_unreachable_entra_id_is_a_login_error_not_a_crash(make_provider, browser):
    url = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    response = browser(make_provider(metadata_url=url)).client.get("/login")
    assert "cannot be reached right now" in error_of(response)
