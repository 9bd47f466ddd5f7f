"""The cache admin gRPC service (``protos/authz/adminpb/admin.proto``), served on ``admin_listen`` only."""

from __future__ import annotations

import logging

import grpc

from authz.adminpb import admin_pb2, admin_pb2_grpc
from authz.cache import IntrospectionCache

__all__ = ["CacheAdminService"]

log = logging.getLogger("authz.admin")


class CacheAdminService(admin_pb2_grpc.CacheAdminServicer):  # type: ignore[misc]
    def __init__(self, cache: IntrospectionCache) -> None:
        self._cache = cache
        self._metrics = cache.metrics

    def _evicted(self, how: str, count: int) -> admin_pb2.EvictResponse:
        self._metrics.evictions.labels(how).inc(count)
        log.info("admin: evicted %d cache entries by %s", count, how)
        return admin_pb2.EvictResponse(evicted=count)

    async def EvictToken(self, request: admin_pb2.EvictTokenRequest,
                         context: grpc.aio.ServicerContext) -> admin_pb2.EvictResponse:
        target = request.WhichOneof("target")
        if target is None or not getattr(request, target):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give token or token_id")
        if target == "token":
            return self._evicted("token", await self._cache.evict_token(token=request.token))
        return self._evicted("token_id", await self._cache.evict_token(short_id=request.token_id.lower()))

    async def EvictSubject(self, request: admin_pb2.EvictSubjectRequest,
                           context: grpc.aio.ServicerContext) -> admin_pb2.EvictResponse:
        if not request.subject:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give subject")
        return self._evicted("subject", await self._cache.evict_subject(request.subject))

    async def Purge(self, request: admin_pb2.PurgeRequest,
                    context: grpc.aio.ServicerContext) -> admin_pb2.EvictResponse:
        return self._evicted("purge", await self._cache.purge())

    async def Stats(self, request: admin_pb2.StatsRequest,
                    context: grpc.aio.ServicerContext) -> admin_pb2.StatsResponse:
        registry = self._metrics.registry

        def count(name: str, **labels: str) -> int:
            return int(registry.get_sample_value(name, labels) or 0)

        lookups = "phantom_authz_cache_lookups_total"
        cache = self._cache
        return admin_pb2.StatsResponse(
            entries=len(cache.positive), negative_entries=len(cache.negative), bytes=cache.positive.bytes,
            max_entries=cache.config.max_entries, max_bytes=cache.config.max_bytes,
            hits=count(lookups, result="hit"), misses=count(lookups, result="miss"),
            negative_hits=count(lookups, result="negative_hit"), stale_served=count(lookups, result="stale"),
            l2_hits=count(lookups, result="l2_hit"),
            singleflight_joins=count("phantom_authz_singleflight_joins_total"),
            lru_evictions=cache.positive.evictions + cache.negative.evictions,
            redis_enabled=cache.redis is not None,
        )
