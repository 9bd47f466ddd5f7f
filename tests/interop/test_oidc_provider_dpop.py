"""Issue 16 item 1, interop: RFC 9449 DPoP-bound tokens from a real third-party AS (node oidc-provider 9.x,
``features.dPoP``: its client_credentials grant binds the token to the proof's key, and introspection answers
``cnf.jkt`` with ``token_type: DPoP``), used by a client making real proofs (tests/dpop_client.py), through real
Envoy in both ext_authz modes (ids ``grpc``, ``http``).

What this proves per mode: the gateway rebuilds the URI the client used from what Envoy sends it (gRPC: ``:scheme``,
``:authority``, ``:path``; HTTP mode: ``x-forwarded-proto``, ``Host`` and the path after the prefix), so a proof for
``http://127.0.0.1:<envoy port>/dpop/get`` passes and one for any other URI does not; every bad proof of issue 16 is
a 401 with its challenge and a metric by reason; nonces reach the client (``DPoP-Nonce``) in both modes.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.dpop_client import DpopClient
from tests.harness import Response, Stack, add_route, basic, http_request
from tests.interop.oidc import DEMO_CLIENT, GATEWAY_CLIENT, SKIP_REASON, OidcProvider, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason=SKIP_REASON)

NONCE_SECRET = "a-test-nonce-secret-of-40-characters-xyz"
ALGS = 'algs="ES256 ES384 PS256 RS256 EdDSA"'


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """oidc-provider with its default features.dPoP (server.mjs says it), for the module."""
    started = OidcProvider.start(tmp_path_factory.mktemp("oidc-dpop"))
    yield started
    started.stop()


def dpop_token(provider: OidcProvider, client: DpopClient, scope: str = "read") -> str:
    """A DPoP-bound opaque token: the token request carries a proof (RFC 9449 §5), the AS binds the token to its key."""
    resp = http_request("POST", provider.port, urllib.parse.urlsplit(provider.token_endpoint).path, {
        "Authorization": basic(*DEMO_CLIENT), "Content-Type": "application/x-www-form-urlencoded",
        "DPoP": client.proof("POST", provider.token_endpoint)},
        urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope}))
    assert resp.status == 200 and resp.json()["token_type"] == "DPoP", resp
    return str(resp.json()["access_token"])


def _routes(config: dict[str, Any]) -> None:
    """The DPoP routes (envoy-http.yaml's allowed_headers already let the DPoP header through in HTTP mode)."""
    add_route("/dpop-only/", {"dpop": "required", "as": "signed", "required_scopes": "read"})(config)
    add_route("/dpop/", {"dpop": "allowed", "required_scopes": "read"})(config)


def start(stack: Stack, provider: OidcProvider, **dpop: Any) -> Stack:
    entry = {"introspection_endpoint": provider.introspection_endpoint, "client_id": GATEWAY_CLIENT[0],
             "client_secret_env": "TEST_GATEWAY_SECRET", "issuer": provider.issuer, "allow_insecure_http": True,
             "claims_forwarding": "header", "dialect": "rfc7662"}
    with stack.together():
        stack.start_echo()
        stack.start_authz(secret=GATEWAY_CLIENT[1], env={"DPOP_NONCE_SECRET": NONCE_SECRET}, authorization_servers={
            "json": entry, "signed": {**entry, "dialect": "rfc9701"}}, dpop=dpop)
        stack.start_envoy(mutate=_routes)
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mode: str, provider: OidcProvider) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp(f"dpop-{mode}"), mode)
    try:
        yield start(s, provider)
    finally:
        s.stop()


def url(stack: Stack, path: str) -> str:
    return f"http://127.0.0.1:{stack.envoy_port}{path}"


def call(stack: Stack, path: str, token: str, proof: str | None, scheme: str = "DPoP") -> Response:
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return http_request("GET", stack.envoy_port, path, headers)


def upstream_headers(resp: Response) -> dict[str, str]:
    assert resp.status == 200, resp
    return {k.lower(): v for k, v in resp.json()["headers"].items()}


