"""The OPA input document: opa-envoy-plugin's (ext_authz v3, protojson) plus the verified token. Pure: no I/O.

- ``attributes``: the CheckRequest's attributes as protojson with default options writes them (lowerCamelCase, unset
  fields omitted, int64 as strings, bytes as base64, RFC 3339 times), i.e. exactly ``json_format.MessageToDict``.
  What Envoy sends is built by hand (3x faster); other Address kinds, metadata and unknown schemas use MessageToDict.
- ``parsed_path`` / ``parsed_query`` with Go's ``url.PathUnescape`` / ``url.ParseQuery``: a malformed escape or a ``;``
  in the query fails the check in the plugin, here ``PolicyInputError`` (a ``PolicyEvaluationError``).
- ``parsed_body`` (JSON, form) / ``truncated_body`` (``x-envoy-auth-partial-body: true``, a larger ``content-length``,
  a body over ``max_body_bytes``). A JSON or form body that does not parse (or a bad ``content-length``) fails the
  check as in the plugin (``PolicyInputError``; ``authz.request_form`` makes it a 400 first); multipart, gRPC: ``None``.
- ``version``; ``source_principal`` when the source peer has one (current plugin releases add it); ``token``.

The opaque token never appears: ``Authorization`` carries ``Bearer <JWT>`` of the verified token, or is removed.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.service.auth.v3 import attribute_context_pb2
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf.json_format import MessageToDict

from authz.models import Identity
from authz.policy.engine import PolicyEvaluationError
from authz.policy.input_needs import ALL_INPUT, InputNeeds, Tree

__all__ = ["PolicyInputError", "build_input", "check_parsable"]

_AUTHORIZATION = "authorization"
_PARTIAL_BODY = "x-envoy-auth-partial-body"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_GO_INT = re.compile(r"[+-]?[0-9]+")
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64_MAX = 2**63 - 1
_YEAR_10000 = 253_402_300_800  # 10000-01-01T00:00:00Z
_last_second: tuple[int, str] = (-1, "")  # (epoch second, its RFC 3339 date-time without fraction); swapped whole

_Attrs = attribute_context_pb2.AttributeContext
_HTTP_STRINGS = ("id", "method", "path", "host", "scheme", "query", "fragment", "protocol", "body")
_SOME_HTTP = {*_HTTP_STRINGS, "headers", "size"}  # what _some_http builds on its own (headerMap, rawBody: _http)

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


class PolicyInputError(PolicyEvaluationError):
    """The request's path or query cannot be parsed as Go parses it; opa-envoy-plugin fails such checks."""


def build_input(request: CheckRequest, identity: Identity | None, *, max_body_bytes: int | None = None,
                needs: InputNeeds = ALL_INPUT) -> dict[str, Any]:
    """The input document for one request. Never mutates ``request``; raises ``PolicyInputError`` on a malformed
    path escape or query (as the plugin does). ``needs`` leaves out what no loaded policy can read."""
    attributes = request.attributes
    http = attributes.request.http
    document: dict[str, Any] = {}
    if request.HasField("attributes") and needs.wants("attributes"):
        attrs = _attributes(attributes, needs) if _FAST_PATH else MessageToDict(attributes)
        http_doc = attrs.get("request", {}).get("http")
        if http_doc is not None:
            _replace_authorization(http_doc, identity.jwt if identity is not None else None)
        document["attributes"] = attrs
    document["version"] = {"ext_authz": "v3", "encoding": "protojson"}
    document["parsed_path"], document["parsed_query"] = _parse_path_and_query(http.path)
    if needs.wants("parsed_body") or needs.wants("truncated_body"):
        document["parsed_body"], document["truncated_body"] = _parse_body(http, max_body_bytes)
    principal = attributes.source.principal
    if principal:
        document["source_principal"] = principal
    if needs.wants("token"):
        document["token"] = None if identity is None else _token(identity)
    return document if needs.tree is None else needs.prune(document)


def _token(identity: Identity) -> dict[str, Any]:
    claims = dict(identity.claims)
    issuer = claims.get("iss")
    return {
        "claims": claims,
        "scopes": sorted(identity.scopes),
        "subject": identity.subject,
        "client_id": identity.client_id,
        "issuer": issuer if isinstance(issuer, str) else None,
        "jwt": identity.jwt,
    }


# --- attributes: the protobuf JSON mapping, by hand ---------------------------------------------------------------


