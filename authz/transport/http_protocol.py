"""One HTTP/1.x connection of the HTTP transport: an ``asyncio.Protocol`` over httptools' llhttp parser.

llhttp parses (no HTTP parsing of our own); the callbacks collect each request (``HttpCheck``) within the limits of
``authz.transport.http_limits`` and queue it. Requests are answered one at a time, in the order they came
(pipelining), each by the handler's coroutine run at once (``authz.transport.eager``: a cache hit needs no task).

Clocks, read by ``Connections.sweep`` (one sweep for every connection instead of a timer per request):

- ``receiving_since``: when the request being received began (its first bytes; blank lines before a request count).
  It is cleared when llhttp completes the request, unless bytes of a next one came with it (pipelined: its clock then
  starts with those bytes). A request not complete within ``request_timeout`` has its connection closed.
- ``idle_since``: when the connection last had nothing to do (no request queued, being answered or received); after
  ``keepalive_timeout`` it is closed.

A refused request (``Refusal``: 400, 413) is answered in its turn, after the requests before it, and ends the
connection: nothing after it is parsed; what the client still sends is read and dropped until it closes (or the
request timeout), so that closing does not reset the connection before the client has read the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import httptools

from authz.library_logs import describe_exception
from authz.transport.eager import start
from authz.transport.http_limits import SINGLETON_HEADERS, BadHttpMessage, BodyTooLarge, NotHttp1, Refusal
from authz.transport.http_wire import Wire

if TYPE_CHECKING:
    from authz.transport.http_connections import Connections

__all__ = ["CheckConnection", "Handler", "HttpCheck"]

log = logging.getLogger("authz.http")

_MAX_QUEUED = 16  # requests received and not yet answered, past which reading pauses (a pipelining client)
_HTTP_1 = ("1.1", "1.0")


class HttpCheck:
    """One request as received: ``target`` is the request target as sent (UTF-8, undecodable bytes kept as
    surrogates), ``headers`` the header lines as sent, names in lower case, values without trailing whitespace."""

    __slots__ = ("body", "head_request", "headers", "http_10", "keep_alive", "method", "target")

    def __init__(self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, http_10: bool,
                 keep_alive: bool) -> None:
        self.method, self.target, self.headers, self.body = method, target, headers, body
        self.http_10, self.keep_alive, self.head_request = http_10, keep_alive, method == "HEAD"

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


Handler = Callable[[HttpCheck], Coroutine[Any, Any, Wire]]


class CheckConnection(asyncio.Protocol):
    def __init__(self, owner: Connections) -> None:
        self._owner = owner
        self._limits = owner.limits
        self._loop = owner.loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[HttpCheck | Refusal] = deque()
        self._busy = False  # a request's answer is being worked out in a task
        self._parsing = True  # False once a refusal, an upgrade or a drain ended the reading of requests
        self._draining = False
        self._lingering = False  # the last answer is out; what comes is dropped until the client closes
        self._write_paused = self._read_paused = False
        self._chunk_at = 0.0
        self._chunk_bytes = 0
        self._in_head = False
        self._head_bytes = 0
        self._http_10 = False
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_bytes = 0
        self.receiving_since: float | None = None
        self.idle_since: float | None = None

    # ------------------------------------------------------------------------------------------ the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport subclasses
        sans = self._owner.client_sans  # over TLS this comes once the handshake (client certificate checked) is done
        if sans is not None and not sans.allows_connection(transport):
            transport.close()
            return
        self._transport = transport
        self.idle_since = self._loop.time()
        self._owner.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._queue.clear()
        self._owner.closed(self)

    def eof_received(self) -> bool:
        """The client will send no more: answer what is queued (the transport stays open for it), then close."""
        self._parsing = False
        if self._busy or self._queue:
            self._draining = True
            return True
        return False

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._advance()

    def close(self, why: str | None = None) -> None:
        if self._transport is not None:
            if why is not None:
                log.warning("%s", why)
            self._transport.close()

    def drain(self) -> None:
        """Shutting down: answer the requests already received (the last with ``Connection: close``), then close;
        an idle connection closes now."""
        self._draining, self._parsing = True, False
        if not self._busy and not self._queue:
            self.close()

    # -------------------------------------------------------------------------------------------- reading

    def data_received(self, data: bytes) -> None:
        if not self._parsing:
            return  # after a refusal or a drain: dropped, never parsed
        now = self._loop.time()
        self._chunk_at, self._chunk_bytes = now, len(data)
        self.idle_since = None
        if self.receiving_since is None:
            self.receiving_since = now
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # Upgrade or CONNECT: the request is answered, then the connection closes
            self._stop(None)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, Refusal):
                log.error("HTTP request refused after an internal error (%s)", describe_exception(exc.__context__
                                                                                                   or exc))
                cause = BadHttpMessage("internal error")
            self._stop(cause)
        except httptools.HttpParserError as exc:  # llhttp's reasons are fixed texts: they quote nothing
            self._stop(BadHttpMessage(f"{type(exc).__name__}: {exc}"))
        else:
            if self._in_head:
                self._head_bytes += self._chunk_bytes
                if self._head_bytes > self._limits.head_cap:
                    self._stop(BadHttpMessage("request head over the limit"))
        if len(self._queue) > _MAX_QUEUED and self._transport is not None and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        self._advance()

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._target = b""
        self._headers = []
        self._body = []
        self._body_bytes = 0
        if self.receiving_since is None:
            self.receiving_since = self._chunk_at

    def on_url(self, url: bytes) -> None:
        target = self._target + url if self._target else url
        if len(target) > self._limits.max_header_bytes:
            raise BadHttpMessage("request target over server.http.max_header_bytes")
        self._target = target

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))  # checked when the head is complete (head_cap bounds it meanwhile)

    def on_headers_complete(self) -> None:
        """The head's checks, before a byte of the body is read; the header names in lower case from here on."""
        self._in_head = False
        parser, limits = self._parser, self._limits
        version = parser.get_http_version()
        if version not in _HTTP_1:
            raise NotHttp1()
        self._http_10 = version == "1.0"
        headers = self._headers
        if len(headers) > limits.max_headers:
            raise BadHttpMessage("more header lines than server.http.max_headers")
        longest = limits.max_header_bytes
        if self._head_bytes + self._chunk_bytes > longest:  # else no line of this head can be that long
            for name, value in headers:
                if len(name) + len(value) > longest:
                    raise BadHttpMessage("header line over server.http.max_header_bytes")
        checked: list[tuple[bytes, bytes]] = []
        seen: set[bytes] = set()
        for name, value in headers:
            name = name.lower()
            if name in SINGLETON_HEADERS:
                if name in seen:
                    raise BadHttpMessage("a header that may appear once appears twice")
                seen.add(name)
                if name == b"content-length" and int(value) > limits.max_body_bytes:
                    raise BodyTooLarge()  # llhttp has checked the number; not a byte of the body is read
            checked.append((name, value.rstrip(b" \t")))  # llhttp drops whitespace before a value, not after it
        if b"host" not in seen and not self._http_10:
            raise BadHttpMessage("HTTP/1.1 request without Host")
        self._headers = checked

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            raise BodyTooLarge()  # a chunked body past the limit: reading stops here
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        body = self._body
        self._queue.append(HttpCheck(parser.get_method().decode("ascii"),
                                     self._target.decode("utf-8", "surrogateescape"), self._headers,
                                     body[0] if len(body) == 1 else b"".join(body), self._http_10,
                                     parser.should_keep_alive()))
        self.receiving_since = None

    def _stop(self, refusal: Refusal | None) -> None:
        """No more requests are read on this connection; ``refusal`` is answered in its turn, then it closes."""
        self._parsing = False
        self._in_head = False
        self.receiving_since = None
        if refusal is not None:
            if isinstance(refusal, BadHttpMessage):
                log.warning("answered 400 to a malformed HTTP request (BadHttpMessage: %s)", refusal)
            self._queue.append(refusal)

    # -------------------------------------------------------------------------------------------- answering

    def _advance(self) -> None:
        """Answer queued requests in order while their answers come at once; one that waits continues in a task."""
        queue = self._queue
        while queue and not self._busy and not self._write_paused and self._transport is not None:
            check = queue.popleft()
            if isinstance(check, Refusal):
                self._refuse(check)
                return
            try:
                answer, task = start(self._owner.handler(check))
            except Exception as exc:
                answer, task = self._owner.failed(exc), None
            if task is not None:
                self._busy = True
                task.add_done_callback(partial(self._answered, check))
                return
            assert answer is not None
            self._send(check, answer)
        if self._read_paused and len(queue) <= _MAX_QUEUED // 2 and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        if not queue and not self._busy and self.receiving_since is None and self._transport is not None:
            if self._draining:
                self._transport.close()
            else:
                self.idle_since = self._loop.time()

    def _answered(self, check: HttpCheck, task: asyncio.Task[Wire]) -> None:
        self._busy = False
        if task.cancelled():
            answer = self._owner.failed(asyncio.CancelledError())
        elif (exc := task.exception()) is not None:
            answer = self._owner.failed(exc)
        else:
            answer = task.result()
        if self._transport is not None:
            self._send(check, answer)
            self._advance()

    def _send(self, check: HttpCheck, answer: Wire) -> None:
        transport = self._transport
        assert transport is not None
        last = not check.keep_alive or (not self._parsing and not self._queue)
        transport.write(answer.encode(check.http_10, not last, check.head_request))
        if last:
            self._queue.clear()
            transport.close()

    def _refuse(self, refusal: Refusal) -> None:
        """Write a refusal and half-close; drop what the client still sends (the sweep ends it after the request
        timeout), so the answer is not lost to a reset."""
        transport = self._transport
        assert transport is not None
        self._queue.clear()
        transport.write(refusal.answer.encode(refusal.http_10, False))
        if transport.can_write_eof():
            self._lingering = True
            self.receiving_since = self._loop.time()
            transport.write_eof()
        else:
            transport.close()

    @property
    def lingering(self) -> bool:
        return self._lingering
