"""Sidecars for the L2 tier's tests: an ``IntrospectionCache`` with a ``RedisTier`` in front of a fake AS, as many
as a test wants on one Redis (standalone, Sentinel or Cluster: any ``cache.redis`` section)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import pytest

from authz.cache import IntrospectionCache, RedisTier
from authz.config import CacheConfig
from authz.metrics import Metrics
from authz.models import Answer, Identity, Introspection
from tests.redis_server import redis_available


class _Stoppable(Protocol):
    def stop(self) -> object: ...


Started = TypeVar("Started", bound=_Stoppable)

__all__ = ["AS_IDENTITY", "GATEWAY_SECRET", "PREFIX", "T0", "TOKEN", "Clock", "FakeUpstream", "Sidecar", "listening",
           "require_redis_server", "running", "until_async"]

T0 = 1_700_000_000.0
PREFIX = "phantom-authz-test"
TOKEN = "opaque-SECRET-token-0123456789abcdefghij"
AS_IDENTITY = "https://as.example/introspect\0gw\0rfc7662"
GATEWAY_SECRET = b"the-gateway-client-secret"  # the sidecars' credential at the AS: a Redis writer lacks it


def running(start: Callable[[], Started]) -> Iterator[Started]:
    """For a fixture: skip without redis-server; else ``start()``, hand it out, and stop it afterwards."""
    require_redis_server()
    started = start()
    try:
        yield started
    finally:
        started.stop()


def require_redis_server() -> None:
    if redis_available():
        return
    reason = "redis-server (Debian package redis-server) is not installed; the L2 tests need a real one"
    if os.environ.get("CI_REQUIRE_INTEROP") == "1":
        pytest.fail(f"CI_REQUIRE_INTEROP=1 but {reason}")
    pytest.skip(reason)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeUpstream:
    """The AS as the cache sees it; the same AS (same cache identity) behind every sidecar. ``verified`` marks what
    it verified, so a test can tell an answer that went through it."""

    def __init__(self, clock: Clock, sidecar: str) -> None:
        self.name = "as1"
        self.cache_identity = AS_IDENTITY
        self.returns_jwt = False  # an rfc7662 AS without jwt_field: claims only
        self.sealing_secret = GATEWAY_SECRET
        self.clock = clock
        self.sidecar = sidecar
        self.calls: list[str] = []
        self.verified_calls: list[Introspection] = []
        self.verify_error: Exception | None = None
        self.answer = self.active()

    def active(self, sub: str = "alice", exp: float | None = None, max_age: int | None = None) -> Introspection:
        claims = {"sub": sub, "scope": "read", "exp": self.clock.now + 3_600 if exp is None else exp}
        return Introspection(active=True, jwt=None, claims=claims, max_age=max_age)

    async def introspect(self, token: str) -> Introspection:
        self.calls.append(token)
        return self.answer

    async def verified(self, answer: Introspection) -> Introspection:
        self.verified_calls.append(answer)
        if self.verify_error is not None:
            raise self.verify_error
        if not answer.active:
            return answer
        return Introspection(active=True, jwt=answer.jwt, claims={**answer.claims, "verified_by": self.sidecar})

    def identity(self, answer: Answer) -> Identity:
        raise NotImplementedError


class Sidecar:
    """``redis``: the ``cache.redis`` section (``key_prefix`` defaults to ``PREFIX``); ``config``: more ``cache``
    keys; ``upstream``: the AS (default: a ``FakeUpstream`` answering every token alike)."""

    def __init__(self, redis: dict[str, Any], clock: Clock, name: str, upstream: FakeUpstream | None = None,
                 **config: Any) -> None:
        settings: dict[str, Any] = {"max_ttl_seconds": 300.0, "expiry_skew_seconds": 5.0,
                                    "negative_ttl_seconds": 5.0, "redis": {"key_prefix": PREFIX, **redis}}
        settings.update(config)
        self.metrics = Metrics()
        cache_config = CacheConfig(**settings)
        self.tier = RedisTier(cache_config.redis, self.metrics)
        self.cache = IntrospectionCache(cache_config, self.metrics, self.tier, clock)
        self.upstream = upstream or FakeUpstream(clock, name)
        self.cache.wrap(self.upstream)

    async def lookup(self, token: str = TOKEN) -> Introspection:
        return (await self.cache.introspect(self.upstream, token)).introspection

    def count(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value("phantom_authz_cache_lookups_total", {"result": result})
        return value or 0.0




async def listening(*sidecars: Sidecar) -> None:
    """Start each sidecar's eviction feed and wait until it is subscribed."""
    for sidecar in sidecars:
        sidecar.cache.listen()
        await asyncio.wait_for(sidecar.tier.subscribed.wait(), 5)


async def until_async(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` (the event loop keeps running between polls) until it holds, or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)
