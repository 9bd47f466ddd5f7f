"""The interop authorization server itself (node oidc-provider), before phantom-authz talks to it: opaque
client_credentials tokens, RFC 7662 JSON introspection, RFC 9701 JWT introspection responses verifiable with its
JWKS, RFC 7009 revocation, client_secret_post, and a clean exit on SIGTERM."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.harness import Response
from tests.interop.oidc import (
    DEMO_CLIENT,
    GATEWAY_CLIENT,
    GATEWAY_POST,
    JWT_INTROSPECTION,
    SKIP_REASON,
    OidcProvider,
    node_available,
)

pytestmark = pytest.mark.skipif(not node_available(), reason=SKIP_REASON)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    started = OidcProvider.start(tmp_path_factory.mktemp("oidc"))
    try:
        yield started
    finally:
        started.stop()


def introspect(provider: OidcProvider, token: str, accept: str | None,
               client: tuple[str, str] = GATEWAY_CLIENT) -> Response:
    return provider.post(provider.introspection_endpoint, {"token": token}, client, accept)


def introspect_post(provider: OidcProvider, token: str, accept: str) -> Response:
    """client_secret_post: the gateway-post client's credentials in the form."""
    form = {"token": token, "client_id": GATEWAY_POST[0], "client_secret": GATEWAY_POST[1]}
    return provider.post(provider.introspection_endpoint, form, accept=accept)


def verify(provider: OidcProvider, compact: str, audience: str = GATEWAY_CLIENT[0]) -> dict[str, Any]:
    header = jwt.get_unverified_header(compact)
    assert header["alg"] == "RS256"
    assert header["typ"] == "token-introspection+jwt"
    key = jwt.PyJWKSet.from_dict(provider.jwks())[header["kid"]]
    return jwt.decode(compact, key.key, algorithms=["RS256"], audience=audience, issuer=provider.issuer,
                      options={"require": ["iss", "aud", "iat"]})


def test_discovery_names_the_endpoints(provider: OidcProvider) -> None:
    base = f"http://127.0.0.1:{provider.port}"
    assert provider.issuer == base
    assert provider.token_endpoint == base + "/token"
    assert provider.introspection_endpoint == base + "/token/introspection"
    assert provider.revocation_endpoint == base + "/token/revocation"
    assert provider.jwks_uri == base + "/jwks"
    assert "client_credentials" in provider.discovery["grant_types_supported"]
    assert "RS256" in provider.discovery["introspection_signing_alg_values_supported"]
    assert {"read", "write", "admin"} <= set(provider.discovery["scopes_supported"])
    assert "SIGTERM" not in provider.log_tail()
    assert f"oidc-provider listening on {base}" in provider.log_tail()


def test_client_credentials_token_is_opaque(provider: OidcProvider) -> None:
    token = provider.token("read write")
    assert "." not in token and len(token) >= 32
    with pytest.raises(jwt.DecodeError):
        jwt.get_unverified_header(token)


def test_json_introspection_of_an_active_token(provider: OidcProvider) -> None:
    before = int(time.time())
    token = provider.token("read write")
    resp = introspect(provider, token, "application/json")
    assert resp.status == 200, resp
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["cache-control"] == "no-store"
    answer = resp.json()
    assert answer["active"] is True
    assert answer["scope"] == "read write"
    assert answer["client_id"] == DEMO_CLIENT[0]
    assert answer["iss"] == provider.issuer
    assert before <= answer["iat"] <= time.time()
    assert answer["exp"] > answer["iat"]
    assert answer["token_type"] == "Bearer"
    assert introspect(provider, token, None).json() == answer  # JSON is also the default


def test_jwt_introspection_response_verifies_with_the_jwks(provider: OidcProvider) -> None:
    before = int(time.time())
    token = provider.token("admin")
    resp = introspect(provider, token, JWT_INTROSPECTION)
    assert resp.status == 200, resp
    assert resp.headers["content-type"].split(";")[0] == JWT_INTROSPECTION
    claims = verify(provider, resp.body.decode())
    assert claims["aud"] == GATEWAY_CLIENT[0]
    assert claims["iss"] == provider.issuer
    assert before <= claims["iat"] <= time.time()
    inner = claims["token_introspection"]
    assert inner == introspect(provider, token, "application/json").json()
    assert (inner["active"], inner["scope"], inner["client_id"]) == (True, "admin", DEMO_CLIENT[0])


def test_client_secret_post_introspection(provider: OidcProvider) -> None:
    token = provider.token("read")
    answer = introspect_post(provider, token, "application/json")
    assert answer.status == 200 and answer.json()["active"] is True
    resp = introspect_post(provider, token, JWT_INTROSPECTION)
    assert resp.status == 200, resp
    claims = verify(provider, resp.body.decode(), audience=GATEWAY_POST[0])
    assert claims["token_introspection"]["scope"] == "read"


def test_revoked_token_is_inactive(provider: OidcProvider) -> None:
    token = provider.token("read")
    assert introspect(provider, token, "application/json").json()["active"] is True
    provider.revoke(token)
    assert introspect(provider, token, "application/json").json() == {"active": False}
    resp = introspect(provider, token, JWT_INTROSPECTION)
    assert resp.status == 200
    assert verify(provider, resp.body.decode())["token_introspection"] == {"active": False}


def test_a_client_revokes_its_own_token(provider: OidcProvider) -> None:
    token = provider.token("read")
    provider.revoke(token, client=DEMO_CLIENT)
    assert introspect(provider, token, "application/json").json() == {"active": False}


def test_unknown_token_and_wrong_credentials(provider: OidcProvider) -> None:
    assert introspect(provider, "no-such-token", "application/json").json() == {"active": False}
    resp = introspect(provider, "no-such-token", "application/json", client=(GATEWAY_CLIENT[0], "wrong"))
    assert resp.status == 401
    assert resp.json()["error"] == "invalid_client"


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    started = OidcProvider.start(tmp_path)
    assert started.process.running
    assert started.stop() == 0
    assert "SIGTERM, shutting down" in started.log_tail()
