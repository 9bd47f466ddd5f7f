"""The gRPC servicer for ``envoy.service.auth.v3.Authorization``: CheckRequest -> ``Authorizer.decide`` ->
CheckResponse.

Thin by design: it only translates (``authz.transport.grpc_request``); the decision and the response come from
``authz.pipeline``.
Never a gRPC error for an expected condition: Envoy would apply ``status_on_error`` and lose our status and headers.
"""

from __future__ import annotations

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.logs import loggable_path
from authz.pipeline import Authorizer
from authz.transport.grpc_request import request_info

__all__ = ["AuthorizationService"]


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer

    async def Check(self, request: CheckRequest, context: grpc.aio.ServicerContext) -> CheckResponse:
        return await self._authorizer.decide(lambda: request_info(request), lambda: _where(request))


def _where(request: CheckRequest) -> str:
    http = request.attributes.request.http
    return f"{http.method} {loggable_path(http.path)} request_id={http.id or '-'}"
