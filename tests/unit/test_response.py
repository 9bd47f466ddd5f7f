"""allow_response / deny_response: the one status table, as Envoy and the client see it."""

from __future__ import annotations

import json

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2

from authz.errors import (
    AuthzError,
    InsufficientScope,
    InvalidToken,
    MalformedCredential,
    MissingCredential,
    RouteMisconfigured,
    UpstreamMisbehaved,
    UpstreamUnavailable,
)
from authz.models import Allow
from authz.response import allow_response, deny_response

DETAIL = "OPERATOR-ONLY-DETAIL token=opaque-xyz"


def _headers(resp: CheckResponse) -> dict[str, str]:
    opts = resp.denied_response.headers if resp.HasField("denied_response") else resp.ok_response.headers
    names = [o.header.key.lower() for o in opts]
    assert len(names) == len(set(names)), f"duplicate headers: {names}"
    return {o.header.key.lower(): o.header.value for o in opts}


def _body(resp: CheckResponse) -> dict[str, str]:
    doc = json.loads(resp.denied_response.body)
    assert set(doc) == {"error", "error_description"}
    return doc


def test_allow_has_ok_status_and_overwrites_authorization() -> None:
    resp = allow_response(Allow(headers=(("authorization", "Bearer a.b.c"),)))
    assert resp.status.code == code_pb2.OK
    assert resp.HasField("ok_response")
    [opt] = resp.ok_response.headers
    assert (opt.header.key, opt.header.value) == ("authorization", "Bearer a.b.c")
    assert opt.append_action == HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def test_allow_removes_configured_headers() -> None:
    resp = allow_response(Allow(headers_to_remove=("x-user-id", "x-role")))
    assert list(resp.ok_response.headers_to_remove) == ["x-user-id", "x-role"]
    assert list(resp.ok_response.headers) == []


def test_allow_carries_dynamic_metadata() -> None:
    resp = allow_response(Allow(dynamic_metadata={"sub": "alice", "client_id": "web", "scope": "read write"}))
    assert MessageToDict(resp.dynamic_metadata) == {"sub": "alice", "client_id": "web", "scope": "read write"}


def test_allow_without_metadata_sends_none() -> None:
    assert not allow_response(Allow()).HasField("dynamic_metadata")


def _deny(error: AuthzError, realm: str = "api") -> CheckResponse:
    resp = deny_response(error, realm)
    assert resp.status.code != code_pb2.OK
    assert resp.HasField("denied_response")
    assert not resp.HasField("ok_response")
    headers = _headers(resp)
    assert headers["content-type"] == "application/json"
    _body(resp)
    text = resp.denied_response.body + " ".join(headers.values())
    assert DETAIL not in text
    assert "opaque-xyz" not in text
    return resp


def test_missing_credential_is_401_challenge_without_error_code() -> None:
    resp = _deny(MissingCredential(DETAIL))
    assert resp.denied_response.status.code == 401
    assert resp.status.code == code_pb2.UNAUTHENTICATED
    assert _headers(resp)["www-authenticate"] == 'Bearer realm="api"'
    assert _body(resp)["error"] == "unauthorized"


def test_malformed_credential_is_400_invalid_request() -> None:
    resp = _deny(MalformedCredential(DETAIL))
    assert resp.denied_response.status.code == 400
    challenge = _headers(resp)["www-authenticate"]
    assert challenge.startswith('Bearer realm="api", ')
    assert 'error="invalid_request"' in challenge
    assert _body(resp)["error"] == "invalid_request"


def test_invalid_token_is_401_invalid_token() -> None:
    resp = _deny(InvalidToken(DETAIL))
    assert resp.denied_response.status.code == 401
    assert resp.status.code == code_pb2.UNAUTHENTICATED
    challenge = _headers(resp)["www-authenticate"]
    assert challenge.startswith('Bearer realm="api", ')
    assert 'error="invalid_token"' in challenge
    assert _body(resp) == {"error": "invalid_token", "error_description": InvalidToken.description}


def test_insufficient_scope_is_403_naming_all_required_scopes() -> None:
    resp = _deny(InsufficientScope(("read", "admin"), ("admin",)))
    assert resp.denied_response.status.code == 403
    challenge = _headers(resp)["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="read admin"' in challenge
    assert _body(resp)["error"] == "insufficient_scope"
    assert "missing scopes" not in resp.denied_response.body


def test_upstream_unavailable_is_503_with_retry_after() -> None:
    resp = _deny(UpstreamUnavailable(DETAIL, retry_after=7))
    assert resp.denied_response.status.code == 503
    headers = _headers(resp)
    assert headers["retry-after"] == "7"
    assert "www-authenticate" not in headers
    assert _body(resp) == {"error": "server_error", "error_description": UpstreamUnavailable.description}


def test_upstream_misbehaved_is_502_server_error() -> None:
    resp = _deny(UpstreamMisbehaved(DETAIL))
    assert resp.denied_response.status.code == 502
    assert "www-authenticate" not in _headers(resp)
    assert "retry-after" not in _headers(resp)
    assert _body(resp)["error"] == "server_error"


@pytest.mark.parametrize("error", [RouteMisconfigured(DETAIL), AuthzError(DETAIL)], ids=["route", "base"])
def test_internal_failures_are_500_server_error(error: AuthzError) -> None:
    resp = _deny(error)
    assert resp.denied_response.status.code == 500
    assert "www-authenticate" not in _headers(resp)
    assert _body(resp)["error"] == "server_error"


def test_denials_are_not_cacheable() -> None:
    for error in (MissingCredential(DETAIL), InvalidToken(DETAIL), UpstreamUnavailable(DETAIL, retry_after=1)):
        assert _headers(_deny(error))["cache-control"] == "no-store"


def test_realm_with_quote_and_backslash_is_escaped() -> None:
    resp = _deny(MissingCredential(DETAIL), realm='my "api"\\x')
    assert _headers(resp)["www-authenticate"] == 'Bearer realm="my \\"api\\"\\\\x"'


def test_custom_description_reaches_client_but_detail_does_not() -> None:
    resp = _deny(InvalidToken(DETAIL, description="token revoked"))
    assert _body(resp)["error_description"] == "token revoked"
    assert 'error_description="token revoked"' in _headers(resp)["www-authenticate"]
