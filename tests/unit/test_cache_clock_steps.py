"""The cache's TTLs under a wall clock that steps (NTP, a VM resumed, an operator's ``date -s``): an entry is kept at
most its TTL of elapsed time, whatever the wall clock says, so a clock set back lengthens no TTL (the AS, whose clock
is right, is asked again when it ends); a clock set forward ends entries early (fail closed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from authz.cache import IntrospectionCache
from authz.claims import ClaimsChecker
from authz.config import CacheConfig
from authz.errors import InvalidToken, UpstreamUnavailable
from authz.metrics import Metrics
from authz.models import Answer, Identity, Introspection

if TYPE_CHECKING:
    from authz.token_exchange.exchanger import TokenExchanger

TOKEN = "opaque-token-for-the-clock-tests-0123456789"
HOUR = 3_600.0
T0 = 1_700_000_000.0


class SteppingClock:
    """Both clocks: ``wall`` (``clock``), stepped by ``offset``, and ``ticks`` (monotonic), which only ``elapse``
    moves, with the wall clock."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.elapsed = 0.0

    def __call__(self) -> float:
        return T0 + self.elapsed + self.offset

    def ticks(self) -> float:
        return 500.0 + self.elapsed

    def elapse(self, seconds: float) -> None:
        self.elapsed += seconds


class RevokingAS:
    """Active until ``revoke``, then inactive; ``down``: unreachable."""

    def __init__(self, clock: SteppingClock) -> None:
        self.name, self.cache_identity, self.returns_jwt = "as1", "as1-identity", False
        self.sealing_secret = b"gateway-secret"
        self.exchanger: TokenExchanger | None = None
        self.clock = clock
        self.revoked = self.down = False
        self.calls = 0
        self.exp = clock() + 2 * HOUR

    async def introspect(self, token: str) -> Introspection:
        self.calls += 1
        if self.down:
            raise UpstreamUnavailable("AS as1 is down")
        if self.revoked:
            return Introspection(active=False)
        return Introspection(active=True, claims={"sub": "alice", "scope": "read", "exp": self.exp})

    async def verified(self, answer: Introspection) -> Introspection:
        return answer

    def identity(self, answer: Answer) -> Identity:
        if not answer.introspection.active:
            raise InvalidToken("authorization server says the token is not active")
        return ClaimsChecker(None, (), 0.0, self.clock).identity_of(answer)


async def _allowed(cache: IntrospectionCache, upstream: RevokingAS) -> bool:
    try:
        upstream.identity(await cache.introspect(upstream, TOKEN))
    except InvalidToken:
        return False
    return True


def _cache(clock: SteppingClock, **config: Any) -> IntrospectionCache:
    return IntrospectionCache(CacheConfig(**config), Metrics(), clock=clock, ticks=clock.ticks)


@pytest.mark.parametrize("stale_if_error", [0.0, 60.0])
async def test_h31_wall_clock_set_back_does_not_keep_a_revoked_token_allowed(stale_if_error: float) -> None:
    clock = SteppingClock()
    upstream = RevokingAS(clock)
    cache = _cache(clock, max_ttl_seconds=30.0, stale_if_error_seconds=stale_if_error)
    assert await _allowed(cache, upstream)
    upstream.revoked = True
    clock.offset = -HOUR  # the wall clock steps back an hour: by it, the entry is fresh for an hour more
    clock.elapse(40.0)  # its TTL of elapsed time is over
    assert not await _allowed(cache, upstream)
    assert upstream.calls == 2


async def test_h31_wall_clock_set_back_does_not_stretch_stale_if_error() -> None:
    clock = SteppingClock()
    upstream = RevokingAS(clock)
    cache = _cache(clock, max_ttl_seconds=30.0, stale_if_error_seconds=30.0)
    assert await _allowed(cache, upstream)
    upstream.down = True
    clock.offset = -HOUR
    clock.elapse(40.0)
    assert await _allowed(cache, upstream)  # stale: within TTL + stale_if_error of elapsed time
    clock.elapse(30.0)  # past both
    with pytest.raises(UpstreamUnavailable):
        await _allowed(cache, upstream)


async def test_h31_wall_clock_set_forward_ends_the_entry_early() -> None:
    clock = SteppingClock()
    upstream = RevokingAS(clock)
    cache = _cache(clock, max_ttl_seconds=300.0)
    assert await _allowed(cache, upstream)
    upstream.revoked = True
    clock.offset = 301.0
    assert not await _allowed(cache, upstream)


async def test_h31_an_entry_within_both_clocks_is_a_hit() -> None:
    clock = SteppingClock()
    upstream = RevokingAS(clock)
    cache = _cache(clock, max_ttl_seconds=300.0)
    assert await _allowed(cache, upstream)
    clock.offset = -HOUR
    assert await _allowed(cache, upstream)
    assert upstream.calls == 1
