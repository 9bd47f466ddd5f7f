"""The HTTP transport: Envoy's HTTP ext_authz check requests on aiohttp's low-level server, in the gRPC server's loop.

Why aiohttp's low-level server (``aiohttp.web.Server``, no Application or router): measured behind real Envoy on
this machine (``bench/http_stack_bench.py``), aiohttp, uvicorn+httptools and granian gave the same throughput and
p99 within run-to-run noise; aiohttp is already a dependency, shares our uvloop loop with grpc.aio without touching
signal handlers or logging, and drains in-flight requests on shutdown. See docs/performance.md.

Limits: header lines (count and size) are enforced by aiohttp's parser (400); a body over ``max_body_bytes`` is
refused with 413 before it is read; a request whose head and body have not arrived within
``request_timeout_seconds`` of its first byte has its connection closed (slow senders cannot hold a check open, and
never stall other connections: each connection is its own coroutine). ``GET /healthz`` answers 204 (a status Envoy
would read as a denial, so a misrouted check can never be allowed by it). Every answer comes from the ``Decider``;
an exception here is a 500, never an allow.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from authz.config_http import HttpTransportConfig
from authz.decider import Decider
from authz.errors import RequestTooLarge
from authz.http_body import read_at_most
from authz.http_request import HttpCheckTranslator
from authz.http_response import HttpAnswer, denial, http_answer
from authz.memo import IdentityMemo

__all__ = ["HttpTransport"]

log = logging.getLogger("authz.http")

HEALTH_PATH = "/healthz"
_TOO_LARGE = denial(RequestTooLarge())


class _TimedHandler(RequestHandler):
    """aiohttp's connection handler, noting when the request it is receiving began (its first bytes); the check
    clears the mark once it has read the whole request. ``_Server.sweep`` closes connections marked too long ago."""

    receiving_since: float | None = None

    def data_received(self, data: bytes) -> None:
        if self.receiving_since is None:
            self.receiving_since = self._loop.time()
        super().data_received(data)

    def request_read(self) -> None:
        self.receiving_since = None


class _Server(web.Server):
    def __init__(self, *args: Any, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout

    def __call__(self) -> RequestHandler:
        return _TimedHandler(self, loop=self._loop, **self._kwargs)

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
                    handler.request_read()  # type: ignore[attr-defined]
                    transport.close()


class HttpTransport:
    def __init__(self, decider: Decider, config: HttpTransportConfig, *, reuse_port: bool = False,
                 shutdown_grace_seconds: float = 10.0) -> None:
        assert config.listen is not None
        self._decider = decider
        self._config = config
        self._reuse_port = reuse_port
        self._grace = shutdown_grace_seconds
        self._translator = HttpCheckTranslator(config.path_prefix, config.max_header_bytes)
        self._answers: IdentityMemo[HttpAnswer] = IdentityMemo()
        self._runner: web.ServerRunner | None = None
        self._sweeper: asyncio.Future[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        config = self._config
        server = _Server(self._handle, request_timeout=config.request_timeout_seconds, access_log=None,
                         keepalive_timeout=config.keepalive_timeout_seconds, max_headers=config.max_headers,
                         max_field_size=config.max_header_bytes, max_line_size=config.max_header_bytes)
        self._sweeper = asyncio.ensure_future(server.sweep())
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=self._grace)
        await self._runner.setup()
        address = config.listen
        assert address is not None
        if address.startswith("unix:"):
            site: web.BaseSite = web.UnixSite(self._runner, address[len("unix:"):])
        else:
            host, _, port = address.rpartition(":")
            site = web.TCPSite(self._runner, host.strip("[]"), int(port), reuse_port=self._reuse_port or None,
                               backlog=1024)
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
        if request.method == "GET" and request.raw_path == HEALTH_PATH:
            protocol.request_read()
            return web.Response(status=204)
        body = await read_at_most(request, self._config.max_body_bytes) if request.can_read_body else b""
        protocol.request_read()
        if body is None:
            return _response(_TOO_LARGE)
        method, raw_path, raw_headers = request.method, request.raw_path, request.raw_headers
        check = await self._decider.decide(
            lambda: self._translator.request_info(method, raw_path, raw_headers, body),
            lambda: f"{method} {raw_path[:200]!r} request_id={request.headers.get('x-request-id', '-')}",
            per_request_metadata=False)  # Envoy's HTTP mode has no dynamic metadata in the answer
        return self._answer_for(check)

    def _answer_for(self, check: Any) -> web.Response:
        """Cached answers come back as the same CheckResponse object: translate each once."""
        answer = self._answers.get(check)
        return _response(answer if answer is not None else self._answers.put(check, http_answer(check)))


def _response(answer: HttpAnswer) -> web.Response:
    status, headers, body = answer
    response = web.Response(status=status, body=body)
    for name, value in headers:
        response.headers.add(name, value)
    return response
