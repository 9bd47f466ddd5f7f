"""Issue 17: the HTTP transport on httptools (``authz.transport.http_protocol``) keeps what aiohttp's server did and
what HTTP/1.1 asks: answers in order behind a check that waits on the AS, limits at their edges, the keep-alive
timeout, a refusal the client can read before the connection closes. phantom-authz runs in process against the real
dev AS; requests are raw bytes on a socket."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest

from tests.harness import Stack
from tests.service.test_http_transport import PREFIX, raw, start


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    s = Stack(tmp_path_factory.mktemp("http-protocol"))
    try:
        with s.together():
            s.start_dev_as("--latency-ms", "300")
            port = start(s, AUTHZ__SERVER__HTTP__REQUEST_TIMEOUT_SECONDS="1",
                         AUTHZ__SERVER__HTTP__KEEPALIVE_TIMEOUT_SECONDS="1",
                         AUTHZ__SERVER__HTTP__MAX_BODY_BYTES="1000", AUTHZ__SERVER__HTTP__MAX_HEADERS="20",
                         AUTHZ__SERVER__HTTP__MAX_HEADER_BYTES="2048")
        yield s, port
    finally:
        s.stop()


def statuses(reply: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", reply)]


def check(token: str, path: str = "/get", extra: bytes = b"") -> bytes:
    return (f"GET {PREFIX};required_scopes=read{path} HTTP/1.1\r\nhost: api.example\r\n"
            f"authorization: Bearer {token}\r\n").encode() + extra + b"\r\n"


def test_pipelined_requests_are_answered_in_order_behind_a_check_that_waits_on_the_as(
        stack: tuple[Stack, int]) -> None:
    s, port = stack
    fresh = s.token("read")  # not cached: its check waits ~300 ms on the AS
    missing = f"GET {PREFIX}/get HTTP/1.1\r\nhost: a\r\n\r\n".encode()
    reply = raw(port, check(fresh) + b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n" + missing
                + b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
    assert statuses(reply) == [200, 204, 401, 204]
    assert reply.count(b"Bearer ey") == 1  # the JWT in the first answer only


def test_many_pipelined_requests_are_all_answered_in_order(stack: tuple[Stack, int]) -> None:
    s, port = stack
    token = s.token("read")
    requests = [check(token) if i % 2 else b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n" for i in range(40)]
    reply = raw(port, b"".join(requests) + b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
    assert statuses(reply) == [200 if i % 2 else 204 for i in range(40)] + [204]


@pytest.mark.parametrize(("headers", "status"), [
    (18, 204),  # with Host and Connection: 20 lines, server.http.max_headers
    (19, 400),
])
def test_header_count_limit_at_its_edge(stack: tuple[Stack, int], headers: int, status: int) -> None:
    _, port = stack
    lines = b"".join(b"x-h%d: v\r\n" % i for i in range(headers))
    reply = raw(port, b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n" + lines + b"\r\n")
    assert statuses(reply) == [status]


@pytest.mark.parametrize(("value_bytes", "status"), [
    (2048 - len("x-big"), 204),  # name + value = server.http.max_header_bytes
    (2048 - len("x-big") + 1, 400),
])
def test_header_line_limit_at_its_edge(stack: tuple[Stack, int], value_bytes: int, status: int) -> None:
    _, port = stack
    reply = raw(port, b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-big: " + b"v" * value_bytes
                + b"\r\n\r\n")
    assert statuses(reply) == [status]


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n",  # HTTP/1.1 without Host
    b"GET /healthz HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",  # two Hosts: which one would a route read?
    b"POST /healthz HTTP/1.1\r\nhost: a\r\ncontent-type: a\r\ncontent-type: b\r\ncontent-length: 0\r\n\r\n",
    b"GET /" + b"a" * 2100 + b" HTTP/1.1\r\nhost: a\r\n\r\n",  # request target over max_header_bytes
    b"GET /healthz HTTP/1.1\r\nhost: a\r\nx-a: " + b"v" * 300_000,  # a head that never ends, past any limit
])
def test_requests_outside_http_1_or_the_limits_get_400(stack: tuple[Stack, int], request_bytes: bytes) -> None:
    _, port = stack
    assert statuses(raw(port, request_bytes)) == [400]


def test_a_refused_body_is_answered_413_readably_though_the_client_is_still_sending(
        stack: tuple[Stack, int]) -> None:
    """The body is never read; the connection is half-closed after the answer and what still comes is dropped, so
    the client is not reset before it reads the 413."""
    s, port = stack
    head = (f"POST {PREFIX}/get HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {s.token()}\r\n"
            "content-length: 400000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + b"x" * 100_000)
        time.sleep(0.2)  # the answer is out; the client goes on sending
        sock.sendall(b"x" * 100_000)
        reply = sock.recv(65536)
    assert statuses(reply) == [413] and b"Connection: close" in reply


def test_a_head_request_gets_the_status_and_length_without_the_body(stack: tuple[Stack, int]) -> None:
    _, port = stack
    reply = raw(port, f"HEAD {PREFIX}/get HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n".encode())
    assert statuses(reply) == [401] and reply.endswith(b"\r\n\r\n")
    assert int(re.search(rb"Content-Length: (\d+)", reply)[1]) > 0  # type: ignore[index]


def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(stack: tuple[Stack, int]) -> None:
    _, port = stack
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n")
        assert statuses(sock.recv(65536)) == [204]
        idle = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server
        assert 0.8 < time.monotonic() - idle < 3.0  # keepalive_timeout_seconds is 1


def test_http_1_0_keeps_the_connection_only_when_asked(stack: tuple[Stack, int]) -> None:
    _, port = stack
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        first = sock.recv(65536)
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        second = sock.recv(65536)
        assert sock.recv(65536) == b""
    assert first.startswith(b"HTTP/1.0 204 ") and b"Connection: keep-alive" in first
    assert second.startswith(b"HTTP/1.0 204 ") and b"Connection" not in second
