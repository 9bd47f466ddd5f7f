"""Stage 6: ask the policy engine about one request; the decision contract is opa-envoy-plugin's.

Runs after the scope check, on every request of a route whose ``policy`` context extension names a decision path.
An evaluation error, an undefined decision or a result of the wrong shape is never an allow: it is ``PolicyFailed``
with the configured OPA-failure status. In dry-run mode the decision is made and logged, and the request is allowed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from authz.config import PolicyConfig
from authz.errors import PolicyDenied, PolicyFailed
from authz.metrics import Metrics
from authz.models import Answer, Identity, RequestInfo
from authz.policy.decision import PolicyDecision, PolicyResultError, decision_from_result
from authz.policy.decision_log import DecisionLogger
from authz.policy.engine import Evaluation, PolicyEngine, PolicyEvaluationError, ReusingEngine
from authz.policy.projection import Projection
from authz.policy.view import RequestView
from authz.request_form import check_policy_request

if TYPE_CHECKING:
    from authz.tracing.otel import Tracing

__all__ = ["PolicyOutcome", "PolicyStage"]

log = logging.getLogger("authz.policy")

_EVERYTHING = Projection()  # a remote OPA's policies are unknown: the whole input


class PolicyOutcome:
    """An allowing decision and its id (for Envoy's dynamic metadata)."""

    __slots__ = ("decision", "decision_id")

    def __init__(self, decision: PolicyDecision | None, decision_id: str) -> None:
        self.decision = decision  # None in dry-run: nothing of the policy's is applied
        self.decision_id = decision_id


class PolicyStage:
    def __init__(self, config: PolicyConfig, engine: PolicyEngine, tracing: Tracing | None = None,
                 metrics: Metrics | None = None) -> None:
        self._config = config
        self.engine = engine
        if config.dry_run:
            log.warning("policy.dry_run is on: decisions are made and logged, but every request is allowed whatever "
                        "the policy decides (never in production)")
        self._tracing = tracing  # on: each decision is an authz.policy span under the check's
        self._log = DecisionLogger(config.decision_log, config.decision_log_mask, config.decision_log_mask_headers)
        self._decisions: dict[str, PolicyDecision] = {}  # by the result's repr: equal results, one decision
        # decisions found from the request alone, before its input is built; not when the full input is logged
        self._reuse = engine if isinstance(engine, ReusingEngine) and config.decision_log != "full" else None
        metrics = metrics or Metrics()
        self._seconds = metrics.policy_seconds.labels()
        self._results = {result: metrics.policy_decisions.labels(result) for result in ("allow", "deny", "error")}
        self._reuse_hit, self._reuse_miss = (metrics.policy_decision_cache.labels(r) for r in ("hit", "miss"))

    async def decide(self, path: str, request: RequestInfo, identity: Identity | None,
                     answer: Answer | None = None, route: Mapping[str, Any] | None = None) -> PolicyOutcome:
        """``answer``: the AS answer ``identity`` comes from, which keeps the token's part of the input; ``route``:
        the matched route rule (``input.route``)."""
        view = request.make_view() if request.make_view is not None else RequestView(
            request.method, request.path, request.host, headers=request.headers,
            context_extensions=request.context_extensions)
        view.route = route
        check_policy_request(view)  # a query or body the input cannot hold: 400, before any decision is reused
        started = time.perf_counter()
        decision_id = ""
        policy_input: dict[str, Any] = {}
        try:
            # only what the loaded policies can read (embedded engine); the reuse key and the input from one reading
            projection: Projection = getattr(self.engine, "projection", _EVERYTHING)
            values = projection.values(view, identity, answer)  # PolicyInputError: a path the input cannot hold
            reuse = self._reuse
            key = projection.key(path, values) if reuse is not None and reuse.reuses_decisions else None
            evaluation = reuse.reused(key) if reuse is not None and key is not None else None
            if key is not None:
                (self._reuse_miss if evaluation is None else self._reuse_hit).inc()
            if evaluation is None:
                policy_input = projection.document(values)
                evaluation = await self.engine.evaluate(path, policy_input)
                if reuse is not None and key is not None:
                    reuse.remember(key, evaluation)
            decision_id = evaluation.decision_id
            decision = self._checked(evaluation)
        except (PolicyEvaluationError, PolicyResultError) as exc:
            self._record(path, decision_id or "-", started, identity, None, None, str(exc), policy_input)
            if self._config.dry_run:
                return PolicyOutcome(None, decision_id)
            raise PolicyFailed(str(exc), status=self._config.failure_status) from None
        status = None if decision.allowed else decision.http_status or 403
        self._record(path, decision_id, started, identity, decision.allowed, status, None, policy_input)
        if self._config.dry_run:
            return PolicyOutcome(None, decision_id)
        if not decision.allowed:
            raise PolicyDenied(decision, f"policy {path} denied (decision {decision_id})")
        return PolicyOutcome(decision, decision_id)

    def _checked(self, evaluation: Evaluation) -> PolicyDecision:
        """The evaluation's result checked against the contract. A decision-cache entry keeps the outcome, so a
        reused decision comes with its PolicyDecision."""
        decided = evaluation.decided
        if decided is not None and decided.decision is not None:
            return decided.decision
        decision = self._decision(evaluation.result)
        if decided is not None:
            decided.decision = decision
        return decision

    def _decision(self, result: Any) -> PolicyDecision:
        """Policies answer with few distinct results: each is checked against the contract once, and the same
        PolicyDecision object comes back for equal results (so the replies kept for it serve them all)."""
        key = repr(result)  # JSON-like values: equal reprs are equal values of equal types
        found = self._decisions.get(key)
        if found is None:
            found = decision_from_result(result)  # PolicyResultError is not memoised: it is raised every time
            if len(self._decisions) >= 1024:
                self._decisions.clear()
            self._decisions[key] = found
        return found

    def _record(self, path: str, decision_id: str, started: float, identity: Identity | None, allowed: bool | None,
                status: int | None, error: str | None, policy_input: dict[str, Any]) -> None:
        elapsed = time.perf_counter() - started
        self._seconds.observe(elapsed)
        self._results["error" if allowed is None else "allow" if allowed else "deny"].inc()
        self._log.log(decision_id=decision_id, path=path, engine=self.engine.name, duration_ms=elapsed * 1000,
                      subject=identity.subject if identity is not None else None, allowed=allowed, status=status,
                      dry_run=self._config.dry_run, error=error, policy_input=policy_input)
        if self._tracing is not None:
            self._tracing.policy_evaluated(path=path, engine=self.engine.name, decision_id=decision_id,
                                           started=started, allowed=allowed, status=status, failed=error is not None,
                                           dry_run=self._config.dry_run)
