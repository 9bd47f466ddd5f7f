"""What the cache keeps per token, and the one TTL rule (DESIGN.md "Cache rule")."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from authz.config import CacheConfig
from authz.models import Answer, Introspection
from authz.numbers import finite_number

__all__ = ["Entry", "cache_key", "fresh_seconds", "subject_hash", "token_expiry"]


def cache_key(authority_id: str, token: str) -> str:
    """SHA-256 of ("lookup", AS identity, token): no raw token is ever a key, in memory or in Redis. The L2 value key
    is another function of the token (``authz.cache.sealing``), so this key does not open what Redis holds."""
    return hashlib.sha256(f"lookup\0{authority_id}\0{token}".encode("utf-8", "surrogatepass")).hexdigest()


def subject_hash(subject: str) -> str:
    """How evictions by subject name one (in Redis sets and broadcast messages): never the subject itself."""
    return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()


def token_expiry(answer: Introspection) -> float | None:
    return finite_number(answer.claims.get("exp"))


def fresh_seconds(answer: Introspection, now: float, config: CacheConfig) -> float:
    """TTL = min(configured max, Cache-Control max-age, exp - now - skew); <= 0 means do not cache."""
    ttl = config.max_ttl_seconds
    if answer.max_age is not None:
        ttl = min(ttl, float(answer.max_age))
    exp = token_expiry(answer)
    if exp is not None:
        ttl = min(ttl, exp - now - config.expiry_skew_seconds)
    return ttl


@dataclass(slots=True)
class Entry:
    answer: Answer  # what every hit hands back, with what is derived from it: it goes when the entry goes
    fresh_until: float  # served as a hit before this (wall clock) ...
    fresh_ticks: float  # ... and before this on the monotonic clock: a wall clock set back lengthens no window
    stale_until: float  # served only when the AS is down, before this (never past exp - skew) ...
    stale_ticks: float  # ... and before this on the monotonic clock
    subject: str | None
    token_id: str  # the short hash logs show, so an operator can evict by it
    subject_hash: str | None = None  # ``subject_hash(subject)``, worked out once: evictions by subject name it

    def fresh(self, now: float, ticks: float) -> bool:
        """A hit at wall time ``now`` and monotonic time ``ticks``: within the TTL on both clocks (one set forward
        ends the entry early; one set back keeps it no longer)."""
        return now < self.fresh_until and ticks < self.fresh_ticks

    def stale(self, now: float, ticks: float) -> bool:
        """May be served while the AS fails: before ``stale_until`` on both clocks."""
        return now < self.stale_until and ticks < self.stale_ticks

    @classmethod
    def build(cls, answer: Introspection, now: float, ticks: float, config: CacheConfig,
              token_id: str) -> Entry | None:
        """The entry for ``answer``, got at wall time ``now`` and monotonic time ``ticks`` (None: not to cache)."""
        ttl = fresh_seconds(answer, now, config)
        if ttl <= 0:
            return None
        fresh_until = now + ttl
        stale_until = fresh_until + config.stale_if_error_seconds
        exp = token_expiry(answer)
        if exp is not None:
            stale_until = max(min(stale_until, exp - config.expiry_skew_seconds), fresh_until)
        sub = answer.claims.get("sub")
        subject = sub if isinstance(sub, str) else None
        return cls(Answer(answer), fresh_until, ticks + ttl, stale_until, ticks + (stale_until - now), subject,
                   token_id, subject_hash(subject) if subject is not None else None)

    def size(self) -> int:
        """Accounted bytes: the JWT three times (the answer, the Allow's header, its CheckResponse), the claims'
        text and a fixed overhead for the objects around them and derived from them. Measured with tracemalloc,
        an entry with an 800-byte JWT and eight claims holds ~3.9 KB once answered over gRPC (~5 KB with the HTTP
        answer too); this counts ~4.6 KB."""
        answer = self.answer.introspection
        claims = sum(len(str(k)) + len(str(v)) + 64 for k, v in answer.claims.items())
        return 1536 + 3 * len(answer.jwt or "") + claims
