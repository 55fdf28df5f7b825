"""The whole sign-in against a real OpenID provider (oidc-provider-mock in a subprocess).

Flask's test client plays the browser (it keeps the signed session cookie between /login and
/callback); the mock's authorization form is posted like a person would.  ID tokens the mock cannot
produce (another audience, an expired or forged one) come from :class:`IDTokenProxy`, a real token
endpoint in front of the mock that re-signs its tokens, so they go through the same HTTP exchange
and validation code as a real one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from joserfc.jwk import RSAKey
from tfregistry_auth_oidc.testing import free_port

from tfregistry.interfaces import LoginError


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = {**query(url), **changes}
    return urlunsplit(parts._replace(query=urlencode(params)))


def error_of(response) -> str:
    assert response.status_code == 400, response.get_data(as_text=True)
    return response.get_json()["error"]


# --- the happy path -------------------------------------------------------------------------


def test_sign_in_returns_the_identity_and_mapped_grants(make_provider, browser, new_user):
    sub = new_user(email="Alice@Example.com", name="Alice Liddell", groups=["platform-admins", "devs", "other"])
    provider = make_provider(group_mapping=["platform-admins=platform:admin", "devs=apps:publisher",
                                            "nobody=secret:admin"])
    response = browser(provider).sign_in(sub)
    assert response.status_code == 200, response.get_data(as_text=True)
    identity = response.get_json()
    assert identity["provider"] == "oidc"
    assert identity["subject"] == sub
    assert identity["email"] == "Alice@Example.com"
    assert identity["name"] == "Alice Liddell"
    assert identity["grants"] == [["platform", "admin"], ["apps", "publisher"]]
    assert identity["claims"]["groups"] == ["platform-admins", "devs", "other"]
    assert "nonce" not in identity["claims"] and "at_hash" not in identity["claims"]


def test_without_a_mapping_grants_are_none(make_provider, browser, new_user):
    sub = new_user(email="bob@example.com", given_name="Bob", family_name="Builder", groups=["platform-admins"])
    identity = browser(make_provider()).sign_in(sub).get_json()
    assert identity["subject"] == sub
    assert identity["name"] == "Bob Builder"
    assert identity["grants"] is None


def test_mapping_with_no_matching_group_grants_nothing(make_provider, browser, new_user):
    """An empty list (not None): the core then removes the person's provider-managed memberships."""
    sub = new_user(email="carol@example.com")
    identity = browser(make_provider(group_mapping=["platform-admins=platform:admin"])).sign_in(sub).get_json()
    assert identity["grants"] == []


def test_a_custom_groups_claim(make_provider, browser, new_user):
    sub = new_user(email="dan@example.com", roles=["registry-admin"], groups=["platform-admins"])
    provider = make_provider(groups_claim="roles", group_mapping=["registry-admin=acme:mirror-manager",
                                                                  "platform-admins=acme:admin"])
    assert browser(provider).sign_in(sub).get_json()["grants"] == [["acme", "mirror-manager"]]


