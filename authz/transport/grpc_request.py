"""Translate an Envoy ``CheckRequest`` (v3) into a transport-neutral ``RequestInfo``. Pure: no I/O.

Envoy sends headers either in ``http.headers`` (a map; Envoy merges repeated headers with ``,``) or, with
``encode_raw_headers``, in ``http.header_map`` (a list that keeps repeats and may carry ``raw_value`` bytes). Both
are read; with ``header_map`` several ``Authorization`` headers stay visible as several values.

A header value's bytes become text the way Envoy fills the ``headers`` map (``authz.header_text``), so
``raw_value`` bytes, the map's strings and HTTP mode's header bytes all decide alike. An ``Authorization`` value
that is not ASCII is a malformed credential.
"""

from __future__ import annotations

from functools import partial

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.errors import MalformedCredential
from authz.header_text import header_text
from authz.models import RequestInfo
from authz.policy.view import RequestView

__all__ = ["MAX_HEADER_BYTES", "authorization_values", "request_info"]

MAX_HEADER_BYTES = 64 * 1024  # Envoy's own default limit on the request header block is 60 KiB


def authorization_values(values: tuple[str, ...]) -> tuple[str, ...]:
    """``values``, unless one is not ASCII: a malformed credential, whichever way Envoy encoded it."""
    for value in values:
        if not value.isascii():
            raise MalformedCredential("Authorization header is not ASCII")
    return values


def _header_map_values(http: object) -> tuple[dict[str, str], tuple[str, ...]]:
    headers: dict[str, str] = {}
    authorization: list[str] = []
    for entry in http.header_map.headers:  # type: ignore[attr-defined]
        name = entry.key.lower()
        value = entry.value
        if entry.raw_value:
            value = header_text(entry.raw_value)
            if entry.value and entry.value != value:  # Envoy fills one of the two: which would an upstream read?
                raise MalformedCredential(f"header {name[:100]!r} carries two different values")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
        if name == "authorization":
            authorization.append(value)
    return headers, authorization_values(tuple(authorization))


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
        if http.headers:  # Envoy sends one encoding; two could disagree (about Authorization, say)
            raise MalformedCredential("check request carries headers in both encodings")
        headers, authorization = _header_map_values(http)
    else:
        headers = http.headers  # the protobuf map is a read-only Mapping; no copy on the hot path
        value = headers.get("authorization")
        authorization = () if value is None else authorization_values((value,))
    return RequestInfo(
        method=http.method,
        path=http.path,
        host=http.host,
        headers=headers,
        authorization=authorization,
        context_extensions=dict(attributes.context_extensions),
        make_view=partial(RequestView.of_check, request),
        source_principal=attributes.source.principal,
        destination_principal=attributes.destination.principal,
        scheme=http.scheme,  # Envoy's :scheme (the DPoP proof's htu)
        peer_certificate=attributes.source.certificate,  # "" unless Envoy's include_peer_certificate and a client cert
    )
