"""The gRPC listener: a grpc.aio server with ``envoy.service.auth.v3.Authorization`` and ``grpc.health.v1``.

Health reports SERVING once the process is ready, and NOT_SERVING as soon as it starts to drain (gRPC's graceful
pattern), so a load balancer or Envoy's health check stops sending before in-flight checks finish.
With ``server.tls`` the port is a TLS one (``authz.transport.tls``), and with ``allowed_client_sans`` an interceptor
checks each call's client certificate.
"""

from __future__ import annotations

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from authz.pipeline import Authorizer
from authz.transport.grpc_service import AuthorizationService
from authz.transport.tls import ServerTls
from authz.transport.tls_clients import ClientSanInterceptor

__all__ = ["AUTHORIZATION_SERVICE", "GrpcTransport", "bind"]

AUTHORIZATION_SERVICE = "envoy.service.auth.v3.Authorization"


def bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """Listen on ``HOST:PORT`` or ``unix:PATH`` (with TLS given ``credentials``); the port bound (an ``OSError``
    naming the address otherwise)."""
    try:
        if credentials is not None:
            return int(server.add_secure_port(address, credentials))
        return int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None


class GrpcTransport:
    """The Authorization and health services on ``listen``; ``server`` is started and stopped by the app."""

    def __init__(self, authorizer: Authorizer, listen: str, *, reuse_port: bool, max_receive_bytes: int,
                 tls: ServerTls | None = None) -> None:
        self._grpc_options = [("grpc.so_reuseport", 1 if reuse_port else 0),
                              ("grpc.max_receive_message_length", max_receive_bytes)]
        checks = [ClientSanInterceptor(tls.client_sans)] if tls is not None and tls.client_sans is not None else []
        self.server = grpc.aio.server(options=self._grpc_options, interceptors=checks)
        self._health = health_aio.HealthServicer()
        self.service = AuthorizationService(authorizer)  # its authorizer is swapped on a config reload
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        self.port = bind(self.server, listen, tls.grpc_credentials() if tls is not None else None)

    async def serving(self) -> None:
        for service in ("", AUTHORIZATION_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def draining(self) -> None:
        await self._health.enter_graceful_shutdown()
