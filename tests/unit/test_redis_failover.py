"""A Sentinel failover under load: a primary, a replica and three Sentinels (real ``redis-server`` processes), two
sidecars sharing them, and the primary killed (or switched over with ``SENTINEL FAILOVER``) while lookups and
revocations run.

What must hold, and is counted and printed: no revoked token is ever allowed once its eviction returned, no active
token is refused (Redis failing is never a denial: the L1 and the AS answer), and L2 hits and eviction broadcasts
come back on the new primary without a restart, within a bound (times are from the kill or the command).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from authz.cache.introspection_cache import BroadcastFailed
from authz.models import Introspection
from tests.redis_sidecars import Clock, FakeUpstream, Sidecar, running
from tests.redis_topologies import SENTINEL_SERVICE, SentinelGroup

LOAD_BOUND_SECONDS = 20.0  # the whole run, failover included
RECOVERY_BOUND_SECONDS = 12.0  # from the trigger until L2 hits and broadcasts are back on the new primary


class WallClock(Clock):
    def __init__(self) -> None:
        pass

    @property  # type: ignore[override]
    def now(self) -> float:
        return time.time()


class RevocableAS(FakeUpstream):
    """One AS behind both sidecars: a token is active until ``revoked``."""

    def __init__(self, clock: Clock, sidecar: str, revoked: dict[str, float]) -> None:
        super().__init__(clock, sidecar)
        self.revoked = revoked

    async def introspect(self, token: str) -> Introspection:
        self.calls.append(token)
        return Introspection(active=False) if token in self.revoked else self.active(sub=token[-8:])


@dataclass
class Outcomes:
    lookups: int = 0
    allowed: int = 0
    refused_revoked: int = 0
    wrong_allows: list[str] = field(default_factory=list)  # "<token> on <sidecar> +<ms after the eviction returned>"
    refused_by_redis: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    evictions: int = 0
    evictions_refused: int = 0  # BroadcastFailed: the caller is told to retry
    shared_before: int = 0  # B took A's answer from Redis, before the trigger
    shared_after: int = 0  # ... after the promotion
    promoted_after: float | None = None  # Sentinel names the new primary (seconds after the trigger)
    l2_back_after: float | None = None  # the first L2 hit after the promotion
    broadcast_back_after: float | None = None  # the first eviction call answered OK after the promotion


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    yield from running(lambda: SentinelGroup(tmp_path_factory.mktemp("sentinel")).start())


class Load:
    def __init__(self, group: SentinelGroup) -> None:
        self.group = group
        self.clock = WallClock()
        self.revoked_at_as: dict[str, float] = {}  # token -> when the AS revoked it
        self.evicted_at: dict[str, float] = {}  # token -> when EvictToken returned OK
        redis: dict[str, Any] = {"sentinel": {"addresses": group.addresses, "service_name": SENTINEL_SERVICE},
                                 "timeout_seconds": 0.1}
        self.a = Sidecar(redis, self.clock, "a", RevocableAS(self.clock, "a", self.revoked_at_as))
        self.b = Sidecar(redis, self.clock, "b", RevocableAS(self.clock, "b", self.revoked_at_as))
        self.tokens: list[str] = []
        self.out = Outcomes()
        self.triggered_at: float | None = None
        self.promoted_at: float | None = None
        self.serial = 0
        self.rng = random.Random(15)  # noqa: S311 — not for secrets: which token is revoked or read, and where: the same each run

    async def lookup(self, sidecar: Sidecar, token: str) -> None:
        started = time.monotonic()
        evicted_before = token in self.evicted_at and self.evicted_at[token] <= started
        self.out.lookups += 1
        try:
            answer = await sidecar.lookup(token)
        except Exception as exc:  # counted: any error fails the test
            self.out.errors.append(f"{type(exc).__name__}: {exc}")
            return
        if answer.active:
            self.out.allowed += 1
            if evicted_before:  # OK means every listening sidecar applied it: no allow after, however soon
                after = started - self.evicted_at[token]
                self.out.wrong_allows.append(f"{token[-8:]} on {sidecar.name} +{after * 1000:.1f} ms")
        elif token in self.revoked_at_as:  # revoked at the AS by now
            self.out.refused_revoked += 1
        else:
            self.out.refused_by_redis.append(token[-8:])

    async def share_one(self) -> None:
        """A new token: A asks the AS and writes Redis; B, a moment later, should find it there."""
        self.serial += 1
        token = f"opaque-token-{secrets.token_hex(8)}-{self.serial:08d}"
        await self.lookup(self.a, token)
        await asyncio.sleep(0.03)  # A's write is in the background
        hits = self.b.count("l2_hit")
        await self.lookup(self.b, token)
        self.tokens.append(token)
        if self.b.count("l2_hit") > hits:
            if self.triggered_at is None:
                self.out.shared_before += 1
            elif self.promoted_at is not None:
                self.out.shared_after += 1
                if self.out.l2_back_after is None:
                    self.out.l2_back_after = time.monotonic() - self.triggered_at

    async def revoke_one(self) -> None:
        """Revoke a token both sidecars hold: at the AS, then EvictToken on A, retried while it says to retry."""
        candidates = [t for t in self.tokens if t not in self.revoked_at_as]
        if not candidates:
            return
        token = self.rng.choice(candidates)
        self.revoked_at_as[token] = time.monotonic()
        while True:
            self.out.evictions += 1
            try:
                await self.a.cache.evict_token(token=token)
            except BroadcastFailed:
                self.out.evictions_refused += 1
                await asyncio.sleep(0.05)
                continue
            break
        self.evicted_at[token] = time.monotonic()
        if self.triggered_at is not None and self.promoted_at is not None and self.out.broadcast_back_after is None:
            self.out.broadcast_back_after = self.evicted_at[token] - self.triggered_at

    async def readers(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.tokens:
                token = self.rng.choice(self.tokens[-200:])
                await self.lookup(self.rng.choice((self.a, self.b)), token)
            await asyncio.sleep(0.002)

    def recovered(self) -> bool:
        return self.out.l2_back_after is not None and self.out.broadcast_back_after is not None

    def recovered_after(self) -> float:
        return max(self.out.l2_back_after or 0.0, self.out.broadcast_back_after or 0.0)

    async def run(self, trigger: Callable[[], None], what: str) -> None:
        """Load for 1.5 s, ``trigger()`` the failover, load on until L2 hits and broadcasts are back (+1 s), then
        print the figures and assert what must hold."""
        for sidecar in (self.a, self.b):
            sidecar.cache.listen()
            await asyncio.wait_for(sidecar.tier.subscribed.wait(), 10)
        stop = asyncio.Event()
        readers = [asyncio.ensure_future(self.readers(stop)) for _ in range(4)]
        started = time.monotonic()
        old_primary = self.group.primary_port()
        try:
            while time.monotonic() - started < LOAD_BOUND_SECONDS:
                await self.share_one()
                if self.serial % 5 == 0:
                    await self.revoke_one()
                if self.triggered_at is None and time.monotonic() - started > 1.5:
                    trigger()
                    self.triggered_at = time.monotonic()
                if self.triggered_at is None:
                    continue
                since = time.monotonic() - self.triggered_at
                if self.promoted_at is None and self.group.primary_port() != old_primary:
                    self.promoted_at = time.monotonic()
                    self.out.promoted_after = since
                if since > RECOVERY_BOUND_SECONDS or (self.recovered() and since > self.recovered_after() + 1.0):
                    break
        finally:
            stop.set()
            await asyncio.gather(*readers)
            for sidecar in (self.a, self.b):
                await sidecar.tier.close()
        out = self.out
        nan = float("nan")
        print(f"\nsentinel, {what} under load: :{old_primary} -> :{self.group.primary_port()} promoted after "
              f"{out.promoted_after or nan:.2f} s; broadcasts back after {out.broadcast_back_after or nan:.2f} s, "
              f"L2 hits after {out.l2_back_after or nan:.2f} s; {out.lookups} lookups: {out.allowed} allowed, "
              f"{out.refused_revoked} refused (revoked), {len(out.wrong_allows)} revoked allowed after the eviction "
              f"returned {out.wrong_allows}, {len(out.refused_by_redis)} active refused, {len(out.errors)} errors; "
              f"{out.evictions} eviction calls, {out.evictions_refused} answered retry; answers shared through "
              f"Redis: {out.shared_before} before, {out.shared_after} after")
        assert out.promoted_after is not None, "Sentinel did not promote the replica"
        assert out.wrong_allows == [], f"revoked tokens allowed after their eviction returned: {out.wrong_allows}"
        assert out.refused_by_redis == [] and out.errors == [], "an active token was refused, or a lookup failed"
        assert out.shared_before > 0
        assert out.l2_back_after is not None, "L2 hits did not resume after the failover"
        assert out.broadcast_back_after is not None, "evictions could not be broadcast after the failover"


async def test_primary_killed_under_load_never_allows_a_revoked_token_nor_refuses_an_active_one(
        sentinels: SentinelGroup) -> None:
    sentinels.ensure_replica()
    primary = sentinels.node(sentinels.primary_port())
    await Load(sentinels).run(primary.process.proc.kill, "primary killed -9")  # type: ignore[union-attr]


async def test_sentinel_failover_command_under_load_never_allows_a_revoked_token_nor_refuses_an_active_one(
        sentinels: SentinelGroup) -> None:
    """A switchover: the old primary lives on as a replica (writes to it fail READONLY; Sentinel cuts its clients)."""
    sentinels.ensure_replica()
    await Load(sentinels).run(sentinels.failover, "SENTINEL FAILOVER")
