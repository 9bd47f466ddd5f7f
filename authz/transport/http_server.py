"""The HTTP transport: Envoy's HTTP ext_authz check requests, in the gRPC server's loop, on llhttp (httptools).

Why a protocol of our own on httptools rather than a framework: behind real Envoy, aiohttp's low-level server cost
~30 µs of CPU per request doing nothing (headers as multidicts, a task and a request object per request), a bare
``asyncio.Protocol`` on httptools ~7 µs (``bench/noop_http_authz.py``; docs/performance.md), and every request of
every pod pays it. HTTP parsing stays llhttp's (the parser of Node.js, and of aiohttp's C speedups); the modules here
only keep its results within our limits and write the answers:

- ``http_protocol``: one connection (llhttp callbacks, requests queued and answered in order);
- ``http_limits``: the limits (``server.http``) and the requests answered without the pipeline (400, 413);
- ``http_connections``: the open connections, the sweep of the request and keep-alive timeouts, the drain;
- ``http_wire``: answers as bytes (an allow's are made once per cached answer and kept on it, ``Replies``).

Limits: more than ``max_headers`` header lines, a header line or request target over ``max_header_bytes``, or
anything llhttp refuses is answered 400 (logged as one line naming the reason, never quoting the request, which may
hold a token); a request line with a version other than HTTP/1.0 or 1.1 (an HTTP/0.9-style ``GET /path``) is
answered 400; a body over ``max_body_bytes`` is refused with 413 before it is read; a request whose head and body
have not arrived within ``request_timeout_seconds`` of its first byte has its connection closed (slow senders cannot
hold a check open, and never stall other connections). That holds for each request on a kept-alive connection,
pipelined ones included (they are answered in order). Idle connections close after ``keepalive_timeout_seconds``.
``GET /healthz`` answers 204 (a status Envoy would read as a denial, so a misrouted check can never be allowed by
it); the RFC 9728 metadata path (never a check path) is answered from ``Authorizer.resources``. Every other answer
comes from ``Authorizer.decide_kept``; an exception here is a 500, never an allow. With ``server.tls`` the listener
speaks TLS (``authz.transport.tls``); a client certificate whose SANs are not allowed has its connection closed right
after the handshake, before a byte of it is read. On shutdown, connections finish the requests they have received
(up to ``server.shutdown_grace_seconds``) and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat

from authz.config import HttpTransportConfig
from authz.grpc_denial import grpc_denial, is_grpc
from authz.log_context import bind_check, unbind_check
from authz.logs import loggable_path
from authz.pipeline import Authorizer
from authz.resource_metadata import is_metadata_path
from authz.transport.http_connections import Connections
from authz.transport.http_limits import INTERNAL_ERROR, HttpLimits
from authz.transport.http_protocol import HttpCheck
from authz.transport.http_request import HttpCheckTranslator
from authz.transport.http_response import HttpAnswer, http_answer
from authz.transport.http_wire import Wire, wire
from authz.transport.tls import ServerTls

__all__ = ["HttpTransport"]

log = logging.getLogger("authz.http")

HEALTH_PATH = "/healthz"
_HEALTHY = wire(204, (), b"")


class HttpTransport:
    def __init__(self, authorizer: Authorizer, config: HttpTransportConfig, *, reuse_port: bool = False,
                 shutdown_grace_seconds: float = 10.0, tls: ServerTls | None = None) -> None:
        assert config.listen is not None
        self._tls = tls
        self.authorizer = authorizer  # swapped on a config reload: checks that start after use the new one
        self._config = config
        self._prefix = config.path_prefix
        self._reuse_port = reuse_port
        self._grace = shutdown_grace_seconds
        self._translator = HttpCheckTranslator(config.path_prefix, config.max_header_bytes)
        self._server: asyncio.Server | None = None
        self._connections: Connections | None = None
        self._sweeper: asyncio.Future[None] | None = None
        self._unix_path: str | None = None
        self.port: int | None = None

    async def start(self) -> None:
        config, tls = self._config, self._tls
        connections = Connections(self._answer, HttpLimits.of(config), tls.client_sans if tls is not None else None)
        loop = asyncio.get_running_loop()
        address = config.listen
        assert address is not None
        context = tls.http_context() if tls is not None else None
        try:
            if address.startswith("unix:"):
                self._unix_path = address[len("unix:"):]
                self._server = await loop.create_unix_server(connections, self._unix_path, ssl=context, backlog=1024)
            else:
                host, _, port = address.rpartition(":")
                self._server = await loop.create_server(connections, host.strip("[]"), int(port), ssl=context,
                                                        reuse_port=self._reuse_port or None, backlog=1024)
        except OSError as exc:
            raise OSError(f"cannot listen on {address} (server.http.listen): {exc}") from None
        self._connections = connections
        self._sweeper = asyncio.ensure_future(connections.sweep())
        sockets = self._server.sockets
        name = sockets[0].getsockname() if sockets else None
        self.port = name[1] if isinstance(name, tuple) else None

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight checks finish (up to ``grace``, else the constructor's), close idle
        connections."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            if self._connections is not None:
                await self._connections.drain(self._grace if grace is None else grace)
            await server.wait_closed()
            if self._unix_path is not None:
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(os.stat(self._unix_path).st_mode):
                        os.unlink(self._unix_path)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def _answer(self, check: HttpCheck) -> Wire:
        """The answer to one request (``http_protocol`` writes it)."""
        method, target = check.method, check.target
        if target == HEALTH_PATH and method == "GET":
            return _HEALTHY
        authorizer = self.authorizer
        resources = authorizer.resources
        if resources is not None and is_metadata_path(target, self._prefix):
            return _wire(resources.http_answer(method, _text(check.header(b"host")) or "", target))
        translator, headers, body = self._translator, check.headers, check.body
        bound = bind_check(_header, check)  # log lines name the request by Envoy's x-request-id
        try:
            response, replies = await authorizer.decide_kept(
                lambda: translator.request_info(method, target, headers, body),
                lambda: f"{method} {loggable_path(target)}")
        finally:
            unbind_check(bound)
        if replies is None:  # a denial
            if is_grpc(_text(check.header(b"content-type"))):
                response = grpc_denial(response)  # what a gRPC client reads: grpc-status, grpc-message
            return _wire(http_answer(response))
        kept: Wire | None = replies.http_answer
        if kept is None:  # an allow's answer is made once per kept reply (a cached answer's)
            kept = replies.http_answer = _wire(http_answer(response))
        return kept


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _header(check: HttpCheck, name: str) -> str | None:
    return _text(check.header(name.encode("latin-1")))


def _wire(answer: HttpAnswer) -> Wire:
    try:
        return wire(*answer)
    except ValueError as exc:
        log.error("an answer cannot be written as HTTP (%s); answering 500", exc)
        return INTERNAL_ERROR
