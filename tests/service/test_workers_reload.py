"""README "Running the service" and "Live reload" on ``server.workers``: each worker binds the metrics address offset
by its index, and the parent forwards SIGHUP to every worker, so each applies the changed file (and counts it on its
own /metrics)."""

from __future__ import annotations

import signal

import grpc
import yaml
from envoy.service.auth.v3 import external_auth_pb2_grpc

from devtools.processes import Process, free_port
from tests.harness import Stack, consecutive_free_ports, http_request, wait_until
from tests.service.test_grpc_service import check_request, target

RELOADED = 'phantom_authz_config_reloads_total{result="ok"} 1.0'


def _metrics(port: int) -> str:
    try:
        return http_request("GET", port, "/metrics").body.decode()
    except OSError:
        return ""  # not listening yet


def _statuses(s: Stack, token: str, calls: int = 20) -> set[int]:
    """Denial statuses (0: allowed) of ``calls`` checks, each on a new connection (the kernel spreads them)."""
    seen = set()
    for _ in range(calls):
        with grpc.insecure_channel(target(s), options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            answer = external_auth_pb2_grpc.AuthorizationStub(channel).Check(check_request(f"Bearer {token}"),
                                                                             timeout=10)
        seen.add(int(answer.denied_response.status.code) if answer.status.code else 0)
    return seen


def test_sighup_reaches_every_worker_and_each_serves_its_own_metrics(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    s.start_dev_as()
    parent = s.start_workers({"listen": f"127.0.0.1:{free_port()}", "workers": 2,
                              "config_watch_interval_seconds": 0})  # 0: reload on SIGHUP only
    path = s.dir / "workers.yaml"
    # metrics on too: worker i on the base port + i (start_workers leaves it off; restart with it on)
    metrics = consecutive_free_ports(2)
    config = yaml.safe_load(path.read_text())
    config["metrics_listen"] = f"127.0.0.1:{metrics}"
    path.write_text(yaml.safe_dump(config))
    parent.signal(signal.SIGTERM)
    assert parent.wait(15) == 0
    parent = Process("authz-workers-metrics", parent.argv, s.authz_port, s.dir, env=parent.env)
    s.procs.append(parent)  # stopped with the stack
    parent.start()
    for index in range(2):
        wait_until(lambda i=index: "phantom_authz_checks_total" in _metrics(metrics + i),  # type: ignore[misc]
                   f"worker {index}'s /metrics")
    token = s.token("read")
    assert _statuses(s, token) == {0}

    config = yaml.safe_load(path.read_text())
    config["routes"] = {"required_scopes": "admin"}
    path.write_text(yaml.safe_dump(config))
    parent.signal(signal.SIGHUP)
    for index in range(2):
        wait_until(lambda i=index: RELOADED in _metrics(metrics + i),  # type: ignore[misc]
                   f"worker {index} applied the reload")
    assert _statuses(s, token) == {403}, "every worker checks with the reloaded routes"
    parent.signal(signal.SIGTERM)
    assert parent.wait(15) == 0
