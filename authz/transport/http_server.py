"""The HTTP transport: Envoy's HTTP ext_authz check requests on aiohttp's low-level server, in the gRPC server's loop.

Why aiohttp's low-level server (``aiohttp.web.Server``, no Application or router): measured behind real Envoy on
this machine (``bench/http_stack_bench.py``), aiohttp, uvicorn+httptools and granian gave the same throughput and
p99 within run-to-run noise; aiohttp is already a dependency, shares our uvloop loop with grpc.aio without touching
signal handlers or logging, and drains in-flight requests on shutdown. See docs/performance.md.

Limits: header lines (count and size) are enforced by aiohttp's parser (400, logged as one line naming the error's
type: aiohttp's own log and answer quote the offending line, which may hold a token); a request line with a version
other than HTTP/1.0 or 1.1 (an HTTP/0.9-style ``GET /path``) is answered 400; a body over ``max_body_bytes`` is
refused with 413 before it is read; a request whose head and body have not arrived within
``request_timeout_seconds`` of its first byte has its connection closed (slow senders cannot hold a check open, and
never stall other connections: each connection is its own coroutine). That holds for each request on a kept-alive
connection, pipelined ones included: bytes received past the end of the request just read start the next one's
clock. ``GET /healthz`` answers 204 (a status Envoy would read as a denial, so a misrouted check can never be
allowed by it). Every answer comes from ``Authorizer.decide_kept``; an exception here is a 500, never an allow.
With ``server.tls`` the listener speaks TLS (``authz.transport.tls``); a client certificate whose SANs are not allowed
has its connection closed right after the handshake, before a byte of it is read.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11, RawRequestMessage
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDictProxy

from authz.config import HttpTransportConfig
from authz.errors import MalformedRequest, RequestTooLarge
from authz.grpc_denial import grpc_denial, is_grpc
from authz.http_body import read_at_most
from authz.library_logs import describe_exception
from authz.log_context import bind_check, unbind_check
from authz.logs import loggable_path
from authz.pipeline import Authorizer
from authz.resource_metadata import is_metadata_path
from authz.transport.http_request import HttpCheckTranslator
from authz.transport.http_response import HttpAnswer, denial, http_answer
from authz.transport.tls import ServerTls
from authz.transport.tls_clients import ClientSans

__all__ = ["HttpTransport"]

log = logging.getLogger("authz.http")

HEALTH_PATH = "/healthz"
_TOO_LARGE = denial(RequestTooLarge())
_NOT_HTTP_1 = denial(MalformedRequest("request line version is not HTTP/1.0 or HTTP/1.1"))
_HTTP_1 = (HttpVersion10, HttpVersion11)
_HEAD_END = b"\r\n\r\n"  # how a request without a body (or with a chunked one) ends


class _TimedHandler(RequestHandler):
    """aiohttp's connection handler, noting when the request it is receiving began (its first bytes); the check
    clears the mark once it has read the whole request, unless bytes of a next request have already come (pipelined:
    the mark then says when they came). ``_Server.sweep`` closes connections marked too long ago."""

    receiving_since: float | None = None
    not_http_1 = False  # the request being handled named a version other than HTTP/1.0 or 1.1
    client_sans: ClientSans | None = None  # server.tls.allowed_client_sans
    _last_chunk = b""
    _last_chunk_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # over TLS: once the handshake (client certificate verified) is done
        if self.client_sans is not None and not self.client_sans.allows_connection(transport):
            transport.close()

    def data_received(self, data: bytes) -> None:
        if data:
            now = self._loop.time()
            if self.receiving_since is None:
                self.receiving_since = now
            self._last_chunk, self._last_chunk_at = data, now
        super().data_received(data)

    def request_begun(self) -> None:
        """A request is being handled: it is being received until ``request_read`` (a pipelined request whose bytes
        all came with the previous one's starts its clock here at the latest)."""
        if self.receiving_since is None:
            self.receiving_since = self._loop.time()

    def request_read(self, ending: bytes | None) -> None:
        """The whole request has been read; it ended with ``ending`` on the wire (None: not read to its end). When
        the last bytes received do not end there, the next request has begun with them."""
        chunk = self._last_chunk
        if ending is not None and (chunk.endswith(ending) if len(chunk) >= len(ending) else ending.endswith(chunk)):
            self.receiving_since = None
        else:
            self.receiving_since = self._last_chunk_at

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's own version logs a traceback and answers a body that both quote the bad request line (a
        token with it): one line naming the error's type instead, and a body that quotes nothing."""
        log.warning("answered %d to a malformed HTTP request (%s)", status,
                    "no exception" if exc is None else describe_exception(exc))
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot send an error response")
        try:
            text = f"{status} {HTTPStatus(status).phrase}"
        except ValueError:
            text = str(status)
        response = web.Response(status=status, text=text)
        response.force_close()
        return response


