"""Through real Envoy, what a client writes in HTTP/2's pseudo-headers must not loosen its checks.

HTTP mode: a client's ``:path`` that does not start with ``/`` must never become route settings.

The check path is Envoy's ``path_prefix`` followed by the client's path; the service reads settings right after
the prefix (``/phantom-authz;disabled=true/...``), trusting that the client's path starts with ``/``. HTTP/2 lets a
client write any ``:path``, so this sends raw HTTP/2 (prior knowledge, no normalization on the listener, a route
that matches every path) with paths that would read as settings if Envoy passed them on.
"""

from __future__ import annotations

import socket
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tests.harness import Stack, ext_authz_filter, hcm, routes


def _permissive(config: dict[str, Any]) -> None:
    """The filter's default prefix (the service defaults: a token is needed), no path normalization, and a first
    route matching any path, so nothing in front of ext_authz turns the path away."""
    ext_authz_filter(config)["http_service"]["path_prefix"] = "/phantom-authz"
    manager = hcm(config)
    for key in ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action"):
        manager.pop(key, None)
    routes(config).insert(0, {"match": {"safe_regex": {"regex": ".*"}}, "route": {"cluster": "echo"}})


def _h2_status(port: int, method: str, path: str, headers: tuple[tuple[str, str], ...] = ()) -> int | None:
    """The status Envoy answers a raw HTTP/2 request with, or None when it resets the stream or the connection."""
    answer = _h2_answer(port, method, path, headers)
    return None if answer is None else answer[0]


def _h2_answer(port: int, method: str, path: str,
               headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, bytes] | None:
    """(status, body) of a raw HTTP/2 request, or None when Envoy resets the stream or the connection."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                                                validate_outbound_headers=False,
                                                                normalize_outbound_headers=False))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", method), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
                               (":path", path), *headers], end_stream=True)
    status, body = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return None
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    status = next(int(value) for name, value in event.headers if name in (":status", b":status"))
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    return status, body
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    return None
            sock.sendall(conn.data_to_send())


FORGED = [
    ("GET", ";disabled=true/anything"),
    ("GET", ";disabled=true&required_scopes=-/x"),
    ("GET", "disabled=true/x"),
    ("OPTIONS", "*"),
    ("GET", "*"),
    ("GET", ""),
    ("GET", "http://127.0.0.1/;disabled=true/x"),
    ("GET", "?;disabled=true/x"),
]


@pytest.mark.http_only("the settings prefix exists only in HTTP mode")
def test_a_client_path_not_starting_with_a_slash_never_switches_its_checks_off(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    s.full(mutate=_permissive)
    assert _h2_status(s.envoy_port, "GET", "/anything") == 401  # the route is checked, a token is needed
    seen = {(method, path): _h2_status(s.envoy_port, method, path) for method, path in FORGED}
    assert all(status is None or status >= 400 for status in seen.values()), seen


RULES = {"required_scopes": "-", "rules": [
    {"name": "rules", "match": {"paths": ["/rules/**"]}, "required_scopes": "read"},
    {"name": "rules-delete", "match": {"paths": ["/rules/**"], "methods": ["DELETE"]}, "required_scopes": "admin"},
    {"name": "rules-admin", "match": {"paths": ["/rules/admin/**"]}, "required_scopes": "admin"},
]}


def _rules_route(config: dict[str, Any]) -> None:
    """A route with no settings of its own: the service's route rules decide (both modes)."""
    routes(config).insert(0, {"match": {"prefix": "/rules/"}, "route": {"cluster": "echo"}})


def _ext_authz_ok(s: Stack) -> int:
    """Envoy's count of checks the authorization service allowed."""
    return sum(value for name, value in s.envoy_stats().items() if name.endswith(".ext_authz.ok"))


def test_method_case_and_path_parameters_do_not_steer_to_a_laxer_rule(stack_factory: type[Stack]) -> None:
    """Envoy passes an HTTP/2 client's lower-case ``:method`` and a ``;`` path parameter on (with the shipped
    normalization); servers that upper-case methods or drop parameters would act on ``DELETE`` and
    ``/rules/admin/users``, so a read token must not pass where those need admin."""
    s = stack_factory()
    s.full(mutate=_rules_route, routes=RULES)
    auth = (("authorization", f"Bearer {s.token('read')}"),)
    port = s.envoy_port
    assert _h2_status(port, "GET", "/rules/1", auth) == 200
    assert _ext_authz_ok(s) >= 1  # the counter this test reads
    assert _h2_status(port, "DELETE", "/rules/1", auth) == 403
    assert _h2_status(port, "GET", "/rules/admin/users", auth) == 403
    allowed = _ext_authz_ok(s)
    seen = {(method, path): _h2_answer(port, method, path, auth)
            for method, path in (("delete", "/rules/1"), ("Delete", "/rules/1"), ("get", "/rules/1"),
                                 ("GET", "/rules/admin;x/users"),
                                 ("GET", "/rules/admin;/users"), ("GET", "/rules/admin%3Bx/users"))}
    # the echo upstream answers with the request it received, whatever the status (it may refuse a method)
    reached = {key: answer for key, answer in seen.items() if answer is not None and b'"raw_path"' in answer[1]}
    assert not reached, reached
    assert _ext_authz_ok(s) == allowed, seen  # none was allowed (the echo may refuse a lower-case method itself)
    assert all(answer is None or answer[0] == 400 for answer in seen.values()), seen
    assert s.get("/rules/admin;x/users", s.token("read")).status == 400  # HTTP/1.1 too
