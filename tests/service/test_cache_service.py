"""The cache as a user sees it: AS calls saved, revocation through the admin API, stale-if-error, a shared Redis.

phantom-authz runs in process (``tests/inprocess.py``), except in the tests of SIGTERM and of worker processes."""

from __future__ import annotations

import json
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis as redis_client
from envoy.service.auth.v3 import external_auth_pb2_grpc

from authz.adminpb import admin_pb2, admin_pb2_grpc
from authz.logs import token_id
from devtools.processes import free_port
from tests.harness import Stack, http_request, wait_until
from tests.redis_server import RedisServer, cached_answers, listening_sidecars, redis_available
from tests.service.test_grpc_service import call, check_request, target


def introspections(s: Stack) -> int:
    return int(s.as_stats()["introspections"])


def admin(s: Stack) -> Any:
    channel = grpc.insecure_channel(f"127.0.0.1:{s.admin_port}")
    return channel, admin_pb2_grpc.CacheAdminStub(channel)


def test_cached_token_reaches_the_as_once_and_scopes_run_every_time(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz(in_process=True)
    token = s.token("read")
    for _ in range(20):
        assert call(target(s), check_request(f"Bearer {token}", required_scopes="read")).status.code == 0
    refused = call(target(s), check_request(f"Bearer {token}", required_scopes="admin"))
    assert refused.denied_response.status.code == 403
    assert introspections(s) == 1


def test_concurrent_checks_of_a_fresh_token_share_one_as_call(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as("--latency-ms", "200")
        s.start_authz(in_process=True)
    token = s.token("read")
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: call(target(s), check_request(f"Bearer {token}")), range(50)))
    assert all(r.status.code == 0 for r in results)
    assert introspections(s) == 1


