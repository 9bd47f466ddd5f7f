"""``python -m devtools.bench_check`` (development tool, run from the checkout): fire N Check calls straight at a
running phantom-authz (no Envoy) to size a deployment.

Prints calls/s and latency percentiles. The token comes from ``--token`` or the environment variable named by
``--token-env`` (default ``AUTHZ_BENCH_TOKEN``), so it need not appear in shell history.

Denials are not throughput: a denied check skips the AS, the cache and the policy, so its rate says nothing about
sizing. Unless ``--allow-denials`` is given, a first check that is denied stops the run before it starts, and a run
with any denial prints its outcomes but no rate or latencies, and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

__all__ = ["main", "percentile"]


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def _request(token: str | None, path: str, extensions: dict[str, str]) -> CheckRequest:
    request = CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host, http.scheme = "GET", path, "bench.local", "http"
    if token:
        http.headers["authorization"] = f"Bearer {token}"
    request.attributes.context_extensions.update(extensions)
    return request


async def _run(target: str, request: CheckRequest, calls: int, concurrency: int, warmup: int
               ) -> tuple[list[float], float, dict[int, int]]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for _ in range(warmup):
            await stub.Check(request, timeout=10)
        latencies: list[float] = []
        outcomes: dict[int, int] = {}
        remaining = iter(range(calls))

        async def worker() -> None:
            for _ in remaining:
                start = time.perf_counter()
                response = await stub.Check(request, timeout=10)
                latencies.append(time.perf_counter() - start)
                status = 200 if response.status.code == 0 else int(response.denied_response.status.code)
                outcomes[status] = outcomes.get(status, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - began, outcomes


def _refuse(what: str) -> int:
    print(f"bench-check: {what}. Denials are not throughput: check the token ($AUTHZ_BENCH_TOKEN) and the route "
          "(--ext), or pass --allow-denials to measure denials", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench_check", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:9001", help="HOST:PORT or unix:PATH of phantom-authz")
    parser.add_argument("-n", "--calls", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="calls in flight at once (default 1)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--token", help="bearer token to send (prefer --token-env)")
    parser.add_argument("--token-env", default="AUTHZ_BENCH_TOKEN")
    parser.add_argument("--path", default="/get")
    parser.add_argument("--ext", action="append", default=[], metavar="KEY=VALUE",
                        help="context extension for the simulated route (repeatable)")
    parser.add_argument("--allow-denials", action="store_true",
                        help="report a run with denied checks too (denials skip the AS, cache and policy)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrency < 1:
        parser.error("--calls and --concurrency must be >= 1")
    extensions = dict(item.split("=", 1) for item in args.ext)
    token = args.token or os.environ.get(args.token_env)
    request = _request(token, args.path, extensions)
    if not args.allow_denials:
        _, _, probe = asyncio.run(_run(args.target, request, 1, 1, 0))
        if 200 not in probe:
            return _refuse(f"the first check was denied ({next(iter(probe))}): no run")
    latencies, elapsed, outcomes = asyncio.run(_run(args.target, request, args.calls, args.concurrency,
                                                    args.warmup))
    denied = sum(n for status, n in outcomes.items() if status != 200)
    if denied and not args.allow_denials:
        print(f"calls {len(latencies)}  concurrency {args.concurrency}  outcomes {dict(sorted(outcomes.items()))}")
        return _refuse(f"{denied} of {len(latencies)} checks were denied: no rate reported")
    latencies.sort()
    ms = [v * 1000 for v in latencies]
    print(f"calls {len(ms)}  concurrency {args.concurrency}  elapsed {elapsed:.2f}s  "
          f"rate {len(ms) / elapsed:.0f}/s  outcomes {dict(sorted(outcomes.items()))}")
    print(f"latency ms  median {statistics.median(ms):.3f}  p90 {percentile(ms, 90):.3f}  "
          f"p99 {percentile(ms, 99):.3f}  p99.9 {percentile(ms, 99.9):.3f}  max {ms[-1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
