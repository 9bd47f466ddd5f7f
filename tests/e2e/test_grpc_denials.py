"""Denials gRPC clients understand, through real Envoy in both ext_authz modes: a grpcio client calls a real gRPC
upstream (``grpc.health.v1.Health``, answering in the test process) through Envoy; phantom-authz denies in gRPC's
terms (``authz.grpc_denial``), so the client sees the status code and message, with the RFC 6750 challenge in the
trailers; an allowed call reaches the upstream with the JWT in place of the opaque token.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.processes import free_port
from tests.harness import Stack, check_settings, routes
from tests.mesh.envoy_parts import cluster

CHECK = "/grpc.health.v1.Health/Check"
MISCONFIGURED = "/misconfigured.Service/Call"
SEEN = "x-seen-authorization"


class _Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """SERVING, with the Authorization the call arrived with in a trailer (what the upstream received)."""

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        seen = dict(context.invocation_metadata()).get("authorization", "")
        context.set_trailing_metadata(((SEEN, str(seen)),))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def grpc_stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    upstream = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(_Health(), upstream)
    port = free_port()
    upstream.add_insecure_port(f"127.0.0.1:{port}")
    upstream.start()

    def mutate(config: dict[str, Any]) -> None:
        config["static_resources"]["clusters"].append(cluster("grpc_upstream", port, http2=True))
        for path, settings in ((CHECK, {"required_scopes": "read"}), (MISCONFIGURED, {"required_scopes": ""})):
            per_route = {"@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                         "check_settings": check_settings(config, settings)}
            routes(config).insert(0, {"match": {"path": path}, "route": {"cluster": "grpc_upstream"},
                                      "typed_per_filter_config": {"envoy.filters.http.ext_authz": per_route}})

    stack = Stack(tmp_path_factory.mktemp(f"grpc-denials-{mode}"), mode)
    try:
        yield stack.full(mutate=mutate)
    finally:
        stack.stop()
        upstream.stop(0)


def _call(stack: Stack, authorization: str | None, path: str = CHECK) -> tuple[Any, Any]:
    metadata = () if authorization is None else (("authorization", authorization),)
    with grpc.insecure_channel(f"127.0.0.1:{stack.envoy_port}") as channel:
        if path == CHECK:
            return health_pb2_grpc.HealthStub(channel).Check.with_call(  # type: ignore[no-any-return]
                health_pb2.HealthCheckRequest(), metadata=metadata, timeout=10)
        call = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call.with_call(b"", metadata=metadata, timeout=10)  # type: ignore[no-any-return]


def _refused(stack: Stack, authorization: str | None, path: str = CHECK) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _call(stack, authorization, path)
    return info.value


def _trailers(error: grpc.RpcError) -> dict[str, str]:
    return {k: v for k, v in error.trailing_metadata()}  # type: ignore[attr-defined]


def test_allowed_call_reaches_the_grpc_upstream_with_the_jwt(grpc_stack: Stack) -> None:
    token = grpc_stack.token("read")
    response, call = _call(grpc_stack, f"Bearer {token}")
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    scheme, _, forwarded = dict(call.trailing_metadata())[SEEN].partition(" ")
    assert scheme == "Bearer" and forwarded != token
    assert jwt.decode(forwarded, options={"verify_signature": False})["scope"] == "read"


def test_no_token_is_unauthenticated_with_the_challenge(grpc_stack: Stack) -> None:
    error = _refused(grpc_stack, None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    assert error.details() == "unauthorized: a bearer access token is required"
    assert _trailers(error)["www-authenticate"] == 'Bearer realm="api"'


def test_unknown_token_is_unauthenticated_invalid_token(grpc_stack: Stack) -> None:
    error = _refused(grpc_stack, "Bearer not-a-token-the-as-knows")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    assert error.details().startswith("invalid_token: ")
    assert 'error="invalid_token"' in _trailers(error)["www-authenticate"]


def test_missing_scope_is_permission_denied_naming_the_scope(grpc_stack: Stack) -> None:
    error = _refused(grpc_stack, f"Bearer {grpc_stack.token('write')}")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
    assert error.details() == "insufficient_scope: the access token lacks a required scope"
    assert 'scope="read"' in _trailers(error)["www-authenticate"]


def test_malformed_credential_is_invalid_argument(grpc_stack: Stack) -> None:
    error = _refused(grpc_stack, "Bearer two tokens")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.details().startswith("invalid_request: ")


def test_misconfigured_route_is_internal_in_grpc_mode_and_unavailable_in_http_mode(grpc_stack: Stack) -> None:
    """HTTP mode: a 5xx is an authorization error to Envoy, which answers status_on_error (503: UNAVAILABLE)."""
    error = _refused(grpc_stack, f"Bearer {grpc_stack.token('read')}", MISCONFIGURED)
    if grpc_stack.mode == "grpc":
        assert error.code() == grpc.StatusCode.INTERNAL, error
        assert error.details().startswith("server_error: ")
    else:
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
