"""What every policy engine gives the pipeline: ``evaluate(decision_path, input) -> Evaluation``, or an error."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from authz.policy.decision_cache import Decided

__all__ = ["DECISION_PATH", "Evaluation", "PolicyEngine", "PolicyEvaluationError", "PolicyLoadError", "ReusingEngine",
           "new_decision_id", "rego_ref"]

DECISION_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


class PolicyEvaluationError(Exception):
    """OPA unreachable, an evaluation error, an undefined decision: the request gets the OPA-failure status."""


class PolicyLoadError(Exception):
    """A policy or data file that cannot be loaded; the message names the file (and line, for Rego)."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    result: Any  # the decision document, not yet checked against the result contract
    decision_id: str
    decided: Decided | None = None  # the decision cache's entry for this result, which keeps its checked decision


class PolicyEngine(Protocol):
    name: str

    async def evaluate(self, decision_path: str, policy_input: dict[str, Any]) -> Evaluation: ...

    async def close(self) -> None: ...


@runtime_checkable
class ReusingEngine(Protocol):
    """An engine that knows what its policies read (``projection``: ``authz.policy.projection.Projection``) and
    reuses their decisions under the projection's keys, found before the input is built."""

    projection: Any

    @property
    def reuses_decisions(self) -> bool: ...

    def reused(self, key: Hashable) -> Evaluation | None: ...

    def remember(self, key: Hashable, evaluation: Evaluation) -> None: ...


def rego_ref(decision_path: str) -> str:
    """``envoy/authz/allow`` -> ``data.envoy.authz.allow``."""
    return "data." + decision_path.replace("/", ".")


_ID_PREFIX = os.urandom(8).hex()  # per process (workers are separate processes)
_ID_COUNTER = itertools.count()


def new_decision_id() -> str:
    """32 hex digits, unique per process lifetime and across processes (random prefix + counter): a tenth of
    uuid4's cost, and decision ids are made on every policy-checked request."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"
