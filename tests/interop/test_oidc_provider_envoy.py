"""Interop through real Envoy with a real third-party AS: node oidc-provider 9.x (client_credentials,
introspection, jwtIntrospection, revocation). Its access tokens are opaque; it answers RFC 7662 JSON and RFC 9701
signed JWTs, so phantom-authz forwards the claims (no access-token JWT exists to swap in). In both of Envoy's
ext_authz modes (ids ``grpc``, ``http``; tests/interop/conftest.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import Response, Stack, assert_authz_error, wait_until
from tests.interop.oidc import GATEWAY_CLIENT, GATEWAY_POST, SKIP_REASON, OidcProvider, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason=SKIP_REASON)

GATEWAY_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
GATEWAY_KID = "gateway-jwt-key-1"
CACHE_TTL = 0.5  # oidc-provider has no hook into our admin API: revocation shows once the cache entry expires


def gateway_jwks() -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(GATEWAY_KEY.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": GATEWAY_KID, "use": "sig", "alg": "RS256"}]}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    p = OidcProvider.start(tmp_path_factory.mktemp("oidc"), gateway_jwks=gateway_jwks())
    try:
        yield p
    finally:
        p.stop()


def stack_for(factory: Any, provider: OidcProvider, tmp_path: Path, **server: Any) -> Stack:
    """Echo + phantom-authz + Envoy with one AS entry pointing at oidc-provider."""
    entry: dict[str, Any] = {
        "introspection_endpoint": provider.introspection_endpoint,
        "client_id": GATEWAY_CLIENT[0],
        "client_secret_env": "TEST_GATEWAY_SECRET",
        "issuer": provider.issuer,  # JWKS found by OIDC discovery under the issuer
        "allow_insecure_http": True,  # oidc-provider runs on plain http on loopback here
        "claims_forwarding": "header",
        "timeout_seconds": 2,
        **server,
    }
    entry = {k: v for k, v in entry.items() if v is not None}
    s: Stack = factory()
    with s.together():
        s.start_echo()
        s.start_authz(secret=GATEWAY_CLIENT[1] if entry["client_id"] != GATEWAY_POST[0] else GATEWAY_POST[1],
                      authorization_servers={"oidc": entry}, cache={"max_ttl_seconds": CACHE_TTL})
        s.start_envoy()
    return s


def forwarded_claims(resp_json: dict[str, Any]) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in resp_json["headers"].items()}
    assert "authorization" not in headers, "the opaque token must not reach the upstream"
    encoded = headers["x-token-claims"]
    return dict(json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))))


@pytest.mark.parametrize("dialect", ["rfc7662", "rfc9701"])
def test_oidc_provider_token_is_accepted_then_refused_after_revocation(
        stack_factory: Any, provider: OidcProvider, tmp_path: Path, dialect: str) -> None:
    s = stack_for(stack_factory, provider, tmp_path, dialect=dialect)
    token = provider.token("read")
    resp = s.get("/httpbin/get", token)
    assert resp.status == 200, resp
    claims = forwarded_claims(resp.json())
    assert claims["client_id"] == "demo-client" and claims["iss"] == provider.issuer
    assert s.get("/admin/get", token).status == 403
    provider.revoke(token)

    def answer_once_not_allowed() -> Response | None:
        """Allowed from the cache until its entry expires (CACHE_TTL); then the provider says "inactive"."""
        answer = s.get("/httpbin/get", token)
        return answer if answer.status != 200 else None

    refused = wait_until(answer_once_not_allowed, "the revoked token is refused", timeout=CACHE_TTL + 5)
    assert refused.status == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_client_secret_post_authenticates_the_gateway(stack_factory: Any, provider: OidcProvider,
                                                      tmp_path: Path) -> None:
    s = stack_for(stack_factory, provider, tmp_path, dialect="rfc7662", client_id=GATEWAY_POST[0],
                  client_auth_method="client_secret_post")
    assert s.get("/httpbin/get", provider.token("read")).status == 200


def test_private_key_jwt_authenticates_the_gateway(stack_factory: Any, provider: OidcProvider,
                                                   tmp_path: Path) -> None:
    key_file = tmp_path / "gateway.pem"
    key_file.write_bytes(GATEWAY_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    s = stack_for(stack_factory, provider, tmp_path, dialect="rfc9701", client_id="gateway-jwt",
                  client_secret_env=None, client_auth_method="private_key_jwt",
                  private_key_jwt={"key_file": str(key_file), "kid": GATEWAY_KID, "algorithm": "RS256"})
    resp = s.get("/httpbin/get", provider.token("read write"))
    assert resp.status == 200, resp
    assert set(forwarded_claims(resp.json())["scope"].split()) == {"read", "write"}


def test_wrong_gateway_secret_at_oidc_provider_is_a_server_error(stack_factory: Any, provider: OidcProvider,
                                                                  tmp_path: Path) -> None:
    """Our 502; in HTTP mode Envoy's bare status_on_error 503."""
    s: Stack = stack_factory()
    with s.together():
        s.start_echo()
        s.start_authz(secret="wrong", authorization_servers={"oidc": {
            "dialect": "rfc7662", "introspection_endpoint": provider.introspection_endpoint,
            "client_id": GATEWAY_CLIENT[0], "client_secret_env": "TEST_GATEWAY_SECRET"}})
        s.start_envoy()
    assert_authz_error(s.get("/httpbin/get", provider.token("read")), s.mode, 502)
