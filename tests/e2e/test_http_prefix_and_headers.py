"""Through real Envoy: HTTP mode's settings prefix whatever Envoy is given (issue 12 item 16), and non-ASCII header
values decided alike with and without ``encode_raw_headers`` and in HTTP mode (item 19)."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import GATEWAY_SECRET, Response, Stack, ext_authz_filter, routes


def _catch_all(path_prefix: str) -> Any:
    """A ``mutate``: the filter-level http_service gets ``path_prefix``, and a last route (``/``, to the echo
    upstream) uses it: what a route without its own settings gets."""
    def mutate(config: dict[str, Any]) -> None:
        ext_authz_filter(config)["http_service"]["path_prefix"] = path_prefix
        routes(config).append({"match": {"prefix": "/"}, "route": {"cluster": "echo"}})
    return mutate


def _stack(stack_factory: type[Stack], mutate: Any) -> Stack:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_echo()
        s.start_authz()
        s.start_envoy(mutate=mutate)
    return s


@pytest.mark.http_only("path_prefix exists only in Envoy's http_service")
def test_item16_envoy_given_the_services_own_prefix_reads_no_settings_from_the_client(
        stack_factory: type[Stack]) -> None:
    """Before: the service's `/phantom-authz` copied into Envoy made the client's first path segment the route's
    settings, so `GET /disabled=true/...` needed no token. Now that string is the canonical one (the defaults)."""
    s = _stack(stack_factory, _catch_all("/phantom-authz"))
    forged = s.get("/disabled=true/anything")
    assert forged.status != 200 and forged.status in (401, 503), forged
    assert s.get("/;disabled=true/anything").status == 401  # a path, not settings: a token is needed
    assert s.get("/anything").status == 401
    assert s.get("/anything", s.token("read")).status == 200
    assert s.get("/httpbin/get", s.token("read")).status == 200  # the routes with settings, as shipped


@pytest.mark.http_only("path_prefix exists only in Envoy's http_service")
@pytest.mark.parametrize("path_prefix", ["/phantom-authz/", "/phantom-authz/disabled=true",
                                         "/phantom-authz;disabled=true/"])
def test_item16_a_path_prefix_of_the_wrong_form_fails_the_route_closed(stack_factory: type[Stack],
                                                                        path_prefix: str) -> None:
    """A trailing `/`, or the old `<prefix>/<settings>` form: no client path becomes settings, no route silently
    falls back to the defaults; every check on that route is a 500 (Envoy: 503)."""
    s = _stack(stack_factory, _catch_all(path_prefix))
    for path, token in (("/disabled=true/x", None), ("/x", None), ("/x", s.token("read admin")),
                        ("/required_scopes=read/x", s.token("read"))):
        resp = s.get(path, token)
        assert resp.status == 503, (path, resp)
    assert s.get("/httpbin/get", s.token("read")).status == 200  # other routes unaffected
    assert s.authz is not None
    assert "path_prefix" in s.authz.log_tail(100)


def test_item16_the_service_refuses_a_path_prefix_ending_with_a_slash(tmp_path: Path, stack_factory: Any) -> None:
    s: Stack = stack_factory()
    config = s.authz_config()
    config["server"]["http"] = {"listen": "127.0.0.1:0", "path_prefix": "/phantom-authz/"}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "authz", "serve", "--config", str(path)], capture_output=True,
                          text=True, timeout=30, env={"TEST_GATEWAY_SECRET": GATEWAY_SECRET, "PATH": "/usr/bin"})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.http.path_prefix" in lines[0] and "'/phantom-authz/'" in lines[0], lines


# --- item 19 ------------------------------------------------------------------------------------------------------


def _raw_headers(config: dict[str, Any]) -> None:
    ext_authz_filter(config)["encode_raw_headers"] = True


def _get(s: Stack, path: str, headers: list[tuple[str, bytes]]) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", s.envoy_port, timeout=15)
    try:
        conn.putrequest("GET", path)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("raw", [False, True], ids=["headers-map", "encode-raw-headers"])
def test_item19_non_ascii_header_values_decide_alike_in_every_encoding(request: pytest.FixtureRequest,
                                                                      stack_factory: type[Stack], mode: str,
                                                                      raw: bool) -> None:
    """`X-Transaction-Creator: José` (UTF-8, or a latin-1 byte) with a valid token: allowed, whether Envoy sends
    headers as a map, as raw_value bytes (encode_raw_headers; only gRPC mode has it: in HTTP mode the same run
    checks that mode again) or over HTTP. A non-ASCII Authorization is a 400 in each."""
    # only gRPC mode's raw variant needs an Envoy of its own; the others use the module's shared stack
    s = _stack(stack_factory, _raw_headers) if raw and mode == "grpc" else request.getfixturevalue("stack")
    token = s.token("read")
    bearer = f"Bearer {token}".encode()
    for value in ("José".encode(), b"Jos\xe9", "\u2028".encode()):
        resp = _get(s, "/httpbin/get", [("authorization", bearer), ("x-transaction-creator", value)])
        assert resp.status == 200, (value, resp)
    for value in ("Bearer été".encode(), b"Bearer \xe9t\xe9"):
        resp = _get(s, "/httpbin/get", [("authorization", value)])
        assert resp.status == 400 and 'error="invalid_request"' in resp.headers.get("www-authenticate", ""), resp

