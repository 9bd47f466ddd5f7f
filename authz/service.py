"""The gRPC servicer for ``envoy.service.auth.v3.Authorization``: request -> pipeline -> response.

Thin by design: translate, decide, translate back. Every exception becomes a denial (a bug is a 500), never an
allow and never a gRPC error.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.errors import AuthzError
from authz.metrics import Metrics
from authz.models import Allow
from authz.pipeline import Authorizer
from authz.request import request_info
from authz.response import allow_response, deny_response

__all__ = ["AuthorizationService"]

log = logging.getLogger("authz.check")


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, authorizer: Authorizer, metrics: Metrics | None = None) -> None:
        self._authorizer = authorizer
        self._realm = authorizer.config.realm
        self._checks = (metrics or Metrics()).checks
        self._allowed = self._checks.labels("allow", "200", "ok")
        self._responses: dict[tuple[int, int, int], tuple[object, object, object, CheckResponse]] = {}

    async def Check(self, request: CheckRequest, context: grpc.aio.ServicerContext) -> CheckResponse:
        try:
            response = self._response_for(await self._authorizer.check(request_info(request)))
            self._allowed.inc()
            return response
        except AuthzError as err:
            _log_denial(err, request)
            self._checks.labels("deny", str(err.status), err.reason).inc()
            return deny_response(err, self._realm)
        except Exception:
            log.exception("internal error while checking %s; denying with 500", _where(request))
            self._checks.labels("deny", "500", "internal_error").inc()
            return deny_response(AuthzError("internal error"), self._realm)


    def _response_for(self, allow: Allow) -> CheckResponse:
        """Cache hits hand back the same identity, headers and (memoised) policy decision objects, so their
        CheckResponse is built once; only a policy's per-request decision_id is set on a copy."""
        key = (id(allow.identity), id(allow.policy), id(allow.headers))
        memo = self._responses.get(key)
        if memo is None or memo[0] is not allow.identity or memo[1] is not allow.policy or memo[2] is not allow.headers:
            if len(self._responses) >= 4096:
                self._responses.clear()
            metadata = {k: v for k, v in allow.dynamic_metadata.items() if k != "decision_id"}
            base = allow_response(replace(allow, dynamic_metadata=metadata))
            memo = (allow.identity, allow.policy, allow.headers, base)
            self._responses[key] = memo
        decision_id = allow.dynamic_metadata.get("decision_id")
        if decision_id is None:
            return memo[3]
        response = CheckResponse()
        response.CopyFrom(memo[3])
        response.dynamic_metadata.fields["decision_id"].string_value = decision_id
        return response


def _where(request: CheckRequest) -> str:
    http = request.attributes.request.http
    return f"{http.method} {http.path[:200]!r} request_id={http.id or '-'}"


def _log_denial(err: AuthzError, request: CheckRequest) -> None:
    level = logging.ERROR if err.status in (500, 502) else logging.WARNING if err.status >= 500 else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, "deny status=%d reason=%s token=%s %s: %s", err.status, err.reason,
                err.token_id or "-", _where(request), err.detail)
