"""Serve an aiohttp application on loopback for the length of a test."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application, port: int = 0, shutdown_timeout: float = 0.5,
                ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 (``port`` 0: any free port); yield ``http://127.0.0.1:<port>`` (``https`` with
    ``ssl_context``), then clean up."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class ThreadedServer:
    """An aiohttp application on 127.0.0.1 in a thread of its own, for tests that call it from synchronous code
    (a real phantom-authz process asks it while the test waits)."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _start(self, app: web.Application, ssl_context: ssl.SSLContext | None) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        self.port = self._runner.addresses[0][1]

    def start(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> int:
        """Serve ``app`` (over TLS with ``ssl_context``); return its port."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(app, ssl_context), self._loop).result(10)
        return self.port

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
