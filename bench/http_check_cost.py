"""Micro-benchmark: the in-process CPU of one cached HTTP-mode check, from the bytes Envoy sends to the bytes we
write (issue 17). Prints; asserts nothing.

One phantom-authz (``authz.app.Server``, HTTP transport on) in this process against the dev AS. After one check
has filled the cache, the check request Envoy 1.40 sends (its exact header lines, captured behind real Envoy) is
fed to one connection of the HTTP transport (``CheckConnection.data_received``) over a transport that keeps what is
written: parsing, limits, translation, pipeline, answer. No socket and no event-loop turn: what is left of the
figure behind Envoy is the loop's I/O. Best of 5 rounds of N requests, µs per request:

- ``scope``: ``/httpbin/get`` with ``required_scopes=read`` (the bench's ch);
- ``policy``: ``/records/alice/profile`` with the embedded ``records/decision`` policy (dh).

``--profile`` prints cProfile's top functions for one round instead.

    python bench/http_check_cost.py
    python bench/http_check_cost.py --variant scope --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from authz.app import Server  # noqa: E402
from authz.config import load_config  # noqa: E402
from devtools.processes import free_port  # noqa: E402
from tests.harness import GATEWAY_SECRET, Stack  # noqa: E402

ROUTES = {"scope": ("required_scopes=read", "/httpbin/get"),
          "policy": ("required_scopes=read&policy=records%2Fdecision", "/records/alice/profile")}


def envoy_check(settings: str, path: str, token: str) -> bytes:
    """The check request Envoy 1.40's ``http_service`` sends for ``GET path`` (header lines as captured)."""
    return (f"GET /phantom-authz;{settings}{path} HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-length: 0\r\n"
            f"x-request-id: 4a956d7d-8106-4126-9aef-eeaa14b85368\r\nauthorization: Bearer {token}\r\n"
            "x-forwarded-proto: http\r\nx-envoy-internal: true\r\nx-envoy-expected-rq-timeout-ms: 5000\r\n\r\n"
            ).encode("latin-1")


class KeptTransport:
    """What a connection uses of its transport; keeps the last write."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.wrote = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.written = data
        self.wrote.set()

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def can_write_eof(self) -> bool:
        return False


async def measure(variant: str, runs: int, profile: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="http-check-cost-"))
    stack = Stack(work)
    try:
        stack.start_dev_as()
        config = stack.authz_config(server={"listen": "127.0.0.1:0", "log_level": "WARNING",
                                            "http": {"listen": f"127.0.0.1:{free_port()}"}},
                                    admin_listen=None, metrics_listen=None)
        config.setdefault("policy", {})["decision_log"] = "summary"
        path = work / "authz.yaml"
        path.write_text(yaml.safe_dump(config))
        server = Server(load_config(path, {"TEST_GATEWAY_SECRET": GATEWAY_SECRET}))
        await server.start()
        try:
            assert server.http is not None and server.http._connections is not None
            connection = server.http._connections()
            transport = KeptTransport()
            connection.connection_made(transport)  # type: ignore[arg-type]
            request = envoy_check(*ROUTES[variant], stack.token(subject="alice"))
            connection.data_received(request)
            await asyncio.wait_for(transport.wrote.wait(), 10)  # the first check fills the cache (it waits on the AS)
            assert transport.written.startswith(b"HTTP/1.1 200 "), transport.written[:100]
            if profile:
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(runs):
                    connection.data_received(request)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
                return
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(runs):
                    connection.data_received(request)
                best = min(best, (time.perf_counter() - started) / runs)
            assert transport.written.startswith(b"HTTP/1.1 200 ") and not transport.closed
            print(f"{variant}: {best * 1e6:.2f} µs per cached HTTP check (best of 5 x {runs}, in process)")
        finally:
            await server.stop(grace=0)
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--variant", choices=tuple(ROUTES), action="append")
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    import uvloop

    for variant in args.variant or ROUTES:
        uvloop.run(measure(variant, args.runs, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
