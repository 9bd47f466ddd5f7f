"""``TracedAuthorizer``: the pipeline with a span around each check, used instead of ``Authorizer`` when tracing is on
(so the untraced pipeline carries no tracing code at all).

The check span's attributes, set as the check learns them: the method and path (without the query), the route rule
and the AS (``_TracedRoutes``), where the AS answer came from (``authz.cache``, noted by the cache), the policy's
decision id (noted by the policy stage), and the outcome: ``authz.outcome`` allow/deny,
``http.response.status_code``, ``authz.reason`` (the denial's stable reason, ``ok`` for an allow). The span is
current from the translated request to the answer, so the denial's log line carries its trace id; a check call that
cannot be translated has a span too (a root: its headers are unknown), with its status and reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.config import Config
from authz.metrics import Metrics
from authz.models import Allow, Replies, RequestInfo, RouteSettings
from authz.pipeline import AuthorityLike, Authorizer
from authz.policy.stage import PolicyStage
from authz.routes import RouteResolver
from authz.tracing.otel import Tracing

__all__ = ["TracedAuthorizer"]


class _TracedRoutes(RouteResolver):
    """Route resolution that notes the route on the current check span."""

    def __init__(self, config: Config, tracing: Tracing) -> None:
        super().__init__(config)
        self._note = tracing.note_route

    def resolve(self, request: RequestInfo) -> tuple[RouteSettings, Mapping[str, str]]:
        route, params = super().resolve(request)
        self._note(route)
        return route, params


class TracedAuthorizer(Authorizer):
    def __init__(self, tracing: Tracing, config: Config, authorities: Mapping[str, AuthorityLike],
                 policy: PolicyStage | None = None, metrics: Metrics | None = None) -> None:
        super().__init__(config, authorities, policy, metrics)
        self.tracing = self._tracing = tracing
        self.routes = _TracedRoutes(config, tracing)

    async def decide(self, translate: Callable[[], RequestInfo], where: Callable[[], str]) -> CheckResponse:
        request, failure = self._translated(translate)
        with self._tracing.check_span(request):
            return await super().decide(partial(_again, request, failure), where)

    async def decide_kept(self, translate: Callable[[], RequestInfo],
                          where: Callable[[], str]) -> tuple[CheckResponse, Replies | None]:
        request, failure = self._translated(translate)
        with self._tracing.check_span(request):
            return await super().decide_kept(partial(_again, request, failure), where)

    async def check(self, request: RequestInfo) -> Allow:
        try:
            allow = await super().check(request)
        except Exception as exc:
            self._tracing.refused(exc)
            raise
        self._tracing.checked(allow.dynamic_metadata.get("decision_id"))
        return allow

    def _translated(self, translate: Callable[[], RequestInfo]) -> tuple[RequestInfo | None, Exception | None]:
        """The request, translated before its span starts (its headers hold the parent), or the translation's
        failure, which ``_again`` raises where the pipeline would have met it."""
        try:
            return translate(), None
        except Exception as exc:
            return None, exc


def _again(request: RequestInfo | None, failure: Exception | None) -> RequestInfo:
    if failure is not None:
        Tracing.refused(failure)
        raise failure
    assert request is not None
    return request
