"""One client header set, three encodings: Envoy's ``headers`` map (repeats joined with ``,``, bytes as UTF-8 with
each invalid byte ``!``), ``encode_raw_headers``' ``header_map`` (``raw_value`` bytes) and HTTP mode's header lines.
Each must give the same ``RequestInfo`` headers, the same Authorization values (or the same refusal), the same
bearer token and the same headers for the body parser."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.credential import bearer_token
from authz.errors import AuthzError
from authz.header_text import header_text
from authz.models import RequestInfo
from authz.transport.grpc_request import request_info
from authz.transport.http_request import HttpCheckTranslator

Lines = list[tuple[bytes, bytes]]

HEADER_SETS: dict[str, Lines] = {
    "one-bearer": [(b"authorization", b"Bearer abc.def")],
    "lower-case-scheme": [(b"authorization", b"bearer abc.def")],
    "two-spaces": [(b"authorization", b"Bearer  abc.def")],
    "tab": [(b"authorization", b"Bearer\tabc.def")],
    "two-authorization-lines": [(b"authorization", b"Bearer abc"), (b"authorization", b"Bearer abc")],
    "bearer-then-junk": [(b"authorization", b"Bearer abc"), (b"authorization", b"x")],
    "non-ascii-authorization": [(b"authorization", b"Bearer \xe9t\xe9")],
    "obs-text-other": [(b"authorization", b"Bearer abc"), (b"x-name", b"Jos\xe9\xff")],
    "repeated-other": [(b"authorization", b"Bearer abc"), (b"x-a", b"1"), (b"x-b", b""), (b"x-a", b"2")],
    "two-content-types": [(b"authorization", b"Bearer abc"), (b"content-type", b"application/json"),
                          (b"content-type", b"text/plain")],
    "no-authorization": [(b"content-type", b"application/json")],
    "content-type-obs-text": [(b"authorization", b"Bearer abc"), (b"content-type", b"application/json; charset=\xff")],
}


def _headers_map(lines: Lines) -> CheckRequest:
    req = _base()
    joined: dict[str, str] = {}
    for name, value in lines:  # what Envoy does: one entry per name, repeats joined with ","
        text = header_text(value)
        joined[name.decode()] = f"{joined[name.decode()]},{text}" if name.decode() in joined else text
    req.attributes.request.http.headers.update(joined)
    return req


def _header_map(lines: Lines) -> CheckRequest:
    req = _base()
    for name, value in lines:
        req.attributes.request.http.header_map.headers.add(key=name.decode(), raw_value=value)
    return req


def _base() -> CheckRequest:
    req = CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "POST", "/orders", "api.example"
    return req


def _outcome(read: Callable[[], RequestInfo]) -> tuple[object, ...]:
    """What the pipeline goes on with: the headers, the bearer token (or the status it is refused with: a 400 in
    ``request_info`` and a 400 in ``bearer_token`` are the same answer) and the body parser's headers. The
    Authorization values themselves differ where README says so: ``header_map`` keeps two lines apart."""
    try:
        info = read()
        token = bearer_token(info.authorization, 4096)
    except AuthzError as exc:
        return ("refused", exc.status)
    headers = {k: v for k, v in info.headers.items() if k != "host"}
    body_headers = {k: v for k, v in info.make_view().body_headers().items() if not k.startswith(":")}
    return headers, token, body_headers  # (Envoy's pseudo-headers: HTTP mode's view adds them)


@pytest.mark.parametrize("lines", HEADER_SETS.values(), ids=HEADER_SETS.keys())
def test_the_same_headers_read_alike_in_every_encoding(lines: Lines) -> None:
    http = HttpCheckTranslator("/phantom-authz", 64 * 1024)
    in_map = _outcome(lambda: request_info(_headers_map(lines)))
    in_header_map = _outcome(lambda: request_info(_header_map(lines)))
    over_http = _outcome(lambda: http.request_info("POST", "/phantom-authz/orders",
                                                   [(b"host", b"api.example"), *lines], b""))
    assert in_header_map == in_map
    assert over_http == in_map
