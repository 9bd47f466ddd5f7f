"""Each introspection dialect and client-auth method against the dev AS, through real Envoy in both ext_authz modes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.harness import Response, Stack, assert_authz_error, http_request, wait_until


def echoed_headers(resp_json: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in resp_json["headers"].items()}


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_rfc7662_dialect_forwards_claims_header_and_no_token(stack_factory: type[Stack], method: str) -> None:
    s = stack_factory().full(as_overrides={"dialect": "rfc7662", "claims_forwarding": "header",
                                           "client_auth_method": method})
    token = s.token("read")
    resp = s.get("/httpbin/get", token, headers={"X-Token-Claims": "spoofed"})
    assert resp.status == 200, resp
    headers = echoed_headers(resp.json())
    assert "authorization" not in headers, "the opaque token must not travel on as if it were a JWT"
    encoded = headers["x-token-claims"]
    claims = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert claims["client_id"] == "demo-client" and "read" in claims["scope"].split()
    assert s.get("/admin/get", token).status == 403
    assert s.get("/httpbin/get", "unknown-token").status == 401


def test_rfc7662_without_forwarding_sends_no_credential_upstream(stack_factory: type[Stack]) -> None:
    s = stack_factory().full(as_overrides={"dialect": "rfc7662"})
    resp = s.get("/httpbin/get", s.token("read"))
    assert resp.status == 200
    headers = echoed_headers(resp.json())
    assert "authorization" not in headers and "x-token-claims" not in headers


def test_rfc9701_dialect_verifies_signed_answer(stack_factory: type[Stack]) -> None:
    s = stack_factory().full(as_overrides={"dialect": "rfc9701", "claims_forwarding": "header"})
    token = s.token("read")
    resp = s.get("/httpbin/get", token)
    assert resp.status == 200, resp
    assert "x-token-claims" in echoed_headers(resp.json())
    assert s.get("/httpbin/get", "unknown-token").status == 401


def test_key_rotation_at_the_as_is_followed(stack_factory: type[Stack]) -> None:
    s = stack_factory().full(as_overrides={"jwks_min_refresh_seconds": 0.2})
    before = s.token("read")
    assert s.get("/httpbin/get", before).status == 200
    rotated = http_request("POST", s.as_port, "/dev/rotate-keys").json()["kid"]

    def accepted() -> Response | None:
        """A token signed with the new key: accepted once jwks_min_refresh_seconds (0.2 s) allows a refetch."""
        resp = s.get("/httpbin/get", s.token("read"))
        return resp if resp.status == 200 else None

    resp = wait_until(accepted, "a token signed with the rotated key is accepted")
    upstream_jwt = echoed_headers(resp.json())["authorization"].split()[1]
    header = json.loads(base64.urlsafe_b64decode(upstream_jwt.split(".")[0] + "=="))
    assert header["kid"] == rotated
    assert s.get("/httpbin/get", before).status == 200  # the old key is still published


def test_metadata_discovery_finds_the_jwks(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_echo()
        s.start_authz(as_overrides={"jwks_uri": None, "allow_insecure_http": True,  # the dev AS is plain http
                                    "metadata_url": f"http://127.0.0.1:{s.as_port}/.well-known/oauth-authorization-server"})
        s.start_envoy()
    assert s.get("/httpbin/get", s.token("read")).status == 200


def test_wrong_audience_is_401_invalid_token(stack_factory: type[Stack]) -> None:
    s = stack_factory().full(as_overrides={"audiences": ["another-api"]})
    resp = s.get("/httpbin/get", s.token("read"))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]


def test_jwt_signed_by_foreign_keys_is_a_server_error(stack_factory: type[Stack], tmp_path: Any) -> None:
    """The JWKS we trust is not the AS's: signatures cannot verify, which is the AS's or our config's fault (502;
    HTTP mode: Envoy's bare 503)."""
    foreign, s = stack_factory(), stack_factory()
    with foreign.together(), s.together():
        foreign.start_dev_as()
        s.start_dev_as()
        s.start_echo()
        s.start_authz(as_overrides={"jwks_uri": f"http://127.0.0.1:{foreign.as_port}/oauth/v2/oauth-anonymous/jwks"})
        s.start_envoy()
    resp = s.get("/httpbin/get", s.token("read"))
    assert_authz_error(resp, s.mode, 502)
    assert s.authz is not None and "no signing key with kid" in s.authz.log_tail()
