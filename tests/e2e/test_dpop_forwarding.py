"""Issue 16 item 1: what the upstream receives for a DPoP-bound token whose AS returns a JWT (the phantom dialect),
through real Envoy in both ext_authz modes: with ``dpop.forward: dpop`` the JWT goes as ``Authorization: DPoP <JWT>``
(Curity's plugins' choice) and, with ``dpop.forward_proof: true``, the client's proof goes along. The AS is
tests/fake_as.py's ``jwt_dpop_bound`` answer (a signed JWT with ``cnf.jkt`` of ``DPOP_CLIENT``'s key); the proofs are
real. (``Bearer <JWT>`` and a removed proof, the defaults, are what tests/interop/test_oidc_provider_dpop.py and
tests/unit/test_dpop_pipeline.py check.)"""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest

from tests.dpop_client import DpopClient
from tests.fake_as import DPOP_CLIENT, FakeAS
from tests.harness import Stack, add_route, http_request

TOKEN = "opaque-token-0123456789"


@pytest.fixture(scope="module")
def forwarding_stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    """The fake AS answering with a DPoP-bound JWT, echo, phantom-authz (forward: dpop, forward_proof) and Envoy."""
    fake_as = FakeAS().start()
    server = {"dialect": "phantom", "introspection_endpoint": f"http://127.0.0.1:{fake_as.port}/introspect/"
              "jwt_dpop_bound", "client_id": "gateway-client", "client_secret_env": "TEST_GATEWAY_SECRET",
              "issuer": "http://fake-as", "jwks_uri": f"http://127.0.0.1:{fake_as.port}/jwks", "audiences": ["api"]}

    s = Stack(tmp_path_factory.mktemp(f"dpop-forward-{mode}"), mode)
    try:
        with s.together():
            s.start_echo()
            s.start_authz(authorization_servers={"fake": server},
                          dpop={"forward": "dpop", "forward_proof": True, "algorithms": "ES256"})
            s.start_envoy(add_route("/bound/", {"dpop": "required", "required_scopes": "read"}))
        yield s
    finally:
        s.stop()
        fake_as.stop()


def test_the_jwt_goes_upstream_as_dpop_with_the_proof(forwarding_stack: Stack) -> None:
    here = f"http://127.0.0.1:{forwarding_stack.envoy_port}/bound/get"
    proof = DPOP_CLIENT.proof("GET", here, TOKEN)
    resp = http_request("GET", forwarding_stack.envoy_port, "/bound/get", {"Authorization": f"DPoP {TOKEN}",
                                                                           "DPoP": proof})
    assert resp.status == 200, resp
    headers = {k.lower(): v for k, v in resp.json()["headers"].items()}
    scheme, _, forwarded = headers["authorization"].partition(" ")
    assert scheme == "DPoP" and forwarded != TOKEN
    assert jwt.decode(forwarded, options={"verify_signature": False})["cnf"] == {"jkt": DPOP_CLIENT.thumbprint}
    assert headers["dpop"] == proof


def test_only_the_bound_key_and_the_configured_algs_pass(forwarding_stack: Stack) -> None:
    here = f"http://127.0.0.1:{forwarding_stack.envoy_port}/bound/get"
    for client, error in ((DpopClient("ES256"), "invalid_token"), (DpopClient("EdDSA"), "invalid_dpop_proof")):
        resp = http_request("GET", forwarding_stack.envoy_port, "/bound/get", {
            "Authorization": f"DPoP {TOKEN}", "DPoP": client.proof("GET", here, TOKEN)})
        assert resp.status == 401, resp
        assert resp.headers["www-authenticate"].startswith(f'DPoP realm="api", error="{error}"'), resp
        assert resp.headers["www-authenticate"].endswith('algs="ES256"'), resp
