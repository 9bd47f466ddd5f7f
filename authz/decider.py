"""Transport-neutral: a translated request -> pipeline -> the one ``CheckResponse`` every transport answers from.

Both transports call ``Decider.decide``: the gRPC servicer returns its ``CheckResponse`` as is, the HTTP transport
turns it into an HTTP answer. So decisions, statuses, challenges and bodies come from one place. Every exception
becomes a denial (a bug is a 500), never an allow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.errors import AuthzError
from authz.metrics import Metrics
from authz.models import Allow, RequestInfo
from authz.pipeline import Authorizer
from authz.response import allow_response, deny_response

__all__ = ["Decider"]

log = logging.getLogger("authz.check")

_MEMO_LIMIT = 4096


class Decider:
    def __init__(self, authorizer: Authorizer, metrics: Metrics | None = None) -> None:
        self.authorizer = authorizer
        self._realm = authorizer.config.realm
        self._checks = (metrics or Metrics()).checks
        self._allowed = self._checks.labels("allow", "200", "ok")
        self._responses: dict[tuple[int, int, int], tuple[object, object, object, CheckResponse]] = {}

    async def decide(self, translate: Callable[[], RequestInfo], where: Callable[[], str], *,
                     per_request_metadata: bool = True) -> CheckResponse:
        """``translate`` builds the RequestInfo (and may raise ``AuthzError`` for a malformed request);
        ``where`` describes the request for log lines (method, path, request id), called only when logging.
        ``per_request_metadata=False`` (a transport that cannot carry dynamic metadata) leaves the policy's
        decision id out, so cached answers keep returning one memoised response."""
        try:
            response = self._response_for(await self.authorizer.check(translate()), per_request_metadata)
            self._allowed.inc()
            return response
        except AuthzError as err:
            self.deny_log(err, where)
            return deny_response(err, self._realm)
        except Exception:
            log.exception("internal error while checking %s; denying with 500", where())
            self._checks.labels("deny", "500", "internal_error").inc()
            return deny_response(AuthzError("internal error"), self._realm)

    def deny_log(self, err: AuthzError, where: Callable[[], str]) -> None:
        """Count a denial and log it (no token, only its short id)."""
        self._checks.labels("deny", str(err.status), err.reason).inc()
        level = logging.ERROR if err.status in (500, 502) else logging.WARNING if err.status >= 500 else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "deny status=%d reason=%s token=%s %s: %s", err.status, err.reason,
                    err.token_id or "-", where(), err.detail)

    def _response_for(self, allow: Allow, per_request_metadata: bool = True) -> CheckResponse:
        """Cache hits hand back the same identity, headers and (memoised) policy decision objects, so their
        CheckResponse is built once; only a policy's per-request decision_id is set on a copy."""
        key = (id(allow.identity), id(allow.policy), id(allow.headers))
        memo = self._responses.get(key)
        if memo is None or memo[0] is not allow.identity or memo[1] is not allow.policy or memo[2] is not allow.headers:
            if len(self._responses) >= _MEMO_LIMIT:
                self._responses.clear()
            metadata = {k: v for k, v in allow.dynamic_metadata.items() if k != "decision_id"}
            base = allow_response(replace(allow, dynamic_metadata=metadata))
            memo = (allow.identity, allow.policy, allow.headers, base)
            self._responses[key] = memo
        decision_id = allow.dynamic_metadata.get("decision_id")
        if decision_id is None or not per_request_metadata:
            return memo[3]
        response = CheckResponse()
        response.CopyFrom(memo[3])
        response.dynamic_metadata.fields["decision_id"].string_value = decision_id
        return response