def test_junk_tokens_are_negatively_cached(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz(in_process=True)
    for _ in range(5):
        assert call(target(s), check_request("Bearer junk-token-1")).denied_response.status.code == 401
    assert introspections(s) == 1


def test_revocation_at_the_dev_as_evicts_at_once_through_the_admin_api(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz(in_process=True)
    token = s.token("read")
    assert call(target(s), check_request(f"Bearer {token}")).status.code == 0
    http_request("POST", s.as_port, "/oauth/v2/oauth-revoke", {
        "Authorization": "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=",
        "Content-Type": "application/x-www-form-urlencoded"}, f"token={token}")
    assert call(target(s), check_request(f"Bearer {token}")).denied_response.status.code == 401


def test_admin_api_evicts_by_logged_token_id_and_reports_stats(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz(in_process=True)
    token = s.token("read")
    for _ in range(3):
        call(target(s), check_request(f"Bearer {token}"))
    channel, stub = admin(s)
    with channel:
        stats = stub.Stats(admin_pb2.StatsRequest(), timeout=5)
        assert (stats.entries, stats.hits, stats.misses) == (1, 2, 1)
        evicted = stub.EvictToken(admin_pb2.EvictTokenRequest(token_id=token_id(token)), timeout=5)
        assert evicted.evicted == 1
    call(target(s), check_request(f"Bearer {token}"))
    assert introspections(s) == 2


def test_stale_answer_is_served_while_the_as_is_down(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz(cache={"max_ttl_seconds": 0.3, "stale_if_error_seconds": 30}, in_process=True)
    cached, other = s.token("read"), s.token("read")
    assert call(target(s), check_request(f"Bearer {cached}")).status.code == 0
    assert s.dev_as is not None
    s.dev_as.stop()

    def served_stale() -> bool:
        """Allowed (a fresh hit until the 0.3 s TTL has passed, then stale: the AS is down); served stale yet?"""
        assert call(target(s), check_request(f"Bearer {cached}")).status.code == 0
        metrics = http_request("GET", s.metrics_port, "/metrics").body.decode()
        return 'phantom_authz_cache_lookups_total{result="stale"} 1.0' in metrics

    wait_until(served_stale, "the cached answer is served stale once its TTL has passed")
    assert call(target(s), check_request(f"Bearer {other}")).denied_response.status.code == 503


def test_metrics_endpoint_counts_checks_cache_and_as_calls(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz(in_process=True)
    token = s.token("read")
    for _ in range(3):
        call(target(s), check_request(f"Bearer {token}"))
    call(target(s), check_request(None))
    text = http_request("GET", s.metrics_port, "/metrics").body.decode()
    assert 'phantom_authz_checks_total{outcome="allow",reason="ok",status="200"} 3.0' in text
    assert 'phantom_authz_checks_total{outcome="deny",reason="missing_credential",status="401"} 1.0' in text
    assert 'phantom_authz_cache_lookups_total{result="hit"} 2.0' in text
    assert 'phantom_authz_as_calls_total{authorization_server="dev",outcome="active"} 1.0' in text
    assert "phantom_authz_as_call_seconds_bucket" in text


@pytest.mark.skipif(not redis_available(), reason="redis-server (Debian package) is not installed")
def test_two_sidecars_share_one_as_budget_through_redis(stack_factory: type[Stack], tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        a, b = stack_factory(), stack_factory()
        a.start_dev_as()
        b.as_port = a.as_port
        a.start_authz(cache={"redis": {"url": redis.url}}, in_process=True)
        b.start_authz(cache={"redis": {"url": redis.url}}, in_process=True)
        shared = redis_client.Redis.from_url(redis.url)
        wait_until(lambda: listening_sidecars(shared) == 2, "both sidecars subscribe to evictions", timeout=10)
        token = a.token("read")
        assert call(target(a), check_request(f"Bearer {token}")).status.code == 0
        # A writes to Redis in the background, after answering
        wait_until(lambda: cached_answers(shared), "sidecar A writes its answer to Redis", timeout=5)
        shared.close()
        assert call(target(b), check_request(f"Bearer {token}")).status.code == 0
        assert introspections(a) == 1, "sidecar B must take A's answer from Redis, not ask the AS again"
        # Redis going away costs nothing but the shared budget: B carries on with L1 and the AS
        redis.stop()
        fresh = a.token("read")
        assert call(target(b), check_request(f"Bearer {fresh}")).status.code == 0
    finally:
        redis.stop()


def test_sigterm_still_drains_with_cache_and_admin_servers(stack_factory: type[Stack]) -> None:
    """SIGTERM: the ``authz serve`` process."""
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz()
    assert s.authz is not None
    s.authz.signal(signal.SIGTERM)
    assert s.authz.wait(10) == 0


@pytest.mark.skipif(not redis_available(), reason="redis-server (Debian package) is not installed")
def test_item03_a_redis_writer_cannot_mint_an_identity(stack_factory: type[Stack], tmp_path: Path) -> None:
    """Through the real service (phantom dialect) and a real redis-server: what a Redis writer puts under a token's
    key (the old JSON format with claims only, or a victim's valid answer copied there) never lets that token in."""
    redis = RedisServer(tmp_path).start()
    try:
        a, b = stack_factory(), stack_factory()
        a.start_dev_as()
        b.as_port = a.as_port
        a.start_authz(cache={"redis": {"url": redis.url}}, in_process=True)
        shared = redis_client.Redis.from_url(redis.url)
        wait_until(lambda: listening_sidecars(shared) == 1, "sidecar A subscribes to evictions", timeout=10)
        victim = a.token("read admin")

        def written_key(token: str) -> bytes:
            """The Redis key sidecar A wrote for ``token`` (found by watching Redis, whatever the key scheme)."""
            before = set(shared.scan_iter(match="*:a:*"))
            call(target(a), check_request(f"Bearer {token}"))
            wait_until(lambda: set(shared.scan_iter(match="*:a:*")) - before, "sidecar A writes its answer to Redis",
                       timeout=5)
            (name,) = set(shared.scan_iter(match="*:a:*")) - before
            return name

        victim_key = written_key(victim)
        hostile = {
            "old-json-claims-only": json.dumps({"v": 1, "active": True, "jwt": None, "until": time.time() + 600,
                                                "claims": {"sub": "eve", "scope": "read admin",
                                                           "iss": a.authz_config()["authorization_servers"]["dev"][
                                                               "issuer"], "aud": "api.example.com",
                                                           "exp": int(time.time()) + 600}}).encode(),
            "victim-value-moved": shared.get(victim_key),
        }
        attackers = {shape: f"attacker-{shape}-token-0123456789" for shape in hostile}
        names = {shape: written_key(token) for shape, token in attackers.items()}  # inactive: negative answers
        for shape, value in hostile.items():
            shared.set(names[shape], value, px=60_000)
        b.start_authz(cache={"redis": {"url": redis.url}}, in_process=True)  # B has nothing in L1: it reads Redis
        for shape, token in attackers.items():
            refused = call(target(b), check_request(f"Bearer {token}", required_scopes="read"))
            assert refused.denied_response.status.code == 401, shape
        assert call(target(b), check_request(f"Bearer {victim}")).status.code == 0
        shared.close()
    finally:
        redis.stop()


# --- item 13: a revocation reaches every worker of every sidecar --------------------------------------------------


def _fresh_check(s: Stack, token: str) -> Any:
    """A Check on a new connection (own subchannel pool), so the kernel may hand it to any worker."""
    with grpc.insecure_channel(target(s), options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return external_auth_pb2_grpc.AuthorizationStub(channel).Check(check_request(f"Bearer {token}"), timeout=10)


def _served(s: Stack, workers: int) -> list[int]:
    """How many lookups each worker's cache has answered so far."""
    return [w.hits + w.misses + w.negative_hits for w in s.worker_cache_stats(workers)]


def _attributed_check(s: Stack, workers: int, token: str) -> tuple[int, Any]:
    """``(worker index, CheckResponse)`` of one fresh check, the worker found by whose counters moved."""
    before = _served(s, workers)
    answer = _fresh_check(s, token)
    after = _served(s, workers)
    (worker,) = [i for i in range(workers) if after[i] != before[i]]
    return worker, answer


def _warm(stacks: list[Stack], workers: int, token: str) -> None:
    """Check until every worker of every stack holds ``token``'s answer in its L1."""
    for _ in range(400):
        if all(w.entries >= 1 for s in stacks for w in s.worker_cache_stats(workers)):
            return
        for s in stacks:
            assert _fresh_check(s, token).status.code == 0
    raise AssertionError("some worker never received a check")


def _revoke_at_the_as(s: Stack, token: str) -> None:
    http_request("POST", s.as_port, "/oauth/v2/oauth-revoke", {
        "Authorization": "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=",
        "Content-Type": "application/x-www-form-urlencoded"}, f"token={token}")


def _start_sidecar(s: Stack, workers: int, **overrides: Any) -> None:
    hook = s.admin_port  # the dev AS's revocation hook calls this port: it must not reach a worker (we evict)
    s.start_workers({"listen": f"127.0.0.1:{free_port()}", "workers": workers}, **overrides)
    assert hook not in range(s.admin_port, s.admin_port + workers), "free-port collision; run again"


def test_item13_evict_token_through_one_worker_evicts_in_every_worker(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    s.start_dev_as()
    _start_sidecar(s, 2)
    token = s.token("read")
    _warm([s], 2, token)
    _revoke_at_the_as(s, token)
    with grpc.insecure_channel(f"127.0.0.1:{s.admin_port + 1}") as channel:
        evicted = admin_pb2_grpc.CacheAdminStub(channel).EvictToken(admin_pb2.EvictTokenRequest(token=token),
                                                                    timeout=10)
    assert evicted.evicted == 2  # one entry in each worker
    assert [w.entries for w in s.worker_cache_stats(2)] == [0, 0]
    seen = set()
    for _ in range(100):
        worker, answer = _attributed_check(s, 2, token)
        assert answer.denied_response.status.code == 401, f"worker {worker} still allows a revoked token"
        seen.add(worker)
        if seen == {0, 1}:
            break
    assert seen == {0, 1}


@pytest.mark.skipif(not redis_available(), reason="redis-server (Debian package) is not installed")
def test_item13_revocation_bound_across_two_sidecars_of_two_workers(stack_factory: type[Stack],
                                                                    tmp_path: Path) -> None:
    """Two sidecars (two service processes, two workers each) share one redis-server. From ``EvictToken`` returning
    on one worker of sidecar A until a check on every worker of both sidecars is refused: A's workers refuse at
    once (the eviction was relayed to them before the call returned); B's learn it through Redis pub/sub, and the
    call answered OK only once each of them acknowledged it applied it, so none may allow after it returned. The
    figure (median, max over the trials) is printed; it is this test's own polling (a fresh connection and the
    Stats calls that find which worker answered) until it has seen every worker refuse."""
    workers, trials = 2, 8
    redis = RedisServer(tmp_path).start()
    try:
        a, b = stack_factory(), stack_factory()
        a.start_dev_as()
        b.as_port = a.as_port
        cache = {"redis": {"url": redis.url}}
        _start_sidecar(a, workers, cache=cache)
        _start_sidecar(b, workers, cache=cache)
        shared = redis_client.Redis.from_url(redis.url)
        wait_until(lambda: listening_sidecars(shared) == 2 * workers,
                   "every worker subscribes to evictions", timeout=20)
        shared.close()
        bounds = []
        for _ in range(trials):
            token = a.token("read")
            _warm([a, b], workers, token)
            _revoke_at_the_as(a, token)
            with grpc.insecure_channel(f"127.0.0.1:{a.admin_port}") as channel:
                admin_pb2_grpc.CacheAdminStub(channel).EvictToken(admin_pb2.EvictTokenRequest(token=token),
                                                                  timeout=10)
            returned = time.perf_counter()
            refused: dict[tuple[str, int], float] = {}
            while len(refused) < 2 * workers:
                assert time.perf_counter() - returned < 30, f"still allowed after 30 s: refused only {refused}"
                for name, s in (("a", a), ("b", b)):
                    worker, answer = _attributed_check(s, workers, token)
                    assert answer.status.code != 0, f"sidecar {name}'s worker {worker} allowed after EvictToken " \
                                                    f"returned (+{(time.perf_counter() - returned) * 1000:.1f} ms)"
                    assert answer.denied_response.status.code == 401
                    refused.setdefault((name, worker), time.perf_counter() - returned)
            bounds.append(max(refused.values()))
        bounds.sort()
        median = statistics.median(bounds)
        print(f"\nrevocation bound, 2 sidecars x {workers} workers, {trials} trials: median {median * 1000:.1f} ms, "
              f"max {bounds[-1] * 1000:.1f} ms (all: {', '.join(f'{x * 1000:.1f}' for x in bounds)} ms)")
        # the figure is reported, not asserted (speed belongs in make bench): a loaded CI machine must not fail here;
        # the behaviour asserted is that no worker of either sidecar allows once the call returned
    finally:
        redis.stop()
