"""Only plain bearer access tokens pass (issue 12 item 8), through real Envoy in both ext_authz modes.

An introspection answer that says the token is a refresh or ID token (``token_type``), or that the token is
sender-constrained (a ``cnf`` claim: DPoP or mTLS-bound), is a 401 ``invalid_token`` whatever the dialect, and
nothing reaches the upstream. The answers come from ``tests/fake_as.py``; a plain bearer answer from the same AS is
the control.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_as import FakeAS
from tests.harness import Stack, add_route

# fake AS behaviour -> the dialect that reads it
SERVERS = {"ok": "phantom", "json_bearer": "rfc7662", "json_refresh_token": "rfc7662",
           "json_dpop_bound": "rfc7662", "jwt_mtls_bound": "phantom"}


@pytest.fixture(scope="module")
def fake_as() -> Iterator[FakeAS]:
    fake = FakeAS().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def kinds_stack(tmp_path_factory: pytest.TempPathFactory, mode: str, fake_as: FakeAS) -> Iterator[Stack]:
    """One stack per mode for the module: its tests only send requests."""
    servers: dict[str, Any] = {
        name: {"dialect": dialect, "introspection_endpoint": f"http://127.0.0.1:{fake_as.port}/introspect/{name}",
               "client_id": "gateway-client", "client_secret_env": "TEST_GATEWAY_SECRET", "issuer": "http://fake-as",
               "jwks_uri": f"http://127.0.0.1:{fake_as.port}/jwks", "audiences": ["api"],
               "claims_forwarding": "header"}
        for name, dialect in SERVERS.items()
    }
    def mutate(config: dict[str, Any]) -> None:
        for name in SERVERS:
            add_route(f"/kind/{name}/", {"as": name, "required_scopes": "read"})(config)

    s = Stack(tmp_path_factory.mktemp(f"kinds-{mode}"), mode)
    try:
        with s.together():
            s.start_echo()
            s.start_authz(authorization_servers=servers, default_authorization_server="ok")
            s.start_envoy(mutate)
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("behaviour", ["json_refresh_token", "json_dpop_bound", "jwt_mtls_bound"])
def test_item08_refresh_and_bound_tokens_are_401_invalid_token_through_envoy(kinds_stack: Stack,
                                                                             behaviour: str) -> None:
    for control in ("ok", "json_bearer"):  # the same AS's plain bearer answers pass
        assert kinds_stack.get(f"/kind/{control}/get", "opaque-token-0123456789").status == 200
    resp = kinds_stack.get(f"/kind/{behaviour}/get", "opaque-token-0123456789")
    assert resp.status == 401, resp
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert resp.json()["error"] == "invalid_token"
    assert b"alice" not in resp.body  # the answer's claims reach neither the client nor (no allow) the upstream
