"""Through real Envoy in both ext_authz modes (every test runs once per mode with the same expectations): the same
client request gets the same decision and the upstream receives the same request, for the header shapes and
framings where Envoy's gRPC CheckRequest and its HTTP check call could read a client differently.

Requests are written byte by byte (HTTP/1.1 over a socket; HTTP/2 with h2) so that nothing between the test and
Envoy tidies them up.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.e2e.test_http_check_path_forging import _h2_answer
from tests.harness import Stack, add_route


def _exchange(port: int, head: list[bytes], body: bytes = b"", method: bytes = b"GET",
              path: bytes = b"/httpbin/get") -> tuple[int, Any]:
    """(final status, the echo upstream's JSON or None) for one HTTP/1.1 request; 1xx answers are skipped."""
    request = b"%s %s HTTP/1.1\r\n%sConnection: close\r\n\r\n%s" % (method, path, b"".join(h + b"\r\n" for h in head),
                                                                     body)
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            answer += data
    while answer.startswith(b"HTTP/1.1 1"):  # 100 Continue
        answer = answer.partition(b"\r\n\r\n")[2]
    head_bytes, _, content = answer.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, json.loads(content) if status == 200 else None


def _auth(token: str) -> bytes:
    return b"Authorization: Bearer " + token.encode()


def _forwarded_jwt(echo: Any) -> bool:
    return bool(echo["headers"]["Authorization"].startswith("Bearer eyJ"))


@pytest.mark.parametrize(("authorization", "status"), [
    ([b"Bearer %s", b"Bearer %s"], 400),  # two lines: Envoy's map joins them, header_map and HTTP keep two
    ([b"Bearer %s", b"Bearer junk"], 400),
    ([b"Bearer\t%s"], 401),  # RFC 6750: 1*SP after the scheme; a tab is another scheme
    ([b"Bearer  %s"], 200),
    ([b"bearer %s"], 200),  # the scheme in any case (RFC 7235)
    ([b"Bearer %s  "], 200),  # trailing whitespace is not part of a field value
])
def test_authorization_shapes_decide_alike(stack: Stack, authorization: list[bytes], status: int) -> None:
    token = stack.token("read").encode()
    head = [b"Host: 127.0.0.1", *(b"Authorization: " + (line % token if b"%s" in line else line)
                                  for line in authorization)]
    got, echo = _exchange(stack.envoy_port, head)
    assert got == status
    if got == 200:
        assert _forwarded_jwt(echo)  # the opaque token never reaches the upstream


def test_hosts_bodies_and_long_headers_pass_alike(stack: Stack) -> None:
    token = stack.token("read")
    port = stack.envoy_port
    status, echo = _exchange(port, [b"Host: API.Example.COM.:8000", _auth(token)])
    assert status == 200 and echo["headers"]["Host"] == "API.Example.COM.:8000"
    status, echo = _exchange(port, [b"Host: h", _auth(token), b"Content-Length: 5"], b"hello")  # a GET with a body
    assert status == 200 and echo["body"] == "hello" and _forwarded_jwt(echo)
    status, echo = _exchange(port, [b"Host: h", _auth(token), b"Expect: 100-continue", b"Content-Length: 5"], b"hello",
                             method=b"POST")
    assert status == 200 and echo["body"] == "hello"
    # 56 KB of headers, below Envoy's 60 KiB: listed in allowed_headers (HTTP mode forwards them) or not
    for name in (b"X-Transaction-Creator", b"X-Pad"):
        status, echo = _exchange(port, [b"Host: h", _auth(token), *(name + b": " + b"a" * 8000 for _ in range(7))])
        assert status == 200 and _forwarded_jwt(echo), name


@pytest.mark.parametrize(("creator", "status"), [(b"bob", 200), (b"alice", 403)])
@pytest.mark.parametrize("framing", ["chunked", "expect-100-continue"])
def test_a_policy_reads_a_chunked_or_expected_body_alike(stack: Stack, creator: bytes, status: int,
                                                        framing: str) -> None:
    """records.rego: nobody approves a transaction they created (the JSON body's created_by)."""
    token = stack.token("read approve", subject="alice")
    body = b'{"created_by": "%s"}' % creator
    head = [b"Host: h", _auth(token), b"Content-Type: application/json"]
    if framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        head += [b"Expect: 100-continue", b"Content-Length: %d" % len(body)]
    got, echo = _exchange(stack.envoy_port, head, body, b"POST", b"/records/alice/transactions/t1/approve")
    assert got == status
    if got == 200:
        assert json.loads(echo["body"]) == {"created_by": "bob"}


def test_http2_clients_decide_as_http11_ones(stack: Stack) -> None:
    bearer = f"Bearer {stack.token('read')}"
    answer = _h2_answer(stack.envoy_port, "GET", "/httpbin/get", (("authorization", bearer), ("cookie", "a=1"),
                                                                    ("cookie", "b=2")))
    assert answer is not None and answer[0] == 200
    echo = json.loads(answer[1])
    assert echo["headers"]["Cookie"] == "a=1; b=2" and _forwarded_jwt(echo)
    twice = _h2_answer(stack.envoy_port, "GET", "/httpbin/get", (("authorization", bearer),) * 2)
    assert twice is not None and twice[0] == 400


RULES = {"default": "deny", "rules": [
    {"name": "api", "match": {"hosts": ["127.0.0.1"], "paths": ["/api/{name}"]}, "required_scopes": ["read"]},
    {"name": "admin", "match": {"hosts": ["admin.example.com"], "paths": ["/api/**"]}, "required_scopes": ["admin"]},
]}


def test_route_rules_see_the_host_and_path_the_upstream_gets(stack_factory: type[Stack]) -> None:
    """A route without per-route settings, decided by routes.rules: a template rule ignores the query; hosts
    compare without case, port or one final dot; HTTP/2's :authority is the host (a `host` header beside it is
    dropped by Envoy: the upstream gets :authority, and so does the rule)."""
    s = stack_factory().full(mutate=add_route("/api/", {}), routes=RULES)
    token = s.token("read")
    port = s.envoy_port
    status, echo = _exchange(port, [b"Host: 127.0.0.1", _auth(token)], path=b"/api/get?x=1&y=/a/b")
    assert status == 200 and echo["raw_path"] == "/api/get?x=1&y=/a/b"
    assert _exchange(port, [b"Host: 127.0.0.1", _auth(token)], path=b"/api/get/more")[0] == 403  # no rule
    for host in (b"admin.example.com", b"ADMIN.example.com.:8443"):
        assert _exchange(port, [b"Host: " + host, _auth(token)], path=b"/api/get")[0] == 403  # admin scope
        assert _exchange(port, [b"Host: " + host, _auth(s.token("read admin"))], path=b"/api/x/y")[0] == 200
    answer = _h2_answer(port, "GET", "/api/get", (("authorization", f"Bearer {token}"),
                                                  ("host", "admin.example.com")))
    assert answer is not None and answer[0] == 200
    assert json.loads(answer[1])["headers"]["Host"] == f"127.0.0.1:{port}"
    answer = _h2_answer(port, "GET", "/api/x/y", (("authorization", f"Bearer {s.token('read admin')}"),
                                                  ("host", "admin.example.com")))
    assert answer is not None and answer[0] == 403  # not admin's rule: the host is :authority (no rule there)