def test_the_authorization_request_carries_pkce_s256_and_a_nonce(make_provider, browser):
    b = browser(make_provider(scopes=["openid", "profile email", "groups"]))
    url = b.start()
    params = query(url)
    assert url.startswith(b.mock.issuer + "/oauth2/authorize?")
    assert params["response_type"] == "code"
    assert params["client_id"] == "tfregistry-tests"
    assert params["redirect_uri"] == "http://localhost/callback"
    assert params["scope"] == "openid profile email groups"
    assert params["code_challenge_method"] == "S256"
    with b.client.session_transaction() as session:
        pending = session[b.provider.session_key][params["state"]]
    digest = hashlib.sha256(pending["verifier"].encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert params["nonce"] == pending["nonce"] and len(params["nonce"]) >= 32
    assert params["state"] != params["nonce"]
    assert len(pending["verifier"]) >= 43


def test_the_code_exchange_sends_the_pkce_verifier_and_the_client_secret(make_provider, make_proxy, browser,
                                                                         new_user):
    proxy = make_proxy()
    b = browser(make_provider(issuer=proxy.url))
    authorize_url = b.start()
    response = b.callback(b.mock.sign_in(authorize_url, new_user(email="erin@example.com")))
    assert response.status_code == 200, response.get_data(as_text=True)
    (request,) = proxy.token_requests
    verifier = request["form"]["code_verifier"]
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query(authorize_url)["code_challenge"]
    assert request["form"]["grant_type"] == "authorization_code"
    assert request["form"]["redirect_uri"] == "http://localhost/callback"
    expected = base64.b64encode(b"tfregistry-tests:tests-client-secret-0123456789").decode()
    assert request["authorization"] == f"Basic {expected}"


def test_a_public_client_sends_no_secret(make_provider, make_proxy, browser, new_user):
    """Without client_secret: client authentication ``none`` (client id in the body, PKCE verifier).

    The mock only accepts authenticated clients, so it refuses the exchange; what matters here is the
    request, and that the refusal reaches the person as a LoginError.
    """
    proxy = make_proxy()
    b = browser(make_provider(issuer=proxy.url, client_secret=None))
    message = error_of(b.sign_in(new_user(email="frank@example.com")))
    assert message.startswith("the identity provider refused to complete the sign-in (invalid_client")
    (request,) = proxy.token_requests
    assert request["authorization"] is None
    assert request["form"]["client_id"] == "tfregistry-tests"
    assert "client_secret" not in request["form"]
    assert request["form"]["code_verifier"]


def test_two_tabs_can_sign_in_at_once(make_provider, browser, new_user):
    b = browser(make_provider())
    first, second = b.start(), b.start()
    sub = new_user(email="grace@example.com")
    assert b.callback(b.mock.sign_in(second, sub)).status_code == 200
    assert b.callback(b.mock.sign_in(first, sub)).get_json()["subject"] == sub


# --- state, errors from the identity provider --------------------------------------------------


def test_a_replayed_callback_is_refused(make_provider, browser, new_user):
    b = browser(make_provider())
    callback = b.mock.sign_in(b.start(), new_user(email="heidi@example.com"))
    assert b.callback(callback).status_code == 200
    message = error_of(b.callback(callback))
    assert "already used" in message and "start the sign-in again" in message


def test_a_state_that_does_not_match_is_refused(make_provider, browser, new_user):
    b = browser(make_provider())
    callback = b.mock.sign_in(b.start(), new_user(email="ivan@example.com"))
    assert "state mismatch" in error_of(b.callback(with_query(callback, state="forged-state")))
    # the genuine response still works afterwards: the mismatch did not consume it
    assert b.callback(callback).status_code == 200


def test_a_callback_in_another_browser_is_refused(make_provider, browser, new_user):
    provider = make_provider()
    callback = browser(provider).mock.sign_in(browser(provider).start(), new_user(email="judy@example.com"))
    other = browser(provider)  # a new test client: no session cookie
    assert "no sign-in is in progress" in error_of(other.callback(callback))


def test_a_callback_without_state_is_refused(make_provider, browser, new_user):
    b = browser(make_provider())
    callback = b.mock.sign_in(b.start(), new_user(email="ken@example.com"))
    parts = urlsplit(callback)
    params = {k: v for k, v in query(callback).items() if k != "state"}
    assert "no state parameter" in error_of(b.callback(urlunsplit(parts._replace(query=urlencode(params)))))


def test_access_denied_at_the_identity_provider(make_provider, browser):
    b = browser(make_provider())
    callback = b.mock.deny(b.start())
    assert query(callback)["error"] == "access_denied"
    message = error_of(b.callback(callback))
    assert message.startswith("the sign-in was cancelled or refused at the identity provider (access_denied")


def test_a_code_the_identity_provider_does_not_know_is_refused(make_provider, browser, new_user):
    b = browser(make_provider())
    callback = b.mock.sign_in(b.start(), new_user(email="leo@example.com"))
    message = error_of(b.callback(with_query(callback, code="not-a-code-the-provider-issued")))
    assert "refused to complete the sign-in (invalid_grant" in message


def test_a_sign_in_that_took_too_long_is_refused(make_provider, browser, new_user):
    b = browser(make_provider())
    callback = b.mock.sign_in(b.start(), new_user(email="mia@example.com"))
    with b.client.session_transaction() as session:
        pending = session[b.provider.session_key]
        for entry in pending.values():
            entry["at"] -= 601
        session[b.provider.session_key] = pending
    assert "took longer than 10 minutes" in error_of(b.callback(callback))


def test_a_callback_to_another_address_than_the_sign_in_started_with_is_refused(make_provider, browser, new_user):
    b = browser(make_provider())

    @b.app.get("/elsewhere")
    def elsewhere():
        try:
            b.provider.finish_login("http://localhost/elsewhere")
        except LoginError as exc:
            return {"error": str(exc)}, 400
        return {}

    callback = b.mock.sign_in(b.start(), new_user(email="nora@example.com"))
    message = error_of(b.client.get(f"/elsewhere?{urlsplit(callback).query}"))
    assert message == "the sign-in returned to a different address than it started from; start it again"


# --- policy -----------------------------------------------------------------------------------


def test_allowed_domains_accepts_a_listed_domain(make_provider, browser, new_user):
    sub = new_user(email="nina@Example.COM", email_verified=True)
    provider = make_provider(allowed_domains=["@example.com", "example.org"])
    assert browser(provider).sign_in(sub).get_json()["email"] == "nina@Example.COM"


def test_allowed_domains_refuses_another_domain(make_provider, browser, new_user):
    sub = new_user(email="oscar@evil.example")
    message = error_of(browser(make_provider(allowed_domains=["example.com"])).sign_in(sub))
    assert message == "accounts of evil.example may not sign in to this registry (allowed: example.com)"


def test_allowed_domains_refuses_an_unverified_address(make_provider, browser, new_user):
    sub = new_user(email="pat@example.com", email_verified=False)
    message = error_of(browser(make_provider(allowed_domains=["example.com"])).sign_in(sub))
    assert "pat@example.com is not verified" in message


def test_allowed_domains_refuses_a_token_without_email(make_provider, browser, new_user):
    sub = new_user(name="No Mail")
    message = error_of(browser(make_provider(allowed_domains=["example.com"], scopes=["openid", "profile"]))
                       .sign_in(sub))
    assert "did not send an e-mail address" in message


def test_a_groups_claim_of_the_wrong_type_is_refused(make_provider, browser, new_user):
    sub = new_user(email="quinn@example.com", groups={"not": "a list"})
    message = error_of(browser(make_provider(group_mapping=["a=b:viewer"])).sign_in(sub))
    assert "'groups' claim that is not a list of strings" in message


# --- ID token validation ---------------------------------------------------------------------


def proxied(make_provider, make_proxy, browser, new_user, **proxy_kwargs):
    """Sign in through an IDTokenProxy (configured with ``proxy_kwargs``); return the callback response."""
    proxy = make_proxy(**proxy_kwargs)
    b = browser(make_provider(issuer=proxy.url))
    return b.sign_in(new_user(email="token@example.com"))


def test_the_proxy_itself_produces_acceptable_tokens(make_provider, make_proxy, browser, new_user):
    """The control for the tampering tests below: an unmodified re-signed token is accepted."""
    response = proxied(make_provider, make_proxy, browser, new_user)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["claims"]["iss"].startswith("http://127.0.0.1:")


def test_a_token_signed_with_another_key_is_refused(make_provider, make_proxy, browser, new_user):
    proxy = make_proxy()
    rogue = RSAKey.generate_key(2048, parameters={"kid": proxy.key.kid})  # same kid, different key

    def resign(token: str) -> str:
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        return proxy.sign(claims, rogue)

    proxy.rewrite_token = resign
    message = error_of(browser(make_provider(issuer=proxy.url)).sign_in(new_user(email="rogue@example.com")))
    assert "signature does not verify" in message


def test_a_token_with_an_altered_payload_is_refused(make_provider, make_proxy, browser, new_user):
    def alter(token: str) -> str:
        header, payload, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["sub"] = "someone-else"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        return f"{header}.{forged}.{signature}"

    message = error_of(proxied(make_provider, make_proxy, browser, new_user, rewrite_token=alter))
    assert "signature does not verify" in message


def test_a_token_signed_with_an_unpublished_key_is_refused(make_provider, make_proxy, browser, new_user):
    proxy = make_proxy()
    proxy.published_keys = [RSAKey.generate_key(2048, parameters={"kid": "another-kid"})]
    message = error_of(browser(make_provider(issuer=proxy.url)).sign_in(new_user(email="kid@example.com")))
    assert "signed with a key the identity provider does not publish" in message


def test_an_unsigned_token_is_refused(make_provider, make_proxy, browser, new_user):
    def strip_signature(token: str) -> str:
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        return f"{header}.{token.split('.')[1]}."

    message = error_of(proxied(make_provider, make_proxy, browser, new_user, rewrite_token=strip_signature))
    assert message == "the ID token is signed with an algorithm that is not accepted (accepted: RS256); sign-in refused"


def test_a_token_for_another_audience_is_refused(make_provider, make_proxy, browser, new_user):
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {**c, "aud": ["some-other-app"]}))
    assert message == ("the ID token was issued for another application (audience ['some-other-app'], expected "
                       "the client id 'tfregistry-tests'); sign-in refused")


