"""The shared L2 tier on Redis (redis-py asyncio), for many sidecars sharing one AS budget.

Values are sealed (``authz.cache.sealing``): AES-GCM under a key derived from the token, the AS identity and the
gateway's credential at the AS, with the Redis key name as associated data, under ``<prefix>:a:<lookup key>`` with
the L1 TTL rule's TTL. Whoever can write Redis can neither read an answer nor write or move one that we accept; the
cache also refuses a claims-only answer for a dialect that always returns a JWT, and re-verifies every JWT it reads
(``Upstream.verified``). ``<prefix>:s:<sha256(sub)>`` is a set of a subject's lookup keys, for eviction by subject.
Evictions are broadcast on the pub/sub channel ``<prefix>:evictions`` (``authz.cache.evictions``: hashes only, never
a token); every sidecar subscribes, resubscribes with backoff after a failure, and then drops its L1 (what it missed
is unknown).

Redis is an optimisation, never a dependency: every call is bounded by ``timeout_seconds``; an error, a timeout or a
value that does not open counts as a miss; after a failure Redis is skipped for ``backoff_seconds`` so a down Redis
costs nothing on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from authz.cache.entries import subject_hash
from authz.cache.sealing import Sealed, ValueKey
from authz.metrics import Metrics
from authz.models import Introspection

__all__ = ["RedisTier"]

log = logging.getLogger("authz.cache.redis")

_FIRST_RETRY, _LAST_RETRY = 0.1, 5.0  # seconds between attempts to resubscribe to evictions


class RedisTier:
    def __init__(self, url: str, timeout_seconds: float, prefix: str, metrics: Metrics,
                 backoff_seconds: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._url = url
        self.channel = f"{prefix}:evictions"
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set while the eviction subscription is live (tests wait on it)
        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout_seconds,
                                              socket_connect_timeout=timeout_seconds, retry_on_timeout=False)
        self._timeout = timeout_seconds
        self._prefix = prefix
        self._errors = metrics.cache.labels("l2_error")
        self._backoff = backoff_seconds
        self._down_until = 0.0
        self._pending: set[asyncio.Task[None]] = set()

    def _answer_key(self, key: str) -> str:
        return f"{self._prefix}:a:{key}"

    def _subject_key(self, subject: str) -> str:
        return f"{self._prefix}:s:{subject_hash(subject)}"

    def _failed(self, what: str, exc: BaseException) -> None:
        self._errors.inc()
        if time.monotonic() >= self._down_until:
            log.warning("redis %s failed (%s: %s); carrying on without L2 for %.1fs", what, type(exc).__name__, exc,
                        self._backoff)
        self._down_until = time.monotonic() + self._backoff

    async def _call(self, what: str, coro: Any) -> Any:
        if time.monotonic() < self._down_until:
            coro.close()
            return None
        try:
            return await asyncio.wait_for(coro, self._timeout)
        except Exception as exc:  # any Redis failure is a miss, never a denial
            self._failed(what, exc)
            return None

    async def get(self, key: str, value_key: ValueKey) -> Sealed | None:
        """The answer sealed under ``key``, its max-age the writer's remaining TTL; None for a miss."""
        name = self._answer_key(key)
        raw = await self._call("GET", self._redis.get(name))
        if raw is None:
            return None
        sealed = value_key.open(name, raw)
        if sealed is None:
            self._errors.inc()
            log.warning("redis value under %s… does not open with this token (forged, moved or old); a miss",
                        key[:12])
            return None
        remaining = sealed.until - self._clock()
        if remaining <= 0:
            return None
        # the remaining lifetime travels as max-age, so the reading sidecar's TTL ends where the writer's did
        return replace(sealed, answer=replace(sealed.answer, max_age=int(remaining)))

    def put_soon(self, key: str, value_key: ValueKey, answer: Introspection, ttl_seconds: float,
                 asked_at: float) -> None:
        """Write in the background: the request that caused it does not wait for Redis."""
        task = asyncio.ensure_future(self._put(key, value_key, answer, ttl_seconds, asked_at))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _put(self, key: str, value_key: ValueKey, answer: Introspection, ttl_seconds: float,
                   asked_at: float) -> None:
        name = self._answer_key(key)
        value = value_key.seal(name, answer, self._clock() + ttl_seconds, asked_at)
        ms = max(1, int(ttl_seconds * 1000))
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(name, value, px=ms)
        sub = answer.claims.get("sub")
        if isinstance(sub, str):
            pipe.sadd(self._subject_key(sub), key)
            # the set lives as long as its longest-lived member: set a TTL if it has none, else only extend it
            pipe.pexpire(self._subject_key(sub), ms, nx=True)
            pipe.pexpire(self._subject_key(sub), ms, gt=True)
        await self._call("SET", pipe.execute())

    async def delete(self, keys: Iterable[str]) -> int:
        names = [self._answer_key(k) for k in keys]
        return int(await self._call("DEL", self._redis.delete(*names)) or 0) if names else 0

    async def delete_subject(self, subject: str) -> int:
        members = await self._call("SMEMBERS", self._redis.smembers(self._subject_key(subject))) or set()
        keys = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        evicted = await self.delete(keys)
        await self._call("DEL", self._redis.delete(self._subject_key(subject)))
        return evicted

    async def purge(self) -> int:
        evicted = 0
        async def scan() -> int:
            count = 0
            async for name in self._redis.scan_iter(match=f"{self._prefix}:*", count=500):
                count += int(await self._redis.delete(name))
            return count
        try:
            evicted = await asyncio.wait_for(scan(), max(1.0, self._timeout * 100))
        except Exception as exc:
            self._failed("purge", exc)
        return evicted

    async def publish(self, message: bytes) -> bool:
        """Send an eviction to every sidecar subscribed to the channel; False if Redis could not be reached."""
        try:
            await asyncio.wait_for(self._redis.publish(self.channel, message), max(1.0, self._timeout * 20))
        except Exception as exc:  # not skipped while backing off: an eviction is worth a try
            self._failed("PUBLISH", exc)
            return False
        return True

    def listen(self, received: Callable[[bytes], None], resynced: Callable[[], None]) -> None:
        """Subscribe to the eviction channel in the background: ``received(message)`` for each message;
        ``resynced()`` when the subscription is back after a gap (messages sent meanwhile are lost)."""
        if self._listener is None:
            self._listener = asyncio.ensure_future(self._listen(received, resynced))

    async def _listen(self, received: Callable[[bytes], None], resynced: Callable[[], None]) -> None:
        delay, lost = _FIRST_RETRY, False
        # its own connection: a subscription blocks on reads that the GET/SET timeout would cut short
        client = aioredis.Redis.from_url(self._url, socket_connect_timeout=max(1.0, self._timeout * 20),
                                         socket_keepalive=True, health_check_interval=5)
        try:
            while True:
                try:
                    async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                        await pubsub.subscribe(self.channel)
                        if lost:
                            log.warning("redis eviction subscription is back")
                            resynced()
                        self.subscribed.set()
                        delay, lost = _FIRST_RETRY, False
                        while True:
                            message = await pubsub.get_message(timeout=5.0)
                            if message is not None and message.get("type") == "message":
                                received(message["data"])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis down: checks carry on; retry with backoff
                    if not lost:
                        log.warning("redis eviction subscription lost (%s: %s); retrying", type(exc).__name__, exc)
                    self.subscribed.clear()
                    lost = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _LAST_RETRY)
        finally:
            self.subscribed.clear()
            await client.aclose()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._pending:
            await asyncio.wait(self._pending, timeout=self._timeout * 4)
        await self._redis.aclose()
