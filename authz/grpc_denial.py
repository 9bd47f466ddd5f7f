"""Denials a gRPC client understands. Pure: one ``CheckResponse`` denial -> its gRPC form.

A gRPC client reads the call's outcome from ``grpc-status`` and ``grpc-message``, not from the HTTP status or body.
For a request whose ``content-type`` is ``application/grpc*``, a denial therefore carries:

- ``grpc-status`` from the one table below (``GRPC_STATUS``), unless a policy's denial set its own;
- ``grpc-message``: the denial's ``error: error_description`` (a policy's body text, else the HTTP reason), UTF-8
  then percent-encoded as the gRPC spec says (every byte outside printable ASCII, and ``%``);
- ``content-type: application/grpc``, the denial's other headers (the RFC 6750 challenge in ``www-authenticate``,
  ``retry-after``, a policy's headers) and **no body**.

The HTTP status stays what the pipeline decided (401, 403, ...), and Envoy (both ext_authz modes, checked against
1.40) turns the local reply to a gRPC request into a trailers-only HTTP 200 response carrying our headers: the
client sees HTTP 200 with our ``grpc-status``. The denial does not say 200 itself because in Envoy's HTTP ext_authz
mode a 200 from the authorization service *is an allow*. No body, because Envoy turns a gRPC request's denial body
into ``grpc-message`` in place of ours.

In HTTP mode a 5xx is an authorization error to Envoy, which answers ``status_on_error`` instead (our
``envoy-http.yaml``: 503, which Envoy maps to 14 UNAVAILABLE).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse, DeniedHttpResponse

__all__ = ["GRPC_STATUS", "grpc_denial", "is_grpc", "percent_encoded"]

# HTTP status of a denial -> gRPC status code (google.rpc.Code). 400 is a malformed request or credential: retrying it
# unchanged cannot help, as INVALID_ARGUMENT says (gRPC's own HTTP mapping, for proxies that know no better, gives
# 400 INTERNAL). 401 and 403 are the two the gRPC auth guides name; 5xx follow gRPC's mapping, except that our 500
# and 502 are server faults a retry will not fix (INTERNAL), not a hop being down (UNAVAILABLE).
GRPC_STATUS = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND (a policy hiding a resource)
    413: 8,  # RESOURCE_EXHAUSTED (a check request over the HTTP transport's size limit)
    429: 14,  # UNAVAILABLE (gRPC's mapping: retry later)
    500: 13,  # INTERNAL
    502: 13,  # INTERNAL
    503: 14,  # UNAVAILABLE
    504: 14,  # UNAVAILABLE
}
_UNKNOWN = 2
_GRPC = "application/grpc"
_REPLACED = frozenset({"content-type", "content-length", "grpc-status", "grpc-message"})
_MAX_MESSAGE = 1024  # characters of a policy's body taken into grpc-message


def is_grpc(content_type: str | None) -> bool:
    """A gRPC request: ``application/grpc``, ``application/grpc+proto``, ``application/grpc-web``, ..."""
    return content_type is not None and content_type[:len(_GRPC)].lower() == _GRPC


def percent_encoded(message: str) -> str:
    """``grpc-message`` encoding: UTF-8, then every byte outside 0x20-0x7E, and ``%``, as ``%XX``."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in message.encode())


def _message(body: str, status: int) -> str:
    """Our JSON error body's ``error: error_description``; another body's text (a policy's); else the reason."""
    try:
        doc = json.loads(body) if body[:1] == "{" else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        description = doc.get("error_description")
        return f"{doc['error']}: {description}" if isinstance(description, str) else doc["error"]
    text = " ".join(body.split())[:_MAX_MESSAGE]
    if text:
        return text
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _header(name: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=name, value=value),
                             append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)


def grpc_denial(response: CheckResponse) -> CheckResponse:
    """The gRPC form of a denial (a response that is not one, or answers with a status under 400, as is)."""
    if not response.HasField("denied_response"):
        return response
    denied = response.denied_response
    status = denied.status.code or 403
    if status < 400:  # the service answering the request itself (RFC 9728 metadata), not a denial
        return response
    own = {o.header.key.lower(): o.header.value for o in denied.headers}
    code = own.get("grpc-status") or str(GRPC_STATUS.get(status, _UNKNOWN))
    message = own.get("grpc-message") or percent_encoded(_message(denied.body, status))
    headers = [_header("content-type", _GRPC), _header("grpc-status", code), _header("grpc-message", message)]
    headers += [o for o in denied.headers if o.header.key.lower() not in _REPLACED]
    form = CheckResponse(status=response.status, denied_response=DeniedHttpResponse(status=denied.status,
                                                                                     headers=headers))
    form.dynamic_metadata.CopyFrom(response.dynamic_metadata)
    return form