def test_a_token_for_several_audiences_needs_azp(make_provider, make_proxy, browser, new_user):
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {**c, "aud": ["tfregistry-tests", "other"]}))
    assert "'azp' claim is not this registry's client id" in message


def test_a_token_from_another_issuer_is_refused(make_provider, make_proxy, browser, new_user):
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {**c, "iss": "https://evil.example"}))
    assert message.startswith("the ID token was issued by 'https://evil.example', but this registry trusts only ")


def test_a_genuine_token_of_another_issuer_is_refused(make_provider, make_proxy, browser, new_user, oidc_mock):
    """The mock's own issuer: a real provider, but not the configured one."""
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {**c, "iss": oidc_mock.issuer}))
    assert message.startswith(f"the ID token was issued by '{oidc_mock.issuer}', but this registry trusts only ")


def test_an_expired_token_is_refused(make_provider, make_proxy, browser, new_user):
    past = int(time.time()) - 3600
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {**c, "iat": past - 600, "exp": past}))
    assert message.startswith("the ID token has expired")


def test_a_token_from_the_future_is_refused(make_provider, make_proxy, browser, new_user):
    future = int(time.time()) + 3600
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {**c, "iat": future, "exp": future + 600}))
    assert "not valid yet" in message


def test_a_token_with_another_nonce_is_refused(make_provider, make_proxy, browser, new_user):
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {**c, "nonce": "a-nonce-from-another-sign-in"}))
    assert "nonce does not match" in message


