"""No-op Envoy ext_authz v3 gRPC servers on several Python gRPC stacks: which stack costs least per Check
(bench/grpc_stack_bench.py; issue 17). A benchmark floor, not product code.

Every ``Check`` is answered OK with one prebuilt ``CheckResponse`` carrying the fixed ``authorization: Bearer <JWT>``
of ``bench/noop_http_authz.py`` (overwrite semantics, as phantom-authz sends it): no parsing of its own, no cache, no
I/O. What it costs is the stack: HTTP/2, protobuf, threads or the event loop.

Stacks (only the chosen one is imported):

- ``aio``: grpc.aio (grpcio's asyncio server, what phantom-authz runs) in a uvloop loop, as ``bench/noop_authz.py``;
- ``sync``: grpcio's synchronous server, the handler called on its thread pool (``--workers``, default 4): what a
  cache hit answered without the event loop would cost at best; ``sync1``: the same with one thread;
- ``grpclib``: grpclib (pure-Python HTTP/2 on h2, asyncio) in a uvloop loop.

SIGTERM and SIGINT stop it (exit status 0).

    python bench/noop_grpc_authz.py --stack sync --port 9011
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse, OkHttpResponse
from google.rpc import code_pb2, status_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noop_http_authz import AUTHORIZATION

__all__ = ["RESPONSE", "STACKS", "WORK_STACKS", "main"]

STACKS = ("aio", "sync", "sync1", "grpclib")
WORK_STACKS = ("aio+10us", "aio+30us")  # grpc.aio, the handler spinning that long first (a handler's own cost)
CHECK = "/envoy.service.auth.v3.Authorization/Check"
RESPONSE = CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=OkHttpResponse(headers=[
    HeaderValueOption(header=HeaderValue(key="authorization", value=AUTHORIZATION),
                      append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)]))


def _stopped_by_signal() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def serve_sync(host: str, port: int, workers: int) -> None:
    import grpc

    def check(request: CheckRequest, context: Any) -> CheckResponse:
        return RESPONSE

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    handler = grpc.unary_unary_rpc_method_handler(check, CheckRequest.FromString, CheckResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "envoy.service.auth.v3.Authorization", {"Check": handler}),))
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    stop = _stopped_by_signal()
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()


async def serve_aio(host: str, port: int, stop: asyncio.Event, work_us: int = 0) -> None:
    import grpc

    work = work_us / 1e6

    async def check(request: CheckRequest, context: Any) -> CheckResponse:
        if work:  # stands for a handler's own Python work: CPU time, no I/O
            end = time.perf_counter() + work
            while time.perf_counter() < end:
                pass
        return RESPONSE

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(check, CheckRequest.FromString, CheckResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "envoy.service.auth.v3.Authorization", {"Check": handler}),))
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await stop.wait()
    await server.stop(1)


async def serve_grpclib(host: str, port: int, stop: asyncio.Event) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server, Stream

    class Authorization:
        async def check(self, stream: Stream[CheckRequest, CheckResponse]) -> None:
            await stream.recv_message()
            await stream.send_message(RESPONSE)

        def __mapping__(self) -> dict[str, Handler]:
            return {CHECK: Handler(self.check, Cardinality.UNARY_UNARY, CheckRequest, CheckResponse)}

    server = Server([Authorization()])
    await server.start(host, port)
    await stop.wait()
    server.close()
    await server.wait_closed()


async def _in_loop(stack: str, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if stack == "grpclib":
        await serve_grpclib(host, port, stop)
    else:  # aio, or aio+<N>us
        await serve_aio(host, port, stop, int(stack.removeprefix("aio").removeprefix("+").removesuffix("us") or 0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="noop_grpc_authz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=STACKS + WORK_STACKS, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9011)
    parser.add_argument("--workers", type=int, default=4, help="sync: the thread pool's size (default %(default)s)")
    args = parser.parse_args(argv)
    if args.stack.startswith("sync"):
        serve_sync(args.host, args.port, 1 if args.stack == "sync1" else args.workers)
    else:
        import uvloop

        uvloop.run(_in_loop(args.stack, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
