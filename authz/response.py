"""Stage 7: ``Allow`` / ``AuthzError`` -> Envoy ``CheckResponse``. The one status table lives here. Pure.

Denials are always CheckResponses with our status, ``WWW-Authenticate`` (RFC 6750 §3) and a JSON body; never gRPC
errors, which Envoy would turn into ``status_on_error`` and so lose our status and headers.
"""

from __future__ import annotations

import json

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse, DeniedHttpResponse, OkHttpResponse
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct
from google.rpc import code_pb2, status_pb2

from authz.errors import AuthzError, DirectAnswer, InsufficientScope, PolicyDenied, UpstreamUnavailable, UseDpopNonce
from authz.models import Allow
from authz.policy.response_mapping import apply_to_ok, denied_http_response, metadata_struct

__all__ = ["allow_response", "deny_response", "www_authenticate"]

_OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_OK = status_pb2.Status(code=code_pb2.OK)
_UNAUTHENTICATED = status_pb2.Status(code=code_pb2.UNAUTHENTICATED)
_PERMISSION_DENIED = status_pb2.Status(code=code_pb2.PERMISSION_DENIED)
_BODY_ERROR = {400: "invalid_request", 401: "unauthorized", 403: "forbidden",  # when no RFC 6750 code applies
               413: "invalid_request"}


def _header(name: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=name, value=value), append_action=_OVERWRITE)


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def www_authenticate(error: AuthzError, realm: str) -> str | None:
    """The RFC 6750 challenge for a 400/401/403 denial; ``None`` for server-side failures. On a route taking DPoP
    (``error.dpop``), RFC 9449's ``DPoP`` challenge with ``algs`` too (after the Bearer one when the route also takes
    Bearer tokens), the error on the challenge of the scheme the client used."""
    if error.status not in (400, 401, 403):
        return None
    offer = error.dpop
    if offer is None:
        return _challenge("Bearer", realm, error)
    dpop = f'{_challenge("DPoP", realm, error if offer.error_on_dpop else None)}, algs="{offer.algs}"'
    if not offer.bearer:
        return dpop
    return f'{_challenge("Bearer", realm, None if offer.error_on_dpop else error)}, {dpop}'


def _challenge(scheme: str, realm: str, error: AuthzError | None) -> str:
    parts = [f'{scheme} realm="{_quoted(realm)}"']
    if error is not None and error.oauth_error is not None:
        parts.append(f'error="{error.oauth_error}"')
        parts.append(f'error_description="{_quoted(error.description)}"')
        if isinstance(error, InsufficientScope):
            parts.append(f'scope="{" ".join(error.required)}"')
    return ", ".join(parts)


def allow_response(allow: Allow) -> CheckResponse:
    ok = OkHttpResponse(
        headers=[_header(name, value) for name, value in allow.headers],
        headers_to_remove=allow.headers_to_remove,
    )
    response = CheckResponse(status=_OK, ok_response=ok)
    if allow.policy is not None:  # the policy's mutations come after ours (opa-envoy-plugin's contract)
        apply_to_ok(allow.policy, response.ok_response)
        policy_metadata = metadata_struct(allow.policy)
        if policy_metadata is not None:
            response.dynamic_metadata.MergeFrom(policy_metadata)
    if allow.dynamic_metadata:
        ours = Struct()
        ours.update(allow.dynamic_metadata)
        response.dynamic_metadata.MergeFrom(ours)  # ours (sub, client_id, scope, decision_id) win
    return response


def deny_response(error: AuthzError, realm: str) -> CheckResponse:
    if isinstance(error, DirectAnswer):  # the service's own answer (RFC 9728 metadata), sent as it is
        answer = DeniedHttpResponse(status=HttpStatus(code=error.status), body=error.body,
                                    headers=[_header(name, value) for name, value in error.headers])
        return CheckResponse(status=_PERMISSION_DENIED, denied_response=answer)
    if isinstance(error, PolicyDenied):  # the policy's own status, headers and body
        return CheckResponse(status=_PERMISSION_DENIED, denied_response=denied_http_response(error.decision))
    status = error.status
    body = {
        "error": error.oauth_error or _BODY_ERROR.get(status, "server_error"),
        "error_description": error.description,
    }
    headers = [
        _header("content-type", "application/json"),
        _header("cache-control", "no-store"),
    ]
    challenge = www_authenticate(error, realm)
    if challenge is not None:
        if error.status == 401 and error.resource_metadata is not None:  # RFC 9728 §5.1, in each challenge
            realm_param = f'realm="{_quoted(realm)}"'
            challenge = challenge.replace(realm_param, f'{realm_param}, resource_metadata="{error.resource_metadata}"')
        headers.append(_header("www-authenticate", challenge))
    if isinstance(error, UseDpopNonce):  # RFC 9449 §9: the nonce the next proof must carry
        headers.append(_header("dpop-nonce", error.nonce))
    if isinstance(error, UpstreamUnavailable) and error.retry_after is not None:
        headers.append(_header("retry-after", str(error.retry_after)))
    denied = DeniedHttpResponse(
        status=HttpStatus(code=status),
        headers=headers,
        body=json.dumps(body, separators=(",", ":")),
    )
    return CheckResponse(
        status=_UNAUTHENTICATED if status == 401 else _PERMISSION_DENIED,
        denied_response=denied,
    )
