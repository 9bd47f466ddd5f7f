"""The dev AS's revocation hook: tell phantom-authz's admin API to evict a token the moment it is revoked.

Real deployments get the same effect from their AS's events (Curity event listeners, Keycloak admin events) or
back-channel logout calling ``CacheAdmin.EvictToken`` / ``EvictSubject``.
"""

from __future__ import annotations

import logging

import grpc

from authz.adminpb import admin_pb2, admin_pb2_grpc

__all__ = ["evict_at_gateway"]

log = logging.getLogger("devtools.revocation_hook")


async def evict_at_gateway(target: str, token: str, deadline: float = 1.0) -> int | None:
    """Evict ``token`` from phantom-authz's cache at ``target`` (HOST:PORT or unix:PATH); None if that failed."""
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            answer = await admin_pb2_grpc.CacheAdminStub(channel).EvictToken(
                admin_pb2.EvictTokenRequest(token=token), timeout=deadline)
    except grpc.RpcError as exc:
        log.warning("revocation hook: eviction at %s failed: %s", target, exc.code() if hasattr(exc, "code") else exc)
        return None
    log.info("revocation hook: phantom-authz at %s evicted %d cache entries", target, answer.evicted)
    return int(answer.evicted)
