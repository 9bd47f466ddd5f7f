"""Each DPoP proof once (authz.dpop.replay): the bounded local table, and SET NX through a real redis-server shared by
two "pods"; and the stateless nonces (authz.dpop.nonce) two pods agree on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from authz.dpop.nonce import NonceSource
from authz.dpop.replay import RedisReplayStore, ReplayCache, ReplayCacheFull, replay_key
from authz.errors import InvalidDpopProof
from devtools.processes import free_port
from tests.redis_server import RedisServer, redis_available

SECRET = "a-nonce-secret-of-at-least-32-characters"
W = 65.0  # the replay window: max_age + leeway


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def refused_as_replay(cache: ReplayCache, key: str) -> str:
    with pytest.raises(InvalidDpopProof) as info:
        await cache.first_use(key, W)
    assert info.value.status == 401 and info.value.oauth_error == "invalid_dpop_proof"
    return info.value.reason


async def test_a_jti_is_accepted_once_per_key() -> None:
    cache = ReplayCache(100)
    await cache.first_use(replay_key("thumb-a", "jti-1"), W)
    assert await refused_as_replay(cache, replay_key("thumb-a", "jti-1")) == "dpop_replay"
    await cache.first_use(replay_key("thumb-b", "jti-1"), W)  # another client's key: its own jti space


async def test_a_jti_is_forgotten_only_after_the_window() -> None:
    clock = Clock()
    cache = ReplayCache(100, clock=clock)
    await cache.first_use("k1", W)
    clock.now += 64.9
    assert await refused_as_replay(cache, "k1") == "dpop_replay"
    clock.now += 0.2
    await cache.first_use("k2", W)  # expires what is due
    assert len(cache) == 1
    await cache.first_use("k1", W)  # the proof that used it can no longer be accepted (its iat is too old)


async def test_each_use_is_kept_for_the_window_it_came_with() -> None:
    """A reload that widens max_age: proofs accepted from then on are remembered for the wider window."""
    clock = Clock()
    cache = ReplayCache(100, clock=clock)
    await cache.first_use("narrow", 10.0)
    await cache.first_use("wide", 100.0)
    clock.now += 50
    await cache.first_use("x", 10.0)
    assert await refused_as_replay(cache, "wide") == "dpop_replay"
    await cache.first_use("narrow", 10.0)


async def test_full_of_live_jtis_refuses_rather_than_forgets() -> None:
    clock = Clock()
    cache = ReplayCache(3, clock=clock)
    for key in ("a", "b", "c"):
        await cache.first_use(key, W)
    with pytest.raises(ReplayCacheFull) as info:
        await cache.first_use("d", W)
    assert info.value.status == 503 and info.value.retry_after == 1 and info.value.reason == "dpop_replay_unavailable"
    assert await refused_as_replay(cache, "a") == "dpop_replay"  # nothing was forgotten to make room
    clock.now += 66
    await cache.first_use("d", W)


# --- shared through a real redis-server ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not redis_available():
        if os.environ.get("CI_REQUIRE_INTEROP") == "1":
            pytest.fail("CI_REQUIRE_INTEROP=1 but redis-server is not installed")
        pytest.skip("redis-server (Debian package redis-server) is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[aioredis.Redis]]:
    made = [aioredis.Redis.from_url(redis_server.url) for _ in range(3)]
    await made[0].flushdb()
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


async def test_a_proof_used_at_one_pod_is_refused_at_another(clients: list[aioredis.Redis]) -> None:
    pod_a = ReplayCache(100, RedisReplayStore(clients[0], "pa", 1.0))
    pod_b = ReplayCache(100, RedisReplayStore(clients[1], "pa", 1.0))
    await pod_a.first_use("k1", W)
    assert await refused_as_replay(pod_b, "k1") == "dpop_replay"
    assert await refused_as_replay(pod_b, "k1") == "dpop_replay"  # now known locally too
    ttl = await clients[2].pttl("pa:dpop:k1")
    assert 65_000 < ttl <= 66_000  # the window plus a second for clocks that differ between pods


async def test_concurrent_uses_of_one_proof_at_two_pods_let_exactly_one_through(
        clients: list[aioredis.Redis]) -> None:
    pods = [ReplayCache(100, RedisReplayStore(c, "pa", 1.0)) for c in clients[:2]]
    results = await asyncio.gather(*(pod.first_use(f"race-{i // 2}", W) for i in range(40) for pod in pods),
                                   return_exceptions=True)
    accepted = [r for r in results if r is None]
    assert len(accepted) == 20, results  # one per key, whatever the interleaving
    assert all(isinstance(r, InvalidDpopProof) for r in results if r is not None)


async def test_redis_unreachable_denies_by_default_and_falls_back_when_told() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        deny = ReplayCache(100, RedisReplayStore(dead, "pa", 0.5))
        with pytest.raises(ReplayCacheFull) as info:
            await deny.first_use("k1", W)
        assert info.value.status == 503
        with pytest.raises(ReplayCacheFull):  # skipped while backing off: at once, still a 503
            await deny.first_use("k2", W)
        local = ReplayCache(100, RedisReplayStore(dead, "pa", 0.5), on_shared_error="local")
        await local.first_use("k1", W)
        assert await refused_as_replay(local, "k1") == "dpop_replay"  # the local table still decides
    finally:
        await dead.aclose()


# --- nonces ----------------------------------------------------------------------------------------------------------

def test_two_pods_with_one_secret_issue_and_accept_the_same_nonce() -> None:
    clock = Clock()
    pod_a, pod_b = NonceSource(SECRET, 300, clock), NonceSource(SECRET, 300, clock)
    nonce = pod_a.current()
    assert pod_b.current() == nonce and pod_b.accepts(nonce)
    clock.now += 300  # the next window: still accepted, a new one issued
    assert pod_b.accepts(nonce) and pod_a.current() != nonce
    clock.now += 300
    assert not pod_a.accepts(nonce) and not pod_b.accepts(nonce)


def test_nonces_of_another_secret_or_altered_are_refused() -> None:
    clock = Clock()
    ours, theirs = NonceSource(SECRET, 300, clock), NonceSource(SECRET + "x", 300, clock)
    nonce = ours.current()
    assert not ours.accepts(theirs.current())
    flipped = nonce[:5] + ("A" if nonce[5] != "A" else "B") + nonce[6:]
    assert not ours.accepts(flipped)
    for junk in ("", "x" * 32, "%" * 32, nonce + "=", "é" * 32, nonce[:-1]):
        assert not ours.accepts(junk)


def test_a_future_window_is_refused() -> None:
    clock = Clock()
    source = NonceSource(SECRET, 300, clock)
    clock.now += 600
    later = source.current()
    clock.now -= 600
    assert not source.accepts(later)
