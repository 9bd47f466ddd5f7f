"""DPoP cost benchmark (issue 16 item 1): a proof is verified on every request, so what does it cost? In process, one
core, prints figures (median of the rounds, microseconds per request); asserts nothing.

1. ``ProofVerifier.verify`` alone, per algorithm: with the proof's key already in the key table (a client signing
   every proof with its one key: the usual case, "key hit") and with a key never seen before ("key miss": parsing
   the jwk and checking it against our key rules comes on top).
2. ``Authorizer.decide`` (the whole pipeline, as a transport calls it) on an introspection-cache hit (the same cached
   answer every time, as the cache hands it back) and on a miss (a fresh answer: identity, Allow and CheckResponse
   made anew), for a Bearer token on a ``dpop: off`` route and a DPoP-bound token with a fresh ES256 / EdDSA /
   PS256 proof on a ``dpop: allowed`` route: the difference is what DPoP adds (verification, binding, replay check).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.claims import ClaimsChecker
from authz.config import load_config
from authz.dpop import ProofVerifier
from authz.dpop.uri import normalized
from authz.models import Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer
from tests.dpop_client import DpopClient

URL = "https://api.example/orders"
TOKEN = "opaque-token-1234567890abcdefghijkl"
ISSUER = "https://as.example"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
ALGS = ("ES256", "EdDSA", "PS256", "RS256")


def per_call_us(rounds: list[float], calls: int) -> float:
    return statistics.median(rounds) / calls * 1e6


def bench_verify(alg: str, calls: int, rounds: int, fresh_keys: bool) -> float:
    uri = normalized(URL) or ""
    clients = [DpopClient(alg) for _ in range(calls)] if fresh_keys else [DpopClient(alg)] * calls
    times = []
    for _ in range(rounds):
        verifier = ProofVerifier((*ALGS, "ES384"), 60.0, 5.0, 4096)
        if not fresh_keys:
            verifier.verify(clients[0].proof("GET", URL, TOKEN), "GET", uri, TOKEN)  # the key is known
        proofs = [client.proof("GET", URL, TOKEN) for client in clients]
        start = time.perf_counter()
        for proof in proofs:
            verifier.verify(proof, "GET", uri, TOKEN)
        times.append(time.perf_counter() - start)
    return per_call_us(times, calls)


class Authority:
    def __init__(self, claims: dict[str, Any], fresh: bool) -> None:
        self._introspection = Introspection(active=True, jwt=JWT, claims=claims)
        self._kept = Answer(self._introspection)
        self._fresh = fresh
        self._checker = ClaimsChecker(ISSUER, (), 30.0)

    async def answer(self, token: str) -> Answer:
        return Answer(self._introspection) if self._fresh else self._kept

    def identity(self, answer: Answer) -> Identity:
        return self._checker.identity_of(answer)


def authorizer(workdir: Path, mode: str, claims: dict[str, Any], fresh: bool) -> Authorizer:
    path = workdir / f"{mode}.yaml"
    path.write_text(yaml.safe_dump({
        "authorization_servers": {"main": {"introspection_endpoint": "https://as.example/i", "client_id": "gw",
                                           "client_secret_env": "S", "issuer": ISSUER}},
        "routes": {"required_scopes": "read", "dpop": mode},
        "dpop": {"replay_cache_entries": 1_000_000}}))
    return Authorizer(load_config(path, {"S": "s"}), {"main": Authority(claims, fresh)})


def bench_decide(workdir: Path, alg: str | None, calls: int, rounds: int, fresh_answer: bool) -> float:
    client = DpopClient(alg or "ES256")
    claims: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "scope": "read", "exp": time.time() + 3600}
    if alg is not None:
        claims.update(cnf={"jkt": client.thumbprint}, token_type="DPoP")
    gate = authorizer(workdir, "off" if alg is None else "allowed", claims, fresh_answer)
    times = []

    async def run(requests: list[RequestInfo]) -> float:
        start = time.perf_counter()
        for request in requests:
            response = await gate.decide(_constant(request), _where)
            assert response.status.code == 0, response.denied_response
        return time.perf_counter() - start

    for _ in range(rounds):
        requests = [_request(client, alg) for _ in range(calls)]
        times.append(asyncio.run(run(requests)))
    return per_call_us(times, calls)


def _constant(request: RequestInfo) -> Callable[[], RequestInfo]:
    return lambda: request


def _where() -> str:
    return "bench"


def _request(client: DpopClient, alg: str | None) -> RequestInfo:
    if alg is None:
        authorization, headers = f"Bearer {TOKEN}", {}
    else:
        authorization, headers = f"DPoP {TOKEN}", {"dpop": client.proof("GET", URL, TOKEN)}
    return RequestInfo(method="GET", path="/orders?page=1", host="api.example", headers=headers,
                       authorization=(authorization,), context_extensions={}, scheme="https")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (the CI smoke run)")
    parser.add_argument("--baseline", help=argparse.SUPPRESS)  # make bench's other arguments: not for this one
    parser.add_argument("--ab-rounds", help=argparse.SUPPRESS)
    args = parser.parse_args()
    calls, rounds = (200, 3) if args.quick else (2000, 7)
    print(f"DPoP cost, microseconds per request (median of {rounds} rounds of {calls}; one core)")
    print("\n1. ProofVerifier.verify")
    print(f"   {'alg':8}{'key hit':>10}{'key miss':>10}")
    for alg in ALGS:
        misses = calls if alg in ("ES256", "EdDSA") else max(20, calls // 40)  # RSA keys take long to make
        hit = bench_verify(alg, calls, rounds, fresh_keys=False)
        miss = bench_verify(alg, misses, max(1, rounds // 2), fresh_keys=True)
        print(f"   {alg:8}{hit:10.1f}{miss:10.1f}")
    print("\n2. Authorizer.decide (the pipeline; introspection cache hit = the same cached answer)")
    print(f"   {'credential':22}{'cache hit':>10}{'+DPoP':>8}{'cache miss':>12}{'+DPoP':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base_hit = bench_decide(work, None, calls, rounds, fresh_answer=False)
        base_miss = bench_decide(work, None, calls, rounds, fresh_answer=True)
        print(f"   {'Bearer (dpop: off)':22}{base_hit:10.1f}{'':8}{base_miss:12.1f}")
        for alg in ("ES256", "EdDSA", "PS256"):
            hit = bench_decide(work, alg, calls, rounds, fresh_answer=False)
            miss = bench_decide(work, alg, calls, rounds, fresh_answer=True)
            print(f"   {'DPoP ' + alg:22}{hit:10.1f}{hit - base_hit:+8.1f}{miss:12.1f}{miss - base_miss:+8.1f}")


if __name__ == "__main__":
    main()
