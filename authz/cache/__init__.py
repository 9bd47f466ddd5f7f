"""The introspection cache: L1 in process, optional L2 on Redis, single-flight, stale-if-error."""

from authz.cache.entries import Entry, cache_key, fresh_seconds
from authz.cache.introspection_cache import CachedAuthority, IntrospectionCache, Upstream
from authz.cache.redis_tier import RedisTier
from authz.cache.store import BoundedStore

__all__ = ["BoundedStore", "CachedAuthority", "Entry", "IntrospectionCache", "RedisTier", "Upstream", "cache_key",
           "fresh_seconds"]
