"""The HTTP ext_authz transport over real HTTP (no Envoy) against the real dev AS: the check requests Envoy's
``http_service`` sends, bad input Envoy would never send, and the same decisions as the gRPC transport.

phantom-authz runs in process (``tests/inprocess.py``), except in the tests of SIGTERM, worker processes, the CLI's
refusal to start and what the process writes to its log, which start ``authz serve``."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from devtools.processes import Process, free_port, wait_for_port
from tests.harness import GATEWAY_SECRET, Stack, wait_until
from tests.service.test_grpc_service import call, check_request

PREFIX = "/phantom-authz"


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        assert len(values) <= 1, f"{name} appears {len(values)} times"
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def send(port: int, path: str, headers: dict[str, str] | list[tuple[str, str]] | None = None,
         method: str = "GET", body: bytes | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if not any(k.lower() == "host" for k, _ in items):
            items.insert(0, ("host", "api.example"))
        for key, value in items:
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return Answer(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def start(s: Stack, in_process: bool = True, **env: str) -> int:
    """phantom-authz with its HTTP transport on a free port; a subprocess is awaited on that port too (its gRPC port,
    which the stack waits for, is bound before the HTTP transport listens)."""
    port = free_port()
    authz = s.start_authz(env={"AUTHZ__SERVER__HTTP__LISTEN": f"127.0.0.1:{port}", **env}, in_process=in_process)
    if isinstance(authz, Process):
        authz.await_ready()
        wait_for_port(port, 10.0, authz.proc)
    return port


@pytest.fixture(scope="module")
def http_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    s = Stack(tmp_path_factory.mktemp("http"))
    try:
        with s.together():
            s.start_dev_as()
            port = start(s, AUTHZ__SERVER__HTTP__REQUEST_TIMEOUT_SECONDS="1",
                         AUTHZ__SERVER__HTTP__MAX_BODY_BYTES="1000")
        yield s, port
    finally:
        s.stop()


def bearer(s: Stack, scope: str = "read", subject: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {s.token(scope, subject=subject)}"}


def test_health_answers_204_which_envoy_would_never_read_as_an_allow(http_stack: tuple[Stack, int]) -> None:
    _, port = http_stack
    assert send(port, "/healthz").status == 204


def test_valid_token_is_allowed_with_the_jwt_and_the_headers_to_remove(http_stack: tuple[Stack, int]) -> None:
    s, port = http_stack
    token = s.token("read")
    answer = send(port, f"{PREFIX};required_scopes=read/get?x=1", {"authorization": f"Bearer {token}"})
    assert answer.status == 200
    jwt = answer.header("authorization")
    assert jwt is not None and jwt.startswith("Bearer ey") and token not in jwt
    # the JWT overwrites Authorization: removing it too would strip the JWT (Envoy removes after it adds)
    assert answer.header("x-envoy-auth-headers-to-remove") == "x-user-id"
    assert answer.body == b""


def test_missing_token_gets_the_bare_bearer_challenge(http_stack: tuple[Stack, int]) -> None:
    _, port = http_stack
    answer = send(port, f"{PREFIX}/get")
    assert answer.status == 401
    assert answer.header("www-authenticate") == 'Bearer realm="api"'
    assert answer.header("content-type") == "application/json" and answer.json()["error"] == "unauthorized"


def test_missing_scope_from_the_route_settings_is_403(http_stack: tuple[Stack, int]) -> None:
    s, port = http_stack
    answer = send(port, f"{PREFIX};required_scopes=admin/admin/x", bearer(s, "read"))
    assert answer.status == 403
    assert 'error="insufficient_scope"' in (answer.header("www-authenticate") or "")
    assert 'scope="admin"' in (answer.header("www-authenticate") or "")


def test_two_authorization_headers_are_a_bad_request(http_stack: tuple[Stack, int]) -> None:
    s, port = http_stack
    token = s.token("read")
    answer = send(port, f"{PREFIX}/get", [("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")])
    assert answer.status == 400 and 'error="invalid_request"' in (answer.header("www-authenticate") or "")


def test_disabled_route_needs_no_token_but_still_strips_spoofable_headers(http_stack: tuple[Stack, int]) -> None:
    _, port = http_stack
    answer = send(port, f"{PREFIX};disabled=true/public/x", {"x-user-id": "admin"})
    assert answer.status == 200 and answer.header("authorization") is None
    assert answer.header("x-envoy-auth-headers-to-remove") == "x-user-id,authorization"  # item 6: no token upstream


@pytest.mark.parametrize("path", [
    "/get",  # Envoy's http_service without the path prefix
    f"{PREFIX};required_scopes=read",  # no original path after the settings
    f"{PREFIX};required_scopes=read&required_scopes=admin/x",  # a setting twice
    f"{PREFIX};required_scope=read/x",  # unknown setting
    f"{PREFIX};disabled=maybe/x",  # bad value
])
def test_misconfigured_route_fails_closed_with_500(http_stack: tuple[Stack, int], path: str) -> None:
    s, port = http_stack
    answer = send(port, path, bearer(s))
    assert answer.status == 500 and answer.header("authorization") is None
    assert answer.json()["error"] == "server_error"


@pytest.mark.parametrize(("path", "status"), [
    ("/;disabled=true/public", 401),  # settings are read only right after the prefix: this is a path
    ("/disabled=true/public", 500),  # reads as settings in the old /phantom-authz/<settings> form: refused
])
def test_a_client_cannot_forge_route_settings_with_its_path(http_stack: tuple[Stack, int], path: str,
                                                             status: int) -> None:
    """The client's path comes after Envoy's prefix and starts with '/': it never becomes settings."""
    _, port = http_stack
    answer = send(port, f"{PREFIX}{path}")
    assert answer.status == status and answer.header("authorization") is None


def test_policy_route_allows_the_owner_and_denies_others_with_the_policy_body(http_stack: tuple[Stack, int]) -> None:
    s, port = http_stack
    settings = "required_scopes=read&policy=records%2Fdecision"
    alice = bearer(s, "read", subject="alice")
    allowed = send(port, f"{PREFIX};{settings}/records/alice/profile", alice)
    assert allowed.status == 200 and allowed.header("x-authz-policy") == "records"
    denied = send(port, f"{PREFIX};{settings}/records/bob/profile", alice)
    assert denied.status == 403 and denied.json()["error"] == "forbidden"
    assert "owner" in denied.json()["error_description"]


def test_policy_reads_the_body_envoy_forwards(http_stack: tuple[Stack, int]) -> None:
    s, port = http_stack
    settings = "required_scopes=read&policy=records%2Fdecision"
    carol = bearer(s, "read approve", subject="carol")
    path = f"{PREFIX};{settings}/records/bob/transactions/t1/approve"
    headers = {**carol, "content-type": "application/json"}
    by_alice = send(port, path, headers, method="POST", body=json.dumps({"created_by": "alice"}).encode())
    by_carol = send(port, path, headers, method="POST", body=json.dumps({"created_by": "carol"}).encode())
    assert (by_alice.status, by_carol.status) == (200, 403)


# --- one pipeline: the same request through both transports gets the same decision ------------------------------


def _grpc_view(response: CheckResponse) -> tuple[int, str | None, str]:
    if response.status.code == 0:
        return 200, None, ""
    denied = response.denied_response
    headers = {h.header.key: h.header.value for h in denied.headers}
    return int(denied.status.code), headers.get("www-authenticate"), denied.body


@pytest.mark.parametrize(("authorization", "settings"), [
    ("good", {"required_scopes": "read"}),
    ("good", {"required_scopes": "admin"}),
    (None, {}),
    ("Basic dXNlcjpwYXNz", {}),
    ("Bearer a b", {}),
    ("Bearer not-a-token-the-as-knows", {}),
    ("Bearer \u00e9t\u00e9", {}),
    (None, {"disabled": "true"}),
    ("good", {"required_scopes": "read", "nonsense": "1"}),
])
def test_both_transports_decide_alike(http_stack: tuple[Stack, int], authorization: str | None,
                                      settings: dict[str, str]) -> None:
    s, port = http_stack
    if authorization == "good":
        authorization = f"Bearer {s.token('read')}"
    grpc_answer = _grpc_view(call(f"127.0.0.1:{s.authz_port}", check_request(authorization, "/get", **settings)))
    segment = "&".join(f"{k}={v}" for k, v in settings.items())
    headers = [] if authorization is None else [("authorization", authorization)]
    got = send(port, f"{PREFIX};{segment}/get", headers)
    assert (got.status, got.header("www-authenticate"), got.body.decode()) == grpc_answer


# --- bad input Envoy would never send ---------------------------------------------------------------------------


def raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


@pytest.mark.parametrize("request_bytes", [
    b" /phantom-authz/get HTTP/1.1\r\nhost: a\r\n\r\n",  # no method
    b"GET /phantom-authz/get HTTP/9.9\r\nhost: a\r\n\r\n",  # unknown version
    b"GET /phantom-authz/get HTTP/1.1\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(500)) + b"\r\n",
    b"GET /phantom-authz/get HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET /phantom-authz/get HTTP/1.1\r\nbad header line\r\n\r\n",
])
def test_malformed_requests_get_400_never_an_allow(http_stack: tuple[Stack, int], request_bytes: bytes) -> None:
    _, port = http_stack
    reply = raw(port, request_bytes)
    assert re.match(rb"HTTP/1\.[01] 400 ", reply), reply[:100]


def test_blank_lines_and_then_silence_are_closed_by_the_request_timeout(http_stack: tuple[Stack, int]) -> None:
    _, port = http_stack
    started = time.monotonic()
    assert raw(port, b"\r\n\r\n") == b""  # blank lines may precede a request line; nothing follows
    assert time.monotonic() - started < 3.0


def test_body_over_the_limit_is_refused_with_413(http_stack: tuple[Stack, int]) -> None:
    s, port = http_stack
    answer = send(port, f"{PREFIX}/get", bearer(s), method="POST", body=b"x" * 1001)
    assert answer.status == 413 and answer.header("authorization") is None


def test_chunked_body_over_the_limit_is_refused_with_413(http_stack: tuple[Stack, int]) -> None:
    _, port = http_stack
    chunk = b"x" * 600
    request = (b"POST /phantom-authz/get HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
               + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
    assert raw(port, request).startswith(b"HTTP/1.1 413")


def test_slow_sender_is_cut_off_and_does_not_stall_other_connections(http_stack: tuple[Stack, int]) -> None:
    _, port = http_stack
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"GET /phantom-authz/get HTTP/1.1\r\nhost: a\r\n")
        closed_after = None
        for _ in range(40):  # one header byte every 0.1 s, far slower than any Envoy
            time.sleep(0.1)
            # meanwhile another connection is answered at once
            if _ == 3:
                t = time.monotonic()
                assert send(port, "/healthz").status == 204 and time.monotonic() - t < 0.5
            try:
                slow.sendall(b"x")
            except OSError:
                closed_after = time.monotonic() - started
                break
            slow.setblocking(False)
            try:
                if slow.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except BlockingIOError:
                pass
            finally:
                slow.setblocking(True)
    assert closed_after is not None and closed_after < 3.0  # request_timeout_seconds is 1 here


def test_a_slow_body_is_cut_off_too(http_stack: tuple[Stack, int]) -> None:
    _, port = http_stack
    with socket.create_connection(("127.0.0.1", port), timeout=5) as slow:
        slow.sendall(b"POST /phantom-authz/get HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nabc")
        started = time.monotonic()
        reply = b""
        try:
            reply = slow.recv(1024)
        except (TimeoutError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 3.0
        assert not reply.startswith(b"HTTP/1.1 200")


def test_many_connections_at_once_are_all_answered(http_stack: tuple[Stack, int]) -> None:
    s, port = http_stack
    headers = bearer(s)
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda _: send(port, f"{PREFIX};required_scopes=read/get", headers).status,
                                 range(200)))
    assert statuses == [200] * 200


# --- listening, refusing, stopping ---------------------------------------------------------------------------------


def test_unix_socket_listener(tmp_path: Path, stack_factory: Any) -> None:
    s: Stack = stack_factory()
    path = tmp_path / "authz-http.sock"
    with s.together():
        s.start_dev_as()
        s.start_authz(env={"AUTHZ__SERVER__HTTP__LISTEN": f"unix:{path}"}, in_process=True)
    conn = http.client.HTTPConnection("localhost", timeout=5)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(str(path))
    conn.request("GET", f"{PREFIX};required_scopes=read/get", headers={"authorization": f"Bearer {s.token()}"})
    resp = conn.getresponse()
    assert resp.status == 200 and (resp.getheader("authorization") or "").startswith("Bearer ey")
    conn.close()


def test_sigterm_lets_an_in_flight_check_finish(stack_factory: Any) -> None:
    s: Stack = stack_factory()
    with s.together():
        s.start_dev_as("--latency-ms", "800")
        port = start(s, in_process=False)  # SIGTERM: the process's signal handler
    assert s.authz is not None
    headers = bearer(s)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(send, port, f"{PREFIX};required_scopes=read/get", headers)
        wait_until(lambda: s.as_stats()["introspections"] == 1, "the check waits on the slow AS")
        s.authz.signal(signal.SIGTERM)
        assert pending.result(timeout=10).status == 200
    assert s.authz.wait(timeout=10) == 0


@pytest.mark.parametrize(("rule", "named"), [
    ('allow if input.attributes.source.principal != ""', "input.attributes.source"),
    # issue 16 item 6: Envoy's HTTP check is its own HTTP/1.1 request; the client's protocol is not sent
    ('allow if input.attributes.request.http.protocol == "HTTP/2"', "input.attributes.request.http.protocol"),
    ('allow if {\n  http := input.attributes.request.http\n  http.protocol != "HTTP/1.0"\n}',
     "input.attributes.request.http.protocol"),
])
def test_refuses_to_start_in_http_mode_with_policies_that_read_what_it_does_not_send(
        tmp_path: Path, stack_factory: Any, rule: str, named: str) -> None:
    s: Stack = stack_factory()
    s.start_dev_as()
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.rego").write_text(f"package p\nimport rego.v1\n\n{rule}\n")
    config = s.authz_config(policy={"paths": [str(policies)]})
    config["server"]["http"] = {"listen": f"127.0.0.1:{free_port()}"}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "authz", "serve", "--config", str(path)], capture_output=True,
                          text=True, timeout=30, env={"TEST_GATEWAY_SECRET": GATEWAY_SECRET, "PATH": "/usr/bin"})
    assert done.returncode != 0
    assert named in done.stderr and "HTTP ext_authz mode" in done.stderr
    checked = subprocess.run([sys.executable, "-m", "authz", "validate-config", "--config", str(path)],
                             capture_output=True, text=True, timeout=30,
                             env={"TEST_GATEWAY_SECRET": GATEWAY_SECRET, "PATH": "/usr/bin"})
    assert checked.returncode == 2 and named in checked.stderr  # validate-config says so too


def test_workers_share_the_http_port_too(stack_factory: Any) -> None:
    s: Stack = stack_factory()
    s.start_dev_as()
    grpc_port, http_port = free_port(), free_port()
    parent = s.start_workers({"listen": f"127.0.0.1:{grpc_port}", "workers": 2,
                              "http": {"listen": f"127.0.0.1:{http_port}"}})
    headers = bearer(s)
    statuses = [send(http_port, f"{PREFIX};required_scopes=read/get", headers).status for _ in range(20)]
    assert statuses == [200] * 20  # every new connection to the shared HTTP port is answered ...
    stats = s.worker_cache_stats(2)
    assert all(w.misses == 1 for w in stats) and sum(w.hits + w.misses for w in stats) == 20  # ... by both workers
    parent.signal(signal.SIGTERM)
    assert parent.wait(15) == 0


# --- issue 12: protocol laxness and what library loggers may print -------------------------------------------------


@pytest.mark.parametrize("request_line", [b"GET /phantom-authz;required_scopes=read/get",
                                          b"GET /phantom-authz;required_scopes=read/get HTTP/0.9"])
def test_item18_a_request_below_http_1_0_is_a_400_never_an_allow(http_stack: tuple[Stack, int],
                                                                 request_line: bytes) -> None:
    """aiohttp takes a request line without a version as HTTP/0.9; it answered ``HTTP/0.9 200 OK`` with the JWT."""
    s, port = http_stack
    token = s.token("read")
    reply = raw(port, request_line + b"\r\nhost: a\r\nauthorization: Bearer " + token.encode() + b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 400 ", reply), reply[:100]
    assert b"Bearer ey" not in reply and token.encode() not in reply


def test_item18_a_partial_pipelined_request_is_cut_off_by_the_request_timeout(http_stack: tuple[Stack, int]) -> None:
    """A complete request and, in the same packet, the start of a next one: the next one's clock starts with those
    bytes (request_timeout_seconds is 1 here), not when the keep-alive timeout (300 s) runs out."""
    _, port = http_stack
    started = time.monotonic()
    reply = raw(port, b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\nGET /healthz HTTP/1.1\r\nhost: a\r\n", wait=8.0)
    assert reply.startswith(b"HTTP/1.1 204 ") and reply.count(b"HTTP/1.1") == 1
    assert time.monotonic() - started < 3.0


def test_a_kept_alive_connection_stays_open_between_complete_requests(http_stack: tuple[Stack, int]) -> None:
    """The other side of the pipelining fix: a connection whose last request was whole is idle, not timed out."""
    s, port = http_stack
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(2):
            conn.request("POST", f"{PREFIX};required_scopes=read/get", body=b'{"a": 1}', headers=bearer(s))
            assert conn.getresponse().read() == b""
            time.sleep(1.6)  # longer than request_timeout_seconds plus a sweep: the connection must survive it
        conn.request("GET", f"{PREFIX};required_scopes=read/get", headers=bearer(s))
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_item17_malformed_header_lines_never_put_their_token_in_the_log(stack_factory: Any) -> None:
    """aiohttp's parser quotes a bad header line in its error; its logger printed that (token included) in a
    traceback, and its 400 body echoed it. Only our one line naming the error's type may be logged."""
    s: Stack = stack_factory()
    with s.together():
        s.start_dev_as()
        port = start(s, in_process=False)  # the process's own log text: its handler filters library records
    token = s.token("read")
    secret = token.encode()
    for request in (
        b"GET /phantom-authz/get HTTP/1.1\r\nhost: a\r\nauthorization Bearer " + secret + b"\r\n\r\n",
        b"GET /phantom-authz/get HTTP/1.1\r\nhost: a\r\nauthorization: Bearer " + secret + b"\x01x\r\n\r\n",
        b"GET /phantom-authz/get HTTP/1.1\r\nhost: a\r\nx-a: 1\r\n " + secret + b"\r\n\r\n",  # obs-fold
        b"GET /phantom-authz/" + secret + b" HTTP/1.1 x\r\nhost: a\r\n\r\n",
        b"GET /phantom-authz/get HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\nx: " + secret + b"\r\n\r\n",
    ):
        reply = raw(port, request)
        assert re.match(rb"HTTP/1\.[01] 400 ", reply), reply[:100]
        assert secret not in reply
    assert send(port, "/healthz").status == 204  # still serving; the log below holds every line written so far
    assert s.authz is not None
    log_text = s.authz.log_path.read_text()
    assert token not in log_text
    assert log_text.count("answered 400 to a malformed HTTP request (BadHttpMessage") >= 3
