"""Who may call over mutual TLS: ``server.tls.allowed_client_sans``, checked on both listeners.

The TLS handshake has already verified the client certificate against ``client_ca_file``; this narrows the callers
to certificates carrying one of the allowed subject alternative names (DNS names, URIs such as SPIFFE ids, IP
addresses, emails; ``*`` stands for any characters, as in route rules' principals). Both listeners read the SANs
from the certificate's DER with ``cryptography``, so they agree on every name's spelling.

- HTTP: checked once per connection, right after the handshake; a refused connection is closed before it is read
  (Envoy answers its ``status_on_error``).
- gRPC: grpcio has no handshake hook, so an interceptor checks each call's peer certificate (from the call's auth
  context) and ends a refused one with ``PERMISSION_DENIED`` (again ``status_on_error``, never an allow). The health
  service is exempt: a probe holding any certificate of the CA may ask it (it reveals only SERVING or not).

A verdict is remembered per certificate (a bounded map), and a refusal is logged once per certificate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from cryptography import x509

from authz.route_rules.patterns import PrincipalGlob

__all__ = ["ClientSanInterceptor", "ClientSans", "certificate_sans"]

log = logging.getLogger("authz.tls")

_REMEMBERED = 256  # certificates whose verdict is kept; the map is emptied when full
_EXEMPT = "/grpc.health.v1.Health/"


def certificate_sans(certificate: x509.Certificate) -> tuple[str, ...]:
    """The DNS, URI, IP address and email SANs of ``certificate``, as written (IPs in their short form)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    found: list[str] = []
    for kind in (x509.DNSName, x509.UniformResourceIdentifier, x509.RFC822Name):
        found += names.get_values_for_type(kind)
    found += [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    return tuple(found)


class ClientSans:
    """The allow-list; ``allows_der`` / ``allows_pem`` judge a client certificate."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._globs = tuple(PrincipalGlob.parse(p) for p in patterns)
        self._verdicts: dict[bytes, bool] = {}

    def allows_der(self, der: bytes | None) -> bool:
        return der is not None and self._verdict(der, x509.load_der_x509_certificate)

    def allows_pem(self, pem: bytes | None) -> bool:
        return pem is not None and self._verdict(pem, x509.load_pem_x509_certificate)

    def _verdict(self, encoded: bytes, parse: Callable[[bytes], x509.Certificate]) -> bool:
        verdict = self._verdicts.get(encoded)
        if verdict is None:
            try:
                sans = certificate_sans(parse(encoded))
            except ValueError:
                sans = ()
            verdict = any(glob.match(san) for san in sans for glob in self._globs)
            if not verdict:
                log.warning("refused a client certificate: its SANs (%s) match none of server.tls.allowed_client_sans",
                            ", ".join(sans) or "none")
            if len(self._verdicts) >= _REMEMBERED:
                self._verdicts.clear()
            self._verdicts[encoded] = verdict
        return verdict

    def allows_connection(self, transport: asyncio.BaseTransport) -> bool:
        """The HTTP listener's check of a connection's peer, once its handshake is done."""
        connection = transport.get_extra_info("ssl_object")
        return connection is not None and self.allows_der(connection.getpeercert(binary_form=True))


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class ClientSanInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Ends a call whose peer certificate carries no allowed SAN with PERMISSION_DENIED, before its handler runs."""

    def __init__(self, sans: ClientSans) -> None:
        self._sans = sans
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or handler.unary_unary is None or method.startswith(_EXEMPT):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = grpc.unary_unary_rpc_method_handler(
                self._checked(handler.unary_unary), handler.request_deserializer, handler.response_serializer)
        return wrapped

    def _checked(self, inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
                 ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        sans = self._sans

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            pem = context.auth_context().get("x509_pem_cert")
            if not sans.allows_pem(pem[0] if pem else None):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "client certificate not allowed")
            return await inner(request, context)

        return checked