def _attributes(a: Any, needs: InputNeeds = ALL_INPUT) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wants = needs.wants_attribute
    if a.HasField("source") and wants("source"):
        out["source"] = _peer(a.source)
    if a.HasField("destination") and wants("destination"):
        out["destination"] = _peer(a.destination)
    if a.HasField("request") and wants("request"):
        out["request"] = _request(a.request, _child(_child(needs.tree, "attributes"), "request"))
    if a.context_extensions and wants("contextExtensions"):
        out["contextExtensions"] = _map(a.context_extensions)
    if a.HasField("metadata_context") and wants("metadataContext"):
        out["metadataContext"] = _metadata(a.metadata_context)
    if a.HasField("route_metadata_context") and wants("routeMetadataContext"):
        out["routeMetadataContext"] = _metadata(a.route_metadata_context)
    if a.HasField("tls_session") and wants("tlsSession"):
        out["tlsSession"] = {"sni": a.tls_session.sni} if a.tls_session.sni else {}
    return out


def _map(m: Any) -> dict[str, str]:
    return {k: m[k] for k in m}  # 2.5x faster than dict(m) on a upb map


def _timestamp(t: Any) -> str:
    """RFC 3339 as protojson writes it (0, 3, 6 or 9 fraction digits), ToJsonString's output at a fraction of its cost:
    requests arrive in order, so the date part of the previous call's second is usually reused."""
    global _last_second
    seconds, nanos = t.seconds, t.nanos
    if not (0 <= seconds < _YEAR_10000 and 0 <= nanos < 1_000_000_000):
        return t.ToJsonString()  # type: ignore[no-any-return]
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


def _child(node: Tree, name: str) -> Tree:
    """The read-paths subtree under ``name`` (None: everything under it may be read)."""
    return None if node is None else node.get(name)


