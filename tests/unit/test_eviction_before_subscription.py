"""A sidecar serves checks before its eviction feed is subscribed (the app starts its listeners and asks for the
subscription side by side; Redis is never waited for), and an eviction sent meanwhile does not wait for it: it has
no lease yet. What it loaded in that window must not outlive the window, nor reach other sidecars through Redis:
before this, an eviction that answered OK left the token allowed by the new sidecar's L1 for the rest of its TTL
(README: "When it answers OK, no worker of any sidecar allows the token any more"), and an answer whose AS call
straddled the eviction was shared in Redis, where a sidecar started later (no tombstone for that eviction) served
it. On a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from authz.models import Introspection
from tests.redis_server import RedisServer
from tests.redis_sidecars import TOKEN, Clock, FakeUpstream, Sidecar, listening, running, until_async

INACTIVE = Introspection(active=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from running(lambda: RedisServer(tmp_path_factory.mktemp("redis")).start())


@pytest.fixture
async def clean(server: RedisServer) -> AsyncIterator[dict[str, object]]:
    client = redis.Redis(host="127.0.0.1", port=server.port)
    client.flushall()
    client.close()
    made: list[Sidecar] = []
    yield {"url": server.url, "timeout_seconds": 0.5, "made": made}
    for sidecar in made:
        await sidecar.tier.close()


class GatedUpstream(FakeUpstream):
    """An AS whose answers wait for ``gate`` (an introspection in flight for as long as a test needs)."""

    def __init__(self, clock: Clock, sidecar: str) -> None:
        super().__init__(clock, sidecar)
        self.gate = asyncio.Event()
        self.gate.set()

    async def introspect(self, token: str) -> Introspection:
        await self.gate.wait()
        return await super().introspect(token)


def _sidecar(clean: dict[str, object], clock: Clock, name: str, upstream: FakeUpstream | None = None) -> Sidecar:
    sidecar = Sidecar({"url": clean["url"], "timeout_seconds": clean["timeout_seconds"]}, clock, name, upstream)
    made = clean["made"]
    assert isinstance(made, list)
    made.append(sidecar)
    return sidecar


async def test_an_answer_loaded_before_the_feed_was_subscribed_is_dropped_once_it_is(
        clean: dict[str, object]) -> None:
    clock = Clock()
    a = _sidecar(clean, clock, "a")
    await listening(a)
    new = _sidecar(clean, clock, "new")
    assert (await new.lookup()).active  # served while its feed is still being set up
    await a.cache.evict_token(token=TOKEN)  # OK: the new sidecar holds no lease yet
    new.upstream.answer = a.upstream.answer = INACTIVE  # the AS revoked it
    await listening(new)
    assert not (await new.lookup()).active, "the evicted token was still allowed from an L1 filled before the feed"


async def test_an_answer_whose_as_call_straddled_a_missed_eviction_is_not_shared(clean: dict[str, object]) -> None:
    clock = Clock()
    a = _sidecar(clean, clock, "a")
    await listening(a)
    gated = GatedUpstream(clock, "new")
    new = _sidecar(clean, clock, "new", gated)
    gated.gate.clear()
    lookup = asyncio.ensure_future(new.lookup())  # asked the AS before the revocation...
    await until_async(lambda: new.count("miss") == 1)
    assert gated.calls == [] and not lookup.done()
    await a.cache.evict_token(token=TOKEN)  # ... which is evicted everywhere listening (not at the new sidecar)
    new.cache.listen()  # the feed is being set up while the answer lands
    gated.gate.set()
    assert (await lookup).active  # the request that was waiting gets it
    await asyncio.wait_for(new.tier.subscribed.wait(), 5)
    await new.tier.close()  # waits for the writes to Redis it started
    later = _sidecar(clean, clock, "later")  # started after the eviction: no tombstone for it
    later.upstream.answer = INACTIVE
    await listening(later)
    assert not (await later.lookup()).active, "a sidecar started later served the evicted answer from Redis"
    assert later.upstream.calls == [TOKEN]