class _Server(web.Server):
    def __init__(self, *args: Any, request_timeout: float, client_sans: ClientSans | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self.client_sans = client_sans

    def __call__(self) -> RequestHandler:
        handler = _TimedHandler(self, loop=self._loop, **self._kwargs)
        handler.client_sans = self.client_sans
        return handler

    def _make_request(self, message: RawRequestMessage, payload: Any, protocol: RequestHandler, writer: Any,
                      task: Any) -> web.BaseRequest:
        """aiohttp takes ``GET /path`` (no version) as HTTP/0.9 and would answer ``HTTP/0.9 200``: such a request is
        marked (``_handle`` answers it 400) and answered as HTTP/1.0, whose status line every client reads."""
        if message.version not in _HTTP_1:
            assert isinstance(protocol, _TimedHandler)
            protocol.not_http_1 = True
            message = message._replace(version=HttpVersion10)
        return super()._make_request(message, payload, protocol, writer, task)

    async def sweep(self) -> None:
        """Every quarter of the timeout: close connections still sending a request begun longer ago than that.
        (One sweep instead of a timer per request: the check path only reads the clock.)"""
        while True:
            await asyncio.sleep(self.request_timeout / 4)
            cutoff = self._loop.time() - self.request_timeout
            for handler, transport in list(self._connections.items()):
                since = getattr(handler, "receiving_since", None)
                if since is not None and since < cutoff:
                    log.warning("closing a connection that sent no complete request within %.1fs",
                                self.request_timeout)
                    handler.receiving_since = None  # type: ignore[attr-defined]
                    transport.close()


class HttpTransport:
    def __init__(self, authorizer: Authorizer, config: HttpTransportConfig, *, reuse_port: bool = False,
                 shutdown_grace_seconds: float = 10.0, tls: ServerTls | None = None) -> None:
        assert config.listen is not None
        self._tls = tls
        self.authorizer = authorizer
        self._config = config
        self._reuse_port = reuse_port
        self._grace = shutdown_grace_seconds
        self._translator = HttpCheckTranslator(config.path_prefix, config.max_header_bytes)
        self._runner: web.ServerRunner | None = None
        self._sweeper: asyncio.Future[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        config = self._config
        tls = self._tls
        server = _Server(self._handle, request_timeout=config.request_timeout_seconds, access_log=None,
                         client_sans=tls.client_sans if tls is not None else None,
                         keepalive_timeout=config.keepalive_timeout_seconds, max_headers=config.max_headers,
                         max_field_size=config.max_header_bytes, max_line_size=config.max_header_bytes)
        self._sweeper = asyncio.ensure_future(server.sweep())
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=self._grace)
        await self._runner.setup()
        address = config.listen
        assert address is not None
        context = tls.http_context() if tls is not None else None
        if address.startswith("unix:"):
            site: web.BaseSite = web.UnixSite(self._runner, address[len("unix:"):], ssl_context=context)
        else:
            host, _, port = address.rpartition(":")
            site = web.TCPSite(self._runner, host.strip("[]"), int(port), reuse_port=self._reuse_port or None,
                               backlog=1024, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise OSError(f"cannot listen on {address} (server.http.listen): {exc}") from None
        sockets = self._runner.addresses
        self.port = sockets[0][1] if sockets and isinstance(sockets[0], tuple) else None

    async def stop(self) -> None:
        """Stop accepting, let in-flight checks finish (up to the grace period), close idle connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        protocol = request.protocol
        assert isinstance(protocol, _TimedHandler)
        protocol.request_begun()
        if protocol.not_http_1:
            protocol.not_http_1 = False
            protocol.request_read(None)
            refused = _response(_NOT_HTTP_1)
            refused.force_close()
            return refused
        if request.method == "GET" and request.raw_path == HEALTH_PATH:
            protocol.request_read(None if request.can_read_body else _HEAD_END)
            return web.Response(status=204)
        resources = self.authorizer.resources
        if resources is not None and is_metadata_path(request.raw_path, self._config.path_prefix):
            protocol.request_read(None if request.can_read_body else _HEAD_END)
            return _response(resources.http_answer(request.method, request.host, request.raw_path))
        body = await read_at_most(request, self._config.max_body_bytes) if request.can_read_body else b""
        if body is None:
            protocol.request_read(None)
            return _response(_TOO_LARGE)
        protocol.request_read(body[-64:] if body and request.content_length is not None else _HEAD_END)
        method, raw_path, raw_headers = request.method, request.raw_path, request.raw_headers
        bound = bind_check(_header, request.headers)  # log lines name the request by Envoy's x-request-id
        try:
            response, replies = await self.authorizer.decide_kept(
                lambda: self._translator.request_info(method, raw_path, raw_headers, body),
                lambda: f"{method} {loggable_path(raw_path)}")
        finally:
            unbind_check(bound)
        if replies is None:  # a denial
            if is_grpc(request.headers.get("content-type")):
                response = grpc_denial(response)  # what a gRPC client reads: grpc-status, grpc-message
            return _response(http_answer(response))
        if replies.http_answer is None:  # an allow's HTTP answer is made once per kept reply (a cached answer's)
            replies.http_answer = http_answer(response)
        return _response(replies.http_answer)


def _header(headers: CIMultiDictProxy[str], name: str) -> str | None:
    return headers.get(name)


def _response(answer: HttpAnswer) -> web.Response:
    status, headers, body = answer
    response = web.Response(status=status, body=body)
    for name, value in headers:
        response.headers.add(name, value)
    return response
