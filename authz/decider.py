"""Transport-neutral: a translated request -> pipeline -> the one ``CheckResponse`` every transport answers from.

The gRPC servicer calls ``Decider.decide`` and returns its ``CheckResponse`` as is; the HTTP transport calls
``decide_http``, which turns that CheckResponse into an HTTP answer. So decisions, statuses, challenges and bodies
come from one place. Every exception becomes a denial (a bug is a 500), never an allow.

An allow's replies are made once and kept in its ``Replies`` (on a cached answer's Allow: kept until the entry goes);
only a policy's per-request decision id is set on a copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.errors import AuthzError
from authz.http_response import HttpAnswer, http_answer
from authz.metrics import Metrics
from authz.models import Allow, Replies, RequestInfo
from authz.pipeline import Authorizer
from authz.response import allow_response, deny_response

__all__ = ["Decider"]

log = logging.getLogger("authz.check")


class Decider:
    def __init__(self, authorizer: Authorizer, metrics: Metrics | None = None) -> None:
        self.authorizer = authorizer
        self._realm = authorizer.config.realm
        self._checks = (metrics or Metrics()).checks
        self._allowed = self._checks.labels("allow", "200", "ok")

    async def decide(self, translate: Callable[[], RequestInfo], where: Callable[[], str]) -> CheckResponse:
        """``translate`` builds the RequestInfo (and may raise ``AuthzError`` for a malformed request);
        ``where`` describes the request for log lines (method, path, request id), called only when logging."""
        try:
            response = self._response_for(await self.authorizer.check(translate()))
            self._allowed.inc()
            return response
        except Exception as exc:
            return self._denial(exc, where)

    async def decide_http(self, translate: Callable[[], RequestInfo], where: Callable[[], str]) -> HttpAnswer:
        """``decide`` for Envoy's HTTP mode, which has no dynamic metadata: the answer leaves the policy's decision
        id out, so an allow from a cached answer is translated once."""
        try:
            allow = await self.authorizer.check(translate())
            replies = _replies(allow)
            answer = replies.http_answer
            if answer is None:
                answer = replies.http_answer = http_answer(_base_response(allow, replies))
            self._allowed.inc()
            return answer
        except Exception as exc:
            return http_answer(self._denial(exc, where))

    def _denial(self, exc: Exception, where: Callable[[], str]) -> CheckResponse:
        if isinstance(exc, AuthzError):
            self.deny_log(exc, where)
            return deny_response(exc, self._realm)
        log.error("internal error while checking %s; denying with 500", where(), exc_info=exc)
        self._checks.labels("deny", "500", "internal_error").inc()
        return deny_response(AuthzError("internal error"), self._realm)

    def deny_log(self, err: AuthzError, where: Callable[[], str]) -> None:
        """Count a denial and log it (no token, only its short id)."""
        self._checks.labels("deny", str(err.status), err.reason).inc()
        level = logging.ERROR if err.status in (500, 502) else logging.WARNING if err.status >= 500 else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "deny status=%d reason=%s token=%s %s: %s", err.status, err.reason,
                    err.token_id or "-", where(), err.detail)

    @staticmethod
    def _response_for(allow: Allow) -> CheckResponse:
        """The allow's kept response; a policy's per-request decision_id is set on a copy."""
        base = _base_response(allow, _replies(allow))
        decision_id = allow.dynamic_metadata.get("decision_id")
        if decision_id is None:
            return base
        response = CheckResponse()
        response.CopyFrom(base)
        response.dynamic_metadata.fields["decision_id"].string_value = decision_id
        return response


def _replies(allow: Allow) -> Replies:
    """Where the replies of ``allow`` are kept: its own ``Replies``, or for an allowing policy's decision the
    ``for_policy`` one made for that decision (fresh ones for an Allow made for one request)."""
    replies = allow.replies
    if replies is None:
        return Replies()
    policy = allow.policy
    if policy is None:
        return replies
    for_policy = replies.for_policy
    if for_policy is None or for_policy.policy is not policy:  # the decision it holds, not another equal one
        for_policy = replies.for_policy = Replies(policy)
    return for_policy


def _base_response(allow: Allow, replies: Replies) -> CheckResponse:
    """The CheckResponse of ``allow`` without a decision id, made once per ``replies``."""
    response = replies.response
    if response is None:
        metadata = {k: v for k, v in allow.dynamic_metadata.items() if k != "decision_id"}
        response = replies.response = allow_response(replace(allow, dynamic_metadata=metadata))
    return response
