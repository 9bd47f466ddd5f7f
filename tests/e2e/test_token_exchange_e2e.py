"""RFC 8693 token exchange at the edge through real Envoy, in both ext_authz modes, against the dev AS: each route
with an ``exchange_audience`` sends its upstream a token the AS minted for that audience (narrowed to
``exchange_scope``), exchanged once per token and audience; a refused exchange fails closed (the upstream is never
reached, the client's token and the introspected JWT never go instead).

Routes (Envoy ``context_extensions``, HTTP mode's ``;settings``): ``/orders/`` (audience orders.example.com, scope
read), ``/billing/`` (billing.example.com, the AS's choice of scopes), ``/widen/`` (orders.example.com, scope admin:
more than the token holds, which the dev AS refuses with invalid_scope), ``/records/`` (the quickstart's policy, then
an exchange for records.example.com) and the quickstart's ``/httpbin/`` (no exchange: the introspected JWT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from tests.harness import Response, Stack, add_route, assert_authz_error

EXCHANGING = {"/orders/": {"exchange_audience": "orders.example.com", "exchange_scope": "read"},
              "/billing/": {"exchange_audience": "billing.example.com"},
              "/widen/": {"exchange_audience": "orders.example.com", "exchange_scope": "admin"}}
RECORDS = {"required_scopes": "read", "policy": "records/decision", "exchange_audience": "records.example.com"}


def _routes(config: dict[str, Any]) -> None:
    mutations: list[Callable[[dict[str, Any]], None]] = [
        add_route(prefix, {"required_scopes": "read", **settings}) for prefix, settings in EXCHANGING.items()]
    mutations.append(add_route("/records/", RECORDS, upstream_headers=("x-authz-policy",)))
    for mutate in mutations:
        mutate(config)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp(f"token-exchange-{mode}"), mode)
    try:
        with s.together():
            s.start_dev_as()
            token_endpoint = f"http://127.0.0.1:{s.as_port}/oauth/v2/oauth-token"
            s.start_echo()
            s.start_authz(as_overrides={"token_exchange": {"token_endpoint": token_endpoint}})
            s.start_envoy(_routes)
        yield s
    finally:
        s.stop()


def upstream_token(resp: Response) -> str:
    """The bearer token the echo upstream received."""
    assert resp.status == 200, resp
    scheme, _, token = upstream_headers(resp)["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


def upstream_headers(resp: Response) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.json()["headers"].items()}


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def exchanges(stack: Stack) -> int:
    return int(stack.as_stats()["exchanges"])


def test_each_upstream_receives_a_token_minted_for_it(stack: Stack) -> None:
    token = stack.token("read write", subject="alice")
    phantom = claims(upstream_token(stack.get("/httpbin/get", token)))
    orders = claims(upstream_token(stack.get("/orders/1", token)))
    billing = claims(upstream_token(stack.get("/billing/1", token)))
    assert phantom["aud"] == "api.example.com" and phantom["scope"] == "read write"
    assert (orders["aud"], orders["scope"]) == ("orders.example.com", "read")
    assert (billing["aud"], billing["scope"]) == ("billing.example.com", "read write")
    for exchanged in (orders, billing):
        assert exchanged["sub"] == "alice" and exchanged["act"] == {"sub": "gateway-client"}
        assert exchanged["iss"] == phantom["iss"] and exchanged["jti"] != phantom["jti"]


def test_one_exchange_per_token_and_audience(stack: Stack) -> None:
    token = stack.token("read write", subject="alice")
    before = exchanges(stack)
    seen = {upstream_token(stack.get("/orders/1", token)) for _ in range(5)}
    assert len(seen) == 1 and exchanges(stack) == before + 1
    upstream_token(stack.get("/billing/1", token))
    upstream_token(stack.get("/orders/2", token))
    assert exchanges(stack) == before + 2
    other = stack.token("read", subject="bob")
    assert upstream_token(stack.get("/orders/1", other)) not in seen
    assert exchanges(stack) == before + 3


def test_a_refused_exchange_fails_closed(stack: Stack) -> None:
    token = stack.token("read write", subject="alice")
    before = exchanges(stack)
    for _ in range(2):
        resp = stack.get("/widen/1", token)
        assert_authz_error(resp, stack.mode, 502)  # grpc: our 502; http: Envoy's status_on_error (503)
        assert token.encode() not in resp.body
    assert exchanges(stack) == before
    assert claims(upstream_token(stack.get("/orders/1", token)))["aud"] == "orders.example.com"


def test_the_policy_decides_first_and_its_headers_go_with_the_exchanged_token(stack: Stack) -> None:
    alice = stack.token("read", subject="alice")
    before = exchanges(stack)
    resp = stack.get("/records/alice/profile", alice)
    assert claims(upstream_token(resp))["aud"] == "records.example.com"
    assert upstream_headers(resp).get("x-authz-policy") == "records"
    assert stack.get("/records/bob/profile", alice).status == 403  # denied by the policy: nothing exchanged for it
    assert stack.get("/records/alice/profile", stack.token("write", subject="alice")).status == 403  # scopes first
    assert exchanges(stack) == before + 1
