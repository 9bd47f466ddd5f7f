"""phantom-authz over real gRPC (no Envoy) against the real dev AS on loopback: in process (``tests/inprocess.py``),
except the tests of signals, the CLI, exit codes and worker processes, which start ``authz serve``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.processes import free_port
from tests.harness import Stack, wait_until


def check_request(authorization: str | None = None, path: str = "/get", **extensions: str) -> CheckRequest:
    request = CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host, http.id = "GET", path, "api.example", "req-1"
    if authorization is not None:
        http.headers["authorization"] = authorization
    request.attributes.context_extensions.update(extensions)
    return request


def call(target: str, request: CheckRequest, timeout: float = 10.0) -> CheckResponse:
    with grpc.insecure_channel(target) as channel:
        return external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=timeout)


def denied_status(response: CheckResponse) -> int:
    assert response.status.code != 0, "expected a denial"
    return int(response.denied_response.status.code)


@pytest.fixture(scope="module")
def grpc_stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    s = Stack(tmp_path_factory.mktemp("grpc"))
    try:
        with s.together():
            s.start_dev_as()
            s.start_authz(in_process=True)
        yield s  # type: ignore[misc]
    finally:
        s.stop()


def target(s: Stack) -> str:
    return f"127.0.0.1:{s.authz_port}"


def test_health_service_reports_serving(grpc_stack: Stack) -> None:
    with grpc.insecure_channel(target(grpc_stack)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "envoy.service.auth.v3.Authorization"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_valid_token_gets_ok_with_jwt_overwriting_authorization(grpc_stack: Stack) -> None:
    token = grpc_stack.token("read")
    response = call(target(grpc_stack), check_request(f"Bearer {token}", required_scopes="read"))
    assert response.status.code == 0
    headers = {h.header.key: h for h in response.ok_response.headers}
    assert headers["authorization"].header.value.startswith("Bearer ey")
    assert headers["authorization"].append_action == 2  # OVERWRITE_IF_EXISTS_OR_ADD
    assert token not in headers["authorization"].header.value
    assert list(response.ok_response.headers_to_remove) == ["x-user-id"]
    assert response.dynamic_metadata.fields["client_id"].string_value == "demo-client"


@pytest.mark.parametrize(("request_factory", "status"), [
    (lambda: CheckRequest(), 400),  # no HTTP attributes at all
    (lambda: check_request("Bearer "), 400),  # empty token
    (lambda: check_request("Bearer t\u00f6ken"), 400),  # non-ASCII
    (lambda: check_request("Bearer " + "a" * 5000), 400),  # over max_token_length
    (lambda: check_request(None), 401),
    (lambda: check_request("Bearer abc", disabled="perhaps"), 500),  # bad per-route setting
])
def test_malformed_check_requests_are_denied_not_crashed(grpc_stack: Stack, request_factory, status: int) -> None:  # type: ignore[no-untyped-def]
    assert denied_status(call(target(grpc_stack), request_factory())) == status
    assert grpc_stack.authz is not None and grpc_stack.authz.running


def test_item09_check_request_just_over_grpcs_old_4_mib_limit_is_answered(grpc_stack: Stack) -> None:
    """gRPC's default receive limit (4 MiB) once made such a request a RESOURCE_EXHAUSTED error, which Envoy turns
    into status_on_error, or into an allow with failure_mode_allow: true. It must get a CheckResponse."""
    token = grpc_stack.token("read")
    request = check_request(f"Bearer {token}", required_scopes="read")
    request.attributes.request.http.method = "POST"
    request.attributes.request.http.body = "a" * (4 * 1024 * 1024 + 1024)
    assert request.ByteSize() > 4 * 1024 * 1024
    response = call(target(grpc_stack), request)
    assert response.status.code == 0, response.denied_response
    del request.attributes.request.http.headers["authorization"]  # the same size without a token: a denial
    assert denied_status(call(target(grpc_stack), request)) == 401


def test_huge_headers_are_denied(grpc_stack: Stack) -> None:
    request = check_request("Bearer abc")
    for i in range(100):
        request.attributes.request.http.headers[f"x-filler-{i}"] = "v" * 1000
    assert denied_status(call(target(grpc_stack), request)) == 400


def test_two_authorization_headers_in_header_map_are_400(grpc_stack: Stack) -> None:
    request = check_request()
    header_map = request.attributes.request.http.header_map
    header_map.headers.add(key="authorization", raw_value=b"Bearer abc")
    header_map.headers.add(key="authorization", raw_value=b"Bearer def")
    assert denied_status(call(target(grpc_stack), request)) == 400


def test_listens_on_a_unix_socket(stack_factory: type[Stack], tmp_path: Path) -> None:
    s = stack_factory()
    s.start_dev_as()
    sock = tmp_path / "authz.sock"
    s.start_authz(in_process=True, server={"listen": f"unix:{sock}"})
    token = s.token("read")
    assert call(f"unix:{sock}", check_request(f"Bearer {token}")).status.code == 0


def test_bench_check_cli_reports_rate_and_percentiles(grpc_stack: Stack) -> None:
    token = grpc_stack.token("read")
    done = subprocess.run([sys.executable, "-m", "devtools.bench_check", "--target", target(grpc_stack), "-n", "30",
                           "-c", "3", "--warmup", "2", "--ext", "required_scopes=read"],
                          env={**os.environ, "AUTHZ_BENCH_TOKEN": token}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "calls 30" in done.stdout and "outcomes {200: 30}" in done.stdout
    assert "median" in done.stdout and "p99" in done.stdout
    denied = subprocess.run([sys.executable, "-m", "devtools.bench_check", "--target", target(grpc_stack), "-n", "5",
                             "--warmup", "0", "--ext", "required_scopes=admin", "--allow-denials"],
                            env={**os.environ, "AUTHZ_BENCH_TOKEN": token}, capture_output=True, text=True, timeout=60)
    assert "outcomes {403: 5}" in denied.stdout


# signals, the CLI, exit codes and worker processes: these tests start the ``authz serve`` subprocess


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_turns_health_not_serving_finishes_in_flight_checks_and_exits_zero(
        stack_factory: type[Stack], sig: signal.Signals) -> None:
    """README "Running the service": seen by a health watcher (a load balancer or a kubelet's gRPC probe holds a
    Watch stream) and by callers; Ctrl-C (SIGINT) drains like SIGTERM."""
    s = stack_factory()
    with s.together():
        s.start_dev_as("--latency-ms", "700")
        s.start_authz()
    token = s.token("read")
    assert s.authz is not None
    with grpc.insecure_channel(target(s)) as channel, ThreadPoolExecutor(2) as pool:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = pool.submit(call, target(s), check_request(f"Bearer {token}"))
        wait_until(lambda: s.as_stats()["introspections"] == 1, "the check waits on the slow AS")
        s.authz.signal(sig)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError):  # a new call, while the in-flight one still waits on the AS
            call(target(s), check_request(f"Bearer {token}"), timeout=2)
        assert in_flight.result(timeout=10).status.code == 0, "the in-flight check completes with its real answer"
    assert s.authz.wait(10) == 0
    assert f"phantom-authz listening on {target(s)} (port {s.authz_port})" in s.authz.log_tail(100)  # the ready line
    with pytest.raises(grpc.RpcError):
        call(target(s), check_request(f"Bearer {token}"), timeout=2)


@pytest.mark.parametrize(("content", "message"), [
    ("server: {listen: 'nowhere'}\n", "server.listen: must be HOST:PORT or unix:PATH"),
    ("bogus: 1\n", "authorization_servers:"),
    ("authorization_servers: {a: {introspection_endpoint: 'http://x', client_id: c, client_secret: s}}\n",
     "authorization_servers.a.client_secret: must not be inline"),
])
def test_bad_config_exits_nonzero_with_one_line_naming_the_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "authz", "serve", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_workers_share_the_port_and_drain_together(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    s.start_dev_as()
    port = free_port()
    parent = s.start_workers({"listen": f"127.0.0.1:{port}", "workers": 2})
    token = s.token("read")
    for _ in range(20):  # a new connection each time (own subchannel pool): the kernel spreads them over both workers
        with grpc.insecure_channel(target(s), options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            answer = external_auth_pb2_grpc.AuthorizationStub(channel).Check(check_request(f"Bearer {token}"),
                                                                             timeout=10)
        assert answer.status.code == 0
    stats = s.worker_cache_stats(2)  # each worker has its own admin API and its own cache
    assert [(w.misses, w.entries) for w in stats] == [(1, 1), (1, 1)]  # each introspected the token once for itself
    assert sum(w.hits + w.misses for w in stats) == 20
    parent.signal(signal.SIGTERM)
    assert parent.wait(15) == 0
