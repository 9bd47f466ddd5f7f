"""One structured log record per OPA decision (logger ``authz.decisions``, message ``decision``), in the service's one
log stream (``authz.log_format``: a JSON line with the check's request id, trace id, token id and route rule), its
fields: decision id, path, result, duration, subject, engine; in ``full`` mode also the input, with the configured JSON
pointers erased (as OPA's decision-log masking does) and, always, every credential the input carries: the forwarded JWT
(``/input/token/jwt``) and each header named in ``CREDENTIAL_HEADERS`` (plus the configured
``decision_log_mask_headers``), in any letter case, wherever the input holds headers: a ``headers`` map, and
``headerMap`` entries (Envoy's ``encode_raw_headers``) with their ``value`` or base64 ``rawValue``. The opaque token is
never in the input."""

from __future__ import annotations

import copy
import logging
from typing import Any

__all__ = ["CREDENTIAL_HEADERS", "DecisionLogger", "erase_credentials"]

log = logging.getLogger("authz.decisions")

# Headers that carry credentials (RFC 9110 §11.6.2/§11.7.1, RFC 6265, RFC 9449) or conventionally an API key or token
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "dpop", "x-api-key",
                      "api-key", "x-auth-token", "x-access-token", "x-id-token", "x-refresh-token", "x-csrf-token",
                      "x-xsrf-token", "x-amz-security-token", "x-forwarded-access-token")
_JWT_POINTER = ("token", "jwt")


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


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def erase_credentials(node: Any, names: frozenset[str], pointer: str = "") -> list[str]:
    """Remove, in place, every credential header under ``node`` (names compared lower-cased): keys of a dict
    under a ``headers`` key, and entries of a list under a ``headers`` key whose ``key`` names one. Returns the
    JSON pointers of what was removed (list entries by their index before removal)."""
    erased: list[str] = []
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            here = f"{pointer}/{_escape(str(key))}"
            if key == "headers" and isinstance(value, dict):
                for name in [n for n in value if isinstance(n, str) and n.lower() in names]:
                    del value[name]
                    erased.append(f"{here}/{_escape(name)}")
            elif key == "headers" and isinstance(value, list):
                gone = [i for i, e in enumerate(value) if isinstance(e, dict) and isinstance(e.get("key"), str)
                        and e["key"].lower() in names]
                for i in reversed(gone):
                    del value[i]
                erased.extend(f"{here}/{i}" for i in gone)
            erased.extend(erase_credentials(value, names, here))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            erased.extend(erase_credentials(item, names, f"{pointer}/{index}"))
    return erased


class DecisionLogger:
    def __init__(self, mode: str, masks: tuple[str, ...], mask_headers: tuple[str, ...] = ()) -> None:
        self.mode = mode
        self._masks = masks
        self._credential_headers = frozenset(n.lower() for n in (*CREDENTIAL_HEADERS, *mask_headers))

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
            erased = [p for p in self._masks if _erase(document, p)]
            token = document["input"].get(_JWT_POINTER[0])
            if isinstance(token, dict) and _JWT_POINTER[1] in token:
                del token[_JWT_POINTER[1]]
                erased.append("/input/token/jwt")
            erased.extend(erase_credentials(document, self._credential_headers))
            entry["erased"] = erased
            entry["input"] = document["input"]
        log.info("decision", extra=entry)  # the entry's keys are the record's fields (authz.log_format)
