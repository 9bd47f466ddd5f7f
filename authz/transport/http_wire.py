"""HTTP/1.x answers as bytes on the wire. Pure, except for the clock of the ``Date`` line.

An answer (``authz.transport.http_response.HttpAnswer``: status, headers, body) is serialised once into a ``Wire``:
its status line and header lines with ``Content-Length``. What differs per request is added when it is sent
(``Wire.encode``): the status line's version (a request's own, 1.0 or 1.1), ``Date`` (the current second's, made
once a second), the ``Connection`` line when the connection's persistence differs from the version's default, and the
body unless the request was a ``HEAD``. An allow kept on a cached answer keeps its ``Wire`` (``Replies.http_answer``),
so a cache hit writes bytes made once a second.

Nothing a client sent is written back, and a header that could split the answer is never written: a name that is
not an RFC 9110 token, or a value holding CR, LF or NUL, raises ``ValueError`` (the caller fails closed with 500).
The framing is the transport's own: an answer's ``Content-Length``, ``Transfer-Encoding`` or ``Connection`` header
(a policy may name any header) is left out, and a 204 or 304 carries neither ``Content-Length`` nor a body
(RFC 9110 §8.6, §15.3.5).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

__all__ = ["Wire", "date_line", "wire"]

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_SPLITS = re.compile(rb"[\r\n\x00]")
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_HTTP_11 = b"HTTP/1.1"
_HTTP_10 = b"HTTP/1.0"
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
_NO_LENGTH = frozenset({204, 304})


class _Clock:
    """The ``Date`` line of the current second (RFC 9110 §6.6.1: an origin server with a clock sends one)."""

    __slots__ = ("line", "second")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.line = b"Date: " + formatdate(second, usegmt=True).encode("ascii") + b"\r\n"
        return self.line


date_line = _Clock().now


class Wire:
    """One answer, serialised but for the per-request lines. ``head``: the HTTP/1.1 status line and the header
    lines (``Content-Length`` last); ``body``: the body (left out for ``HEAD``). Immutable but for the bytes of its
    most common form (HTTP/1.1, kept alive) in the current second, made on first need."""

    __slots__ = ("_kept", "_kept_date", "body", "head", "status")

    def __init__(self, status: int, head: bytes, body: bytes) -> None:
        self.status, self.head, self.body = status, head, body
        self._kept_date = b""
        self._kept = b""

    def encode(self, http_10: bool, keep_alive: bool, head_request: bool = False) -> bytes:
        """The bytes to write for a request of HTTP/1.0 (``http_10``) or 1.1 whose connection stays open after
        this answer (``keep_alive``) or closes."""
        date = date_line()
        if keep_alive and not http_10 and not head_request:
            if self._kept_date is not date:
                self._kept, self._kept_date = b"".join((self.head, date, b"\r\n", self.body)), date
            return self._kept
        if http_10:
            connection = _KEEP_ALIVE if keep_alive else b""
            start = _HTTP_10 + self.head[8:]
        else:
            connection = b"" if keep_alive else _CLOSE
            start = self.head
        return b"".join((start, date, connection, b"\r\n", b"" if head_request else self.body))


def wire(status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> Wire:
    """Serialise an answer; ``ValueError`` for a header that cannot be written as it is (see the module's text)."""
    try:
        reason = HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        reason = b""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    for name, value in headers:
        raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
        if not _TOKEN.match(raw_name) or _SPLITS.search(raw_value):
            raise ValueError("an answer's header has a name that is not a token, or CR, LF or NUL in its value")
        if raw_name.lower() not in _FRAMING:
            lines.append(b"%s: %s\r\n" % (raw_name, raw_value))
    if status in _NO_LENGTH:
        body = b""  # such an answer ends with its head
    else:
        lines.append(b"Content-Length: %d\r\n" % len(body))
    return Wire(status, b"".join(lines), body)
