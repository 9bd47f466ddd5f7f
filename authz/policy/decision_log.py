"""One structured log line per OPA decision (logger ``authz.decisions``): decision id, path, result, duration,
subject, engine; in ``full`` mode also the input, with the configured JSON pointers erased (as OPA's decision-log
masking does). The opaque token is never in the input; masking keeps the JWT and cookies out by default."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

__all__ = ["DecisionLogger"]

log = logging.getLogger("authz.decisions")


def _erase(document: dict[str, Any], pointer: str) -> bool:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node: Any = document
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


class DecisionLogger:
    def __init__(self, mode: str, masks: tuple[str, ...]) -> None:
        self.mode = mode
        self._masks = masks

    @property
    def enabled(self) -> bool:
        return self.mode != "off" and log.isEnabledFor(logging.INFO)

    def log(self, *, decision_id: str, path: str, engine: str, duration_ms: float, subject: str | None,
            allowed: bool | None, status: int | None, dry_run: bool, error: str | None = None,
            policy_input: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        entry: dict[str, Any] = {"decision_id": decision_id, "path": path, "engine": engine,
                                 "duration_ms": round(duration_ms, 3), "subject": subject,
                                 "result": {"allowed": allowed, "http_status": status}, "dry_run": dry_run}
        if error is not None:
            entry["error"] = error
        if self.mode == "full" and policy_input is not None:
            document = {"input": copy.deepcopy(policy_input)}
            entry["erased"] = [p for p in self._masks if _erase(document, p)]
            entry["input"] = document["input"]
        log.info("%s", json.dumps(entry, separators=(",", ":"), default=str))