def test_a_token_without_nonce_is_refused(make_provider, make_proxy, browser, new_user):
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {k: v for k, v in c.items() if k != "nonce"}))
    assert message == "the ID token lacks the required claim 'nonce'; sign-in refused"


def test_a_token_without_exp_is_refused(make_provider, make_proxy, browser, new_user):
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {k: v for k, v in c.items() if k != "exp"}))
    assert message == "the ID token lacks the required claim 'exp'; sign-in refused"


def test_a_token_without_sub_is_refused(make_provider, make_proxy, browser, new_user):
    message = error_of(proxied(make_provider, make_proxy, browser, new_user,
                               rewrite_claims=lambda c: {k: v for k, v in c.items() if k != "sub"}))
    assert message == "the ID token lacks the required claim 'sub'; sign-in refused"


def test_a_token_response_without_id_token_is_refused(make_provider, make_proxy, browser, new_user):
    proxy = make_proxy()
    original = proxy._token

    def drop_id_token(request):
        response = original(request)
        body = json.loads(response.get_data())
        body.pop("id_token", None)
        response.set_data(json.dumps(body))
        return response

    proxy._token = drop_id_token
    message = error_of(browser(make_provider(issuer=proxy.url)).sign_in(new_user(email="x@example.com")))
    assert "returned no ID token" in message


# --- discovery and diagnostics ------------------------------------------------------------------


def test_check_is_empty_when_the_provider_is_healthy(make_provider):
    assert make_provider().check() == []


def test_check_reports_an_unreachable_issuer(make_provider):
    issuer = f"http://127.0.0.1:{free_port()}"
    problems = make_provider(issuer=issuer).check()
    assert len(problems) == 1
    assert problems[0].startswith(f"oidc: cannot fetch the OpenID Connect discovery document {issuer}/.well-known/"
                                  "openid-configuration: connection refused")
    assert "(setting auth.oidc.issuer)" in problems[0]


def test_check_reports_an_issuer_that_is_not_the_documents(make_provider, make_proxy):
    proxy = make_proxy(issuer="https://login.example.com/realms/acme")
    problems = make_provider(issuer=proxy.url).check()
    assert problems == [f"oidc: the discovery document {proxy.url}/.well-known/openid-configuration names the "
                        f"issuer 'https://login.example.com/realms/acme', not '{proxy.url}' (setting "
                        "auth.oidc.issuer must be exactly the provider's issuer)"]


def test_check_reports_a_discovery_document_that_is_not_one(make_provider, oidc_mock):
    problems = make_provider(issuer=f"{oidc_mock.issuer}/jwks").check()
    url = f"{oidc_mock.issuer}/jwks/.well-known/openid-configuration"
    assert problems == [f"oidc: the OpenID Connect discovery document {url} answered HTTP 404 "
                        "(setting auth.oidc.issuer)"]


def test_a_trailing_slash_on_the_issuer_is_tolerated(make_provider, browser, new_user, oidc_mock):
    provider = make_provider(issuer=oidc_mock.issuer + "/")
    assert provider.check() == []
    assert browser(provider).sign_in(new_user(email="ruth@example.com")).status_code == 200


def test_begin_login_with_an_unreachable_issuer_raises_login_error(make_provider, browser):
    b = browser(make_provider(issuer=f"http://127.0.0.1:{free_port()}"))
    response = b.client.get("/login")
    assert "cannot be reached right now" in error_of(response)
