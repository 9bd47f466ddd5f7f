"""The introspection cache: it wraps each ``Authority`` so that stages above never see it.

- L1: bounded LRU (entries and bytes) of positive answers; a separate bounded LRU of negative (inactive) answers
  with a short TTL, so a flood of junk tokens reaches the AS at most once per token per TTL and cannot grow memory.
- L2 (optional): Redis, shared by many sidecars (``authz.cache.redis_tier``); consulted on an L1 miss. A value
  read from it is sealed with a key only the gateway can derive, for that token (``authz.cache.sealing``); a claims-only
  answer is refused for a dialect that always returns a JWT; a JWT is re-verified with the AS's keys.
- Single-flight: concurrent misses of one key share one AS call; its failure reaches every waiter; a cancelled
  waiter does not cancel the call (the waiters ``shield`` it).
- Stale-if-error: if the AS is unavailable (``UpstreamUnavailable``: down, 5xx, 429, timeout) — not if it says
  inactive — a positive answer past its TTL is served up to ``stale_if_error_seconds``, never past exp - skew.
- Both windows are counted on the wall clock and on the monotonic one (``ticks``): a wall clock set back keeps no
  entry longer than its TTL of elapsed time; one set forward ends entries early.
- Evictions (admin API, or broadcast by another sidecar through Redis: ``authz.cache.evictions``) leave tombstones:
  a load that started before one does not cache its answer (its waiters still get it) and is not joined by later
  requests; an L2 value whose AS call started before one is refused.
The cache holds the AS's (verified) answer only; claims, scopes and policy are checked on every request. Each hit
hands back its entry's ``Answer``, whose slots keep what is derived from the answer (identity, Allow, responses): they
go with the entry. An answer not kept (inactive, not cacheable, loaded before an eviction) is a fresh ``Answer``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from authz.cache.entries import Entry, cache_key, subject_hash
from authz.cache.evictions import Eviction, Tombstones
from authz.cache.redis_tier import RedisTier
from authz.cache.sealing import ValueKey
from authz.cache.store import BoundedStore
from authz.config import CacheConfig
from authz.errors import AuthzError, UpstreamUnavailable
from authz.logs import token_id
from authz.metrics import Metrics
from authz.models import Answer, Identity, Introspection

if TYPE_CHECKING:
    from authz.token_exchange.exchanger import TokenExchanger

__all__ = ["BroadcastFailed", "CachedAuthority", "IntrospectionCache", "Upstream"]

log = logging.getLogger("authz.cache")

_INACTIVE = Introspection(active=False)


class BroadcastFailed(Exception):
    """Evicted here, but the eviction could not be sent to the other sidecars (Redis unreachable), or not every
    listening sidecar acknowledged that it applied it in time."""

    def __init__(self, evicted: int) -> None:
        super().__init__(f"evicted {evicted} entries here; the broadcast through Redis failed")
        self.evicted = evicted


class Upstream(Protocol):
    """What the cache wraps: ``authz.introspection.Authority``."""

    name: str
    cache_identity: str
    returns_jwt: bool  # every active answer carries a JWT (phantom; rfc7662 with jwt_field)
    sealing_secret: bytes  # the gateway's credential at the AS: part of the key that seals L2 values
    exchanger: TokenExchanger | None  # RFC 8693 at this AS (None: it exchanges no tokens)

    async def introspect(self, token: str) -> Introspection: ...

    async def verified(self, answer: Introspection) -> Introspection: ...

    def identity(self, answer: Answer) -> Identity: ...


class IntrospectionCache:
    def __init__(self, config: CacheConfig, metrics: Metrics, redis: RedisTier | None = None,
                 clock: Callable[[], float] = time.time, origin: str | None = None,
                 ticks: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._lapsed_lease: float | None = None  # set while cut off from the eviction feed beyond its lease
        self._entries = config  # the TTL rule's inputs for new entries (``_entry_rule``)
        self.metrics = metrics
        self.redis = redis
        self._clock = clock
        self._ticks = ticks  # monotonic: how long an entry has been kept, whatever steps the wall clock takes
        self.origin = origin or secrets.token_hex(8)  # this sidecar, in the eviction messages it broadcasts
        self._epoch = 0  # evictions applied so far; a load remembers the epoch it started in
        self._unheard = False  # listening for evictions, not yet subscribed: answers go to no other sidecar
        self._tombstones = Tombstones(config.max_ttl_seconds)
        self.positive: BoundedStore[Entry] = BoundedStore(config.max_entries, config.max_bytes)
        self.negative: BoundedStore[tuple[float, str]] = BoundedStore(config.negative_max_entries,
                                                                      config.negative_max_entries * 256)
        self._inflight: dict[str, asyncio.Future[Answer]] = {}
        self._identities: set[str] = set()
        self._lookups = {name: metrics.cache.labels(name) for name in
                         ("hit", "miss", "negative_hit", "stale", "l2_hit")}
        # tracing on (authz.tracing): told where each lookup's answer came from, one of the labels above or "joined"
        self.on_lookup: Callable[[str], None] | None = None

    def reconfigure(self, config: CacheConfig) -> None:
        """A reloaded ``cache`` section: its TTLs apply to answers loaded from now on, its bounds at the next insert
        (the tiers, ``enabled`` and ``redis``, take a restart). Tombstones never live shorter than before."""
        self.config = config
        self._entry_rule()
        self.positive.max_entries, self.positive.max_bytes = config.max_entries, config.max_bytes
        self.negative.max_entries = config.negative_max_entries
        self.negative.max_bytes = config.negative_max_entries * 256
        self._tombstones.outlive(config.max_ttl_seconds)

    def wrap(self, upstream: Upstream) -> CachedAuthority:
        self._identities.add(upstream.cache_identity)
        return CachedAuthority(self, upstream)

    async def introspect(self, upstream: Upstream, token: str) -> Answer:
        key = cache_key(upstream.cache_identity, token)
        now = self._clock()
        negative = self.negative.get(key)
        if negative is not None and now < negative[0]:
            self._lookups["negative_hit"].inc()
            if self.on_lookup is not None:
                self.on_lookup("negative_hit")
            return Answer(_INACTIVE)
        entry = self.positive.get(key)
        if entry is not None and entry.fresh(now, self._ticks()):
            self._lookups["hit"].inc()
            if self.on_lookup is not None:
                self.on_lookup("hit")
            return entry.answer
        flight = self._inflight.get(key)
        if flight is None:
            self._lookups["miss"].inc()
            if self.on_lookup is not None:
                self.on_lookup("miss")
            flight = asyncio.ensure_future(self._load(upstream, key, token, self._epoch))
            self._inflight[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        else:
            self.metrics.singleflight_joins.inc()
            if self.on_lookup is not None:
                self.on_lookup("joined")
        return await asyncio.shield(flight)

    def _landed(self, key: str, flight: asyncio.Future[Answer]) -> None:
        if self._inflight.get(key) is flight:  # an eviction may have let a newer load take its place
            del self._inflight[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here, so a failure no waiter is left to see is not reported as lost

    async def _load(self, upstream: Upstream, key: str, token: str, epoch: int) -> Answer:
        value_key: ValueKey | None = None
        asked_at = self._clock()
        if self.redis is not None:
            value_key = ValueKey(upstream.cache_identity, token, secret=upstream.sealing_secret)
            shared = await self.redis.get(key, value_key)
            if shared is not None and self._tombstones.refuses_value(
                    _names(key, token, shared.answer), shared.asked_at):
                log.info("redis answer for %s… was asked before an eviction; asking the AS", key[:12])
            elif shared is not None:
                answer = await self._trusted(upstream, key, shared.answer)
                if answer is not None:
                    self._lookups["l2_hit"].inc()
                    if self.on_lookup is not None:
                        self.on_lookup("l2_hit")
                    return self._remember(key, token, answer, None, asked_at, epoch)
        started = time.perf_counter()
        outcome = "error"
        try:
            answer = await upstream.introspect(token)
            outcome = "active" if answer.active else "inactive"
        except UpstreamUnavailable:
            outcome = "unavailable"
            stale = self.positive.get(key)
            if stale is not None and stale.stale(self._clock(), self._ticks()):
                self._lookups["stale"].inc()
                if self.on_lookup is not None:
                    self.on_lookup("stale")
                return stale.answer
            raise
        finally:
            self.metrics.as_calls.labels(upstream.name, outcome).inc()
            self.metrics.as_latency.labels(upstream.name).observe(time.perf_counter() - started)
        return self._remember(key, token, answer, value_key, asked_at, epoch)

    async def _trusted(self, upstream: Upstream, key: str, shared: Introspection) -> Introspection | None:
        """An answer read from Redis as we would have had it from the AS, or None (a miss: ask the AS)."""
        if shared.active and (shared.jwt is not None) != upstream.returns_jwt:
            # a claims-only answer for a dialect that always gives a JWT (or the reverse) is not one the AS gave
            self.metrics.cache.labels("l2_error").inc()
            log.warning("redis answer for %s… has %s JWT, unlike every answer of AS %s; asking the AS", key[:12],
                        "a" if shared.jwt is not None else "no", upstream.name)
            return None
        try:
            # the writer's remaining lifetime (max_age) is ours to keep, whatever verification returns
            return replace(await upstream.verified(shared), max_age=shared.max_age)
        except AuthzError as exc:  # signed by a key the AS has dropped, or forged by a token holder: ask the AS
            self.metrics.cache.labels("l2_error").inc()
            log.warning("redis answer for %s… fails verification (%s); asking the AS", key[:12], exc.detail)
            return None

    def _remember(self, key: str, token: str, answer: Introspection, value_key: ValueKey | None,
                  asked_at: float, epoch: int) -> Answer:
        """Keep ``answer`` in L1 and, with ``value_key`` (an answer of the AS, not of Redis), share it in L2 — unless
        an eviction touched it since its load started (``epoch``): then its waiters have it, and nothing keeps it.
        Returns the Answer its waiters get: the new entry's, or a fresh one when nothing keeps it."""
        if self._epoch != epoch and self._tombstones.spoils_load(_names(key, token, answer), epoch):
            log.info("answer for %s… was asked before an eviction; not cached", key[:12])
            return Answer(answer)
        now = self._clock()
        if not answer.active:
            self.positive.delete(key)
            if self.config.negative_ttl_seconds > 0:
                self.negative.put(key, (now + self.config.negative_ttl_seconds, token_id(token)), 128)
            ttl = self.config.negative_ttl_seconds
            handed = Answer(answer)
        else:
            self.negative.delete(key)
            entry = Entry.build(answer, now, self._ticks(), self._entries, token_id(token))
            if entry is None:
                self.positive.delete(key)
                return Answer(answer)
            self.positive.put(key, entry, entry.size())
            handed = entry.answer
            ttl = entry.fresh_until - now
        if value_key is not None and self.redis is not None and ttl > 0 and not self._unheard:
            self.redis.put_soon(key, value_key, answer, ttl, asked_at)
        return handed

    # --- administration (the admin API) -------------------------------------------------------------------------

    async def evict_token(self, token: str | None = None, short_id: str | None = None,
                          broadcast: bool = True) -> int:
        """Evict by raw token (every AS), or by the 12-hex token id the logs show."""
        keys = tuple(sorted(cache_key(identity, token) for identity in self._identities)) if token is not None else ()
        return await self._evict(Eviction(keys=keys, token_ids=(short_id,) if short_id else ()), broadcast)

    async def evict_subject(self, subject: str, broadcast: bool = True) -> int:
        evicted = await self._evict(Eviction(subjects=(subject_hash(subject),)), broadcast)
        if broadcast and self.redis is not None:
            evicted += await self.redis.delete_subject(subject)
        return evicted

    async def purge(self, broadcast: bool = True) -> int:
        evicted = await self._evict(Eviction(purge=True), broadcast)
        if broadcast and self.redis is not None:
            evicted += await self.redis.purge()
        return evicted

    async def _evict(self, eviction: Eviction, broadcast: bool) -> int:
        """Apply here; with ``broadcast``, also delete from Redis and tell every sidecar sharing it. Raises
        ``BroadcastFailed`` (after evicting here) when Redis is configured but the message could not be sent, or not
        every listening sidecar applied it in time."""
        evicted, keys = self.apply(eviction)
        if not broadcast or self.redis is None:
            return evicted
        if keys:
            evicted += await self.redis.delete(keys)  # counted as evict_subject and purge count Redis's
        if not await self.redis.publish(eviction.message(self.origin)):
            raise BroadcastFailed(evicted)
        return evicted

    def apply(self, eviction: Eviction) -> tuple[int, list[str]]:
        """Evict from L1, tombstone what was evicted, and let no later request join a load started before now.
        Returns the count evicted and the lookup keys found (local only: no Redis, no broadcast)."""
        self._epoch += 1
        now = self._clock()
        names = [f"k:{k}" for k in eviction.keys] + [f"t:{t}" for t in eviction.token_ids]
        names += [f"s:{s}" for s in eviction.subjects]
        keys = set(eviction.keys)
        if eviction.token_ids:
            wanted = set(eviction.token_ids)
            keys |= {k for k, e in self.positive.items() if e.token_id in wanted}
            keys |= {k for k, (_, tid) in self.negative.items() if tid in wanted}
        if eviction.subjects:
            wanted = set(eviction.subjects)
            keys |= {k for k, e in self.positive.items() if e.subject_hash in wanted}
        if eviction.purge:
            evicted = self.positive.clear() + self.negative.clear()
            self._tombstones.raise_floor(self._epoch, now)
        else:
            evicted = sum(self.positive.delete(k) + self.negative.delete(k) for k in keys)
            self._tombstones.mark(names, self._epoch, now)
        if eviction.purge or eviction.token_ids or eviction.subjects:
            self._inflight.clear()  # which token a load is for is not known by id or subject: none may be joined
        else:
            for key in keys:
                self._inflight.pop(key, None)
        return evicted, sorted(keys)

    def listen(self) -> None:
        """Apply the evictions other sidecars broadcast through Redis (no-op without Redis)."""
        if self.redis is not None:
            self._unheard = True
            self.redis.listen(self._received, self._resynced, self._lapsed, self._joined)

    def _joined(self) -> None:
        """The first subscription is up. Checks were served before it, and an eviction sent meanwhile did not wait
        for this sidecar (no lease yet) nor reached it: what was loaded until now goes (nothing of it went to Redis),
        and a load still in flight is not kept."""
        self._unheard = False
        self._epoch += 1
        self._tombstones.spoil_loads(self._epoch)
        self._inflight.clear()
        dropped = self.positive.clear() + self.negative.clear()
        log.info("redis eviction subscription is up: %d answers cached before it dropped", dropped)

    def _received(self, raw: bytes) -> None:
        parsed = Eviction.from_message(raw)
        if parsed is None:
            log.warning("eviction message on Redis is not one we send; ignored")
            return
        origin, eviction = parsed
        if origin != self.origin:
            evicted, _ = self.apply(eviction)
            self.metrics.evictions.labels("broadcast").inc(evicted)

    def _resynced(self) -> None:
        """The subscription was lost for a while: evictions sent meanwhile are unknown, so forget everything."""
        self._lapsed_lease = None
        self._unheard = False
        self._entry_rule()
        evicted, _ = self.apply(Eviction(purge=True))
        log.warning("eviction feed from Redis resumed after a gap: %d cached answers dropped", evicted)

    def _lapsed(self) -> None:
        """Cut off from the feed for longer than its lease: other sidecars' evictions no longer wait for this one, so
        forget everything, and until the feed is back keep answers at most a lease long, never stale."""
        assert self.redis is not None
        self._lapsed_lease = lease = self.redis.lease_seconds
        self._entry_rule()
        evicted, _ = self.apply(Eviction(purge=True))
        log.warning("eviction feed from Redis down longer than its %.0fs lease: %d cached answers dropped; answers "
                    "are kept at most %.0fs until it is back", lease, evicted, lease)

    def _entry_rule(self) -> None:
        lease = self._lapsed_lease
        self._entries = self.config if lease is None else self.config.model_copy(update={
            "max_ttl_seconds": min(self.config.max_ttl_seconds, lease), "stale_if_error_seconds": 0.0})


def _names(key: str, token: str, answer: Introspection) -> list[str]:
    """The tombstone names an answer falls under: its lookup key, its token id and its subject."""
    names = [f"k:{key}", f"t:{token_id(token)}"]
    sub = answer.claims.get("sub")
    if isinstance(sub, str):
        names.append(f"s:{subject_hash(sub)}")
    return names


class CachedAuthority:
    """An ``Authority`` seen through the cache: same interface, so the pipeline does not know it is there."""

    def __init__(self, cache: IntrospectionCache, upstream: Upstream) -> None:
        self._cache = cache
        self._upstream = upstream
        self.name = upstream.name

    @property
    def exchanger(self) -> TokenExchanger | None:
        """The AS's RFC 8693 exchanger: its exchanged tokens are kept on the Answers this cache hands back."""
        return self._upstream.exchanger

    def answer(self, token: str) -> Coroutine[Any, Any, Answer]:
        return self._cache.introspect(self._upstream, token)  # (the cache's coroutine itself: one frame less per check)

    def identity(self, answer: Answer) -> Identity:
        return self._upstream.identity(answer)
