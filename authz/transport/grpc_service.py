"""The gRPC servicer for ``envoy.service.auth.v3.Authorization``: CheckRequest -> ``Authorizer.decide`` ->
CheckResponse.

Thin by design: it only translates (``authz.transport.grpc_request``); the decision and the response come from
``authz.pipeline``; a denial of a gRPC request is sent in gRPC's terms (``authz.grpc_denial``).
Never a gRPC error for an expected condition: Envoy would apply ``status_on_error`` and lose our status and headers.
"""

from __future__ import annotations

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.grpc_denial import grpc_denial, is_grpc
from authz.header_text import header_text
from authz.log_context import bind_check, unbind_check
from authz.logs import loggable_path
from authz.pipeline import Authorizer
from authz.tracing import detach
from authz.transport.grpc_request import request_info

__all__ = ["AuthorizationService", "check_header"]


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def Check(self, request: CheckRequest, context: grpc.aio.ServicerContext) -> CheckResponse:
        bound = bind_check(check_header, request)  # log lines name the request by Envoy's x-request-id
        tracing = self.authorizer.tracing  # on: Envoy's span in the call's metadata is the check span's parent
        parent = None if tracing is None else tracing.attach_parent(context.invocation_metadata())
        try:
            response = await self.authorizer.decide(lambda: request_info(request), lambda: _where(request))
            if response.HasField("denied_response") and is_grpc(check_header(request, "content-type")):
                return grpc_denial(response)  # what a gRPC client reads: grpc-status, grpc-message
            return response
        finally:
            unbind_check(bound)
            if parent is not None:
                detach(parent)


def _where(request: CheckRequest) -> str:
    http = request.attributes.request.http
    return f"{http.method} {loggable_path(http.path)}"


def check_header(request: CheckRequest, name: str) -> str | None:
    """Header ``name`` (lower case) of the checked request, from either of Envoy's encodings (for log fields)."""
    http = request.attributes.request.http
    value: str | None = http.headers.get(name)
    if value is None:
        for entry in http.header_map.headers:
            if entry.key.lower() == name:
                return str(entry.value or header_text(entry.raw_value))
    return value
