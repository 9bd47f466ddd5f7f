"""The phantom-token flow end to end: client -> real Envoy 1.40 -> phantom-authz -> dev AS; echo upstream."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from tests.harness import GATEWAY_SECRET, Stack, http_request


def upstream_jwt_claims(resp_json: dict[str, object], stack: Stack) -> dict[str, object]:
    headers = {k.lower(): v for k, v in resp_json["headers"].items()}  # type: ignore[union-attr]
    scheme, _, token = str(headers["authorization"]).partition(" ")
    assert scheme == "Bearer"
    jwks = http_request("GET", stack.as_port, "/oauth/v2/oauth-anonymous/jwks").json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key.key, algorithms=["RS256"], audience="api.example.com")


def test_valid_token_reaches_upstream_as_a_verified_jwt(stack: Stack) -> None:
    token = stack.token("read")
    resp = stack.get("/httpbin/get?x=1", token)
    assert resp.status == 200, resp
    echoed = resp.json()
    assert echoed["path"] == "/get"
    claims = upstream_jwt_claims(echoed, stack)
    assert claims["client_id"] == "demo-client"
    assert claims["sub"] == "demo-client"
    assert "read" in str(claims["scope"]).split()
    assert token not in resp.body.decode()


def test_missing_token_is_401_with_bare_bearer_challenge(stack: Stack) -> None:
    resp = stack.get("/httpbin/get")
    assert resp.status == 401
    assert resp.headers["www-authenticate"] == 'Bearer realm="api"'
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"] == "unauthorized"


def test_unknown_token_is_401_invalid_token(stack: Stack) -> None:
    resp = stack.get("/httpbin/get", "not-a-real-token-0123456789")
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert resp.json()["error"] == "invalid_token"


def test_token_without_admin_scope_is_403_on_admin_route(stack: Stack) -> None:
    token = stack.token("read")
    assert stack.get("/httpbin/get", token).status == 200
    resp = stack.get("/admin/get", token)
    assert resp.status == 403
    challenge = resp.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="admin"' in challenge


def test_admin_token_is_allowed_on_admin_route(stack: Stack) -> None:
    assert stack.get("/admin/get", stack.token("read admin")).status == 200


def test_public_route_needs_no_token(stack: Stack) -> None:
    resp = stack.get("/public/get")
    assert resp.status == 200
    assert resp.json()["path"] == "/get"


def test_malformed_credential_is_400_invalid_request(stack: Stack) -> None:
    resp = stack.get("/httpbin/get", headers={"Authorization": "Bearer two tokens"})
    assert resp.status == 400
    assert 'error="invalid_request"' in resp.headers["www-authenticate"]


def test_revoked_token_is_refused(stack: Stack) -> None:
    token = stack.token("read")
    assert stack.get("/httpbin/get", token).status == 200
    revoke = http_request("POST", stack.as_port, "/oauth/v2/oauth-revoke",
                          headers={"Authorization": "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=",
                                   "Content-Type": "application/x-www-form-urlencoded"},
                          body=f"token={token}")
    assert revoke.status == 200
    assert stack.get("/httpbin/get", token).status == 401


def test_spoofed_header_in_headers_to_remove_never_reaches_upstream(stack: Stack) -> None:
    token = stack.token("read")
    for path, tok in (("/httpbin/get", token), ("/public/get", None)):
        resp = stack.get(path, tok, headers={"X-User-Id": "admin", "X-Other": "kept"})
        assert resp.status == 200
        headers = {k.lower() for k in resp.json()["headers"]}
        assert "x-user-id" not in headers
        assert "x-other" in headers


def test_client_authorization_header_is_overwritten_not_appended(stack: Stack) -> None:
    token = stack.token("read")
    resp = stack.get("/httpbin/get", token)
    auth = resp.json()["headers"]["Authorization"]
    assert token not in auth and "," not in auth


def test_authorization_server_down_is_503_with_retry_after(stack_factory: type[Stack]) -> None:
    s = stack_factory().full()
    token = s.token("read")
    assert s.dev_as is not None
    s.dev_as.stop()
    resp = s.get("/httpbin/get", token)
    assert resp.status == 503, resp
    assert resp.headers["retry-after"] == "5"
    assert resp.json()["error"] == "server_error"
    assert "www-authenticate" not in resp.headers


def test_slow_authorization_server_times_out_with_503(stack_factory: type[Stack]) -> None:
    s = stack_factory().full("--latency-ms", "1500", as_overrides={"timeout_seconds": 0.3})
    resp = s.get("/httpbin/get", s.token("read"))
    assert resp.status == 503


def test_wrong_gateway_secret_is_502(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    s.start_dev_as()
    s.start_echo()
    s.start_authz(secret="not-" + GATEWAY_SECRET)
    s.start_envoy()
    resp = s.get("/httpbin/get", s.token("read"))
    assert resp.status == 502
    assert resp.json()["error"] == "server_error"
    assert s.authz is not None
    assert "rejected our client credentials" in s.authz.log_tail()


def route_extensions(config: dict[str, Any], index: int) -> dict[str, str]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][index]
    return route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["check_settings"]["context_extensions"]


@pytest.mark.parametrize(("extensions", "logged"), [
    ({"nonsense": "1"}, "unknown context_extensions key 'nonsense'"),
    ({"disabled": "maybe"}, "disabled: must be 'true' or 'false'"),
])
def test_bad_context_extension_is_500_for_that_route_only(stack_factory: type[Stack], extensions: dict[str, str],
                                                          logged: str) -> None:
    s = stack_factory()
    s.start_dev_as()
    s.start_echo()
    s.start_authz()
    s.start_envoy(mutate=lambda config: route_extensions(config, 0).update(extensions))
    resp = s.get("/httpbin/get", s.token("read"))
    assert resp.status == 500
    assert resp.json()["error"] == "server_error"
    assert s.get("/admin/get", s.token("admin")).status == 200  # other routes unaffected
    assert s.authz is not None
    assert logged in s.authz.log_tail()
