"""The gRPC servicer for ``envoy.service.auth.v3.Authorization``: CheckRequest -> ``Decider`` -> CheckResponse.

Thin by design: it only translates (``authz.request``); the decision and the response come from ``authz.decider``.
Never a gRPC error for an expected condition: Envoy would apply ``status_on_error`` and lose our status and headers.
"""

from __future__ import annotations

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.decider import Decider
from authz.logs import loggable_path
from authz.request import request_info

__all__ = ["AuthorizationService"]


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, decider: Decider) -> None:
        self._decider = decider

    async def Check(self, request: CheckRequest, context: grpc.aio.ServicerContext) -> CheckResponse:
        return await self._decider.decide(lambda: request_info(request), lambda: _where(request))


def _where(request: CheckRequest) -> str:
    http = request.attributes.request.http
    return f"{http.method} {loggable_path(http.path)} request_id={http.id or '-'}"
