"""Which check a log line is about: the fields that correlate phantom-authz's lines with Envoy's and the upstream's.

A transport binds a ``CheckLog`` for the time it decides one request (``bind_check`` ... ``unbind_check``: a context
variable, so the tasks the check starts, a single-flight AS call or a Redis write, carry it too), and the pipeline
notes the route rule the request matched (``note_route_rule``). ``CheckContextFilter``, on the service's log handler
after the library filter, adds to every record logged meanwhile:

- ``request_id``: Envoy's ``x-request-id`` header of the checked request, the id Envoy's access log and the upstream
  see (Envoy sets it on every request it routes; ``x-request-id`` reaches us in both transports);
- ``trace_id``: from a source registered with ``add_trace_id_source`` (the tracing stage: the current span's trace
  id), else the W3C ``traceparent`` header, else B3's ``x-b3-traceid``;
- ``token_id``: the first 12 hex digits of SHA-256 of the request's bearer token (``authz.logs.token_id``), never
  the token;
- ``route_rule``: the name of the route rule (``routes.rules``) the request matched.

A field is left out while unknown, and a record that already carries one (the pipeline's deny line names its own
``token_id``) keeps its own. Nothing is read from the request until a record is logged: binding costs one small
object and one context-variable set per check.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Callable
from typing import Any

from authz.credential import bearer_token
from authz.errors import AuthzError
from authz.logs import token_id

__all__ = ["CheckContextFilter", "CheckLog", "add_trace_id_source", "bind_check", "current_check",
           "note_route_rule", "trace_id_from_headers", "unbind_check"]

HeaderReader = Callable[[Any, str], "str | None"]  # (the transport's request, lower-case name) -> value or None

_CURRENT: contextvars.ContextVar[CheckLog | None] = contextvars.ContextVar("authz_check_log", default=None)
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_B3_TRACE_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_MAX_REQUEST_ID = 128
_MAX_TOKEN = 1 << 16
_trace_id_sources: list[Callable[[], str | None]] = []


def add_trace_id_source(source: Callable[[], str | None]) -> Callable[[], None]:
    """The tracing hook: ``source()`` gives the trace id of the span current where a record is logged (None: none);
    it is asked before the request's headers. Returns a function that removes it again."""
    _trace_id_sources.append(source)
    return lambda: _trace_id_sources.remove(source)


def trace_id_from_headers(header: Callable[[str], str | None]) -> str | None:
    """The trace id a request's headers continue: W3C ``traceparent`` (version ``ff`` and the all-zero id are
    invalid), else B3's ``x-b3-traceid`` (64 or 128 bits); lower-case hex, or None."""
    parent = (header("traceparent") or "").strip()
    found = _TRACEPARENT.fullmatch(parent)
    if found is not None and not parent.startswith("ff") and found[1] != "0" * 32:
        return found[1]
    b3 = header("x-b3-traceid")
    if b3 is not None and _B3_TRACE_ID.fullmatch(b3.strip()) and b3.strip("0 "):
        return b3.strip()
    return None


def _visible(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, anything but visible ASCII as ``?`` (a client chose it: no line
    breaks or escapes in a text log)."""
    return "".join(c if "!" <= c <= "~" else "?" for c in value[:limit])


class CheckLog:
    """One check's log fields, read from its request (``read(source, name)`` gives a header) on first need."""

    __slots__ = ("_read", "_request_fields", "_source", "route_rule")

    def __init__(self, read: HeaderReader, source: object) -> None:
        self._read = read
        self._source = source
        self._request_fields: dict[str, str] | None = None
        self.route_rule: str | None = None

    def header(self, name: str) -> str | None:
        return self._read(self._source, name)

    def fields(self) -> dict[str, str]:
        found = self._request_fields
        if found is None:
            found = self._request_fields = {}
            request_id = self.header("x-request-id")
            if request_id:
                found["request_id"] = _visible(request_id, _MAX_REQUEST_ID)
            authorization = self.header("authorization")
            if authorization is not None:
                try:
                    found["token_id"] = token_id(bearer_token((authorization,), _MAX_TOKEN))
                except AuthzError:
                    pass  # no bearer token, or a malformed one: no id
        fields = dict(found)
        trace_id = next((t for t in (source() for source in _trace_id_sources) if t), None) or \
            trace_id_from_headers(self.header)
        if trace_id is not None:
            fields["trace_id"] = trace_id
        if self.route_rule is not None:
            fields["route_rule"] = self.route_rule
        return fields


def bind_check(read: HeaderReader, source: object) -> contextvars.Token[CheckLog | None]:
    """Log what follows as part of the check of ``source``; pass the result to ``unbind_check`` when it is decided."""
    return _CURRENT.set(CheckLog(read, source))


def unbind_check(bound: contextvars.Token[CheckLog | None]) -> None:
    _CURRENT.reset(bound)


def current_check() -> CheckLog | None:
    return _CURRENT.get()


def note_route_rule(rule: str) -> None:
    """The check being decided matched route rule ``rule``."""
    check = _CURRENT.get()
    if check is not None:
        check.route_rule = rule


class CheckContextFilter(logging.Filter):
    """Adds the current check's fields to each record (installed on the service's log handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        check = _CURRENT.get()
        if check is not None:
            attributes = record.__dict__
            for key, value in check.fields().items():
                if attributes.get(key) is None:
                    attributes[key] = value
        return True
