"""The ``attributes`` of the policy input: the CheckRequest's attributes as protojson with default options writes
them (lowerCamelCase, unset fields omitted, int64 as strings, bytes as base64, RFC 3339 times), i.e. exactly
``json_format.MessageToDict``. What Envoy sends is built by hand (3x faster); other Address kinds, metadata and
unknown schemas use MessageToDict. HTTP mode's attributes are built from its plain request view the same way.

The opaque token never appears: ``Authorization`` carries ``Bearer <JWT>`` of the verified token, or is removed
(``replace_authorization``).
"""

from __future__ import annotations

import base64
import time
from typing import Any

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.service.auth.v3 import attribute_context_pb2
from google.protobuf.json_format import MessageToDict

__all__ = ["AUTHORIZATION", "attributes_document", "http_document", "replace_authorization", "timestamp"]

AUTHORIZATION = "authorization"
_AUTHORIZATION = AUTHORIZATION
_YEAR_10000 = 253_402_300_800  # 10000-01-01T00:00:00Z
_last_second: tuple[int, str] = (-1, "")  # (epoch second, its RFC 3339 date-time without fraction); swapped whole

_Attrs = attribute_context_pb2.AttributeContext
HTTP_STRINGS = ("id", "method", "path", "host", "scheme", "query", "fragment", "protocol", "body")
# The hand-built path covers exactly these fields; a newer schema with more fields falls back to MessageToDict.
_HANDLED: dict[Any, set[str]] = {
    _Attrs: {"source", "destination", "request", "context_extensions", "metadata_context", "route_metadata_context",
             "tls_session"},
    _Attrs.Peer: {"address", "service", "labels", "principal", "certificate"},
    _Attrs.Request: {"time", "http"},
    _Attrs.HttpRequest: {"id", "method", "headers", "header_map", "path", "host", "scheme", "query", "fragment", "size",
                         "protocol", "body", "raw_body"},
    _Attrs.TLSSession: {"sni"},
    address_pb2.Address: {"socket_address", "pipe", "envoy_internal_address"},
    address_pb2.SocketAddress: {"protocol", "address", "port_value", "named_port", "resolver_name", "ipv4_compat",
                                "network_namespace_filepath"},
    base_pb2.HeaderMap: {"headers"},
    base_pb2.HeaderValue: {"key", "value", "raw_value"},
}
_FAST_PATH = all({f.name for f in cls.DESCRIPTOR.fields} == names for cls, names in _HANDLED.items())


def attributes_document(a: Any) -> dict[str, Any]:
    """A CheckRequest's ``attributes`` as protojson (the Authorization header as the client sent it)."""
    return _attributes(a) if _FAST_PATH else MessageToDict(a)


