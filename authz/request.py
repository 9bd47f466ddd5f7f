"""Translate an Envoy ``CheckRequest`` (v3) into a transport-neutral ``RequestInfo``. Pure: no I/O.

Envoy sends headers either in ``http.headers`` (a map; Envoy merges repeated headers with ``,``) or, with
``encode_raw_headers``, in ``http.header_map`` (a list that keeps repeats and may carry ``raw_value`` bytes). Both
are read; with ``header_map`` several ``Authorization`` headers stay visible as several values.
"""

from __future__ import annotations

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.errors import MalformedCredential
from authz.models import RequestInfo

__all__ = ["MAX_HEADER_BYTES", "request_info"]

MAX_HEADER_BYTES = 64 * 1024  # Envoy's own default limit on the request header block is 60 KiB


def _header_map_values(http: object) -> tuple[dict[str, str], tuple[str, ...]]:
    headers: dict[str, str] = {}
    authorization: list[str] = []
    for entry in http.header_map.headers:  # type: ignore[attr-defined]
        name = entry.key.lower()
        value = entry.value if entry.value or not entry.raw_value else _decode(entry.raw_value)
        headers[name] = f"{headers[name]},{value}" if name in headers else value
        if name == "authorization":
            authorization.append(value)
    return headers, tuple(authorization)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedCredential("header value is not ASCII") from None


def _header_bytes(http: object) -> int:
    pairs = [(h.key, h.value or h.raw_value) for h in http.header_map.headers]  # type: ignore[attr-defined]
    pairs += list(http.headers.items())  # type: ignore[attr-defined]
    return sum(len(k) + len(v) for k, v in pairs)


def request_info(request: CheckRequest) -> RequestInfo:
    """Raise ``MalformedCredential`` when the request carries no HTTP attributes or absurd headers."""
    attributes = request.attributes
    if not attributes.HasField("request") or not attributes.request.HasField("http"):
        raise MalformedCredential("check request has no HTTP attributes")
    http = attributes.request.http
    # the serialised size bounds the header block from above without walking it in Python: count exactly only
    # when it might be over
    if http.ByteSize() - len(http.body) - len(http.raw_body) > MAX_HEADER_BYTES and _header_bytes(http) > (
            MAX_HEADER_BYTES):
        raise MalformedCredential("request headers exceed the size limit")
    if http.header_map.headers:
        headers, authorization = _header_map_values(http)
    else:
        headers = http.headers  # the protobuf map is a read-only Mapping; no copy on the hot path
        value = headers.get("authorization")
        authorization = () if value is None else (value,)
    return RequestInfo(
        method=http.method,
        path=http.path,
        host=http.host,
        headers=headers,
        authorization=authorization,
        context_extensions=dict(attributes.context_extensions),
        source=request,
    )
