"""Denials in gRPC's terms (``authz.grpc_denial``): which requests are gRPC, the status table, grpc-message's
percent-encoding, what is kept and what is dropped."""

from __future__ import annotations

import json

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse, DeniedHttpResponse
from envoy.type.v3.http_status_pb2 import HttpStatus

from authz.errors import (
    AuthzError,
    InsufficientScope,
    InvalidToken,
    MalformedCredential,
    MissingCredential,
    RequestTooLarge,
    RouteMisconfigured,
    UpstreamMisbehaved,
    UpstreamUnavailable,
)
from authz.grpc_denial import grpc_denial, is_grpc, percent_encoded
from authz.models import Allow
from authz.response import allow_response, deny_response


def _headers(response: CheckResponse) -> dict[str, str]:
    return {o.header.key: o.header.value for o in response.denied_response.headers}


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto", "Application/GRPC",
                                          "application/grpc-web+proto", "application/grpc; charset=x"])
def test_grpc_content_types(content_type: str) -> None:
    assert is_grpc(content_type)


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/grp", "text/grpc"])
def test_other_content_types(content_type: str | None) -> None:
    assert not is_grpc(content_type)


@pytest.mark.parametrize(("text", "encoded"), [("no token here", "no token here"), ("100%", "100%25"),
                                               ("caf\u00e9", "caf%C3%A9"), ("a\nb\tc", "a%0Ab%09c"), ("~", "~")])
def test_grpc_message_is_percent_encoded_as_the_grpc_spec_says(text: str, encoded: str) -> None:
    assert percent_encoded(text) == encoded


@pytest.mark.parametrize(("error", "code"), [
    (MalformedCredential(), "3"), (MissingCredential(), "16"), (InvalidToken(), "16"),
    (InsufficientScope(("read",), ("read",)), "7"), (RequestTooLarge(), "8"), (RouteMisconfigured(), "13"),
    (UpstreamMisbehaved(), "13"), (UpstreamUnavailable(retry_after=5), "14"), (AuthzError(), "13"),
])
def test_status_table(error: AuthzError, code: str) -> None:
    denial = deny_response(error, "api")
    form = grpc_denial(denial)
    headers = _headers(form)
    assert headers["grpc-status"] == code
    assert headers["content-type"] == "application/grpc" and form.denied_response.body == ""
    assert form.denied_response.status.code == error.status  # Envoy makes the client's response 200
    assert form.status.code == denial.status.code
    body = json.loads(denial.denied_response.body)  # the JSON a non-gRPC client gets
    assert headers["grpc-message"] == percent_encoded(f"{body['error']}: {body['error_description']}")


def test_challenge_and_other_headers_are_kept() -> None:
    headers = _headers(grpc_denial(deny_response(InsufficientScope(("read", "write"), ("write",)), "api")))
    assert headers["www-authenticate"] == ('Bearer realm="api", error="insufficient_scope", error_description="the '
                                           'access token lacks a required scope", scope="read write"')
    assert headers["cache-control"] == "no-store"
    assert headers["grpc-message"] == "insufficient_scope: the access token lacks a required scope"
    assert list(headers).count("content-type") == 1
    retry = _headers(grpc_denial(deny_response(UpstreamUnavailable(retry_after=7), "api")))
    assert retry["retry-after"] == "7" and retry["grpc-status"] == "14"


def _policy_denial(status: int, body: str, *headers: tuple[str, str]) -> CheckResponse:
    options = [HeaderValueOption(header=HeaderValue(key=k, value=v)) for k, v in headers]
    return CheckResponse(denied_response=DeniedHttpResponse(status=HttpStatus(code=status), headers=options,
                                                            body=body))


def test_policy_denials_keep_their_own_grpc_status_else_get_the_table_and_their_body_as_message() -> None:
    own = _headers(grpc_denial(_policy_denial(403, "nope", ("grpc-status", "5"), ("x-reason", "owner"))))
    assert (own["grpc-status"], own["grpc-message"], own["x-reason"]) == ("5", "nope", "owner")
    table = _headers(grpc_denial(_policy_denial(404, "no  such\nrecord: 50%")))
    assert (table["grpc-status"], table["grpc-message"]) == ("5", "no such record: 50%25")
    silent = _headers(grpc_denial(_policy_denial(418, "")))
    assert (silent["grpc-status"], silent["grpc-message"]) == ("2", "I'm a Teapot")


def test_allows_and_direct_answers_are_left_alone() -> None:
    allow = allow_response(Allow((("authorization", "Bearer x.y.z"),)))
    assert grpc_denial(allow) is allow
    answer = _policy_denial(200, '{"resource": "https://api.example.com"}', ("content-type", "application/json"))
    assert grpc_denial(answer) is answer
