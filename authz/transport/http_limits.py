"""The HTTP transport's limits (``server.http``), and the requests it answers itself, before the pipeline.

Each refusal is an exception a parser callback raises (parsing stops there: nothing after it is read), carrying the
answer to send; the connection closes after it.

- ``BadHttpMessage`` (400, a plain-text body that quotes nothing): whatever llhttp refuses (request line, methods,
  versions it does not know, header syntax, CR/LF/NUL, obs-fold, a repeated or malformed ``Content-Length``,
  ``Transfer-Encoding`` with ``Content-Length``), and these limits: more than ``max_headers`` header lines, a
  header line (name and value) or a request target longer than ``max_header_bytes``, a request head longer than
  any that passes those limits and the pipeline's limit on all headers together (``head_cap``: bounds what the
  parser buffers of an unfinished header line), an HTTP/1.1 request without ``Host``, and a repeated header that
  may appear once (``Host``, ``Content-Type``, ...).
- ``NotHttp1`` (400, the pipeline's malformed-request denial, sent as HTTP/1.0): a request line that names a version
  below 1.0 (``GET /path`` alone is HTTP/0.9 to llhttp) or above 1.1.
- ``BodyTooLarge`` (413): a ``Content-Length`` over ``max_body_bytes`` (refused before a byte of the body is read),
  or a chunked body that grows past it.
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.config import HttpTransportConfig
from authz.errors import AuthzError, MalformedRequest, RequestTooLarge
from authz.transport.http_response import denial
from authz.transport.http_wire import Wire, wire

__all__ = ["INTERNAL_ERROR", "SINGLETON_HEADERS", "BadHttpMessage", "BodyTooLarge", "HttpLimits", "NotHttp1", "Refusal"]

# headers a request may carry once (as aiohttp's parser had it: a second Host or Content-Type is ambiguous)
SINGLETON_HEADERS = frozenset({b"content-length", b"content-location", b"content-range", b"content-type", b"etag",
                               b"host", b"max-forwards", b"server", b"transfer-encoding", b"user-agent"})

INTERNAL_ERROR = wire(*denial(AuthzError("internal error")))  # 500, when working out an answer failed: never an allow


class Refusal(Exception):
    """A request the transport answers itself (``answer``), closing the connection after it."""

    answer: Wire
    http_10 = False  # answered with an HTTP/1.0 status line (the request's own version is not one to answer in)


class BadHttpMessage(Refusal):
    """400: the request is not one HTTP/1.x request within the limits. The text (``str``) is ours, never the
    request's: it is logged."""

    answer = wire(400, (("Content-Type", "text/plain; charset=utf-8"),), b"400 Bad Request")
    http_10 = True


class NotHttp1(Refusal):
    answer = wire(*denial(MalformedRequest("request line version is not HTTP/1.0 or HTTP/1.1")))
    http_10 = True


class BodyTooLarge(Refusal):
    answer = wire(*denial(RequestTooLarge()))


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_headers: int
    max_header_bytes: int  # one header line (name + value), and the request target
    max_body_bytes: int
    request_timeout: float  # first byte to last byte of a request
    keepalive_timeout: float  # an idle kept-alive connection closes after this

    @classmethod
    def of(cls, config: HttpTransportConfig) -> HttpLimits:
        return cls(config.max_headers, config.max_header_bytes, config.max_body_bytes, config.request_timeout_seconds,
                   config.keepalive_timeout_seconds)

    @property
    def head_cap(self) -> int:
        """The longest request head that can pass: request line (method, target, version), header lines within the
        pipeline's limit on their names and values together (``max_header_bytes``), their separators (``: `` and
        CRLF, and some optional whitespace), blank lines before the request line, and the final CRLF."""
        return 2 * self.max_header_bytes + 16 * self.max_headers + 1024

    @property
    def sweep_interval(self) -> float:
        """How often connections are looked over for the two timeouts (a timeout ends within a quarter of itself
        of its due time)."""
        return min(self.request_timeout, self.keepalive_timeout) / 4
