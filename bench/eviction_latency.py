"""How long an eviction call takes with two sidecars on one real redis-server. Prints figures; asserts nothing.

Two sidecars (``IntrospectionCache`` + ``RedisTier``, in this process, on one event loop) listen on the eviction
feed; each round both cache a fresh token, then sidecar A's ``evict_token`` is timed from the call to its OK: the
local eviction, the L2 ``DEL``, reading the listener set, ``PUBLISH``, and (since acknowledged evictions) waiting
until both listeners acknowledged by id that they applied it. Run it on two commits to see what a change adds.

    .venv/bin/python bench/eviction_latency.py [--evictions 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.cache.introspection_cache import BroadcastFailed
from tests.redis_server import RedisServer
from tests.redis_sidecars import Clock, Sidecar, listening


async def measure(url: str, evictions: int) -> tuple[list[float], int]:
    """(seconds per eviction call that answered OK, calls that answered "retry")."""
    clock = Clock()
    a, b = Sidecar({"url": url}, clock, "a"), Sidecar({"url": url}, clock, "b")
    took: list[float] = []
    retries = 0
    try:
        await listening(a, b)
        for i in range(evictions + 5):  # the first 5 warm connections up and are not counted
            token = f"opaque-bench-token-{i:06d}-0123456789abcdef"
            await a.lookup(token)
            await b.lookup(token)
            started = time.perf_counter()
            try:
                await a.cache.evict_token(token=token)
            except BroadcastFailed:
                retries += 1
                continue
            if i >= 5:
                took.append(time.perf_counter() - started)
    finally:
        for sidecar in (a, b):
            await sidecar.tier.close()
    return took, retries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evictions", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir)).start()
        try:
            took, retries = asyncio.run(measure(server.url, args.evictions))
        finally:
            server.stop()
    ms = sorted(t * 1000 for t in took)
    print(f"eviction call, 2 sidecars on one redis-server, {len(ms)} evictions answered OK ({retries} retry): "
          f"median {statistics.median(ms):.2f} ms, p90 {ms[int(len(ms) * 0.9) - 1]:.2f} ms, max {ms[-1]:.2f} ms, "
          f"min {ms[0]:.2f} ms")


if __name__ == "__main__":
    main()
