"""The eviction feed on a real redis-server: an eviction call answers OK only once every listening sidecar applied it
(acknowledged it by id: a subscriber that is no listener, or a listener slow to apply, cannot make it answer early);
one between connections makes it answer "retry"; one cut off for longer than its lease forgets its L1 and keeps
answers no longer than the lease until it is back; one that leaves is not waited for; a message from an older
sidecar (no ack frame) is still applied.

Sidecar B connects as its own ACL user, so a test can keep B from subscribing again (``-subscribe``) after its
subscription is cut (``CLIENT KILL TYPE pubsub``), for as long as it needs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis

from authz.cache.eviction_feed import EvictionFeed
from authz.cache.evictions import Eviction
from authz.cache.introspection_cache import BroadcastFailed
from authz.cache.redis_clients import RedisClients
from authz.config.redis import RedisConfig
from authz.logs import token_id
from tests.redis_server import RedisServer
from tests.redis_sidecars import PREFIX, T0, TOKEN, Clock, Sidecar, listening, running, until_async

B_USER, B_PASSWORD = "sidecar-b", "sidecar-b-password-3e1f"
LEASE = 3.0
QUICK = 0.05  # timeout_seconds of the feeds that must give up fast: a sender waits max(1 s, 20 x it) for acks
CHANNEL = f"{PREFIX}:evictions"


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
    assert await a.cache.evict_token(token=TOKEN) == 2  # its L1 entry and the Redis copy


async def test_listeners_are_registered_under_the_prefix_with_their_lease(
        pair: tuple[Sidecar, Sidecar], admin: redis.Redis) -> None:
    listeners = admin.zrange(f"{PREFIX}:listeners", 0, -1, withscores=True)
    assert len(listeners) == 2
    assert all(0 < score / 1000 - time.time() <= LEASE for _, score in listeners)
    assert 0 < admin.pttl(f"{PREFIX}:listeners") <= 3_600_000


# --- acknowledged: OK means applied, not received --------------------------------------------------------------------


def _feed(server: RedisServer) -> tuple[EvictionFeed, RedisClients]:
    config = RedisConfig(url=server.url, timeout_seconds=QUICK, key_prefix=PREFIX, eviction_lease_seconds=LEASE)
    clients = RedisClients(config)
    return EvictionFeed(clients, PREFIX, LEASE, QUICK, lambda what, exc: None), clients


class ThreadedListener:
    """A listening sidecar's feed on an event loop of its own (a thread), so that its ``received`` can take its time
    (``apply``) without holding up the sender: applied later than Redis wrote the message to its connection."""

    def __init__(self, server: RedisServer, apply: Callable[[], None]) -> None:
        self.applied: list[tuple[bytes, float]] = []  # (payload, time.monotonic() once applied)
        self._server, self._apply = server, apply
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    def _received(self, payload: bytes) -> None:
        self._apply()  # blocks this thread's loop only
        self.applied.append((payload, time.monotonic()))

    async def _run(self) -> None:
        feed, clients = _feed(self._server)
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        feed.listen(self._received, lambda: None, lambda: None)
        await asyncio.wait_for(feed.subscribed.wait(), 5)
        self._ready.set()
        await self._stop.wait()
        await feed.close()
        await clients.aclose()

    def __enter__(self) -> ThreadedListener:
        self._thread.start()
        assert self._ready.wait(5), "the threaded listener did not subscribe"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
async def sender(server: RedisServer, admin: redis.Redis) -> AsyncIterator[EvictionFeed]:
    """A sidecar's feed, listening too (as every sidecar does), that gives up waiting for acks after 1 s."""
    feed, clients = _feed(server)
    feed.listen(lambda payload: None, lambda: None, lambda: None)
    await asyncio.wait_for(feed.subscribed.wait(), 5)
    yield feed
    await feed.close()
    await clients.aclose()


async def test_a_foreign_subscriber_cannot_stand_in_for_a_listener_that_never_applies(
        server: RedisServer, admin: redis.Redis, sender: EvictionFeed, caplog: pytest.LogCaptureFixture) -> None:
    """An operator's ``SUBSCRIBE`` makes PUBLISH count as many receivers as there are leases, one of them held by no
    process (gone without leaving): counting receivers would answer OK; acks by id answer "retry"."""
    admin.zadd(f"{PREFIX}:listeners", {"ghost-listener": (time.time() + LEASE) * 1000})
    foreign = admin.pubsub()
    foreign.subscribe(CHANNEL)
    assert foreign.get_message(timeout=5)["type"] == "subscribe"
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, "authz.cache.redis"):
            assert await sender.publish(b"evict-me") is False
        took = time.monotonic() - started
        assert foreign.get_message(timeout=5)["data"].endswith(b"evict-me")  # it did receive it: 2 of 2 counted
    finally:
        foreign.close()
    assert 1.0 <= took < 3.0
    assert "applied by 1 of 2 listening processes" in caplog.text
    assert admin.keys(f"{PREFIX}:acks:*") == [], "the sender deletes the acks it waited for"


async def test_a_listener_that_has_not_applied_it_yet_makes_the_eviction_answer_retry(
        server: RedisServer, sender: EvictionFeed) -> None:
    release = threading.Event()
    with ThreadedListener(server, lambda: release.wait(10)) as paused:
        assert await sender.publish(b"evict-me") is False  # received by both, applied by one within the bound
        assert paused.applied == []
        release.set()
        await until_async(lambda: paused.applied != [])
    assert paused.applied[0][0] == b"evict-me"


async def test_an_eviction_answers_ok_only_after_every_listener_applied_it(
        server: RedisServer, sender: EvictionFeed) -> None:
    with ThreadedListener(server, lambda: time.sleep(0.2)) as slow, ThreadedListener(server, lambda: None) as quick:
        assert await sender.publish(b"evict-me") is True
        returned = time.monotonic()
        for listener in (slow, quick):
            (payload, applied_at), = listener.applied  # ran already, once, with the payload as it was sent
            assert payload == b"evict-me" and applied_at <= returned


async def test_a_message_from_an_older_sidecar_without_the_ack_frame_is_still_applied(
        pair: tuple[Sidecar, Sidecar], admin: redis.Redis) -> None:
    a, b = pair
    older = Eviction(token_ids=(token_id(TOKEN),)).message("an-older-sidecar")
    assert admin.publish(CHANNEL, older) == 2
    await until_async(lambda: len(a.cache.positive) == 0 and len(b.cache.positive) == 0)
    assert admin.keys(f"{PREFIX}:acks:*") == [], "nothing to acknowledge: the older sender waits for no ack"
