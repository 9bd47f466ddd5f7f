"""Serve an aiohttp application on loopback for the length of a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve(app: web.Application, port: int = 0, shutdown_timeout: float = 0.5) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 (``port`` 0: any free port); yield ``http://127.0.0.1:<port>``, then clean up."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