def _request(r: Any, node: Tree = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.HasField("time") and (node is None or "time" in node):
        out["time"] = _timestamp(r.time)
    if r.HasField("http"):
        fields = _child(node, "http")
        narrow = fields is not None and fields.keys() <= _SOME_HTTP and not r.http.header_map.headers
        out["http"] = _some_http(r.http, fields) if narrow else _http(r.http)  # type: ignore[arg-type]
    return out


def _some_http(h: Any, node: dict[str, Any]) -> dict[str, Any]:
    """Only the fields of ``request.http`` the policies read (``needs.prune`` still runs over the whole document)."""
    out = _http(h, {name: None for name in node if name != "headers"})
    if "headers" in node and h.headers:
        names = node["headers"]
        out["headers"] = _map(h.headers) if names is None else {k: h.headers[k] for k in names if k in h.headers}
    return out


def _http(h: Any, only: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _HTTP_STRINGS:  # key order differs from protojson's; the mapping is the same
        if only is not None and name not in only:
            continue
        value = getattr(h, name)
        if value:
            out[name] = value
    if only is not None:
        if "size" in only and h.size:
            out["size"] = str(h.size)
        return out  # headerMap, rawBody: read only by policies that read all of http
    if h.headers:
        out["headers"] = _map(h.headers)
    if h.HasField("header_map"):
        entries = h.header_map.headers
        out["headerMap"] = {"headers": [_header_value(e) for e in entries]} if entries else {}
    if h.size:
        out["size"] = str(h.size)
    if h.raw_body:
        out["rawBody"] = base64.b64encode(h.raw_body).decode("ascii")
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


def _replace_authorization(http: dict[str, Any], jwt: str | None) -> None:
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


# --- parsed_path / parsed_query: Go's net/url ------------------------------------------------------------------------


def _unescape(s: str, query: bool) -> str:
    """Go's ``url.QueryUnescape`` (query=True: ``+`` is a space) or ``url.PathUnescape``; ValueError when malformed."""
    if "%" not in s:
        return s.replace("+", " ") if query and "+" in s else s
    bad = _BAD_ESCAPE.search(s)
    if bad is not None:
        raise ValueError(f"invalid URL escape {s[bad.start():bad.start() + 3]!r}")
    return unquote(s.replace("+", " ") if query else s)  # invalid UTF-8 becomes U+FFFD, as in Go's JSON output


def _parse_query(query: str) -> tuple[dict[str, list[str]], str | None]:
    """Go's ``url.ParseQuery``: every well-formed pair, and the first error (if any)."""
    values: dict[str, list[str]] = {}
    error: str | None = None
    if not query:
        return values, None
    for pair in query.split("&"):
        if ";" in pair:
            error = "invalid semicolon separator in query"
            continue
        if not pair:
            continue
        key, _, value = pair.partition("=")
        try:
            key, value = _unescape(key, True), _unescape(value, True)
        except ValueError as exc:
            error = error or str(exc)
            continue
        values.setdefault(key, []).append(value)
    return values, error


def _parse_path_and_query(path: str) -> tuple[list[str], dict[str, list[str]]]:
    raw_path, _, raw_query = path.partition("?")  # no fragment handling: Envoy never sends one, the plugin keeps it
    # split, then decode each segment: an encoded slash (a route with allow_encoded_slashes) stays inside its segment
    segments = raw_path.lstrip("/").split("/")
    if "%" in raw_path:
        try:
            segments = [_unescape(segment, False) for segment in segments]
        except ValueError as exc:
            raise PolicyInputError(f"request path: {exc}") from None
    query, error = _parse_query(raw_query)
    if error is not None:
        raise PolicyInputError(f"request query: {error}")
    return segments, query


def check_parsable(http: Any) -> None:
    """Raise ``PolicyInputError`` when ``build_input`` could not parse this request's path, query or body
    (``http``: a CheckRequest's ``attributes.request.http``, or the HTTP transport's ``HttpFields``)."""
    path: str = http.path
    if "%" in path or "?" in path:
        _parse_path_and_query(path)
    if http.body or http.raw_body:
        _parse_body(http, None)


# --- parsed_body / truncated_body ------------------------------------------------------------------------------------


def _body_headers(http: Any) -> Mapping[str, str]:
    """The headers the body parser consults: the map, or (raw headers mode) the first value of each name."""
    header_map = getattr(http, "header_map", None)  # HttpFields (HTTP transport) has none
    if http.headers or header_map is None or not header_map.headers:
        return http.headers  # type: ignore[no-any-return]
    found: dict[str, str] = {}
    for e in http.header_map.headers:
        found.setdefault(e.key.lower(), e.value or e.raw_value.decode("utf-8", "replace"))
    return found


def _parse_body(http: Any, max_body_bytes: int | None) -> tuple[Any, bool]:
    headers = _body_headers(http)
    if headers.get(_PARTIAL_BODY) == "true":  # Envoy cut the body at max_request_bytes
        return None, True
    body: str = http.body
    raw: bytes = http.raw_body
    size = len(body.encode()) if body else len(raw)
    if max_body_bytes is not None and size > max_body_bytes:
        return None, True
    content_type = headers.get("content-type")
    if content_type is None or size == 0:
        return None, False
    if "application/json" in content_type:
        kind = "json"
    elif "application/grpc" in content_type:
        return None, False  # needs the service's descriptors, which the plugin only has when configured with them
    elif "application/x-www-form-urlencoded" in content_type:
        kind = "form"
    elif "multipart/form-data" in content_type:
        kind = "multipart"
    else:
        return None, False
    content_length = headers.get("content-length")
    if content_length is not None:
        declared = _go_parse_int(content_length)
        if declared is None:
            raise PolicyInputError(f"request body: content-length {content_length[:40]!r} is not an integer")
        if declared != -1 and declared > size:
            return None, True
    if kind == "multipart":
        return None, False
    text = body or raw.decode("utf-8", "replace")
    if kind == "form":
        values, error = _parse_query(text)
        if error is not None:
            raise PolicyInputError(f"request body (form): {error}")
        return values, False
    return _parse_json(text), False


def _go_parse_int(s: str) -> int | None:
    """Go's ``strconv.ParseInt(s, 10, 64)``: an optional sign and decimal digits, in int64 range."""
    if _GO_INT.fullmatch(s) is None:
        return None
    n = int(s)
    return n if -_INT64_MAX - 1 <= n <= _INT64_MAX else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(s: str) -> float:
    value = float(s)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _parse_json(text: str) -> Any:
    """RFC 8259 JSON as Go decodes it (no NaN/Infinity, nothing after the value); ``PolicyInputError`` when it is
    not (the plugin fails the check: a policy never sees ``null`` for a body an upstream may still read)."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if _LONE_SURROGATE_ESCAPE.search(text) is not None:
            data = _replace_surrogates(data)  # Go turns a lone \ud800 into U+FFFD; keep the document encodable
    except (ValueError, RecursionError) as exc:
        raise PolicyInputError(f"request body (JSON): {str(exc)[:200]}") from None
    return data


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value