def denied_count(stack: Stack, reason: str) -> int:
    text = http_request("GET", stack.metrics_port, "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith("phantom_authz_checks_total{") and f'reason="{reason}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def test_dpop_bound_token_with_fresh_proofs_passes_and_the_upstream_gets_neither_token_nor_proof(
        stack: Stack, provider: OidcProvider) -> None:
    client = DpopClient("ES256")
    token = dpop_token(provider, client)
    for path in ("/dpop/get", "/dpop/get", "/dpop-only/x?page=2"):  # a cache miss, a hit, RFC 9701 answers
        headers = upstream_headers(call(stack, path, token, client.proof("GET", url(stack, path), token)))
        assert "authorization" not in headers and "dpop" not in headers
        encoded = headers["x-token-claims"]
        claims = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        assert claims["cnf"] == {"jkt": client.thumbprint} and claims["token_type"] == "DPoP"


def test_bearer_presentation_of_a_dpop_bound_token_is_refused(stack: Stack, provider: OidcProvider) -> None:
    client = DpopClient("ES256")
    token = dpop_token(provider, client)
    allowed = call(stack, "/dpop/get", token, client.proof("GET", url(stack, "/dpop/get"), token), "Bearer")
    assert allowed.status == 401, allowed
    assert allowed.headers["www-authenticate"].startswith('Bearer realm="api", error="invalid_token"')
    assert allowed.headers["www-authenticate"].endswith(f'DPoP realm="api", {ALGS}')
    off = call(stack, "/httpbin/get", token, None, "Bearer")  # a route with dpop off: refused as before
    assert off.status == 401 and "DPoP" not in off.headers["www-authenticate"], off
    required = call(stack, "/dpop-only/x", token, None, "Bearer")
    assert (required.status, required.headers["www-authenticate"]) == (401, f'DPoP realm="api", {ALGS}')
    assert denied_count(stack, "dpop_bound_token_as_bearer") >= 2


def _bad_proofs(stack: Stack, client: DpopClient, token: str) -> dict[str, tuple[str, str]]:
    """reason -> (proof, the error code the challenge names)."""
    here = url(stack, "/dpop/get")
    now = int(time.time())
    return {
        "dpop_expired": (client.proof("GET", here, token, claims={"iat": now - 300}), "invalid_dpop_proof"),
        "dpop_future": (client.proof("GET", here, token, claims={"iat": now + 300}), "invalid_dpop_proof"),
        "dpop_htu": (client.proof("GET", url(stack, "/dpop/other"), token), "invalid_dpop_proof"),
        "dpop_htm": (client.proof("POST", here, token), "invalid_dpop_proof"),
        "dpop_private_key": (client.proof("GET", here, token, header={"jwk": client.private_jwk()}),
                             "invalid_dpop_proof"),
        "dpop_alg": (jwt.encode({"jti": "j", "htm": "GET", "htu": here, "iat": now}, None, algorithm="none",
                                headers={"typ": "dpop+jwt", "jwk": client.public_jwk()}), "invalid_dpop_proof"),
        "dpop_oversized": (client.proof("GET", here, token, claims={"pad": "x" * 6000}), "invalid_dpop_proof"),
        "dpop_ath": (client.proof("GET", here, "another-token"), "invalid_dpop_proof"),
        "dpop_key_mismatch": (DpopClient("ES256").proof("GET", here, token), "invalid_token"),
    }


def test_each_bad_proof_is_a_401_with_its_challenge_and_counted(stack: Stack, provider: OidcProvider) -> None:
    client = DpopClient("ES256")
    token = dpop_token(provider, client)
    for reason, (proof, error) in _bad_proofs(stack, client, token).items():
        before = denied_count(stack, reason)
        resp = call(stack, "/dpop/get", token, proof)
        assert resp.status == 401, (reason, resp)
        assert f'DPoP realm="api", error="{error}"' in resp.headers["www-authenticate"], (reason, resp)
        assert denied_count(stack, reason) == before + 1, reason
    good = client.proof("GET", url(stack, "/dpop/get"), token)
    assert call(stack, "/dpop/get", token, good).status == 200
    replayed = call(stack, "/dpop/get", token, good)
    assert replayed.status == 401 and 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]
    assert denied_count(stack, "dpop_replay") >= 1


@pytest.mark.parametrize("htu", [
    "HTTP://127.0.0.1:{port}/dpop/get",  # scheme case
    "http://127.0.0.1:{port}/dpop/get?x=1#frag",  # query and fragment are not part of it
    "http://127.0.0.1:{port}/dpop/./get",  # dot segments
    "http://127.0.0.1:{port}/dpop/%67et",  # an unreserved character percent-encoded
])
def test_htu_matches_in_normal_form(stack: Stack, provider: OidcProvider, htu: str) -> None:
    client = DpopClient("EdDSA")
    token = dpop_token(provider, client)
    resp = call(stack, "/dpop/get?page=1", token, client.proof("GET", htu.format(port=stack.envoy_port), token))
    assert resp.status == 200, resp


@pytest.mark.parametrize("htu", [
    "https://127.0.0.1:{port}/dpop/get",  # another scheme than Envoy saw
    "http://localhost:{port}/dpop/get",  # another host than the client sent
    "http://127.0.0.1:{other}/dpop/get",  # another port
    "http://127.0.0.1:{port}/dpop/get/",
])
def test_htu_of_another_uri_is_refused(stack: Stack, provider: OidcProvider, htu: str) -> None:
    client = DpopClient("ES256")
    token = dpop_token(provider, client)
    proof = client.proof("GET", htu.format(port=stack.envoy_port, other=stack.envoy_port + 1), token)
    resp = call(stack, "/dpop/get", token, proof)
    assert resp.status == 401 and 'error="invalid_dpop_proof"' in resp.headers["www-authenticate"], resp


def test_a_client_cannot_choose_the_scheme_with_x_forwarded_proto(stack: Stack, provider: OidcProvider) -> None:
    """HTTP mode reads the scheme from x-forwarded-proto: Envoy (use_remote_address: true) overwrites the client's."""
    client = DpopClient("ES256")
    token = dpop_token(provider, client)
    proof = client.proof("GET", f"https://127.0.0.1:{stack.envoy_port}/dpop/get", token)
    resp = http_request("GET", stack.envoy_port, "/dpop/get",
                        {"Authorization": f"DPoP {token}", "DPoP": proof, "X-Forwarded-Proto": "https"})
    assert resp.status == 401 and 'error="invalid_dpop_proof"' in resp.headers["www-authenticate"], resp


def test_server_nonces_reach_the_client_and_are_then_accepted(stack_factory: Any, provider: OidcProvider) -> None:
    stack = start(stack_factory(), provider, nonce={"secret_env": "DPOP_NONCE_SECRET"})
    client = DpopClient("ES256")
    token = dpop_token(provider, client)
    here = url(stack, "/dpop/get")
    first = call(stack, "/dpop/get", token, client.proof("GET", here, token))
    assert first.status == 401, first
    assert 'DPoP realm="api", error="use_dpop_nonce"' in first.headers["www-authenticate"]
    nonce = first.headers["dpop-nonce"]
    assert call(stack, "/dpop/get", token, client.proof("GET", here, token, nonce=nonce)).status == 200
