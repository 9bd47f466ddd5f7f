"""One request, one id in every log (issue 15 item 4), through real Envoy in both ext_authz modes: Envoy's JSON
access log (envoy/envoy.yaml, envoy-http.yaml) names a request by its ``x-request-id``, and phantom-authz's JSON log
lines about that request (its deny line, its policy decision) carry the same id as ``request_id``, with the token's
short id, never the token."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from tests.harness import Stack, wait_until
from tests.log_lines import parse_json_lines


def _log(stack: Stack, name: str) -> list[dict[str, Any]]:
    process = next(p for p in stack.procs if p.name == name)
    return parse_json_lines(process.log_path.read_text(errors="replace"))


def _access_line(stack: Stack, path: str) -> dict[str, Any]:
    """Envoy's access log line for the one request to ``path`` (written when the request ends, flushed within 1 s)."""
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        found[:] = [line for line in _log(stack, "envoy") if line.get("path") == path]
        return bool(found)

    wait_until(logged, f"Envoy's access log line for {path}")
    (line,) = found
    return line


def _authz_lines(stack: Stack, request_id: str, logger: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def logged() -> bool:
        found[:] = [line for line in _log(stack, "authz")
                    if line.get("request_id") == request_id and line["logger"] == logger]
        return bool(found)

    wait_until(logged, f"phantom-authz's {logger} line for request {request_id}")
    return found


def test_envoy_access_log_and_deny_line_name_the_same_request(stack: Stack) -> None:
    path = f"/httpbin/correlate-{uuid.uuid4().hex}"
    assert stack.get(path).status == 401  # no token
    access = _access_line(stack, path)
    request_id = access["request_id"]
    assert request_id, access
    assert access["status"] == 401 and access["method"] == "GET", access
    assert "UAEX" in access["response_flags"] and access["response_code_details"] == "ext_authz_denied", access
    assert isinstance(access["duration_ms"], int), access
    (deny,) = _authz_lines(stack, request_id, "authz.check")
    assert deny["outcome"] == "deny" and deny["status"] == 401 and deny["reason"] == "missing_credential", deny
    assert deny["level"] == "INFO" and path in deny["message"], deny
    assert "token_id" not in deny  # no token, no id


def test_a_token_denial_names_the_token_by_its_id(stack: Stack) -> None:
    token = stack.token("read")
    path = f"/admin/correlate-{uuid.uuid4().hex}"
    assert stack.get(path, token).status == 403  # the admin route needs scope admin
    request_id = _access_line(stack, path)["request_id"]
    (deny,) = _authz_lines(stack, request_id, "authz.check")
    assert deny["reason"] == "insufficient_scope" and deny["status"] == 403, deny
    assert deny["token_id"] == hashlib.sha256(token.encode()).hexdigest()[:12], deny
    assert all(token not in str(value) for value in deny.values()), deny


def test_the_policy_decision_carries_the_request_id(stack: Stack) -> None:
    token = stack.token("read", subject="alice")
    path = f"/records/alice/correlate-{uuid.uuid4().hex}"
    assert stack.get(path, token).status == 200
    access = _access_line(stack, path)
    (decision,) = _authz_lines(stack, access["request_id"], "authz.decisions")
    assert decision["message"] == "decision" and decision["path"] == "records/decision", decision
    assert decision["result"]["allowed"] is True and decision["subject"] == "alice", decision
    assert decision["token_id"] == hashlib.sha256(token.encode()).hexdigest()[:12], decision
    if stack.mode == "grpc":  # Envoy's access log reads ext_authz's dynamic metadata (HTTP mode has none)
        assert access["authz_decision_id"] == decision["decision_id"] and access["authz_subject"] == "alice", access


def test_every_line_phantom_authz_writes_is_one_json_object(stack: Stack) -> None:
    process = next(p for p in stack.procs if p.name == "authz")
    lines = [line for line in process.log_path.read_text().splitlines() if line]
    other = [line for line in lines if not line.startswith("{")]
    assert all(line.startswith("phantom-authz listening on ") for line in other), other  # the ready line, stdout
    records = parse_json_lines("\n".join(lines))
    assert len(records) == len(lines) - len(other) > 0
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
