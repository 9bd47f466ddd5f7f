"""The HTTP transport's open connections: the protocol factory, the sweep of the two timeouts, and the drain.

``Connections`` makes a ``CheckConnection`` per accepted connection and keeps the open ones. Every
``HttpLimits.sweep_interval`` it closes those whose request has been arriving for longer than ``request_timeout``
(slow senders cannot hold a check open, and never stall other connections) and those idle for longer than
``keepalive_timeout``: the check path only reads the clock. ``drain`` (shutdown) lets each connection finish the
requests it has received, closes idle ones at once, and closes what is left when the grace period ends.
"""

from __future__ import annotations

import asyncio
import logging

from authz.library_logs import describe_exception
from authz.transport.http_limits import INTERNAL_ERROR, HttpLimits
from authz.transport.http_protocol import CheckConnection, Handler
from authz.transport.http_wire import Wire
from authz.transport.tls_clients import ClientSans

__all__ = ["Connections"]

log = logging.getLogger("authz.http")

class Connections:
    def __init__(self, handler: Handler, limits: HttpLimits, client_sans: ClientSans | None) -> None:
        self.handler = handler
        self.limits = limits
        self.client_sans = client_sans
        self.loop = asyncio.get_running_loop()
        self._open: set[CheckConnection] = set()
        self._all_closed: asyncio.Event | None = None  # while draining

    def __call__(self) -> CheckConnection:
        return CheckConnection(self)

    def opened(self, connection: CheckConnection) -> None:
        self._open.add(connection)

    def closed(self, connection: CheckConnection) -> None:
        self._open.discard(connection)
        if not self._open and self._all_closed is not None:
            self._all_closed.set()

    def failed(self, exc: BaseException) -> Wire:
        """The answer when working out an answer failed: 500, never an allow."""
        log.error("internal error while answering an HTTP check; answering 500 (%s)", describe_exception(exc))
        return INTERNAL_ERROR

    async def sweep(self) -> None:
        limits = self.limits
        while True:
            await asyncio.sleep(limits.sweep_interval)
            now = self.loop.time()
            for connection in list(self._open):
                since = connection.receiving_since
                if since is not None and now - since > limits.request_timeout:
                    connection.receiving_since = None
                    connection.close(None if connection.lingering else
                                     f"closing a connection that sent no complete request within "
                                     f"{limits.request_timeout:.1f}s")
                elif (idle := connection.idle_since) is not None and now - idle > limits.keepalive_timeout:
                    connection.idle_since = None
                    connection.close()

    async def drain(self, grace: float) -> None:
        """Let every connection answer what it has received (up to ``grace`` seconds), then close the rest."""
        self._all_closed = asyncio.Event()
        if not self._open:
            return
        for connection in list(self._open):
            connection.drain()
        try:
            await asyncio.wait_for(self._all_closed.wait(), grace)
        except TimeoutError:
            for connection in list(self._open):
                connection.close()
