"""``authz.transport.http_wire``: answers as the bytes the HTTP transport writes."""

from __future__ import annotations

import re

import pytest

from authz.transport.http_wire import date_line, wire

DATE = re.compile(rb"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")


def _lines(data: bytes) -> list[bytes]:
    return DATE.sub(b"Date: <now>\r\n", data).split(b"\r\n")


def test_an_allow_is_written_with_its_headers_and_an_empty_body() -> None:
    answer = wire(200, (("authorization", "Bearer eyJx"), ("x-envoy-auth-headers-to-remove", "x-user-id")), b"")
    assert _lines(answer.encode(http_10=False, keep_alive=True)) == [
        b"HTTP/1.1 200 OK", b"authorization: Bearer eyJx", b"x-envoy-auth-headers-to-remove: x-user-id",
        b"Content-Length: 0", b"Date: <now>", b"", b""]


def test_connection_lines_follow_the_version_and_the_persistence() -> None:
    answer = wire(401, (("content-type", "application/json"),), b'{"error":"unauthorized"}')
    closing = answer.encode(http_10=False, keep_alive=False)
    assert closing.startswith(b"HTTP/1.1 401 Unauthorized\r\n") and b"Connection: close\r\n" in closing
    assert closing.endswith(b'\r\n\r\n{"error":"unauthorized"}')
    kept_10 = answer.encode(http_10=True, keep_alive=True)
    assert kept_10.startswith(b"HTTP/1.0 401 Unauthorized\r\n") and b"Connection: keep-alive\r\n" in kept_10
    assert b"Connection" not in answer.encode(http_10=True, keep_alive=False)
    assert b"Connection" not in answer.encode(http_10=False, keep_alive=True)


def test_a_head_request_gets_the_length_but_not_the_body() -> None:
    sent = wire(500, (), b"12345").encode(http_10=False, keep_alive=True, head_request=True)
    assert b"Content-Length: 5\r\n" in sent and sent.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_carry_no_length_and_no_body(status: int) -> None:
    sent = wire(status, (), b"ignored").encode(http_10=False, keep_alive=True)
    assert b"Content-Length" not in sent and sent.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(("name", "value"), [
    ("x-a", "1\r\nauthorization: Bearer forged"),
    ("x-a", "1\nx-b: 2"),
    ("x-a", "nul\x00"),
    ("x a", "1"),
    ("x-a:", "1"),
    ("", "1"),
])
def test_a_header_that_would_split_the_answer_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        wire(200, ((name, value),), b"")


def test_the_transport_owns_the_framing() -> None:
    sent = wire(403, (("Content-Length", "999"), ("transfer-encoding", "chunked"), ("connection", "keep-alive"),
                      ("x-policy", "é")), b"no").encode(http_10=False, keep_alive=True)
    assert sent.count(b"Content-Length") == 1 and b"Content-Length: 2\r\n" in sent
    assert b"chunked" not in sent and b"keep-alive" not in sent
    assert "x-policy: é\r\n".encode() in sent


def test_unknown_status_has_an_empty_reason_and_the_date_is_the_current_seconds() -> None:
    assert wire(499, (), b"").encode(False, True).startswith(b"HTTP/1.1 499 \r\n")
    assert DATE.fullmatch(date_line())
