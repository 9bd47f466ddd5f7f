"""The pipeline's token-exchange step (RFC 8693): on a route with ``exchange_audience``, after the scopes and the
policy allowed the request, the upstream gets a token the route's AS exchanged for that audience (and
``exchange_scope``), as ``Authorization: Bearer <token>``, in place of the introspected JWT.

Exchanged tokens are derived values of the cached answer: each ``Answer`` keeps an ``Exchange`` per (audience,
scope) in its ``exchanges`` slot, holding the Allow that forwards the token (with its own ``Replies``), so an
exchange happens once per cached answer, audience and scope and goes with the entry (an eviction, a revocation).
The TTL rule is the introspection cache's: at most ``cache.max_ttl_seconds``, the answer's ``max-age``, and the
exchanged token's lifetime (a verified JWT's ``exp``, ``expires_in``) less ``cache.expiry_skew_seconds``; a token
whose lifetime is unknown is used for one request. Concurrent requests share one exchange (single-flight). A refusal
(``TokenExchangeFailed``, 502) is kept ``cache.negative_ttl_seconds``, so a route the AS will not serve does not
send it every request; an AS that cannot be reached (``TokenExchangeUnavailable``, 503) is asked again next time.
Either way the request fails closed: the introspected JWT or the client's token never goes instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from authz.config import CacheConfig
from authz.errors import RouteMisconfigured, TokenExchangeFailed, TokenExchangeUnavailable
from authz.metrics import Metrics
from authz.models import Allow, Answer, Identity, Replies, RouteSettings

if TYPE_CHECKING:
    from authz.token_exchange.exchanger import Exchanged, TokenExchanger

__all__ = ["Exchange", "ExchangeStage"]

log = logging.getLogger("authz.token_exchange")

_MAX_PER_ANSWER = 16  # (audience, scope) pairs kept per answer; routes are few, so more means churn: start over


class Exchange:
    """One answer's exchange for one (audience, scope): the Allow forwarding the exchanged token until
    ``fresh_until``, or the refusal's detail until ``refused_until``, and the exchange in flight."""

    __slots__ = ("allow", "exchanged", "flight", "fresh_until", "made_by", "refusal", "refused_until")

    def __init__(self) -> None:
        self.allow: Allow | None = None
        self.exchanged: Exchanged | None = None  # the token the allow forwards
        self.made_by: ExchangeStage | None = None  # the stage (so the configuration) whose headers the allow sets
        self.fresh_until = 0.0
        self.refusal: str | None = None
        self.refused_until = 0.0
        self.flight: asyncio.Future[Allow] | None = None