def _attributes(a: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if a.HasField("source"):
        out["source"] = _peer(a.source)
    if a.HasField("destination"):
        out["destination"] = _peer(a.destination)
    if a.HasField("request"):
        out["request"] = _request(a.request)
    if a.context_extensions:
        out["contextExtensions"] = _map(a.context_extensions)
    if a.HasField("metadata_context"):
        out["metadataContext"] = _metadata(a.metadata_context)
    if a.HasField("route_metadata_context"):
        out["routeMetadataContext"] = _metadata(a.route_metadata_context)
    if a.HasField("tls_session"):
        out["tlsSession"] = {"sni": a.tls_session.sni} if a.tls_session.sni else {}
    return out



def _map(m: Any) -> dict[str, str]:
    return {k: m[k] for k in m}  # 2.5x faster than dict(m) on a upb map


def _timestamp(t: Any) -> str:
    if 0 <= t.seconds < _YEAR_10000 and 0 <= t.nanos < 1_000_000_000:
        return timestamp(t.seconds, t.nanos)
    return t.ToJsonString()  # type: ignore[no-any-return]


def timestamp(seconds: int, nanos: int) -> str:
    """RFC 3339 as protojson writes it (0, 3, 6 or 9 fraction digits), ToJsonString's output at a fraction of its cost:
    requests arrive in order, so the date part of the previous call's second is usually reused."""
    global _last_second
    cached_seconds, base = _last_second
    if seconds != cached_seconds:
        g = time.gmtime(seconds)
        base = f"{g.tm_year:04d}-{g.tm_mon:02d}-{g.tm_mday:02d}T{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d}"
        _last_second = (seconds, base)
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{base}.{nanos // 1000:06d}Z"
    return f"{base}.{nanos:09d}Z"


def _metadata(m: Any) -> dict[str, Any]:
    if not m.filter_metadata and not m.typed_filter_metadata:
        return {}
    return MessageToDict(m)


def _peer(p: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.HasField("address"):
        out["address"] = _address(p.address)
    for name in ("service", "principal", "certificate"):
        value = getattr(p, name)
        if value:
            out[name] = value
    if p.labels:
        out["labels"] = _map(p.labels)
    return out


def _address(a: Any) -> dict[str, Any]:
    kind = a.WhichOneof("address")
    if kind is None:
        return {}
    s = a.socket_address
    if kind != "socket_address" or s.protocol:  # pipes, internal addresses, UDP: rare, leave them to the library
        return MessageToDict(a)
    out: dict[str, Any] = {}
    if s.address:
        out["address"] = s.address
    port = s.WhichOneof("port_specifier")
    if port == "port_value":
        out["portValue"] = s.port_value
    elif port == "named_port":
        out["namedPort"] = s.named_port
    if s.resolver_name:
        out["resolverName"] = s.resolver_name
    if s.ipv4_compat:
        out["ipv4Compat"] = True
    if s.network_namespace_filepath:
        out["networkNamespaceFilepath"] = s.network_namespace_filepath
    return {"socketAddress": out}



def _request(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.HasField("time"):
        out["time"] = _timestamp(r.time)
    if r.HasField("http"):
        h = r.http
        header_map = h.header_map if h.HasField("header_map") else None
        out["http"] = http_document(h, h.headers, h.size, h.raw_body, header_map)
    return out


def http_document(h: Any, headers: Any, size: int, raw_body: bytes, header_map: Any = None) -> dict[str, Any]:
    """``attributes.request.http``: ``h`` has its string fields (a CheckRequest's message or a request view)."""
    out: dict[str, Any] = {}
    for name in HTTP_STRINGS:  # key order differs from protojson's; the mapping is the same
        value = getattr(h, name)
        if value:
            out[name] = value
    if headers:
        out["headers"] = _map(headers)
    if header_map is not None:
        entries = header_map.headers
        out["headerMap"] = {"headers": [_header_value(e) for e in entries]} if entries else {}
    if size:
        out["size"] = str(size)
    if raw_body:
        out["rawBody"] = base64.b64encode(raw_body).decode("ascii")
    return out


def _header_value(e: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if e.key:
        out["key"] = e.key
    if e.value:
        out["value"] = e.value
    if e.raw_value:
        out["rawValue"] = base64.b64encode(e.raw_value).decode("ascii")
    return out


def replace_authorization(http: dict[str, Any], jwt: str | None) -> None:
    """Authorization becomes ``Bearer <jwt>`` (what the upstream receives), or goes when there is no JWT."""
    bearer = f"Bearer {jwt}" if jwt else None
    headers: dict[str, str] | None = http.get("headers")
    header_map: dict[str, Any] | None = http.get("headerMap")
    if headers is not None or header_map is None:  # with raw headers only, the (empty) map stays empty
        headers = headers if headers is not None else {}
        for key in [k for k in headers if len(k) == len(_AUTHORIZATION) and k.lower() == _AUTHORIZATION]:
            del headers[key]
        if bearer is not None:
            headers[_AUTHORIZATION] = bearer
        if headers:
            http["headers"] = headers
        else:
            http.pop("headers", None)
    if header_map is not None:
        entries: list[dict[str, str]] = header_map.get("headers", [])
        raw = bool(entries) and "rawValue" in entries[0]
        kept: list[dict[str, str]] = []
        for entry in entries:
            if entry.get("key", "").lower() != _AUTHORIZATION:
                kept.append(entry)
            elif bearer is not None:
                kept.append(_bearer_entry(bearer, "rawValue" in entry))
                bearer = None  # one Authorization header reaches the upstream: the first takes its place
        if bearer is not None:
            kept.append(_bearer_entry(bearer, raw))
        if kept:
            header_map["headers"] = kept
        else:
            header_map.pop("headers", None)


def _bearer_entry(bearer: str, raw: bool) -> dict[str, str]:
    if raw:
        return {"key": _AUTHORIZATION, "rawValue": base64.b64encode(bearer.encode()).decode("ascii")}
    return {"key": _AUTHORIZATION, "value": bearer}
