"""What reaches the upstream when no JWT is swapped in, through real Envoy in both ext_authz modes (issue 12).

Item 6: a disabled route and an allowed CORS preflight pass without a token, and the client's ``Authorization``
(its opaque token) is removed, unless the route says ``keep_authorization: "true"``. Item 7: a preflight needs
``Origin`` and ``Access-Control-Request-Method``, and a route that names a policy is checked as usual. Item 10: an
empty route setting is a misconfigured route (500; Envoy's 503 in HTTP mode), never "no policy".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import Stack, add_route, assert_authz_error

OPAQUE = "client-opaque-token-0123456789"
PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}


def upstream_headers(resp_json: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in resp_json["headers"].items()}


@pytest.fixture(scope="module")
def cors_stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    """One stack per mode for the module: its tests only send requests."""
    def mutate(config: dict[str, Any]) -> None:
        add_route("/kept/", {"disabled": "true", "keep_authorization": "true"})(config)
        add_route("/empty-policy/", {"required_scopes": "read", "policy": ""})(config)
        add_route("/empty-scopes/", {"required_scopes": ""})(config)
        add_route("/no-scope/", {"required_scopes": "-"})(config)

    s = Stack(tmp_path_factory.mktemp(f"cors-{mode}"), mode)
    try:
        with s.together():
            s.start_dev_as()
            s.start_echo()
            s.start_authz(cors_preflight="allow")
            s.start_envoy(mutate)
        yield s
    finally:
        s.stop()


def test_item06_disabled_route_and_preflight_never_forward_the_opaque_token(cors_stack: Stack) -> None:
    public = cors_stack.get("/public/get", OPAQUE)
    assert public.status == 200, public
    assert "authorization" not in upstream_headers(public.json())
    preflight = cors_stack.get("/httpbin/anything", OPAQUE, headers=PREFLIGHT, method="OPTIONS")
    assert preflight.status == 200, preflight
    assert preflight.json()["method"] == "OPTIONS"
    assert "authorization" not in upstream_headers(preflight.json())
    assert OPAQUE not in public.body.decode() + preflight.body.decode()


def test_item06_keep_authorization_is_an_explicit_per_route_opt_in(cors_stack: Stack) -> None:
    kept = cors_stack.get("/kept/get", OPAQUE)
    assert kept.status == 200, kept
    assert upstream_headers(kept.json())["authorization"] == f"Bearer {OPAQUE}"


def test_item07_preflight_needs_origin_and_is_checked_on_policy_routes(cors_stack: Stack) -> None:
    no_origin = cors_stack.get("/httpbin/anything", method="OPTIONS", headers={"Access-Control-Request-Method": "POST"})
    assert no_origin.status == 401, no_origin
    on_policy_route = cors_stack.get("/records/alice/profile", method="OPTIONS", headers=PREFLIGHT)
    assert on_policy_route.status == 401, on_policy_route
    assert cors_stack.get("/httpbin/anything", method="OPTIONS", headers=PREFLIGHT).status == 200


def test_item10_empty_settings_fail_closed_and_dash_means_no_scope(cors_stack: Stack) -> None:
    token = cors_stack.token("read")
    for path in ("/empty-policy/get", "/empty-scopes/get"):
        assert_authz_error(cors_stack.get(path, token), cors_stack.mode, 500)
    assert cors_stack.get("/no-scope/get", cors_stack.token("approve")).status == 200
    assert cors_stack.get("/no-scope/get").status == 401
