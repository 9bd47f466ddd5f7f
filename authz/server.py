"""The process: grpc.aio server with the Authorization and health services, and its lifecycle.

Shutdown on SIGTERM/SIGINT follows gRPC's graceful pattern: health goes NOT_SERVING, the server stops taking new
RPCs, in-flight checks finish (up to ``server.shutdown_grace_seconds``), the HTTP session closes, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import aiohttp
import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from authz.config import Config
from authz.introspection import build_authorities
from authz.pipeline import Authorizer
from authz.service import AuthorizationService

__all__ = ["AUTHORIZATION_SERVICE", "Server", "run"]

log = logging.getLogger("authz.server")

AUTHORIZATION_SERVICE = "envoy.service.auth.v3.Authorization"


class Server:
    """Owns the gRPC server and the outbound HTTP session; ``start`` then ``stop``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.port: int | None = None
        self._grpc: grpc.aio.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._health = health_aio.HealthServicer()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=300),
            raise_for_status=False,
        )
        authorizer = Authorizer(self.config, build_authorities(self.config, self._session))
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationService(authorizer), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        try:
            self.port = server.add_insecure_port(self.config.server.listen)
        except RuntimeError as exc:
            await self._session.close()
            raise OSError(f"cannot listen on {self.config.server.listen}: {exc}") from None
        await server.start()
        self._grpc = server
        for service in ("", AUTHORIZATION_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self) -> None:
        await self._health.enter_graceful_shutdown()
        if self._grpc is not None:
            await self._grpc.stop(self.config.server.shutdown_grace_seconds)
        if self._session is not None:
            await self._session.close()


async def run(config: Config, ready: Callable[[Server], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then drain and return 0."""
    server = Server(config)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.info("serving %s on %s", AUTHORIZATION_SERVICE, config.server.listen)
    if ready is not None:
        ready(server)
    await stopping.wait()
    log.info("shutting down: draining in-flight checks (grace %.1fs)", config.server.shutdown_grace_seconds)
    await server.stop()
    log.info("stopped")
    return 0
