"""Through real Envoy, HTTP mode: a client's ``:path`` that does not start with ``/`` must never become route settings.

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


def _h2_status(port: int, method: str, path: str) -> int | None:
    """The status Envoy answers a raw HTTP/2 request with, or None when it resets the stream or the connection."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                                                validate_outbound_headers=False,
                                                                normalize_outbound_headers=False))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", method), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
                               (":path", path)], end_stream=True)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return None
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    return next(int(value) for name, value in event.headers if name in (":status", b":status"))
                if isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
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
