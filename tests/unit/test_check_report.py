"""What ``authz check`` prints never holds a credential: the upstream's ``Authorization`` is shown as its scheme and
length whatever the scheme (``dpop.forward: dpop`` sends ``DPoP <JWT>``), and a token pasted with its scheme or a
line end is checked as the token a request presents."""

from __future__ import annotations

import argparse

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.cli.check import build_request, presented_token
from authz.cli.check_report import response_lines

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS1qd3Q"


@pytest.mark.parametrize("scheme", ["Bearer", "DPoP", "bearer", "Custom"])
def test_the_upstream_authorization_is_shown_as_its_length_whatever_its_scheme(scheme: str) -> None:
    response = CheckResponse()
    option = HeaderValueOption()
    option.header.key, option.header.value = "authorization", f"{scheme} {JWT}"
    response.ok_response.headers.append(option)
    text = "\n".join(response_lines(response))
    assert JWT not in text and JWT[:20] not in text
    assert f"{scheme} <credential, {len(JWT)} bytes>" in text


def test_an_authorization_value_with_no_scheme_is_not_shown() -> None:
    response = CheckResponse()
    option = HeaderValueOption()
    option.header.key, option.header.value = "Authorization", JWT
    response.ok_response.headers.append(option)
    assert JWT not in "\n".join(response_lines(response))


@pytest.mark.parametrize("given", ["opaque-token-1\n", "  opaque-token-1\r\n", "Bearer opaque-token-1",
                                   "DPoP opaque-token-1"])
def test_a_token_pasted_with_its_scheme_or_line_end_is_the_token_a_request_presents(given: str) -> None:
    assert presented_token(given) == "opaque-token-1"
    args = argparse.Namespace(path="/x", host="api.example.com", method="GET", header=[], ext=[], principal=None,
                              destination_principal=None, token_env="AUTHZ_CHECK_TOKEN")
    request = build_request(args, presented_token(given), "id-1")
    assert request.attributes.request.http.headers["authorization"] == "Bearer opaque-token-1"


@pytest.mark.parametrize("given", ["two words", "Basic dXNlcjpwYXNz", "tök"])
def test_a_value_that_is_no_token_is_sent_as_given_to_see_the_service_refuse_it(given: str) -> None:
    assert presented_token(given) == given.strip()
