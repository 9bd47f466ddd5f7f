"""IntrospectionCache (L1): TTL rule, negative cache, bounds, single-flight, stale-if-error, eviction, and the
pipeline still checking scopes on a cache hit. The AS is a fake upstream; time is an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.cache import IntrospectionCache
from authz.claims import ClaimsChecker
from authz.config import CacheConfig, load_config
from authz.errors import InsufficientScope, InvalidToken, UpstreamMisbehaved, UpstreamUnavailable
from authz.logs import token_id
from authz.metrics import Metrics
from authz.models import Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer

T0 = 1_700_000_000.0
TOKEN = "opaque-SECRET-token-0123456789abcdefghij"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


GATEWAY_SECRET = b"gateway-client-secret"


class FakeUpstream:
    """An authorization server as the cache sees it. ``answer`` is what ``introspect`` returns (or raises);
    with ``gate`` set, each call waits on it first."""

    def __init__(self, clock: Clock, name: str = "as1", cache_identity: str = "https://as1.example/i\0gw") -> None:
        self.name = name
        self.cache_identity = cache_identity
        self.returns_jwt = False
        self.sealing_secret = GATEWAY_SECRET
        self.clock = clock
        self.calls: list[str] = []
        self.completed = 0
        self.cancelled = 0
        self.verified_calls: list[Introspection] = []
        self.gate: asyncio.Event | None = None
        self.answer: Introspection | Exception = self.active()

    def active(self, sub: str = "alice", scope: str = "read", exp: float | None = None,
               max_age: int | None = None) -> Introspection:
        claims: dict[str, Any] = {"sub": sub, "scope": scope, "client_id": "web",
                                  "exp": self.clock.now + 3_600 if exp is None else exp}
        return Introspection(active=True, claims=claims, max_age=max_age)

    def returns(self, answer: Introspection | Exception) -> None:
        self.answer = answer

    async def introspect(self, token: str) -> Introspection:
        self.calls.append(token)
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.completed += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def verified(self, answer: Introspection) -> Introspection:
        self.verified_calls.append(answer)
        return answer

    def identity(self, answer: Answer) -> Identity:
        if not answer.introspection.active:
            raise InvalidToken("authorization server says the token is not active")
        return ClaimsChecker(None, (), 0.0, self.clock).identity_of(answer)


def _cache(clock: Clock, metrics: Metrics | None = None, **config: Any) -> IntrospectionCache:
    settings: dict[str, Any] = {"max_ttl_seconds": 30.0, "expiry_skew_seconds": 5.0, "negative_ttl_seconds": 5.0,
                                "stale_if_error_seconds": 60.0}
    settings.update(config)
    return IntrospectionCache(CacheConfig(**settings), metrics or Metrics(), clock=clock)


async def _ask(cache: IntrospectionCache, upstream: FakeUpstream, token: str) -> Introspection:
    """The AS answer the cache hands back (inside the ``Answer`` the pipeline reads)."""
    return (await cache.introspect(upstream, token)).introspection


def _lookups(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("phantom_authz_cache_lookups_total", {"result": result}) or 0.0


def _joins(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("phantom_authz_singleflight_joins_total") or 0.0


async def _until(condition: Any, rounds: int = 200) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


# --- TTL -------------------------------------------------------------------------------------------------------


async def test_hit_within_ttl_reaches_the_upstream_once() -> None:
    clock, metrics = Clock(), Metrics()
    cache = _cache(clock, metrics)
    fake = FakeUpstream(clock)
    answers = []
    for _ in range(5):
        answers.append(await _ask(cache, fake, TOKEN))
        clock.now += 5  # still within the 30 s TTL at the fifth lookup (t0 + 20)
    assert fake.calls == [TOKEN]
    assert all(a == fake.answer for a in answers)
    assert _lookups(metrics, "miss") == 1
    assert _lookups(metrics, "hit") == 4


async def test_wrapped_authority_is_cached_the_same_way() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    authority = cache.wrap(fake)
    assert authority.name == "as1"
    first = await authority.answer(TOKEN)
    second = await authority.answer(TOKEN)
    assert first is second and first.introspection == fake.answer
    assert len(fake.calls) == 1
    assert authority.identity(first).subject == "alice"


async def test_miss_after_ttl_goes_back_to_the_upstream() -> None:
    clock, metrics = Clock(), Metrics()
    cache = _cache(clock, metrics)
    fake = FakeUpstream(clock)
    await _ask(cache, fake, TOKEN)
    clock.now = T0 + 29.9
    await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 1
    clock.now = T0 + 30.1
    fake.returns(fake.active(scope="read write"))
    again = await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 2
    assert again.claims["scope"] == "read write"
    assert _lookups(metrics, "miss") == 2


async def test_never_served_past_exp_minus_skew() -> None:
    clock = Clock()
    cache = _cache(clock, max_ttl_seconds=300.0)
    fake = FakeUpstream(clock)
    fake.returns(fake.active(exp=T0 + 60))
    await _ask(cache, fake, TOKEN)
    clock.now = T0 + 54.9
    await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 1
    clock.now = T0 + 55.1  # exp - skew passed although the configured max (300 s) has not
    await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 2


async def test_answer_already_within_skew_of_exp_is_not_cached() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    fake.returns(fake.active(exp=T0 + 3))
    for _ in range(3):
        await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 3
    assert len(cache.positive) == 0


async def test_cache_control_max_age_shortens_the_ttl() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    fake.returns(fake.active(max_age=10))
    await _ask(cache, fake, TOKEN)
    clock.now = T0 + 9.9
    await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 1
    clock.now = T0 + 10.1  # well before the configured 30 s
    await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 2


async def test_max_age_zero_is_not_cached() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    fake.returns(fake.active(max_age=0))
    for _ in range(3):
        answer = await _ask(cache, fake, TOKEN)
        assert answer.active
    assert len(fake.calls) == 3
    assert len(cache.positive) == 0


# --- keys ------------------------------------------------------------------------------------------------------


async def test_cache_never_holds_the_raw_token() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    good = [f"{TOKEN}-good-{i}" for i in range(3)]
    junk = [f"{TOKEN}-junk-{i}" for i in range(3)]
    for token in good:
        await _ask(cache, fake, token)
    fake.returns(Introspection(active=False))
    for token in junk:
        await _ask(cache, fake, token)
    assert len(cache.positive) == 3
    assert len(cache.negative) == 3
    stored = [(k, repr(v)) for k, v in cache.positive.items()] + [(k, repr(v)) for k, v in cache.negative.items()]
    for key, value in stored:
        assert "SECRET" not in key
        assert "SECRET" not in value
    # the entries do carry the short id the logs show, so an operator can find them
    assert {v.token_id for _, v in cache.positive.items()} == {token_id(t) for t in good}


async def test_same_token_at_two_authorization_servers_is_cached_separately() -> None:
    clock = Clock()
    cache = _cache(clock)
    one = FakeUpstream(clock, "one", "https://one.example/i")
    two = FakeUpstream(clock, "two", "https://two.example/i")
    two.returns(Introspection(active=False))
    assert (await _ask(cache, one, TOKEN)).active
    assert not (await _ask(cache, two, TOKEN)).active
    assert (await _ask(cache, one, TOKEN)).active
    assert not (await _ask(cache, two, TOKEN)).active
    assert len(one.calls) == len(two.calls) == 1


# --- negative cache ------------------------------------------------------------------------------------------------


async def test_inactive_answer_is_cached_for_the_negative_ttl() -> None:
    clock, metrics = Clock(), Metrics()
    cache = _cache(clock, metrics, negative_ttl_seconds=5.0)
    fake = FakeUpstream(clock)
    fake.returns(Introspection(active=False))
    assert not (await _ask(cache, fake, TOKEN)).active
    clock.now = T0 + 4.9
    assert not (await _ask(cache, fake, TOKEN)).active
    assert len(fake.calls) == 1
    assert _lookups(metrics, "negative_hit") == 1
    clock.now = T0 + 5.1
    assert not (await _ask(cache, fake, TOKEN)).active
    assert len(fake.calls) == 2


async def test_negative_ttl_zero_does_not_cache_inactive_answers() -> None:
    clock = Clock()
    cache = _cache(clock, negative_ttl_seconds=0.0)
    fake = FakeUpstream(clock)
    fake.returns(Introspection(active=False))
    for _ in range(3):
        await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 3
    assert len(cache.negative) == 0


async def test_token_becoming_active_replaces_its_negative_entry() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    fake.returns(Introspection(active=False))
    await _ask(cache, fake, TOKEN)
    clock.now = T0 + 6
    fake.returns(fake.active())
    assert (await _ask(cache, fake, TOKEN)).active
    assert len(cache.negative) == 0
    assert (await _ask(cache, fake, TOKEN)).active
    assert len(fake.calls) == 2


async def test_junk_token_flood_is_bounded_and_reaches_the_upstream_once_per_token() -> None:
    clock = Clock()
    cache = _cache(clock, negative_max_entries=100)
    fake = FakeUpstream(clock)
    fake.returns(Introspection(active=False))
    junk = [f"junk-{i:04d}" for i in range(1_000)]
    for token in junk:
        assert not (await _ask(cache, fake, token)).active
        assert not (await _ask(cache, fake, token)).active  # repeated at once: negative hit
        assert len(cache.negative) <= 100
    assert len(fake.calls) == 1_000
    assert sorted(fake.calls) == junk
    assert len(cache.positive) == 0
    # the most recent 100 are still remembered; the first ones were pushed out, not kept
    for token in junk[-100:]:
        await _ask(cache, fake, token)
    assert len(fake.calls) == 1_000
    await _ask(cache, fake, junk[0])
    assert len(fake.calls) == 1_001


# --- positive bounds ------------------------------------------------------------------------------------------------


async def test_positive_entries_respect_max_entries() -> None:
    clock = Clock()
    cache = _cache(clock, max_entries=50)
    fake = FakeUpstream(clock)
    tokens = [f"good-{i:04d}" for i in range(500)]
    for token in tokens:
        assert (await _ask(cache, fake, token)).active
        assert len(cache.positive) <= 50
    assert len(cache.positive) == 50
    for token in tokens[-50:]:
        await _ask(cache, fake, token)
    assert len(fake.calls) == 500
    await _ask(cache, fake, tokens[0])
    assert len(fake.calls) == 501


async def test_positive_entries_respect_max_bytes() -> None:
    clock = Clock()
    cache = _cache(clock, max_bytes=10_000)
    fake = FakeUpstream(clock)
    fake.returns(Introspection(active=True, jwt="h.p." + "s" * 1_500, claims={"sub": "alice", "scope": "read"}))
    for i in range(50):
        await _ask(cache, fake, f"good-{i}")
        assert cache.positive.bytes <= 10_000
    assert 0 < len(cache.positive) < 10


# --- single-flight ---------------------------------------------------------------------------------------------------


async def test_concurrent_misses_share_one_upstream_call() -> None:
    clock, metrics = Clock(), Metrics()
    cache = _cache(clock, metrics)
    fake = FakeUpstream(clock)
    fake.gate = asyncio.Event()
    tasks = [asyncio.ensure_future(_ask(cache, fake, TOKEN)) for _ in range(100)]
    await _until(lambda: _joins(metrics) == 99 and len(fake.calls) == 1)
    assert not any(t.done() for t in tasks)
    fake.gate.set()
    answers = await asyncio.gather(*tasks)
    assert len(fake.calls) == 1
    assert all(a is answers[0] for a in answers)
    assert answers[0] == fake.answer
    assert _joins(metrics) == 99
    assert _lookups(metrics, "miss") == 1


async def test_upstream_failure_reaches_every_waiter_and_is_not_cached() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    fake.gate = asyncio.Event()
    fake.returns(UpstreamUnavailable("as down", retry_after=7))
    tasks = [asyncio.ensure_future(_ask(cache, fake, TOKEN)) for _ in range(10)]
    await _until(lambda: len(fake.calls) == 1)
    await asyncio.sleep(0)
    fake.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert len(fake.calls) == 1
    assert all(isinstance(r, UpstreamUnavailable) for r in results)
    assert all(r.retry_after == 7 for r in results if isinstance(r, UpstreamUnavailable))
    fake.gate = None
    fake.returns(fake.active())
    assert (await _ask(cache, fake, TOKEN)).active
    assert len(fake.calls) == 2


async def test_cancelling_one_waiter_does_not_cancel_the_others_or_the_call() -> None:
    clock, metrics = Clock(), Metrics()
    cache = _cache(clock, metrics)
    fake = FakeUpstream(clock)
    fake.gate = asyncio.Event()
    tasks = [asyncio.ensure_future(_ask(cache, fake, TOKEN)) for _ in range(5)]
    await _until(lambda: _joins(metrics) == 4 and len(fake.calls) == 1)
    tasks[0].cancel()
    await asyncio.sleep(0)
    assert tasks[0].cancelled()
    fake.gate.set()
    answers = await asyncio.gather(*tasks[1:])
    assert all(a == fake.answer for a in answers)
    assert fake.cancelled == 0
    assert fake.completed == 1
    assert len(fake.calls) == 1


async def test_upstream_call_completes_and_is_cached_even_if_every_waiter_is_cancelled() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    fake.gate = asyncio.Event()
    task = asyncio.ensure_future(_ask(cache, fake, TOKEN))
    await _until(lambda: len(fake.calls) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake.gate.set()
    await _until(lambda: fake.completed == 1)
    await asyncio.sleep(0)
    assert fake.cancelled == 0
    assert (await _ask(cache, fake, TOKEN)).active
    assert len(fake.calls) == 1


# --- stale-if-error ---------------------------------------------------------------------------------------------------


async def test_stale_answer_is_served_while_the_upstream_is_unavailable() -> None:
    clock, metrics = Clock(), Metrics()
    cache = _cache(clock, metrics, max_ttl_seconds=30.0, stale_if_error_seconds=60.0)
    fake = FakeUpstream(clock)
    first = await _ask(cache, fake, TOKEN)
    clock.now = T0 + 40
    fake.returns(UpstreamUnavailable("as down"))
    assert await _ask(cache, fake, TOKEN) == first
    assert len(fake.calls) == 2  # the AS was asked first: stale only because it failed
    assert _lookups(metrics, "stale") == 1
    outcome = metrics.registry.get_sample_value("phantom_authz_as_calls_total",
                                                {"authorization_server": "as1", "outcome": "unavailable"})
    assert outcome == 1
    clock.now = T0 + 89.9
    assert await _ask(cache, fake, TOKEN) == first
    assert _lookups(metrics, "stale") == 2


async def test_beyond_the_stale_window_the_error_propagates() -> None:
    clock = Clock()
    cache = _cache(clock, max_ttl_seconds=30.0, stale_if_error_seconds=60.0)
    fake = FakeUpstream(clock)
    await _ask(cache, fake, TOKEN)
    clock.now = T0 + 90.1
    fake.returns(UpstreamUnavailable("as down"))
    with pytest.raises(UpstreamUnavailable):
        await _ask(cache, fake, TOKEN)


async def test_stale_if_error_off_propagates_the_error() -> None:
    clock = Clock()
    cache = _cache(clock, stale_if_error_seconds=0.0)
    fake = FakeUpstream(clock)
    await _ask(cache, fake, TOKEN)
    clock.now = T0 + 31
    fake.returns(UpstreamUnavailable("as down"))
    with pytest.raises(UpstreamUnavailable):
        await _ask(cache, fake, TOKEN)


async def test_stale_never_served_past_exp_minus_skew() -> None:
    clock = Clock()
    cache = _cache(clock, max_ttl_seconds=30.0, stale_if_error_seconds=60.0, expiry_skew_seconds=5.0)
    fake = FakeUpstream(clock)
    fake.returns(fake.active(exp=T0 + 50))
    first = await _ask(cache, fake, TOKEN)
    fake.returns(UpstreamUnavailable("as down"))
    clock.now = T0 + 44.9
    assert await _ask(cache, fake, TOKEN) == first
    clock.now = T0 + 45.1  # inside the 60 s stale window, but past exp - skew
    with pytest.raises(UpstreamUnavailable):
        await _ask(cache, fake, TOKEN)


async def test_misbehaving_upstream_is_not_masked_by_stale() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    await _ask(cache, fake, TOKEN)
    clock.now = T0 + 40
    fake.returns(UpstreamMisbehaved("rejected our client credentials"))
    with pytest.raises(UpstreamMisbehaved):
        await _ask(cache, fake, TOKEN)


async def test_inactive_answer_is_not_masked_by_stale() -> None:
    clock, metrics = Clock(), Metrics()
    cache = _cache(clock, metrics)
    fake = FakeUpstream(clock)
    await _ask(cache, fake, TOKEN)
    clock.now = T0 + 40
    fake.returns(Introspection(active=False))  # revoked
    assert not (await _ask(cache, fake, TOKEN)).active
    assert len(cache.positive) == 0
    clock.now = T0 + 50  # negative entry expired; now the AS is down: nothing stale to fall back on
    fake.returns(UpstreamUnavailable("as down"))
    with pytest.raises(UpstreamUnavailable):
        await _ask(cache, fake, TOKEN)
    assert _lookups(metrics, "stale") == 0


# --- the pipeline above the cache ------------------------------------------------------------------------------------


def _authorizer(tmp_path: Path, authority: Any) -> Authorizer:
    doc = {
        "authorization_servers": {
            "as1": {"dialect": "rfc7662", "introspection_endpoint": "https://as1.example/introspect",
                    "client_id": "gw", "client_secret_env": "AS1_SECRET"},
        },
        "default_authorization_server": "as1",
        "routes": {"required_scopes": ["read"]},
    }
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return Authorizer(load_config(path, {"AS1_SECRET": "s3cret"}), {"as1": authority})


def _request(extensions: Mapping[str, str]) -> RequestInfo:
    return RequestInfo(method="GET", path="/orders", host="api.example", headers={},
                       authorization=(f"Bearer {TOKEN}",), context_extensions=dict(extensions))


async def test_denies_when_scope_missing_on_cache_hit(tmp_path: Path) -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    fake.returns(fake.active(scope="read"))
    authorizer = _authorizer(tmp_path, cache.wrap(fake))
    allow = await authorizer.check(_request({"required_scopes": "read"}))
    assert allow.identity is not None
    assert allow.identity.subject == "alice"
    with pytest.raises(InsufficientScope) as info:
        await authorizer.check(_request({"required_scopes": "admin"}))
    assert info.value.missing == ("admin",)
    assert info.value.status == 403
    assert len(cache.positive) == 1  # the refusal came from the cached answer
    await authorizer.check(_request({"required_scopes": "read"}))
    assert fake.calls == [TOKEN]


async def test_cached_inactive_answer_is_still_refused_by_the_pipeline(tmp_path: Path) -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    fake.returns(Introspection(active=False))
    authorizer = _authorizer(tmp_path, cache.wrap(fake))
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await authorizer.check(_request({}))
    assert len(fake.calls) == 1


# --- eviction --------------------------------------------------------------------------------------------------------


async def test_evict_by_token_makes_the_next_lookup_ask_the_upstream() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    cache.wrap(fake)
    await _ask(cache, fake, TOKEN)
    await _ask(cache, fake, "other-token")
    assert await cache.evict_token(token=TOKEN) == 1
    assert await cache.evict_token(token=TOKEN) == 0
    await _ask(cache, fake, TOKEN)
    await _ask(cache, fake, "other-token")
    assert fake.calls == [TOKEN, "other-token", TOKEN]


async def test_evict_by_token_reaches_every_authorization_server() -> None:
    clock = Clock()
    cache = _cache(clock)
    one = FakeUpstream(clock, "one", "https://one.example/i")
    two = FakeUpstream(clock, "two", "https://two.example/i")
    cache.wrap(one)
    cache.wrap(two)
    await _ask(cache, one, TOKEN)
    await _ask(cache, two, TOKEN)
    assert await cache.evict_token(token=TOKEN) == 2
    await _ask(cache, one, TOKEN)
    await _ask(cache, two, TOKEN)
    assert len(one.calls) == len(two.calls) == 2


async def test_evict_by_logged_token_id() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    cache.wrap(fake)
    await _ask(cache, fake, TOKEN)
    await _ask(cache, fake, "other-token")
    assert await cache.evict_token(short_id=token_id(TOKEN)) == 1
    await _ask(cache, fake, TOKEN)
    await _ask(cache, fake, "other-token")
    assert fake.calls == [TOKEN, "other-token", TOKEN]


async def test_evict_by_token_id_removes_a_negative_entry() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    cache.wrap(fake)
    fake.returns(Introspection(active=False))
    await _ask(cache, fake, TOKEN)
    assert await cache.evict_token(short_id=token_id(TOKEN)) == 1
    fake.returns(fake.active())  # e.g. the operator fixed the client; the token is good now
    assert (await _ask(cache, fake, TOKEN)).active
    assert len(fake.calls) == 2


async def test_evict_subject_removes_every_token_of_that_subject_only() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    cache.wrap(fake)
    fake.returns(fake.active(sub="alice"))
    await _ask(cache, fake, "alice-1")
    await _ask(cache, fake, "alice-2")
    fake.returns(fake.active(sub="bob"))
    await _ask(cache, fake, "bob-1")
    assert await cache.evict_subject("alice") == 2
    assert await cache.evict_subject("nobody") == 0
    await _ask(cache, fake, "alice-1")
    await _ask(cache, fake, "alice-2")
    await _ask(cache, fake, "bob-1")
    assert fake.calls == ["alice-1", "alice-2", "bob-1", "alice-1", "alice-2"]


async def test_purge_removes_positive_and_negative_entries() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    cache.wrap(fake)
    await _ask(cache, fake, "good")
    fake.returns(Introspection(active=False))
    await _ask(cache, fake, "junk")
    assert await cache.purge() == 2
    assert len(cache.positive) == len(cache.negative) == 0
    assert cache.positive.bytes == 0
    await _ask(cache, fake, "good")
    await _ask(cache, fake, "junk")
    assert fake.calls == ["good", "junk", "good", "junk"]


# --- item 13: an answer asked before an eviction is never cached after it --------------------------------------------


async def _in_flight(cache: IntrospectionCache, fake: FakeUpstream, token: str = TOKEN) -> asyncio.Task[Introspection]:
    """A lookup whose AS call has started and waits on the (closed) gate."""
    fake.gate = asyncio.Event()
    calls = len(fake.calls)
    task = asyncio.ensure_future(_ask(cache, fake, token))
    await _until(lambda: len(fake.calls) > calls)
    return task


@pytest.mark.parametrize("how", ["token", "token_id", "subject", "purge"])
async def test_item13_answer_in_flight_at_eviction_is_not_cached(how: str) -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    cache.wrap(fake)
    loading = await _in_flight(cache, fake)
    evict = {"token": lambda: cache.evict_token(token=TOKEN), "token_id": lambda: cache.evict_token(
        short_id=token_id(TOKEN)), "subject": lambda: cache.evict_subject("alice"), "purge": cache.purge}[how]
    await evict()
    assert fake.gate is not None
    fake.gate.set()
    assert (await loading).active  # asked before the eviction: its waiter has it, once
    assert len(cache.positive) == 0
    fake.gate = None
    fake.returns(Introspection(active=False))  # revoked at the AS meanwhile
    assert not (await _ask(cache, fake, TOKEN)).active
    assert len(fake.calls) == 2


async def test_item13_a_request_after_eviction_does_not_join_the_load_started_before() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    cache.wrap(fake)
    before = await _in_flight(cache, fake)
    await cache.evict_token(token=TOKEN)
    after = asyncio.ensure_future(_ask(cache, fake, TOKEN))
    await _until(lambda: len(fake.calls) == 2)  # its own AS call, asked after the eviction
    assert fake.gate is not None
    fake.gate.set()
    await asyncio.gather(before, after)
    assert len(cache.positive) == 1  # the load started after the eviction is cached
    fake.gate = None
    await _ask(cache, fake, TOKEN)
    assert len(fake.calls) == 2


async def test_item13_eviction_of_another_token_spoils_nothing() -> None:
    clock = Clock()
    cache = _cache(clock)
    fake = FakeUpstream(clock)
    cache.wrap(fake)
    loading = await _in_flight(cache, fake)
    await cache.evict_token(token="some-other-token")
    await cache.evict_subject("bob")
    assert fake.gate is not None
    fake.gate.set()
    await loading
    assert len(cache.positive) == 1
