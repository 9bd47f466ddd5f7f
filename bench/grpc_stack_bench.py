"""Which Python gRPC stack could serve Envoy's gRPC ext_authz cheapest: a measurement, not a test (issue 17).

``bench/http_stack_bench.py`` for gRPC: on loopback the echo upstream, then for each stack bench/noop_grpc_authz.py
(OK + the fixed ~650-byte ``authorization`` header, nothing else: ``aio`` grpc.aio, ``sync`` grpcio's thread-pool
server with 4 threads, ``sync1`` with one, ``grpclib``) behind Envoy 1.40 (``--concurrency 1``) with
``envoy/envoy.yaml``'s gRPC ext_authz filter re-pointed at it; one request checked end to end, a warm-up, then
``wrk -t2 -c16 -d<N>s --latency`` on ``/httpbin/get``; and once without the filter (the ceiling). Per run:
requests/s, p50/p99/p99.9, errors, CPU per request of the no-op server, Envoy and the echo upstream, the server's
RSS and its exit status on SIGTERM.

    python bench/grpc_stack_bench.py --rounds 3 --duration 8
    python bench/grpc_stack_bench.py --stacks aio,sync --no-ceiling
    python bench/grpc_stack_bench.py --stacks aio,aio+10us,aio+30us --no-ceiling --rounds 3   # a handler's cost

``aio+10us`` and ``aio+30us`` (not run by default) are grpc.aio with a handler that first spins 10 or 30 µs of CPU:
what a handler's own work adds to the server's CPU per request behind Envoy (issue 17: does grpc.aio amplify it?).

Prints markdown; writes it and the figures (JSON) under run/bench/grpc-stack-<timestamp>/ with the logs and configs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from http_stack_bench import Bench, main  # noqa: E402
from noop_grpc_authz import STACKS, WORK_STACKS  # noqa: E402


class GrpcBench(Bench):
    cluster = "phantom_authz"  # envoy/envoy.yaml's gRPC ext_authz cluster (HTTP/2)
    server_script = BENCH / "noop_grpc_authz.py"
    note = ("aio and grpclib run in a uvloop loop; sync is grpcio's server with a 4-thread pool, sync1 with one "
            "thread. Envoy->ext_authz "
            "conns: connections Envoy opened to the no-op server in its whole life (HTTP/2: one).")

    def with_ext_authz(self, authz_port: int) -> Callable[[dict[str, Any]], None]:
        return lambda config: None  # envoy/envoy.yaml as it is: its gRPC filter, phantom_authz -> authz_port


if __name__ == "__main__":
    raise SystemExit(main(bench_class=GrpcBench, stacks=STACKS, name="grpc_stack_bench", kind="gRPC",
                          description=__doc__, optional=WORK_STACKS))
