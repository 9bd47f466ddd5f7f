"""The eviction feed on a real redis-server: an eviction call answers OK only once every listening sidecar heard it;
one between connections makes it answer "retry"; one cut off for longer than its lease forgets its L1 and keeps
answers no longer than the lease until it is back; one that leaves is not waited for.

Sidecar B connects as its own ACL user, so a test can keep B from subscribing again (``-subscribe``) after its
subscription is cut (``CLIENT KILL TYPE pubsub``), for as long as it needs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from authz.cache.introspection_cache import BroadcastFailed
from tests.redis_server import RedisServer
from tests.redis_sidecars import PREFIX, T0, TOKEN, Clock, Sidecar, listening, running, until_async

B_USER, B_PASSWORD = "sidecar-b", "sidecar-b-password-3e1f"
LEASE = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from running(lambda: RedisServer(tmp_path_factory.mktemp("redis")).start())


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=server.port)
    client.flushall()
    client.acl_setuser(B_USER, enabled=True, passwords=[f"+{B_PASSWORD}"], keys=["*"], channels=["*"],
                       commands=["+@all"], reset=True)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def pair(server: RedisServer, admin: redis.Redis) -> AsyncIterator[tuple[Sidecar, Sidecar]]:
    clock = Clock()
    common = {"url": server.url, "timeout_seconds": 0.5, "eviction_lease_seconds": LEASE}
    a = Sidecar(common, clock, "a")
    b = Sidecar({**common, "username": B_USER, "password": B_PASSWORD}, clock, "b")
    await listening(a, b)
    await a.lookup()
    await b.lookup()
    yield a, b
    for sidecar in (a, b):
        await sidecar.tier.close()


def _cut_b_off(admin: redis.Redis) -> None:
    """B may not subscribe again, and every subscription is cut (A's comes back at once)."""
    admin.acl_setuser(B_USER, enabled=True, commands=["-subscribe"])
    admin.client_kill_filter(_type="pubsub")


def _let_b_back(admin: redis.Redis) -> None:
    admin.acl_setuser(B_USER, enabled=True, commands=["+subscribe"])


async def _evict_until_ok(a: Sidecar, seconds: float) -> tuple[int, float]:
    """(refusals, seconds taken) of EvictToken on A, retried like an operator's hook does."""
    started, refusals = time.monotonic(), 0
    while True:
        try:
            await a.cache.evict_token(token=TOKEN)
            return refusals, time.monotonic() - started
        except BroadcastFailed:
            refusals += 1
            assert time.monotonic() - started < seconds, "the eviction never went through"
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("redis_lost_its_data", [False, True])
async def test_an_eviction_waits_for_a_listener_between_connections(
        pair: tuple[Sidecar, Sidecar], admin: redis.Redis, redis_lost_its_data: bool) -> None:
    a, b = pair
    await a.cache.evict_token(token=f"{TOKEN}-other")  # A has read the listener set: it knows B
    _cut_b_off(admin)
    if redis_lost_its_data:
        admin.flushall()  # the set is gone; A still waits for B, from what it read
    await until_async(lambda: not b.tier.subscribed.is_set())
    await asyncio.wait_for(a.tier.subscribed.wait(), 5)
    for _ in range(3):
        with pytest.raises(BroadcastFailed):
            await a.cache.evict_token(token=TOKEN)
    assert len(b.cache.positive) == 1  # B missed it, and nobody was told otherwise
    _let_b_back(admin)
    refusals, took = await _evict_until_ok(a, LEASE)
    assert len(b.cache.positive) == 0  # back, B dropped what it may have missed
    assert (await b.lookup()).active and b.upstream.calls == [TOKEN]  # from the AS: A deleted the L2 copy
    print(f"\nlistener between connections: {3 + refusals} eviction calls answered retry; OK {took:.2f}s after B "
          "was let back")


async def test_a_listener_cut_off_longer_than_its_lease_forgets_and_keeps_answers_a_lease_long(
        pair: tuple[Sidecar, Sidecar], admin: redis.Redis) -> None:
    a, b = pair
    _cut_b_off(admin)
    cut = time.monotonic()
    await until_async(lambda: len(b.cache.positive) == 0, LEASE + 2)  # lapsed: before A stops waiting for it
    lapsed_after = time.monotonic() - cut
    assert lapsed_after < LEASE
    refusals, _ = await _evict_until_ok(a, LEASE + 2)  # once B's lease is over, A no longer waits for it
    ok_after = time.monotonic() - cut
    assert refusals > 0 and lapsed_after < ok_after
    await b.lookup()
    (_, entry), = b.cache.positive.items()
    assert entry.fresh_until - T0 <= LEASE and entry.stale_until == entry.fresh_until  # the sidecars' clock is T0
    _let_b_back(admin)
    await asyncio.wait_for(b.tier.subscribed.wait(), 5)
    await b.lookup(f"{TOKEN}-after")
    longest = max(e.fresh_until for _, e in b.cache.positive.items())
    assert longest - T0 > 100, "back on the feed, answers are kept as long as the TTL rule says"
    print(f"\nlistener cut off (lease {LEASE:.0f}s): its L1 dropped {lapsed_after:.2f}s after the cut; {refusals} "
          f"eviction calls answered retry, then OK {ok_after:.2f}s after the cut")


async def test_a_listener_that_leaves_is_not_waited_for(pair: tuple[Sidecar, Sidecar]) -> None:
    a, b = pair
    await b.tier.close()
    assert await a.cache.evict_token(token=TOKEN) == 1


async def test_listeners_are_registered_under_the_prefix_with_their_lease(
        pair: tuple[Sidecar, Sidecar], admin: redis.Redis) -> None:
    listeners = admin.zrange(f"{PREFIX}:listeners", 0, -1, withscores=True)
    assert len(listeners) == 2
    assert all(0 < score / 1000 - time.time() <= LEASE for _, score in listeners)
    assert 0 < admin.pttl(f"{PREFIX}:listeners") <= 3_600_000
