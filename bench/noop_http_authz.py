"""A no-op HTTP ext_authz server: the floor for a Python HTTP ``http_service`` ext_authz (bench/http_stack_bench.py).

A benchmark floor, not product code. Every request (any method, any path, any body) is answered ``200`` with one
fixed ``authorization: Bearer <JWT>`` header (about 650 bytes, the size of an RS256 JWT with the usual claims) and an
empty body: no parsing of its own, no cache, no I/O. What it costs is the HTTP stack plus the event loop.

Stacks (only the chosen one is imported, so it starts fast):

- ``httptools``: a bare ``asyncio.Protocol`` on httptools' llhttp parser in a uvloop loop we own, answering each
  request as its last byte is parsed (what phantom-authz's own HTTP transport is built on, without its limits);
- ``aiohttp``: aiohttp's low-level server (``aiohttp.web.Server`` with a plain handler, no Application, no router,
  no access log) in a uvloop loop we own;
- ``uvicorn``: ``uvicorn.Server`` with ``http="httptools"``, a raw ASGI callable (no framework), lifespan off, no
  access log, served from a uvloop loop we own (uvicorn's own signal capture replaced by ours, as it would be when
  embedded next to another server);
- ``granian``: granian's standard server, RSGI interface, one worker process, uvloop, one Rust runtime thread;
- ``granian-embed``: granian's (experimental) embedded server, RSGI, awaited from a uvloop loop we own: the Python
  callbacks run in our loop, the HTTP I/O on granian's Rust runtime thread(s) in the same process.

SIGTERM and SIGINT stop it gracefully (exit status 0).

    python bench/noop_http_authz.py --stack aiohttp --port 9100
    python bench/noop_http_authz.py --stack granian --unix /tmp/authz.sock
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["FIXED_JWT", "STACKS", "main"]

STACKS = ("httptools", "aiohttp", "uvicorn", "granian", "granian-embed")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# RS256-shaped: header with a kid, common claims, a 256-byte signature: 650 characters.
FIXED_JWT = ".".join((
    _b64(b'{"alg":"RS256","typ":"JWT","kid":"noop-http-bench-key"}'),
    _b64(json.dumps({"iss": "http://127.0.0.1:8443/oauth", "sub": "demo-client", "aud": "api.example.com",
                     "scope": "read", "exp": 4102444800, "iat": 1700000000, "jti": "0" * 36},
                    separators=(",", ":")).encode()),
    _b64(b"\x00" * 256),
))
AUTHORIZATION = f"Bearer {FIXED_JWT}"


# ---------------------------------------------------------------------------------------------------- aiohttp


async def serve_aiohttp(host: str, port: int, unix: str | None, stop: asyncio.Event) -> None:
    from aiohttp import web
    from multidict import CIMultiDict

    headers = CIMultiDict({"authorization": AUTHORIZATION})

    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(status=200, headers=headers)

    server = web.Server(handler, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site: web.BaseSite = web.UnixSite(runner, unix) if unix else web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        await stop.wait()
    finally:
        await runner.cleanup()  # stops listening, lets in-flight requests finish (shutdown_timeout), closes


# -------------------------------------------------------------------------------------------------- httptools

_HTTPTOOLS_ANSWER = (f"HTTP/1.1 200 OK\r\nauthorization: {AUTHORIZATION}\r\ncontent-length: 0\r\n\r\n").encode()


async def serve_httptools(host: str, port: int, unix: str | None, stop: asyncio.Event) -> None:
    import httptools

    class NoopProtocol(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                assert self.transport is not None
                self.transport.close()

        def on_message_complete(self) -> None:
            assert self.transport is not None
            self.transport.write(_HTTPTOOLS_ANSWER)
            if not self.parser.should_keep_alive():
                self.transport.close()

    loop = asyncio.get_running_loop()
    server = (await loop.create_unix_server(NoopProtocol, unix, backlog=1024) if unix else
              await loop.create_server(NoopProtocol, host, port, backlog=1024))
    try:
        await stop.wait()
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------------- uvicorn

_ASGI_START = {"type": "http.response.start", "status": 200,
               "headers": [(b"authorization", AUTHORIZATION.encode()), (b"content-length", b"0")]}
_ASGI_BODY = {"type": "http.response.body", "body": b""}


async def asgi_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    await send(_ASGI_START)
    await send(_ASGI_BODY)


async def serve_uvicorn(host: str, port: int, unix: str | None, stop: asyncio.Event) -> None:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        """No signal capture of its own (uvicorn's would replace the process's handlers and re-raise the signal
        after shutdown): the owner of the loop decides when to stop, by setting ``should_exit``."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    config = uvicorn.Config(asgi_app, host=host, port=port, uds=unix, http="httptools", loop="none",
                            lifespan="off", access_log=False, log_config=None, backlog=1024,
                            timeout_graceful_shutdown=2)
    server = EmbeddedServer(config)
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving
    if server.started is False:
        raise SystemExit(1)


# ---------------------------------------------------------------------------------------------------- granian

_RSGI_HEADERS = [("authorization", AUTHORIZATION)]


async def rsgi_app(scope: Any, protocol: Any) -> None:
    protocol.response_empty(200, _RSGI_HEADERS)


def _rsgi_loader(*_: Any, **__: Any) -> Callable[..., Awaitable[None]]:
    return rsgi_app


def _granian_options(host: str, port: int, unix: str | None) -> dict[str, Any]:
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels

    return {"address": host, "port": port, "uds": Path(unix) if unix else None, "interface": Interfaces.RSGI,
            "http": HTTPModes.http1, "websockets": False, "runtime_threads": 1, "backlog": 1024,
            "log_level": LogLevels.warning, "log_access": False}


def serve_granian(host: str, port: int, unix: str | None) -> None:
    """granian's own server: a supervisor process and one worker process (fork), each with its own signal
    handling; blocks until SIGTERM/SIGINT, then stops the worker gracefully."""
    from granian import Granian
    from granian.constants import Loops

    # The target string only names the process: the worker gets the app from _rsgi_loader (fork, no import).
    server = Granian("noop_http_authz:rsgi_app", workers=1, loop=Loops.uvloop, workers_kill_timeout=5,
                     **_granian_options(host, port, unix))
    server.serve(target_loader=_rsgi_loader, wrap_loader=False)


async def serve_granian_embed(host: str, port: int, unix: str | None, stop: asyncio.Event) -> None:
    from granian.server.embed import Server

    server = Server(rsgi_app, **_granian_options(host, port, unix))  # note: calls logging.config.dictConfig
    logging.getLogger("_granian").setLevel(logging.ERROR)  # "Embedded server is experimental!" on every start
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not serving.done():
        server.stop()
    await serving


# -------------------------------------------------------------------------------------------------------- main


async def _serve_in_our_loop(stack: str, host: str, port: int, unix: str | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    serve = {"httptools": serve_httptools, "aiohttp": serve_aiohttp, "uvicorn": serve_uvicorn,
             "granian-embed": serve_granian_embed}[stack]
    await serve(host, port, unix, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="noop_http_authz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", choices=STACKS, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=9100, help="TCP port (default %(default)s)")
    parser.add_argument("--unix", metavar="PATH", help="listen on this unix socket instead of TCP")
    args = parser.parse_args(argv)
    if args.unix:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.unix)
    try:
        if args.stack == "granian":
            serve_granian(args.host, args.port, args.unix)
        else:
            import uvloop

            uvloop.run(_serve_in_our_loop(args.stack, args.host, args.port, args.unix))
    finally:
        if args.unix:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.unix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
