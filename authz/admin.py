"""The cache admin gRPC service (``protos/authz/adminpb/admin.proto``), served on ``admin_listen`` only.

An eviction (``EvictToken``, ``EvictSubject``, ``Purge``) reaches every cache that may hold the answer before the
call returns: this worker's, then — relayed over their admin addresses with the ``RELAY`` metadata, so they do not
relay again — its sibling workers' (``--workers N``), and, when Redis is configured, the shared tier and every other
sidecar through the pub/sub broadcast (``authz.cache.evictions``). If a sibling or the broadcast cannot be reached,
the call fails with UNAVAILABLE after evicting everywhere it could: the caller must retry, not believe it done.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence

import grpc

from authz.adminpb import admin_pb2, admin_pb2_grpc
from authz.cache import IntrospectionCache
from authz.cache.introspection_cache import BroadcastFailed
from authz.credential import token_as_presented
from authz.errors import MalformedCredential

__all__ = ["RELAY", "CacheAdminService"]

log = logging.getLogger("authz.admin")

RELAY = ("x-phantom-authz-relay", "1")  # set on a call one worker relays to its siblings
_RELAY_TIMEOUT_SECONDS = 5.0
_TOKEN_ID = re.compile(r"[0-9a-fA-F]{12}")


class CacheAdminService(admin_pb2_grpc.CacheAdminServicer):  # type: ignore[misc]
    def __init__(self, cache: IntrospectionCache, siblings: Sequence[str] = ()) -> None:
        self._cache = cache
        self._metrics = cache.metrics
        self._siblings = tuple(siblings)  # the other workers' admin addresses

    async def _everywhere(self, context: grpc.aio.ServicerContext, how: str,
                          here: Callable[[bool], Awaitable[int]],
                          relay: Callable[[admin_pb2_grpc.CacheAdminStub], Awaitable[admin_pb2.EvictResponse]],
                          ) -> admin_pb2.EvictResponse:
        """Evict here (sharing it through Redis unless this call is itself a relay), then in every sibling."""
        relayed = any(tuple(item) == RELAY for item in context.invocation_metadata() or ())
        failures: list[str] = []
        try:
            count = await here(not relayed)
        except BroadcastFailed as exc:
            count = exc.evicted
            failures.append("the broadcast through Redis")
        self._metrics.evictions.labels(how).inc(count)  # this worker's own: each worker counts its own
        if not relayed and self._siblings:
            answers = await asyncio.gather(*(self._relay(s, relay) for s in self._siblings))
            count += sum(a for a in answers if a is not None)
            failures += [f"worker at {s}" for s, a in zip(self._siblings, answers, strict=True) if a is None]
        log.info("admin: evicted %d cache entries by %s%s", count, how, " (relayed)" if relayed else "")
        response = admin_pb2.EvictResponse(evicted=count)
        if failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"evicted {count} entries, but not through {', '.join(failures)}: retry")
        return response

    async def _relay(self, sibling: str,
                     call: Callable[[admin_pb2_grpc.CacheAdminStub], Awaitable[admin_pb2.EvictResponse]],
                     ) -> int | None:
        try:
            async with grpc.aio.insecure_channel(sibling) as channel:
                return int((await call(admin_pb2_grpc.CacheAdminStub(channel))).evicted)
        except grpc.RpcError as exc:
            log.error("admin: eviction relay to the worker at %s failed: %s", sibling,
                      exc.code() if isinstance(exc, grpc.aio.AioRpcError) else exc)
            return None

    async def EvictToken(self, request: admin_pb2.EvictTokenRequest,
                         context: grpc.aio.ServicerContext) -> admin_pb2.EvictResponse:
        target = request.WhichOneof("target")
        if target is None or not getattr(request, target):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give token or token_id")
        if target == "token":
            try:  # the token a request presents, so the key a request's lookup makes (never echoed back)
                request = admin_pb2.EvictTokenRequest(token=token_as_presented(request.token))
            except MalformedCredential as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"token: {exc.detail}; give the token alone or as its Authorization value")
            kwargs = {"token": request.token}
        elif _TOKEN_ID.fullmatch(request.token_id):
            request = admin_pb2.EvictTokenRequest(token_id=request.token_id.lower())
            kwargs = {"short_id": request.token_id}
        else:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "token_id: must be the 12 hex digits a log line's token_id shows")
        return await self._everywhere(
            context, target,
            lambda share: self._cache.evict_token(**kwargs, broadcast=share),
            lambda stub: stub.EvictToken(request, metadata=(RELAY,), timeout=_RELAY_TIMEOUT_SECONDS))

    async def EvictSubject(self, request: admin_pb2.EvictSubjectRequest,
                           context: grpc.aio.ServicerContext) -> admin_pb2.EvictResponse:
        if not request.subject:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give subject")
        return await self._everywhere(
            context, "subject", lambda share: self._cache.evict_subject(request.subject, broadcast=share),
            lambda stub: stub.EvictSubject(request, metadata=(RELAY,), timeout=_RELAY_TIMEOUT_SECONDS))

    async def Purge(self, request: admin_pb2.PurgeRequest,
                    context: grpc.aio.ServicerContext) -> admin_pb2.EvictResponse:
        return await self._everywhere(
            context, "purge", lambda share: self._cache.purge(broadcast=share),
            lambda stub: stub.Purge(request, metadata=(RELAY,), timeout=_RELAY_TIMEOUT_SECONDS))

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
