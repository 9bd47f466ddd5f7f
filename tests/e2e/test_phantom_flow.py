"""The phantom-token flow end to end: client -> real Envoy 1.40 -> phantom-authz -> dev AS; echo upstream.

Every test runs in both of Envoy's ext_authz modes (ids ``grpc``, ``http``; tests/e2e/conftest.py). Where a client
sees something different, ``assert_authz_error`` says what, per mode."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from tests.harness import (
    EXT_AUTHZ,
    GATEWAY_SECRET,
    Stack,
    assert_authz_error,
    http_request,
    route_settings,
    routes,
    set_route_settings,
)


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
    assert echoed["path"] == "/httpbin/get"
    claims = upstream_jwt_claims(echoed, stack)
    assert claims["client_id"] == "demo-client"
    assert claims["sub"] == "demo-client"
    assert "read" in str(claims["scope"]).split()
    assert token not in resp.body.decode()


def test_envoy_asks_phantom_authz_over_the_modes_transport(stack: Stack) -> None:
    assert stack.get("/httpbin/get", stack.token("read")).status == 200
    stats = stack.envoy_stats()
    used, unused = ("phantom_authz", "phantom_authz_http") if stack.mode == "grpc" else (
        "phantom_authz_http", "phantom_authz")
    assert stats[f"cluster.{used}.upstream_rq_total"] > 0
    assert f"cluster.{unused}.upstream_rq_total" not in stats


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
    assert resp.json()["path"] == "/public/get"


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


def test_cors_preflight_passes_without_a_token_when_configured(stack_factory: type[Stack]) -> None:
    """cors_preflight: allow. In HTTP mode this needs Access-Control-Request-Method in Envoy's allowed_headers."""
    s = stack_factory().full(cors_preflight="allow")
    resp = s.get("/httpbin/anything", method="OPTIONS",
                 headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert resp.status == 200, resp
    assert resp.json()["method"] == "OPTIONS"
    not_preflight = s.get("/httpbin/anything", method="OPTIONS", headers={"Origin": "https://app.example"})
    assert not_preflight.status == 401


def test_authorization_server_down_is_503(stack_factory: type[Stack]) -> None:
    """gRPC mode: our 503 with Retry-After and a JSON body; HTTP mode: Envoy's bare status_on_error 503."""
    s = stack_factory().full()
    token = s.token("read")
    assert s.dev_as is not None
    s.dev_as.stop()
    resp = s.get("/httpbin/get", token)
    assert_authz_error(resp, s.mode, 503, retry_after="5")


def test_slow_authorization_server_times_out_with_503(stack_factory: type[Stack]) -> None:
    s = stack_factory().full("--latency-ms", "1500", as_overrides={"timeout_seconds": 0.3})
    resp = s.get("/httpbin/get", s.token("read"))
    assert_authz_error(resp, s.mode, 503, retry_after="5")


def test_wrong_gateway_secret_is_a_server_error(stack_factory: type[Stack]) -> None:
    """gRPC mode: our 502 (the AS refused *us*, not the client); HTTP mode: Envoy's bare 503."""
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_echo()
        s.start_authz(secret="not-" + GATEWAY_SECRET)
        s.start_envoy()
    resp = s.get("/httpbin/get", s.token("read"))
    assert_authz_error(resp, s.mode, 502)
    assert s.authz is not None
    assert "rejected our client credentials" in s.authz.log_tail()


@pytest.mark.parametrize(("extensions", "logged"), [
    ({"nonsense": "1"}, "unknown context_extensions key 'nonsense'"),
    ({"disabled": "maybe"}, "disabled: must be 'true' or 'false'"),
])
def test_bad_route_setting_fails_that_route_closed(stack_factory: type[Stack], extensions: dict[str, str],
                                                   logged: str) -> None:
    """gRPC mode: a bad context extension, our 500; HTTP mode: the same setting in the route's path_prefix, Envoy's
    bare 503."""
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_echo()
        s.start_authz()
        s.start_envoy(mutate=lambda config: set_route_settings(config, 0, {**route_settings(config, 0), **extensions}))
    resp = s.get("/httpbin/get", s.token("read"))
    assert_authz_error(resp, s.mode, 500)
    assert s.get("/admin/get", s.token("admin")).status == 200  # other routes unaffected
    assert s.authz is not None
    assert logged in s.authz.log_tail()


@pytest.mark.http_only("path_prefix exists only in Envoy's http_service")
@pytest.mark.parametrize("prefix", ["", "/authz/required_scopes=read"], ids=["unset", "another-prefix"])
def test_route_without_the_phantom_authz_path_prefix_fails_closed(stack_factory: type[Stack], prefix: str) -> None:
    """A route whose http_service forgot (or misspelt) the settings prefix: phantom-authz cannot tell its settings,
    answers 500 and Envoy gives the client 503 — never the service defaults, never an allow."""
    def mutate(config: dict[str, Any]) -> None:
        check = routes(config)[0]["typed_per_filter_config"][EXT_AUTHZ]["check_settings"]
        check["http_service"]["path_prefix"] = prefix

    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_echo()
        s.start_authz()
        s.start_envoy(mutate=mutate)
    resp = s.get("/httpbin/get", s.token("read admin"))
    assert_authz_error(resp, s.mode, 500)
    assert s.get("/admin/get", s.token("admin")).status == 200  # other routes unaffected
    assert s.authz is not None
    assert "does not start with '/phantom-authz'" in s.authz.log_tail()
