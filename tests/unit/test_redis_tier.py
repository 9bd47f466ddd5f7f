"""The shared L2 tier on a real redis-server: two "sidecars" (IntrospectionCache instances) share one Redis.

Redis is an optimisation, never a dependency: down, hanging or holding garbage, lookups still work through the AS.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from authz.cache import cache_key
from authz.cache.introspection_cache import BroadcastFailed
from authz.cache.sealing import ValueKey
from authz.config import AuthorizationServerConfig, Secret
from authz.errors import InvalidToken
from authz.introspection import Authority
from authz.logs import token_id
from authz.models import Introspection
from devtools.processes import free_port
from tests.redis_server import RedisServer
from tests.redis_sidecars import (
    AS_IDENTITY,
    GATEWAY_SECRET,
    PREFIX,
    T0,
    TOKEN,
    Clock,
    Sidecar,
    listening,
    require_redis_server,
    running,
    until_async,
)

SidecarFactory = Callable[..., Sidecar]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from running(lambda: RedisServer(tmp_path_factory.mktemp("redis")).start())


@pytest.fixture
async def shared(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def sidecars(request: pytest.FixtureRequest) -> AsyncIterator[SidecarFactory]:
    """Sidecars on the shared redis-server, or on ``url`` (tests of a Redis that is down need no redis-server)."""
    made: list[Sidecar] = []

    def make(name: str, clock: Clock | None = None, url: str | None = None, timeout: float = 1.0,
             **config: Any) -> Sidecar:
        if url is None:
            url = request.getfixturevalue("redis_server").url
        sidecar = Sidecar({"url": url, "timeout_seconds": timeout}, clock or Clock(), name, **config)
        made.append(sidecar)
        return sidecar

    yield make
    for sidecar in made:
        await sidecar.tier.close()


def _answer_key(token: str = TOKEN, identity: str = AS_IDENTITY) -> str:
    return f"{PREFIX}:a:{cache_key(identity, token)}"


def _sealed(answer: Introspection, token: str = TOKEN, name: str | None = None, identity: str = AS_IDENTITY,
            until: float | None = None, asked_at: float = T0, secret: bytes = GATEWAY_SECRET) -> bytes:
    """A value as a sidecar that holds ``token`` would write it under ``name`` (default: the token's own key);
    ``until`` is on the tier's clock (the wall clock), ``asked_at`` on the cache's (the test clock)."""
    until = time.time() + 600 if until is None else until
    key = ValueKey(identity, token, secret=secret)
    return key.seal(name or _answer_key(token, identity), answer, until, asked_at)


async def _written(client: aioredis.Redis, *tokens: str) -> None:
    """Wait (up to ~1 s) for the background writes of these tokens' answers to land."""
    names = [_answer_key(t) for t in tokens or (TOKEN,)]
    for _ in range(100):
        if await client.exists(*names) == len(names):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the answers were not written to Redis within 1 s")


async def _all(client: aioredis.Redis) -> dict[bytes, Any]:
    """Every key under our prefix with its value (string or set members)."""
    out: dict[bytes, Any] = {}
    async for name in client.scan_iter(match=f"{PREFIX}:*"):
        kind = await client.type(name)
        out[name] = await client.get(name) if kind == b"string" else await client.smembers(name)
    return out


# --- sharing ---------------------------------------------------------------------------------------------------


async def test_second_sidecar_is_served_from_redis_without_asking_the_as(
        shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    first = await a.lookup()
    assert len(a.upstream.calls) == 1
    await _written(shared)
    from_b = await b.lookup()
    assert b.upstream.calls == []
    assert b.count("l2_hit") == 1
    # B verified what it read from Redis (with the AS's keys) before serving it
    assert len(b.upstream.verified_calls) == 1
    assert b.upstream.verified_calls[0].claims["sub"] == "alice"
    assert from_b.claims["verified_by"] == "b"
    assert from_b.claims["sub"] == first.claims["sub"]
    # B keeps it in its own L1 now
    assert await b.lookup() == from_b
    assert b.count("hit") == 1
    assert len(b.upstream.verified_calls) == 1
    assert b.upstream.calls == []


async def test_inactive_answer_is_shared_too(shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    a.upstream.answer = Introspection(active=False)
    assert not (await a.lookup("junk-token")).active
    await _written(shared, "junk-token")
    assert not (await b.lookup("junk-token")).active
    assert b.upstream.calls == []
    assert not (await b.lookup("junk-token")).active  # now a negative hit in B's L1
    assert b.upstream.calls == []


async def test_redis_holds_sealed_values_and_never_the_raw_token(shared: aioredis.Redis,
                                                                 sidecars: SidecarFactory) -> None:
    a = sidecars("a")
    goods = [f"{TOKEN}-good-{i}" for i in range(3)]
    for token in goods:
        await a.lookup(token)
    a.upstream.answer = Introspection(active=False)
    await a.lookup(f"{TOKEN}-junk")
    await _written(shared, *goods, f"{TOKEN}-junk")
    stored = await _all(shared)
    answers = {k: v for k, v in stored.items() if isinstance(v, bytes)}
    assert len(answers) == 4
    for name, value in stored.items():
        assert b"SECRET" not in name
        assert b"SECRET" not in (value if isinstance(value, bytes) else b" ".join(sorted(value)))
    for value in answers.values():  # nothing of the answer is readable without the token
        assert value[:1] == b"\x02"
        assert b"alice" not in value and b"active" not in value and b"read" not in value
    opened = [ValueKey(AS_IDENTITY, t, secret=GATEWAY_SECRET).open(_answer_key(t), answers[_answer_key(t).encode()])
              for t in goods]
    assert all(o is not None and o.answer.active and o.answer.claims["sub"] == "alice" for o in opened)
    junk = ValueKey(AS_IDENTITY, f"{TOKEN}-junk", secret=GATEWAY_SECRET).open(
        _answer_key(f"{TOKEN}-junk"), answers[_answer_key(f"{TOKEN}-junk").encode()])
    assert junk is not None and not junk.answer.active


@pytest.mark.parametrize(
    ("answer_exp", "max_age", "bound_ms"),
    [
        (20.0, None, 15_000),  # exp - now - skew
        (None, 7, 7_000),  # Cache-Control max-age
        (None, None, 300_000),  # configured max
    ],
)
async def test_redis_ttl_follows_the_l1_ttl_rule(shared: aioredis.Redis, sidecars: SidecarFactory,
                                                 answer_exp: float | None, max_age: int | None,
                                                 bound_ms: int) -> None:
    clock = Clock()
    a = sidecars("a", clock)
    a.upstream.answer = a.upstream.active(exp=None if answer_exp is None else T0 + answer_exp, max_age=max_age)
    await a.lookup()
    await _written(shared)
    pttl = await shared.pttl(_answer_key())
    assert 0 < pttl <= bound_ms
    assert pttl > bound_ms - 2_000  # derived from the rule, not some unrelated short value


async def test_negative_entry_ttl_in_redis_is_the_negative_ttl(shared: aioredis.Redis,
                                                               sidecars: SidecarFactory) -> None:
    a = sidecars("a", negative_ttl_seconds=3.0)
    a.upstream.answer = Introspection(active=False)
    await a.lookup()
    await _written(shared)
    assert 0 < await shared.pttl(_answer_key()) <= 3_000


async def test_answers_not_cacheable_in_l1_are_not_written_to_redis(shared: aioredis.Redis,
                                                                    sidecars: SidecarFactory) -> None:
    a = sidecars("a")
    a.upstream.answer = a.upstream.active(max_age=0)
    await a.lookup()
    a.upstream.answer = a.upstream.active(exp=T0 + 2)  # within the skew of exp
    await a.lookup("another-token")
    a.upstream.answer = a.upstream.active()
    await a.lookup("marker-token")  # written after the others were (or would have been) queued
    await _written(shared, "marker-token")
    assert await shared.exists(_answer_key(), _answer_key("another-token")) == 0


async def test_l2_hit_does_not_extend_the_as_max_age(shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    a.upstream.answer = a.upstream.active(max_age=1)
    await a.lookup()
    await _written(shared)
    await b.lookup()
    assert b.upstream.calls == []
    clock.now = T0 + 5  # the AS said: reuse this for 1 s
    await shared.delete(_answer_key())  # Redis has expired it by now (its PX was 1 s)
    await b.lookup()
    assert len(b.upstream.calls) == 1


async def test_redis_value_failing_verification_is_a_miss_not_a_denial(
        shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    b = sidecars("b")
    b.upstream.returns_jwt = True
    forged = Introspection(active=True, jwt="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJldmUifQ.forged", claims={"sub": "eve"})
    await shared.set(_answer_key(), _sealed(forged), px=60_000)
    b.upstream.verify_error = InvalidToken("JWT signature verification failed")
    b.upstream.answer = Introspection(active=True, jwt="a.b.c", claims=b.upstream.answer.claims)
    answer = await b.lookup()
    assert answer.claims["sub"] == "alice"
    assert b.upstream.calls == [TOKEN]
    assert len(b.upstream.verified_calls) == 1  # the JWT read from Redis was verified, and failed


# --- eviction ---------------------------------------------------------------------------------------------------


async def test_evict_token_removes_the_redis_entry(shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    await a.lookup()
    await a.lookup("other-token")
    await _written(shared, TOKEN, "other-token")
    assert await a.cache.evict_token(token=TOKEN) >= 1
    assert await shared.exists(_answer_key()) == 0
    assert await shared.exists(_answer_key("other-token")) == 1
    await b.lookup()
    assert b.upstream.calls == [TOKEN]


async def test_evict_subject_removes_redis_entries_of_that_subject(shared: aioredis.Redis,
                                                                   sidecars: SidecarFactory) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    await a.lookup("alice-1")
    await a.lookup("alice-2")
    a.upstream.answer = a.upstream.active(sub="bob")
    await a.lookup("bob-1")
    await _written(shared, "alice-1", "alice-2", "bob-1")
    assert await a.cache.evict_subject("alice") >= 2
    assert await shared.exists(_answer_key("alice-1"), _answer_key("alice-2")) == 0
    assert await shared.exists(_answer_key("bob-1")) == 1
    await b.lookup("alice-1")
    await b.lookup("bob-1")
    assert b.upstream.calls == ["alice-1"]


async def test_evict_subject_on_another_sidecar_reaches_redis(shared: aioredis.Redis,
                                                              sidecars: SidecarFactory) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    await a.lookup()
    await _written(shared)
    assert await b.cache.evict_subject("alice") == 1  # not in B's L1: only the Redis copy
    assert await shared.exists(_answer_key()) == 0


async def test_evict_subject_still_finds_a_long_lived_answer_after_a_short_one(
        shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    await a.lookup("alice-long")  # TTL 300 s
    a.upstream.answer = a.upstream.active(exp=T0 + 5.3)  # TTL 0.3 s
    await a.lookup("alice-short")
    await _written(shared, "alice-long")
    await asyncio.sleep(0.6)  # the short answer has expired in Redis; the long one has not
    assert await shared.exists(_answer_key("alice-long")) == 1
    await a.cache.evict_subject("alice")
    await b.lookup("alice-long")
    assert b.upstream.calls == ["alice-long"]


async def test_purge_removes_every_redis_key(shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    await a.lookup("alice-1")
    a.upstream.answer = Introspection(active=False)
    await a.lookup("junk")
    await _written(shared, "alice-1", "junk")
    await shared.set("unrelated:key", "kept")
    assert await a.cache.purge() >= 2
    assert await _all(shared) == {}
    assert await shared.get("unrelated:key") == b"kept"
    await b.lookup("alice-1")
    assert b.upstream.calls == ["alice-1"]


# --- Redis trouble is never the request's trouble ------------------------------------------------------------------


async def test_redis_stopped_lookups_go_to_the_as(tmp_path: Path, sidecars: SidecarFactory) -> None:
    require_redis_server()
    server = RedisServer(tmp_path).start()
    try:
        a = sidecars("a", url=server.url, timeout=0.5)
        await a.lookup("before")
    finally:
        server.stop()
    answer = await a.lookup(TOKEN)
    assert answer.active
    assert answer.claims["sub"] == "alice"
    assert a.upstream.calls == ["before", TOKEN]
    assert a.count("l2_error") >= 1
    await a.lookup(TOKEN)  # and L1 still works
    assert len(a.upstream.calls) == 2


async def test_redis_on_a_closed_port_lookups_go_to_the_as(sidecars: SidecarFactory) -> None:
    a = sidecars("a", url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    answer = await a.lookup()
    assert answer.active
    assert a.upstream.calls == [TOKEN]
    assert a.count("l2_error") >= 1
    a.upstream.answer = Introspection(active=False)
    assert not (await a.lookup("junk")).active
    assert a.upstream.calls == [TOKEN, "junk"]


async def test_hanging_redis_is_bounded_by_the_timeout(sidecars: SidecarFactory) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        a = sidecars("a", url=f"redis://127.0.0.1:{port}/0", timeout=0.05)
        started = time.monotonic()
        answer = await a.lookup()
        elapsed = time.monotonic() - started
        assert answer.active
        assert a.upstream.calls == [TOKEN]
        assert elapsed < 1.0
        assert a.count("l2_error") == 1
        # for the backoff after a failure, Redis is not even tried: the next miss costs nothing more
        started = time.monotonic()
        await a.lookup("another-token")
        assert time.monotonic() - started < 1.0
        assert a.count("l2_error") == 1
        assert a.upstream.calls == [TOKEN, "another-token"]
        await a.tier.close()
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"a string"',
        json.dumps({"v": 2, "active": True, "claims": {"sub": "eve"}}).encode(),
        json.dumps({"v": 1, "active": "yes", "claims": {"sub": "eve"}}).encode(),
        json.dumps({"v": 1, "active": True, "claims": ["sub", "eve"]}).encode(),
        json.dumps({"v": 1, "active": True, "jwt": 5, "claims": {"sub": "eve"}}).encode(),
        json.dumps({"active": True, "claims": {"sub": "eve"}}).encode(),
    ],
    ids=["text", "binary", "list", "string", "version", "active-type", "claims-type", "jwt-type", "no-version"],
)
async def test_garbage_under_the_key_is_a_miss(shared: aioredis.Redis, sidecars: SidecarFactory,
                                               garbage: bytes) -> None:
    b = sidecars("b")
    await shared.set(_answer_key(), garbage, px=60_000)
    answer = await b.lookup()
    assert answer.claims["sub"] == "alice"
    assert b.upstream.calls == [TOKEN]
    assert b.count("l2_hit") == 0
    assert b.count("l2_error") == 1
    assert b.upstream.verified_calls == []


async def test_garbage_is_replaced_by_the_as_answer(shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    b = sidecars("b")
    await shared.set(_answer_key(), b"garbage", px=60_000)
    await b.lookup()
    for _ in range(100):
        raw = await shared.get(_answer_key())
        if raw != b"garbage":
            break
        await asyncio.sleep(0.01)
    assert raw is not None
    opened = ValueKey(AS_IDENTITY, TOKEN, secret=GATEWAY_SECRET).open(_answer_key(), raw)
    assert opened is not None and opened.answer.claims["sub"] == "alice"


# --- item 3: a Redis writer cannot mint identities -----------------------------------------------------------------

VICTIM = "victim-opaque-token-abcdefghijklmnopqrstuv"
ATTACKER = "attacker-opaque-token-abcdefghijklmnopqrs"
EVE = {"sub": "eve", "scope": "admin", "exp": T0 + 3_600}


def _hostile_values() -> dict[str, Callable[[], bytes]]:
    """What a Redis writer who holds neither ATTACKER's token nor the victim's can put under ATTACKER's key."""
    name = _answer_key(ATTACKER)
    lookup = cache_key(AS_IDENTITY, ATTACKER)
    v2 = _sealed(Introspection(active=True, claims=EVE), token=VICTIM, until=time.time() + 600)
    return {
        # the format every earlier version wrote and trusted
        "old-json-claims-only": lambda: json.dumps({"v": 1, "active": True, "jwt": None, "claims": EVE,
                                                    "until": time.time() + 600}).encode(),
        # a victim's valid sealed value, copied under the attacker's key
        "victim-value-moved": lambda: v2,
        # sealed with what a Redis reader can compute: the lookup key itself as the token
        "sealed-with-the-lookup-key": lambda: _sealed(Introspection(active=True, claims=EVE), token=lookup, name=name),
        # sealed for the right token under another AS's identity
        "sealed-for-another-as": lambda: _sealed(Introspection(active=True, claims=EVE), token=ATTACKER, name=name,
                                                 identity="https://other.example/i\0gw\0rfc7662"),
        # sealed for the attacker's own token (or any string it makes up) without the gateway's secret at the AS
        "sealed-without-the-gateway-secret": lambda: _sealed(Introspection(active=True, claims=EVE), token=ATTACKER,
                                                             secret=b"guessed-secret"),
        "garbage": lambda: b"\x02" + os.urandom(80),
        "truncated": lambda: _sealed(Introspection(active=True, claims=EVE), token=ATTACKER)[:40],
        "too-short": lambda: b"\x02" + b"\x00" * 20,
        "wrong-version": lambda: b"\x03" + _sealed(Introspection(active=True, claims=EVE), token=ATTACKER)[1:],
        "bit-flipped": lambda: (lambda v: v[:-1] + bytes([v[-1] ^ 1]))(
            _sealed(Introspection(active=True, claims=EVE), token=ATTACKER)),
        "empty": lambda: b"",
    }


@pytest.mark.parametrize("shape", sorted(_hostile_values()))
async def test_item03_hostile_value_under_a_tokens_key_is_a_miss(shared: aioredis.Redis, sidecars: SidecarFactory,
                                                                 shape: str) -> None:
    """The AS says the attacker's token is inactive; whatever a Redis writer puts under its key, the sidecar asks
    the AS and refuses (a miss, never an allow)."""
    b = sidecars("b")
    b.upstream.answer = Introspection(active=False)
    await shared.set(_answer_key(ATTACKER), _hostile_values()[shape](), px=60_000)
    answer = await b.lookup(ATTACKER)
    assert not answer.active
    assert b.upstream.calls == [ATTACKER]
    assert b.count("l2_hit") == 0
    assert b.upstream.verified_calls == []


async def test_item03_victim_jwt_moved_to_another_tokens_key_is_not_even_verified(
        shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    """A victim's valid answer with its (validly signed) JWT, copied under the attacker's key: before, it passed
    re-verification and the attacker was the victim; now it does not open."""
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    for sidecar in (a, b):
        sidecar.upstream.returns_jwt = True
    a.upstream.answer = Introspection(active=True, jwt="victim.jwt.sig", claims=a.upstream.active(sub="victim").claims)
    await a.lookup(VICTIM)
    await _written(shared, VICTIM)
    await shared.set(_answer_key(ATTACKER), await shared.get(_answer_key(VICTIM)), px=60_000)
    b.upstream.answer = Introspection(active=False)
    assert not (await b.lookup(ATTACKER)).active
    assert b.upstream.calls == [ATTACKER]
    assert b.upstream.verified_calls == []


async def test_item03_claims_only_answer_is_refused_for_a_dialect_that_returns_jwts(
        shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    """Even sealed with the right token (a token holder who can write Redis), a positive answer without a JWT is not
    one a phantom / rfc7662+jwt_field AS gives: a miss."""
    b = sidecars("b")
    b.upstream.returns_jwt = True
    b.upstream.answer = Introspection(active=False)
    await shared.set(_answer_key(ATTACKER), _sealed(Introspection(active=True, claims=EVE), token=ATTACKER),
                     px=60_000)
    assert not (await b.lookup(ATTACKER)).active
    assert b.upstream.calls == [ATTACKER]
    assert b.count("l2_error") == 1


async def test_item03_value_sealed_by_the_token_holder_is_served_for_claims_dialects(
        shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    """The positive control: what a sidecar holding the token seals under its key is served from L2."""
    b = sidecars("b")
    await shared.set(_answer_key(), _sealed(b.upstream.active(sub="carol")), px=60_000)
    answer = await b.lookup()
    assert answer.claims["sub"] == "carol"
    assert b.upstream.calls == []
    assert b.count("l2_hit") == 1


@pytest.mark.parametrize(("dialect", "jwt_field", "returns_jwt"), [
    ("phantom", None, True), ("rfc7662", "jwt", True), ("rfc7662", None, False), ("rfc9701", None, False)])
async def test_item03_authority_says_which_dialects_always_return_a_jwt(dialect: str, jwt_field: str | None,
                                                                        returns_jwt: bool) -> None:
    config = AuthorizationServerConfig(name="corp", introspection_endpoint="https://as.example/i", client_id="gw",
                                       client_secret=Secret("s"), dialect=dialect, jwt_field=jwt_field,
                                       issuer="https://as.example", jwks_uri="https://as.example/jwks")
    async with aiohttp.ClientSession() as session:
        authority = Authority(config, session)
        assert authority.returns_jwt is returns_jwt
        # the answer's shape is part of the AS identity: rfc7662 with and without jwt_field share no key
        other = Authority(config.model_copy(update={"jwt_field": None if jwt_field else "jwt"}), session)
        assert other.cache_identity != authority.cache_identity


# --- item 13: evictions reach every sidecar sharing the Redis tier ---------------------------------------------------


@pytest.mark.parametrize("how", ["token", "token_id", "subject", "purge"])
async def test_item13_an_eviction_reaches_the_l1_of_another_sidecar(shared: aioredis.Redis, sidecars: SidecarFactory,
                                                                    how: str) -> None:
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    await listening(a, b)
    await a.lookup()
    await _written(shared)
    await b.lookup()
    assert len(b.cache.positive) == 1 and b.upstream.calls == []
    evict = {"token": lambda: a.cache.evict_token(token=TOKEN), "token_id": lambda: a.cache.evict_token(
        short_id=token_id(TOKEN)), "subject": lambda: a.cache.evict_subject("alice"), "purge": a.cache.purge}[how]
    await evict()
    await until_async(lambda: len(b.cache.positive) == 0)
    b.upstream.answer = Introspection(active=False)  # revoked at the AS
    assert not (await b.lookup()).active
    assert b.upstream.calls == [TOKEN]


async def test_item13_eviction_messages_carry_hashes_never_a_token(shared: aioredis.Redis,
                                                                   sidecars: SidecarFactory) -> None:
    a = sidecars("a")
    await a.lookup()
    pubsub = shared.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{PREFIX}:evictions")
    await a.cache.evict_token(token=TOKEN)
    await a.cache.evict_subject("alice")
    messages = []
    deadline = time.monotonic() + 5
    while len(messages) < 2:  # None: the subscription's confirmation, ignored
        assert time.monotonic() < deadline, "the evictions were not published"
        message = await pubsub.get_message(timeout=1.0)
        if message is not None:
            messages.append(message["data"])
    await pubsub.aclose()
    for raw in messages:
        assert b"SECRET" not in raw and TOKEN.encode() not in raw and b"alice" not in raw
    assert cache_key(AS_IDENTITY, TOKEN).encode() in messages[0]


async def test_item13_value_asked_before_an_eviction_is_refused_whenever_it_lands(
        shared: aioredis.Redis, sidecars: SidecarFactory) -> None:
    """Another sidecar's introspection in flight at the eviction (or a Redis writer replaying the old value) writes
    the revoked answer to Redis after the eviction deleted it: every sidecar that saw the eviction refuses it."""
    clock = Clock()
    a, b = sidecars("a", clock), sidecars("b", clock)
    await listening(b)
    await a.lookup()
    await _written(shared)
    replayed = await shared.get(_answer_key())
    clock.now += 10
    await a.cache.evict_token(token=TOKEN)
    await until_async(lambda: b.count("l2_hit") == 0 and b.metrics.registry.get_sample_value(
        "phantom_authz_cache_admin_evictions_total", {"how": "broadcast"}) is not None)
    await shared.set(_answer_key(), replayed, px=60_000)  # the old value, back after the DEL
    b.upstream.answer = Introspection(active=False)
    assert not (await b.lookup()).active
    assert b.upstream.calls == [TOKEN]
    assert b.count("l2_hit") == 0


async def test_item13_subscriber_comes_back_after_redis_restarts_and_drops_what_it_may_have_missed(
        tmp_path: Path, sidecars: SidecarFactory) -> None:
    require_redis_server()
    server = RedisServer(tmp_path).start()
    try:
        clock = Clock()
        a, b = sidecars("a", clock, url=server.url), sidecars("b", clock, url=server.url)
        await listening(a, b)
        await b.lookup()
        server.stop()
        await until_async(lambda: not b.tier.subscribed.is_set())
        assert (await b.lookup()).active  # Redis down: checks carry on from L1
        server.start()
        await asyncio.wait_for(b.tier.subscribed.wait(), 10)
        assert len(b.cache.positive) == 0  # evictions sent during the gap are unknown: L1 dropped
        await b.lookup()
        await asyncio.wait_for(a.tier.subscribed.wait(), 10)
        await a.cache.evict_token(token=TOKEN)
        await until_async(lambda: len(b.cache.positive) == 0)
    finally:
        server.stop()


async def test_item13_eviction_with_redis_down_evicts_here_and_says_the_broadcast_failed(
        sidecars: SidecarFactory) -> None:
    a = sidecars("a", url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    await a.lookup()
    with pytest.raises(BroadcastFailed) as failed:
        await a.cache.evict_token(token=TOKEN)
    assert failed.value.evicted == 1
    assert len(a.cache.positive) == 0
    assert (await a.lookup()).active  # checks still work
