"""The log stream (authz/log_format.py, authz/log_context.py): JSON lines with the fields an operator correlates by,
text lines for development, the check's context on every record logged while it is decided, library records
without their data."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.config import load_config
from authz.errors import InsufficientScope
from authz.log_context import add_trace_id_source, bind_check, note_route_rule, trace_id_from_headers, unbind_check
from authz.log_format import configure_logging
from authz.pipeline import Authorizer
from authz.transport.grpc_service import AuthorizationService, check_header

TOKEN = "opaque-Token-7f3a9c"
TOKEN_ID = hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The service's handler (``configure_logging``) writing to a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


def _configure(stream: io.StringIO, log_format: str) -> None:
    configure_logging("DEBUG", log_format)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _headers(**headers: str) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in headers.items()}


def _read(headers: dict[str, str], name: str) -> str | None:
    return headers.get(name)


def test_json_line_has_time_level_logger_message_and_the_records_fields(stream: io.StringIO) -> None:
    _configure(stream, "json")
    logging.getLogger("authz.check").warning("deny %s", "GET '/x'", extra={"status": 401, "reason": "r"})
    (line,) = _lines(stream)
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["level"] == "WARNING" and line["logger"] == "authz.check" and line["message"] == "deny GET '/x'"
    assert line["status"] == 401 and line["reason"] == "r"
    assert line["time"].endswith("+00:00")


def test_a_check_context_adds_request_id_trace_id_token_id_and_route_rule(stream: io.StringIO) -> None:
    _configure(stream, "json")
    headers = _headers(x_request_id="req-1", authorization=f"Bearer {TOKEN}",
                       traceparent=f"00-{TRACE}-00f067aa0ba902b7-01")
    bound = bind_check(_read, headers)
    try:
        logging.getLogger("authz.introspection").error("AS unreachable")
        note_route_rule("records")
        logging.getLogger("authz.decisions").info("decision", extra={"decision_id": "d-1", "subject": None})
    finally:
        unbind_check(bound)
    logging.getLogger("authz.app").info("after the check")
    first, decision, after = _lines(stream)
    assert first["request_id"] == "req-1" and first["token_id"] == TOKEN_ID and first["trace_id"] == TRACE
    assert "route_rule" not in first  # not matched yet
    assert decision["route_rule"] == "records" and decision["decision_id"] == "d-1" and decision["subject"] is None
    assert not {"request_id", "token_id", "trace_id", "route_rule"} & set(after)
    assert TOKEN not in stream.getvalue()


def test_a_malformed_credential_gets_no_token_id(stream: io.StringIO) -> None:
    _configure(stream, "json")
    bound = bind_check(_read, _headers(authorization=f"Bearer {TOKEN} {TOKEN}"))
    try:
        logging.getLogger("authz.check").info("x")
    finally:
        unbind_check(bound)
    (line,) = _lines(stream)
    assert "token_id" not in line and TOKEN not in stream.getvalue()


def test_a_client_chosen_request_id_is_cut_and_cannot_break_a_text_line(stream: io.StringIO) -> None:
    _configure(stream, "text")
    bound = bind_check(_read, _headers(x_request_id="a b\nforged line" + "x" * 300))
    try:
        logging.getLogger("authz.check").info("x")
    finally:
        unbind_check(bound)
    (line,) = stream.getvalue().splitlines()
    assert "request_id=a?b?forged?line" in line and len(line) < 300


def test_text_line_appends_the_fields(stream: io.StringIO) -> None:
    _configure(stream, "text")
    logging.getLogger("authz.check").info("deny GET '/x': nope", extra={
        "outcome": "deny", "status": 403, "reason": "insufficient_scope", "dry_run": False, "result": {"a": None},
        "detail": "two words", "unknown": None})
    line = stream.getvalue().rstrip("\n")
    assert " INFO authz.check deny GET '/x': nope outcome=deny status=403 reason=insufficient_scope dry_run=false" \
           ' result={"a":null} detail="two words"' in line
    assert "unknown" not in line


def test_library_records_lose_their_fields_and_arguments(stream: io.StringIO) -> None:
    _configure(stream, "json")
    logging.getLogger("aiohttp.server").error("bad line %r", f"Bearer {TOKEN}", extra={"request_line": TOKEN})
    (line,) = _lines(stream)
    assert line["message"] == "bad line _" and "request_line" not in line
    assert TOKEN not in stream.getvalue()


def test_exceptions_of_our_own_code_keep_their_traceback(stream: io.StringIO) -> None:
    _configure(stream, "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("authz.check").exception("internal error")
    (line,) = _lines(stream)
    assert "ValueError: boom" in line["exc_info"]


@pytest.mark.parametrize(("headers", "expected"), [
    ({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, TRACE),
    ({"traceparent": f" 00-{TRACE}-00f067aa0ba902b7-01 "}, TRACE),
    ({"traceparent": f"ff-{TRACE}-00f067aa0ba902b7-01"}, None),  # version ff is invalid
    ({"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"}, None),  # the all-zero trace id is invalid
    ({"traceparent": f"00-{TRACE.upper()}-00f067aa0ba902b7-01"}, None),  # hex is lower case
    ({"traceparent": "garbage", "x-b3-traceid": "80f198ee56343ba8"}, "80f198ee56343ba8"),
    ({"x-b3-traceid": TRACE}, TRACE),
    ({"x-b3-traceid": "0" * 16}, None),
    ({}, None),
])
def test_trace_id_from_headers(headers: dict[str, str], expected: str | None) -> None:
    assert trace_id_from_headers(headers.get) == expected


def test_a_registered_trace_id_source_comes_first(stream: io.StringIO) -> None:
    _configure(stream, "json")
    remove = add_trace_id_source(lambda: "f" * 32)
    bound = bind_check(_read, _headers(traceparent=f"00-{TRACE}-00f067aa0ba902b7-01"))
    try:
        logging.getLogger("authz.check").info("x")
        remove()
        logging.getLogger("authz.check").info("y")
    finally:
        unbind_check(bound)
    first, second = _lines(stream)
    assert first["trace_id"] == "f" * 32 and second["trace_id"] == TRACE


def test_grpc_request_headers_are_read_from_either_encoding() -> None:
    request = CheckRequest()
    request.attributes.request.http.headers["x-request-id"] = "from-map"
    assert check_header(request, "x-request-id") == "from-map"
    raw = CheckRequest()
    raw.attributes.request.http.header_map.headers.add(key="X-Request-Id", raw_value=b"from-raw")
    assert check_header(raw, "x-request-id") == "from-raw" and check_header(raw, "traceparent") is None


class _Denying:
    async def answer(self, token: str) -> Any:
        raise InsufficientScope(("admin",), ("admin",))

    def identity(self, answer: Any) -> Any:
        raise AssertionError


async def test_the_deny_line_of_a_real_check(stream: io.StringIO, tmp_path: Path) -> None:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump({
        "authorization_servers": {"a": {"introspection_endpoint": "http://127.0.0.1:1/i", "client_id": "c",
                                        "client_secret_env": "S", "jwks_uri": "http://127.0.0.1:1/j",
                                        "issuer": "http://127.0.0.1:1"}},
        "routes": {"rules": [{"name": "orders", "match": {"paths": ["/orders/**"]}}]}}))
    config = load_config(path, {"S": "secret"})
    _configure(stream, "json")
    request = CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host = "GET", "/orders/7", "api"
    http.headers.update({"authorization": f"Bearer {TOKEN}", "x-request-id": "req-9"})
    response = await AuthorizationService(Authorizer(config, {"a": _Denying()})).Check(request, None)
    assert response.denied_response.status.code == 403
    (line,) = _lines(stream)
    assert line["message"] == "deny GET '/orders/7': missing scopes: admin"
    assert (line["outcome"], line["status"], line["reason"]) == ("deny", 403, "insufficient_scope")
    assert (line["request_id"], line["token_id"], line["route_rule"]) == ("req-9", TOKEN_ID, "orders")