class ExchangeStage:
    def __init__(self, cache: CacheConfig, metrics: Metrics | None, always_removed: tuple[str, ...],
                 clock: Callable[[], float] = time.time) -> None:
        self._cache = cache
        self._results = (metrics or Metrics()).token_exchanges
        self._counters: dict[tuple[str, str], Any] = {}  # (AS, result) -> its counter (labels() costs ~1 µs)
        self._always_removed = always_removed  # client-sent copies of what we may set (the pipeline's list)
        self._clock = clock

    async def allow(self, allowed: Allow, exchanger: TokenExchanger | None, answer: Answer, identity: Identity,
                    token: str, route: RouteSettings) -> Allow:
        """``allowed`` (the request's Allow, a policy's decision included) forwarding the token exchanged for the
        route's audience and scope instead of the JWT."""
        audience = route.exchange_audience
        assert audience is not None
        if exchanger is None:  # the configuration and route settings refuse this; fail closed all the same
            raise RouteMisconfigured(f"exchange_audience: authorization server {route.authorization_server!r} does "
                                     "not exchange tokens")
        key = (audience, route.exchange_scope)
        exchanges = answer.exchanges
        if exchanges is None:
            exchanges = answer.exchanges = {}
        slot = exchanges.get(key)
        now = self._clock()
        if slot is None:
            if len(exchanges) >= _MAX_PER_ANSWER:
                exchanges.clear()
            slot = exchanges[key] = Exchange()
        elif slot.allow is not None and slot.exchanged is not None and now < slot.fresh_until:
            self._count(exchanger.name, "hit")
            if slot.made_by is not self:  # a reload since: the exchanged token with this configuration's headers
                slot.allow, slot.made_by = self._allow_for(slot.exchanged, allowed), self
            return _with_policy(slot.allow, allowed)
        elif slot.refusal is not None and now < slot.refused_until:
            self._count(exchanger.name, "refusal_hit")
            raise TokenExchangeFailed(slot.refusal)
        flight = slot.flight
        if flight is None:
            flight = slot.flight = asyncio.ensure_future(self._exchange(slot, exchanger, allowed, identity, token,
                                                                        key))
            flight.add_done_callback(lambda done: _landed(slot, done))
        else:
            self._count(exchanger.name, "joined")
        try:
            kept = await asyncio.shield(flight)
        except TokenExchangeUnavailable as exc:  # each request its own error: the pipeline notes on it who asked
            raise TokenExchangeUnavailable(exc.detail, retry_after=exc.retry_after) from None
        except TokenExchangeFailed as exc:
            raise TokenExchangeFailed(exc.detail) from None
        return _with_policy(kept, allowed)

    async def _exchange(self, slot: Exchange, exchanger: TokenExchanger, allowed: Allow, identity: Identity,
                        token: str, key: tuple[str, tuple[str, ...] | None]) -> Allow:
        audience, scope = key
        try:
            exchanged = await exchanger.exchange(token, identity.jwt, audience, scope, identity.subject)
        except TokenExchangeFailed as exc:
            self._count(exchanger.name, "refused")
            if self._cache.negative_ttl_seconds > 0:
                slot.refusal, slot.refused_until = exc.detail, self._clock() + self._cache.negative_ttl_seconds
            raise
        except TokenExchangeUnavailable:
            self._count(exchanger.name, "unavailable")
            raise
        self._count(exchanger.name, "exchanged")
        kept = self._allow_for(exchanged, allowed)
        ttl = self._ttl(exchanged, self._clock())
        if ttl > 0:
            slot.allow, slot.exchanged, slot.made_by = kept, exchanged, self
            slot.fresh_until, slot.refusal = self._clock() + ttl, None
        log.debug("AS %s exchanged a token for audience %s (kept %.0fs)", exchanger.name, audience, max(ttl, 0))
        return kept

    def _count(self, server: str, result: str) -> None:
        counter = self._counters.get((server, result))
        if counter is None:
            counter = self._counters[server, result] = self._results.labels(server, result)
        counter.inc()

    def _allow_for(self, exchanged: Exchanged, allowed: Allow) -> Allow:
        """The Allow kept for an exchanged token: the request's without a policy's part, the exchanged token as the
        only credential (what the request's Allow removes stays removed, the client's copies of our headers too)."""
        removed = (*self._always_removed, *(h for h in allowed.headers_to_remove if h != "authorization"))
        metadata = {k: v for k, v in allowed.dynamic_metadata.items() if k != "decision_id"}
        return Allow((("authorization", "Bearer " + exchanged.token),), tuple(dict.fromkeys(removed)), metadata,
                     allowed.identity, replies=Replies())

    def _ttl(self, exchanged: Exchanged, now: float) -> float:
        """The cache's TTL rule for an exchanged token; <= 0: not kept (its lifetime is unknown or nearly over)."""
        if exchanged.expires_at is None:
            return 0.0
        ttl = min(self._cache.max_ttl_seconds, exchanged.expires_at - now - self._cache.expiry_skew_seconds)
        return ttl if exchanged.max_age is None else min(ttl, float(exchanged.max_age))


def _with_policy(kept: Allow, allowed: Allow) -> Allow:
    """``kept`` with the request's policy decision and its decision id, when it has one."""
    if allowed.policy is None and "decision_id" not in allowed.dynamic_metadata:
        return kept
    return replace(kept, policy=allowed.policy, dynamic_metadata=allowed.dynamic_metadata)


def _landed(slot: Exchange, flight: asyncio.Future[Allow]) -> None:
    if slot.flight is flight:
        slot.flight = None
    if not flight.cancelled():
        flight.exception()  # retrieved here, so a failure no waiter is left to see is not reported as lost
