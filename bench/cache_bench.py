"""Cache benchmark (issue: introspection cache). Prints figures; asserts nothing.

1. single-flight: N concurrent Check calls over real gRPC carrying one fresh token, against the dev AS with an
   artificial latency; prints how many introspection calls reached the AS (goal: 1).
2. RSS for 100,000 cached entries: fills an in-process IntrospectionCache with answers shaped like the dev AS's
   (an RS256 JWT of ~700 bytes and its claims) and prints the resident-set growth.
3. a flood of distinct random tokens through the pipeline (in process: Authorizer + cache + an AS double that
   answers "inactive" at once, so the run measures our memory, not the AS): prints RSS and cache sizes against the
   configured bounds. 1,000,000 tokens by default (100,000 with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import secrets
import sys
import tempfile
import time
from pathlib import Path

import grpc
import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.cache import IntrospectionCache
from authz.config import CacheConfig, load_config
from authz.metrics import Metrics
from authz.models import Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer
from tests.harness import Stack, http_request


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request(token: str) -> CheckRequest:
    req = CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", "/get", "bench"
    http.headers["authorization"] = f"Bearer {token}"
    return req


async def _burst(target: str, token: str, n: int) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        answers = await asyncio.gather(*(stub.Check(request(token), timeout=30) for _ in range(n)))
    return sum(1 for a in answers if a.status.code == 0)


def single_flight(n: int, latency_ms: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.start_dev_as("--latency-ms", str(latency_ms))
            stack.start_authz()
            token = stack.token("read")
            http_request("POST", stack.as_port, "/dev/reset-stats")
            started = time.perf_counter()
            allowed = asyncio.run(_burst(f"127.0.0.1:{stack.authz_port}", token, n))
            elapsed = time.perf_counter() - started
            calls = stack.as_stats()["introspections"]
        finally:
            stack.stop()
    print(f"single-flight: {n} concurrent Checks, one fresh token, AS latency {latency_ms:g} ms -> "
          f"{calls} AS introspection call(s) (goal 1); {allowed} allowed in {elapsed:.2f}s")


def _answer(key: rsa.RSAPrivateKey, i: int) -> Introspection:
    now = int(time.time())
    claims = {"iss": "http://127.0.0.1:8443/oauth/v2/oauth-anonymous", "sub": f"user-{i}", "aud": "api.example.com",
              "scope": "read write", "client_id": "demo-client", "iat": now, "exp": now + 3600,
              "jti": secrets.token_hex(16)}
    return Introspection(active=True, jwt=jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"}),
                         claims=claims, max_age=3600)


class _AnswerAll:
    name = "bench"
    cache_identity = "bench"

    def __init__(self, answer: Introspection) -> None:
        self.answer = answer

    async def introspect(self, token: str) -> Introspection:
        return self.answer

    async def verified(self, answer: Introspection) -> Introspection:
        return answer

    def identity(self, answer: Answer) -> Identity:
        raise NotImplementedError


async def _fill(n: int) -> tuple[float, IntrospectionCache]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    template = _answer(key, 0)
    cache = IntrospectionCache(CacheConfig(max_entries=n, max_bytes=1 << 40, max_ttl_seconds=3600), Metrics())
    gc.collect()
    before = rss_mib()
    for i in range(n):
        # distinct strings per entry (as real tokens would be), built from one signed template to save time
        jwt_i = template.jwt[:-8] + f"{i:08d}"  # type: ignore[index]
        claims = {**template.claims, "sub": f"user-{i}", "jti": secrets.token_hex(16)}
        upstream = _AnswerAll(Introspection(active=True, jwt=jwt_i, claims=claims, max_age=3600))
        await cache.introspect(upstream, secrets.token_urlsafe(32))
    gc.collect()
    return rss_mib() - before, cache


def cached_entries_rss(n: int) -> None:
    grown, cache = asyncio.run(_fill(n))
    print(f"L1 memory: {len(cache.positive)} cached entries (RS256 JWT of ~700 B "
          f"each) -> RSS +{grown:.1f} MiB ({grown * 1024 * 1024 / max(1, len(cache.positive)):.0f} B/entry); "
          f"accounted {cache.positive.bytes / 1024 / 1024:.1f} MiB")


class _Inactive(_AnswerAll):
    def __init__(self) -> None:
        super().__init__(Introspection(active=False))


def junk_flood(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump({
            "authorization_servers": {"bench": {"dialect": "rfc7662", "introspection_endpoint": "http://127.0.0.1:9",
                                                "client_id": "c", "client_secret_env": "S"}},
            "cache": {"max_entries": 100_000, "negative_max_entries": 100_000, "negative_ttl_seconds": 3600}}))
        config = load_config(path, {"S": "x"})
    cache = IntrospectionCache(config.cache, Metrics())
    upstream = _Inactive()
    authorizer = Authorizer(config, {"bench": cache.wrap(upstream)})

    async def flood() -> tuple[int, float]:
        denied = 0
        started = time.perf_counter()
        for _ in range(n):
            info = RequestInfo("GET", "/get", "bench", {}, (f"Bearer {secrets.token_urlsafe(32)}",), {})
            try:
                await authorizer.check(info)
            except Exception:
                denied += 1
        return denied, time.perf_counter() - started

    gc.collect()
    before = rss_mib()
    denied, elapsed = asyncio.run(flood())
    gc.collect()
    print(f"junk flood: {n} distinct random tokens through the pipeline in {elapsed:.1f}s ({n / elapsed:.0f}/s), "
          f"{denied} denied; negative cache {len(cache.negative)} entries (bound "
          f"{config.cache.negative_max_entries}); RSS {before:.0f} -> {rss_mib():.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for CI smoke runs")
    # make bench passes BENCH_ARGS to every benchmark: envoy_bench.py's A/B options are accepted, and unused here
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    parser.add_argument("--ab-rounds", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    single_flight(200 if args.quick else 1000, latency_ms=5)
    cached_entries_rss(20_000 if args.quick else 100_000)
    junk_flood(100_000 if args.quick else 1_000_000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
