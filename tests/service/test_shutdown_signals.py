"""README "Running the service": on SIGTERM/SIGINT health turns NOT_SERVING, new calls are refused, in-flight checks
finish, and the process exits 0. SIGTERM's drain is tested in test_grpc_service.py; this is Ctrl-C's (SIGINT), seen
by a health watcher (a load balancer or a kubelet's gRPC probe holds a Watch stream) of the ``authz serve`` process."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import Stack, wait_until
from tests.service.test_grpc_service import call, check_request, target

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def test_sigint_turns_health_not_serving_finishes_in_flight_checks_and_exits_zero(
        stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as("--latency-ms", "700")
        s.start_authz()
    token = s.token("read")
    assert s.authz is not None
    with grpc.insecure_channel(target(s)) as channel, ThreadPoolExecutor(2) as pool:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        assert next(watch).status == SERVING
        in_flight = pool.submit(call, target(s), check_request(f"Bearer {token}"))
        wait_until(lambda: s.as_stats()["introspections"] == 1, "the check waits on the slow AS")
        s.authz.signal(signal.SIGINT)
        assert next(watch).status == NOT_SERVING
        with pytest.raises(grpc.RpcError):  # a new call, while the in-flight one still waits on the AS
            call(target(s), check_request(f"Bearer {token}"), timeout=2)
        assert in_flight.result(timeout=10).status.code == 0, "the in-flight check completes with its real answer"
    assert s.authz.wait(10) == 0
