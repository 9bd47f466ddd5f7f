"""The shared L2 tier on Redis (redis-py asyncio), for many sidecars sharing one AS budget.

Values are sealed (``authz.cache.sealing``): AES-GCM under a key derived from the token, the AS identity and the
gateway's credential at the AS, with the Redis key name as associated data, under ``<prefix>:a:<lookup key>`` with
the L1 TTL rule's TTL. Whoever can write Redis can neither read an answer nor write or move one that we accept; the
cache also refuses a claims-only answer for a dialect that always returns a JWT, and re-verifies every JWT it reads
(``Upstream.verified``). ``<prefix>:s:<sha256(sub)>`` is a set of a subject's lookup keys, for eviction by subject.
Evictions are broadcast on the channel ``<prefix>:evictions`` by ``authz.cache.eviction_feed`` (which also knows
whether every listening sidecar applied one: each acknowledges it). The topology (one Redis, Sentinel, Cluster), TLS
and the ACL user are ``authz.cache.redis_clients``'.

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

from authz.cache.entries import subject_hash
from authz.cache.eviction_feed import EvictionFeed
from authz.cache.redis_clients import RedisClients
from authz.cache.sealing import Sealed, ValueKey
from authz.config.redis import RedisConfig
from authz.metrics import Metrics
from authz.models import Introspection

__all__ = ["RedisTier"]

log = logging.getLogger("authz.cache.redis")


class RedisTier:
    def __init__(self, config: RedisConfig, metrics: Metrics, backoff_seconds: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        """``config``: ``cache.redis`` with a topology set (standalone, sentinel or cluster)."""
        self._clock = clock
        self._clients = RedisClients(config)
        self._redis = self._clients.commands
        self._timeout = config.timeout_seconds
        self._prefix = config.key_prefix
        self._errors = metrics.cache.labels("l2_error")
        self._backoff = backoff_seconds
        self._down_until = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self.feed = EvictionFeed(self._clients, config.key_prefix, config.eviction_lease_seconds,
                                 config.timeout_seconds, self._failed, clock)
        self.lease_seconds = config.eviction_lease_seconds
        self.subscribed = self.feed.subscribed  # tests wait on it
        self.publish = self.feed.publish
        self.listen = self.feed.listen

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
        """Delete every answer and subject set (not the eviction feed's listener set)."""
        evicted = 0
        async def scan() -> int:
            count = 0
            for kind in ("a", "s"):
                async for name in self._redis.scan_iter(match=f"{self._prefix}:{kind}:*", count=500):
                    count += int(await self._redis.delete(name))
            return count
        try:
            evicted = await asyncio.wait_for(scan(), max(1.0, self._timeout * 100))
        except Exception as exc:
            self._failed("purge", exc)
        return evicted

    async def close(self) -> None:
        await self.feed.close()
        if self._pending:
            await asyncio.wait(self._pending, timeout=self._timeout * 4)
        await self._clients.aclose()
