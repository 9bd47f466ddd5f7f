"""README "Certificate-bound tokens": HTTP mode cannot check them (Envoy's HTTP ext_authz sends no certificate), so
an HTTP-mode route asking for ``mtls_bound`` in its ``;settings`` fails closed (500; the client gets Envoy's
``status_on_error``, 503) — for every request, a token or none, as any misconfigured route does: never a 401 that
reads as if the route worked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Stack, add_route, assert_authz_error


@pytest.fixture(scope="module")
def http_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("mtls-bound-http"), "http")
    try:
        yield stack.full(mutate=add_route("/bound/", {"required_scopes": "read", "mtls_bound": "required"}))
    finally:
        stack.stop()


@pytest.mark.parametrize("credential", ["none", "unknown token", "valid token"])
def test_a_route_asking_for_certificate_bound_tokens_fails_closed_in_http_mode(http_stack: Stack,
                                                                              credential: str) -> None:
    token = {"none": None, "unknown token": "not-a-token-the-as-knows", "valid token": http_stack.token("read")}
    resp = http_stack.get("/bound/get", token[credential])
    assert_authz_error(resp, "http", 500)
    assert http_stack.get("/httpbin/get", http_stack.token("read")).status == 200  # other routes are unaffected
