"""Property-based: odd path segments on the Terraform protocol routes never give a 5xx; every answer is a
JSON error object or a correct answer.

Segments include percent-encoded dots and slashes, NUL and other control characters, unicode (also in
decomposed and full-width forms), very long segments and case variants of names that exist.  Bounded
examples, fixed seed (``derandomize``); both databases through the ``app_factory`` fixture.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import post_module

EXAMPLES = int(os.environ.get("TFREGISTRY_FUZZ_EXAMPLES", "4")) * 15

ODD = ["%2e", "%2E%2e", "..", ".", "%2f", "%2F", "a%2Fb", "%00", "%5c", "a\\b", "%ff", "%c0%ae", "%25",
       "%20", "+", "~", "ACME", "Acme", "acme", "NETWORK", "Network", "network", "AWS", "aws", "1.0.0",
       "1.0.0-RC.1", "v1.0.0", "1.0.0+build", "%E2%80%AE", "caf%C3%A9", "cafe%CC%81", "%EF%BC%A1", "index.json",
       "1.0.0.json", "versions", "download", "linux", "amd64", "x" * 5000, "%2e%2e%2f" * 50]

#: A segment as it goes on the wire: a chosen odd one, or any text percent-encoded (sometimes keeping
#: dots, slashes and percent signs raw).
segment = st.one_of(
    st.sampled_from(ODD),
    st.text(min_size=0, max_size=40).map(lambda s: quote(s, safe="")),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300).map(lambda s: quote(s, safe="./%")),
)

ROUTES = [
    "/v1/modules/{}", "/v1/modules/{}/{}", "/v1/modules/{}/{}/{}", "/v1/modules/{}/{}/{}/versions",
    "/v1/modules/{}/{}/{}/{}", "/v1/modules/{}/{}/{}/{}/download", "/v1/modules/{}/{}/{}/download",
    "/v1/modules/search?q={}", "/v1/modules?namespace={}&offset={}",
    "/v1/providers/{}", "/v1/providers/{}/{}", "/v1/providers/{}/{}/versions", "/v1/providers/{}/{}/{}",
    "/v1/providers/{}/{}/{}/download/{}/{}",
    "/v1/providers/{}/{}/{}/index.json", "/v1/providers/{}/{}/{}/{}",
    "/v1/files/{}", "/v1/files/{}/{}?expires={}&signature={}",
    "/v1/pull/{}/{}/{}/{}/{}",
    "/.well-known/terraform.json?{}",
]


@st.composite
def urls(draw: st.DrawFn) -> str:
    route = draw(st.sampled_from(ROUTES))
    return route.format(*(draw(segment) for _ in range(route.count("{}"))))


def is_json_error(response: Any) -> bool:
    """The protocols' ``{"errors": [...]}`` or the HTTP-exception object ``{"code": ..., "status": ...}``."""
    body = response.get_json(silent=True)
    if not isinstance(body, dict):
        return False
    if "errors" in body:
        return isinstance(body["errors"], list) and all(isinstance(e, str) for e in body["errors"])
    return isinstance(body.get("code"), int) and body["code"] == response.status_code


@pytest.mark.parametrize("anonymous", [True, False], ids=["anonymous", "admin"])
def test_odd_protocol_paths(app_factory: Callable[..., Any], make_token: Any, anonymous: bool) -> None:
    app = app_factory({"limits.auth_failures": "100000/minute"})
    client = app.test_client()
    token = make_token("admin", name="admin")
    assert post_module(client, token).status_code == 201  # acme/network/aws 1.0.0 exists
    headers = {} if anonymous else {"Authorization": f"Bearer {token}"}

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(url=urls())
    def check(url: str) -> None:
        response = client.get(url, headers=headers)
        assert response.status_code < 500, (url, response.status_code, response.get_data(as_text=True)[:300])
        if 300 <= response.status_code < 400:
            return  # a redirect (e.g. a trailing slash); its target is fuzzed as well
        if response.status_code >= 400:
            assert is_json_error(response), (url, response.status_code, response.get_data(as_text=True)[:300])
        else:
            assert response.is_json, (url, response.status_code, response.content_type)

    check()
