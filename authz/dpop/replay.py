"""Each DPoP proof is accepted once (RFC 9449 §11.1): its ``jti`` is remembered for as long as the proof could still
be accepted (``max_age + leeway`` from first use: the caller's window, so a reload that widens it is followed),
scoped by the proof's key, so no client can burn another's.

``ReplayCache`` holds them in process: a bounded table in first-use order, whose front expires first. Full of live
entries, it refuses new proofs with a 503 (never forgets a live jti to make room: that would let a replay through).
With ``cache.redis`` configured, each first use is also a ``SET <prefix>:dpop:<hash> 1 NX PX <ttl>`` through
``RedisReplayStore``, so a proof used at one worker or pod is refused at every other. Redis unreachable (a timeout,
an error, a backoff after one) is a 503 by default (``dpop.replay_on_redis_error: deny``) — a replay through
another pod would be a wrong allow — or, with ``local``, the local table alone decides.

Several worker processes (``server.workers``) each hold a table: without ``cache.redis`` to share them a proof would
be accepted once per worker, so such a sidecar checks no proof (``RouteMisconfigured``, 500; the configuration
refuses routes that take DPoP there, ``authz.config.models``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from authz.cache.redis_clients import RedisClients
from authz.config.dpop import DpopConfig
from authz.config.redis import RedisConfig
from authz.errors import InvalidDpopProof, RouteMisconfigured, UpstreamUnavailable

__all__ = ["RedisReplayStore", "ReplayCache", "ReplayCacheFull", "SharedReplayStore", "replay_key", "replay_window"]

log = logging.getLogger("authz.dpop")

_CLOCK_MARGIN = 1.0  # seconds Redis keeps a jti beyond the window, for clocks that differ between pods


class ReplayCacheFull(UpstreamUnavailable):
    reason = "dpop_replay_unavailable"
    description = "DPoP proofs cannot be checked for replay right now"


class SharedReplayStore(Protocol):
    async def first_use(self, key: str, ttl_seconds: float) -> bool:
        """True when ``key`` was not there (now set for ``ttl_seconds``), False when it was; raises when the store
        cannot say."""


def replay_window(config: DpopConfig) -> float:
    """How long a jti must be remembered: a proof is acceptable while ``now - max_age <= iat <= now + leeway``."""
    return config.max_age_seconds + config.leeway_seconds


def replay_key(key_thumbprint: str, jti: str) -> str:
    return hashlib.sha256(f"{key_thumbprint}\n{jti}".encode()).hexdigest()[:40]


class RedisReplayStore:
    """``SET NX PX`` on a redis-py client (standalone, sentinel or cluster), bounded by ``timeout_seconds``; after a
    failure Redis is not asked for ``backoff_seconds`` (each such first use raises at once)."""

    def __init__(self, client: Any, prefix: str, timeout_seconds: float, backoff_seconds: float = 1.0) -> None:
        self._client = client
        self._prefix = f"{prefix}:dpop:"
        self._timeout = timeout_seconds
        self._backoff = backoff_seconds
        self._down_until = 0.0

    async def first_use(self, key: str, ttl_seconds: float) -> bool:
        if time.monotonic() < self._down_until:
            raise ConnectionError("redis skipped after a recent failure")
        try:
            done = await asyncio.wait_for(
                self._client.set(self._prefix + key, b"1", nx=True, px=max(1, int(ttl_seconds * 1000))),
                self._timeout)
        except Exception as exc:
            if time.monotonic() >= self._down_until:
                log.warning("redis SET NX for a DPoP jti failed (%s: %s)", type(exc).__name__, exc)
            self._down_until = time.monotonic() + self._backoff
            raise
        return bool(done)

    async def aclose(self) -> None:
        await self._client.aclose()


class ReplayCache:
    def __init__(self, max_entries: int, shared: SharedReplayStore | None = None, on_shared_error: str = "deny",
                 clock: Callable[[], float] = time.monotonic, unshared_workers: bool = False) -> None:
        self._max = max_entries
        self._shared = shared
        self._unshared_workers = unshared_workers  # one of several workers, no store shared with the others
        self._deny_on_error = on_shared_error == "deny"
        self._clock = clock
        self._seen: set[str] = set()
        self._expiries: deque[tuple[float, str]] = deque()  # (when it may be forgotten, key), in first-use order
        self._quiet_until = 0.0

    @classmethod
    def for_config(cls, config: DpopConfig, redis: RedisConfig | None = None, workers: int = 1) -> ReplayCache:
        """The cache ``dpop`` describes, shared through ``redis`` (``cache.redis``) when it has a topology; one of
        ``workers`` worker processes (``server.workers``)."""
        shared = None
        if redis is not None and redis.enabled:
            shared = RedisReplayStore(RedisClients(redis).commands, redis.key_prefix, redis.timeout_seconds)
        return cls(config.replay_cache_entries, shared, config.replay_on_redis_error,
                   unshared_workers=workers > 1 and shared is None)

    @property
    def shared(self) -> SharedReplayStore | None:
        """The store the workers and pods share (None: this process's table alone)."""
        return self._shared

    def __len__(self) -> int:
        return len(self._seen)

    async def aclose(self) -> None:
        if isinstance(self._shared, RedisReplayStore):
            await self._shared.aclose()

    async def first_use(self, key: str, window_seconds: float) -> None:
        """Record ``key`` for ``window_seconds``; raise ``InvalidDpopProof("replay")`` if it was seen in its window,
        ``ReplayCacheFull`` (503) when it cannot be told, ``RouteMisconfigured`` (500) when the other workers'
        tables cannot be asked. Entries are forgotten in first-use order: one kept with a shorter window than an
        older one waits for it (kept longer, never shorter)."""
        if self._unshared_workers:
            raise RouteMisconfigured("DPoP proofs cannot be checked for replay across server.workers without "
                                     "cache.redis (each worker keeps its own table): set cache.redis or run one worker")
        now = self._clock()
        if key in self._seen:
            raise InvalidDpopProof("replay", "DPoP proof jti was already used")
        self._expire(now)
        if len(self._seen) >= self._max:
            if now >= self._quiet_until:  # one line per window, not one per refused request
                self._quiet_until = now + window_seconds
                log.warning("DPoP replay cache is full of live jti values (%d); refusing proofs until some expire "
                            "(raise dpop.replay_cache_entries)", self._max)
            raise ReplayCacheFull("DPoP replay cache is full", retry_after=1)
        self._remember(key, now + window_seconds)  # before asking Redis: a concurrent use here is a replay
        if self._shared is not None:
            try:
                first = await self._shared.first_use(key, window_seconds + _CLOCK_MARGIN)
            except Exception:
                if self._deny_on_error:
                    raise ReplayCacheFull("DPoP replay store (redis) is unreachable", retry_after=1) from None
                first = True  # replay_on_redis_error: local
            if not first:
                raise InvalidDpopProof("replay", "DPoP proof jti was already used (at another worker or pod)")

    def _remember(self, key: str, until: float) -> None:
        self._seen.add(key)
        self._expiries.append((until, key))

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            self._seen.discard(expiries.popleft()[1])
