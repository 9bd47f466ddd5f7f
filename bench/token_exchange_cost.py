"""Token exchange cost (issue 16 item 5): what does a route with ``exchange_audience`` add to a check? In process,
one core, against the dev AS on loopback; prints figures, asserts nothing.

1. A cached check (``Authorizer.decide`` on an introspection-cache hit whose exchanged token is kept too), for a
   route without and with an exchange: the difference is the lookup of the exchange on the answer.
2. A first check of a fresh token (introspection, and for the exchange route the token-endpoint call, the AS signing
   the new JWT and the gateway verifying it), milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.cache import IntrospectionCache
from authz.config import Config, load_config
from authz.introspection import build_authorities
from authz.metrics import Metrics
from authz.models import RequestInfo
from authz.pipeline import AuthorityLike, Authorizer
from devtools.auth_server import DEV_AS_KEY, TOKEN_PATH, DevASConfig, DevAuthServer, DevClient, start

EXCHANGE = {"exchange_audience": "orders.example.com", "exchange_scope": "read"}


def _config(dev_as: DevAuthServer, workdir: Path) -> Config:
    base = dev_as.base_url
    server = {"introspection_endpoint": base + "/oauth/v2/oauth-introspect", "client_id": "gateway-client",
              "client_secret_env": "S", "issuer": dev_as.issuer, "jwks_uri": base + "/oauth/v2/oauth-anonymous/jwks",
              "token_exchange": {"token_endpoint": base + TOKEN_PATH}}
    path = workdir / "authz.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"dev": server}, "routes": {"required_scopes": "read"}}))
    return load_config(path, {"S": "gw"})


async def _per_check(authorizer: Authorizer, request: RequestInfo, rounds: int, calls: int) -> float:
    """Median over ``rounds`` of µs per ``decide`` of the same request."""
    runs = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            await authorizer.decide(lambda: request, lambda: "bench")
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


async def main(rounds: int, calls: int, fresh: int) -> None:
    clients = {"demo-client": DevClient("demo", ("read", "write")),
               "gateway-client": DevClient("gw", can_introspect=True, can_exchange=True)}
    runner = await start(DevASConfig(port=0, clients=clients))
    dev_as = runner.app[DEV_AS_KEY]
    try:
        async with aiohttp.ClientSession() as session:
            config = _config(dev_as, Path(tempfile.mkdtemp()))
            metrics = Metrics()
            cache = IntrospectionCache(config.cache, metrics)
            authorities: dict[str, AuthorityLike] = {
                name: cache.wrap(a) for name, a in build_authorities(config, session).items()}
            authorizer = Authorizer(config, authorities, metrics=metrics)
            token = dev_as.issue("demo-client", "alice", ("read", "write"))
            for settings in ({}, EXCHANGE):
                request = RequestInfo("GET", "/orders/1", "api.example", {}, (f"Bearer {token}",), settings)
                label = "with exchange" if settings else "without exchange"
                await authorizer.decide(lambda request=request: request, lambda: "bench")  # fill the cache
                print(f"cached check, {label}: {await _per_check(authorizer, request, rounds, calls):.2f} µs")
            for settings in ({}, EXCHANGE):
                started = time.perf_counter()
                for _ in range(fresh):
                    request = RequestInfo("GET", "/orders/1", "api.example", {},
                                          (f"Bearer {dev_as.issue('demo-client', 'alice', ('read',))}",), settings)
                    await authorizer.decide(lambda request=request: request, lambda: "bench")
                label = "with exchange" if settings else "without exchange"
                print(f"first check of a fresh token, {label}: {(time.perf_counter() - started) / fresh * 1e3:.2f} ms")
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--fresh", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.calls, args.fresh))
