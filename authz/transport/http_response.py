"""Translate the ``CheckResponse`` the pipeline decided into Envoy's HTTP ext_authz answer. Pure.

How Envoy 1.40 reads an HTTP authorization service's answer (each checked against the real binary):

- **200 is the only allow.** Its headers that match ``allowed_upstream_headers`` overwrite the upstream request's,
  those matching ``allowed_upstream_headers_to_append`` are appended, those matching
  ``allowed_client_headers_on_success`` go to the client's response; ``x-envoy-auth-headers-to-remove`` (comma
  list) names headers Envoy removes from the upstream request. So overwrite-or-append is chosen per header *name*
  in Envoy's config, not per answer.
- **Any other 2xx-4xx status is a denial** that reaches the client with our status, headers (all, unless
  ``allowed_client_headers`` narrows them) and body.
- **A 5xx is an authorization *error*, not a denial**: Envoy answers ``status_on_error`` without our headers or body,
  and with ``failure_mode_allow: true`` it would let the request through. Ours are sent anyway (they are what we
  decided, and logs show them), but Envoy in HTTP mode must run with ``failure_mode_allow: false``.

What this transport cannot express fails closed: an allow that asks for query-parameter changes (Envoy's HTTP mode
has no way to carry them) becomes a 500, and a policy's denial with status 200 (which Envoy would read as an allow)
is sent as 403.
"""

from __future__ import annotations

import logging

from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.errors import AuthzError, UnsupportedDecision
from authz.response import deny_response

__all__ = ["HttpAnswer", "denial", "http_answer"]

log = logging.getLogger("authz.http")

HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"
HttpAnswer = tuple[int, tuple[tuple[str, str], ...], bytes]

def http_answer(response: CheckResponse) -> HttpAnswer:
    """(status, headers, body) for Envoy's HTTP ext_authz client."""
    if response.HasField("denied_response"):
        return _denied(response)
    ok = response.ok_response
    if ok.query_parameters_to_set or ok.query_parameters_to_remove:
        log.error("policy asked for query parameter changes, which Envoy's HTTP ext_authz mode cannot apply; "
                  "denying with 500 (use the gRPC transport for such policies)")
        return _UNSUPPORTED
    headers = [(o.header.key, o.header.value) for o in ok.headers]
    headers += [(o.header.key, o.header.value) for o in ok.response_headers_to_add]
    if ok.headers_to_remove:
        headers.append((HEADERS_TO_REMOVE, ",".join(ok.headers_to_remove)))
    return 200, tuple(headers), b""


def denial(error: AuthzError) -> HttpAnswer:
    """The HTTP answer for a denial the transport itself decides (the same status table, body and headers as the
    pipeline's denials; none of these is a 400/401/403, so no realm goes into a challenge)."""
    return _denied(deny_response(error, realm=""))


def _denied(response: CheckResponse) -> HttpAnswer:
    denied = response.denied_response
    status = denied.status.code or 403
    if status <= 200 or status > 599:  # 200 would be an allow to Envoy; a 1xx is no final answer
        log.warning("denial with status %d cannot be sent over Envoy's HTTP ext_authz mode; sending 403 (RFC 9728 "
                    "metadata: route its path to server.http.listen, ext_authz disabled on that route)", status)
        status = 403
    headers = tuple((o.header.key, o.header.value) for o in denied.headers)
    return status, headers, denied.body.encode()


_UNSUPPORTED = denial(UnsupportedDecision())
