"""One request as a policy sees it, whichever transport carried it: ``RequestView``.

Its plain fields are ``attributes.request.http`` of the CheckRequest gRPC mode carries (the same names as Envoy's
``AttributeContext.HttpRequest``): HTTP mode fills them with what gRPC mode would have sent (Envoy's pseudo-headers,
``host`` as ``:authority``, the request id, the body as text or, when not UTF-8, as bytes). What only gRPC mode has
(peers, principals, TLS session, metadata, raw header lists) is read from its CheckRequest (``check``) when a policy
reads it. Derived parts — the parsed path, query and body — are worked out once per request, on first need, and serve
both the malformed-request check (``check_parsable``) and the policy input (``authz.policy.projection``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from authz.header_text import header_text
from authz.policy.parse import parse_body, parse_path_and_query
from authz.policy.protojson import attributes_document, http_document, timestamp

__all__ = ["RequestView", "check_parsable"]

_PARTIAL_BODY = "x-envoy-auth-partial-body"
_NO_BODY: tuple[Any, bool] = (None, False)
_TRUNCATED: tuple[Any, bool] = (None, True)
_LAZY = frozenset({"host", "scheme", "id", "size", "protocol", "query", "fragment", "context_extensions"})

class RequestView:
    """Read-only once made; only its memo slots (``_parsed``, ``_body``, ``_containers``) fill in."""

    __slots__ = ("_body", "_containers", "_parsed", "body", "check", "context_extensions", "fragment", "headers",
                 "host", "id", "method", "path", "protocol", "query", "raw_body", "route", "scheme", "size",
                 "time_ns")

    def __init__(self, method: str = "", path: str = "", host: str = "", scheme: str = "", id: str = "",
                 headers: Mapping[str, str] | None = None, body: str = "", raw_body: bytes = b"", size: int = 0, *,
                 protocol: str = "", query: str = "", fragment: str = "",
                 context_extensions: Mapping[str, str] | None = None, time_ns: int | None = None,
                 check: Any = None) -> None:
        self.method, self.path, self.host, self.scheme, self.id = method, path, host, scheme, id
        self.headers: Mapping[str, str] = {} if headers is None else headers  # lower-case names (gRPC: as sent)
        self.body, self.raw_body, self.size = body, raw_body, size  # raw_body: a body that is not UTF-8
        self.protocol, self.query, self.fragment = protocol, query, fragment
        self.context_extensions: Mapping[str, str] = {} if context_extensions is None else context_extensions
        self.time_ns = time_ns  # HTTP mode: when the check arrived (gRPC mode: the CheckRequest's time)
        self.check = check  # gRPC mode: the CheckRequest, for what HTTP mode cannot see
        self.route: Mapping[str, Any] | None = None  # input.route: the matched route rule's name and params
        self._parsed: tuple[list[str], dict[str, list[str]]] | None = None
        self._body: tuple[Any, bool] | None = None
        self._containers: tuple[bool, bool, bool] | None = None

    @classmethod
    def of_check(cls, check: Any) -> RequestView:
        """The view of a gRPC CheckRequest: the fields every policy request reads are taken at once, the others off
        its message on first use (``__getattr__``)."""
        view = cls.__new__(cls)
        http = check.attributes.request.http
        view.method, view.path, view.headers, view.body, view.raw_body = (http.method, http.path, http.headers,
                                                                          http.body, http.raw_body)
        view.check, view.time_ns, view.route = check, None, None
        view._parsed = view._body = view._containers = None
        return view

    def __getattr__(self, name: str) -> Any:
        """A plain field not read yet (gRPC mode): ``attributes.request.http``'s, kept in its slot."""
        if name not in _LAZY or self.check is None:
            raise AttributeError(name)
        attributes = self.check.attributes
        value = attributes.context_extensions if name == "context_extensions" else getattr(attributes.request.http,
                                                                                             name)
        setattr(self, name, value)
        return value

    # --- what the input document is made of ---------------------------------------------------------------------

    def parsed_path_and_query(self) -> tuple[list[str], dict[str, list[str]]]:
        """``parsed_path`` and ``parsed_query`` (Go's ``net/url``); ``PolicyInputError`` when malformed. Shared:
        never change what this returns."""
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = parse_path_and_query(self.path)
        return parsed

    def parsed_body(self, max_body_bytes: int | None = None) -> tuple[Any, bool]:
        """``parsed_body`` and ``truncated_body``; ``PolicyInputError`` when the body does not parse. Shared."""
        if max_body_bytes is not None:
            return parse_body(self.body_headers(), self.body, self.raw_body, max_body_bytes)
        parsed = self._body
        if parsed is None:
            if self.body or self.raw_body:
                parsed = parse_body(self.body_headers(), self.body, self.raw_body, None)
            else:  # no body: only Envoy's mark of a cut one counts
                parsed = _TRUNCATED if self.body_headers().get(_PARTIAL_BODY) == "true" else _NO_BODY
            self._body = parsed
        return parsed

    def body_headers(self) -> Mapping[str, str]:
        """The headers the body parser consults: the map, or (raw header lists) each name's values joined with
        ``,`` as Envoy's map joins them (so two ``content-type`` lines are refused, not read as the first)."""
        if self.headers or not self.raw_headers():
            return self.headers
        found: dict[str, str] = {}
        for e in self.check.attributes.request.http.header_map.headers:  # raw bytes read as the map has them
            key, value = e.key.lower(), e.value or header_text(e.raw_value)
            found[key] = f"{found[key]},{value}" if key in found else value
        return found

    def raw_headers(self) -> bool:
        """gRPC mode with ``encode_raw_headers``: the input carries ``headerMap``."""
        return self.check is not None and self.check.attributes.request.http.HasField("header_map")

    def containers(self) -> tuple[bool, bool, bool]:
        """Whether the input has ``attributes``, ``attributes.request`` and ``attributes.request.http``."""
        found = self._containers
        if found is None:
            check = self.check
            a = check.attributes if check is not None else None
            found = self._containers = (True, True, True) if a is None else (
                check.HasField("attributes"), a.HasField("request"), a.request.HasField("http"))
        return found

    def source_principal(self) -> str:
        return self.check.attributes.source.principal if self.check is not None else ""

    def attributes(self) -> dict[str, Any]:
        """``attributes`` as protojson, the Authorization header as sent (a new document on each call)."""
        if self.check is not None:
            return attributes_document(self.check.attributes)
        seconds, nanos = divmod(time.time_ns() if self.time_ns is None else self.time_ns, 1_000_000_000)
        out: dict[str, Any] = {"request": {"time": timestamp(seconds, nanos),
                                           "http": http_document(self, self.headers, self.size, self.raw_body)}}
        if self.context_extensions:
            out["contextExtensions"] = dict(self.context_extensions)
        return out


def check_parsable(view: RequestView) -> None:
    """Raise ``PolicyInputError`` when the policy input could not hold this request's path, query or body."""
    path = view.path
    if "%" in path or "?" in path:
        view.parsed_path_and_query()
    if view.body or view.raw_body:
        view.parsed_body()
