"""RFC 6750 §2.1 bearer extraction: what is a missing credential (401) and what is a malformed one (400)."""

from __future__ import annotations

import pytest

from authz.credential import bearer_token
from authz.errors import MalformedCredential, MissingCredential

MAX = 64


def _assert_missing(exc: MissingCredential) -> None:
    assert exc.status == 401
    assert exc.oauth_error is None


def _assert_malformed(exc: MalformedCredential) -> None:
    assert exc.status == 400
    assert exc.oauth_error == "invalid_request"


@pytest.mark.parametrize("header", ["Bearer abc.DEF-ghi_~+/", "bearer abc.DEF-ghi_~+/", "BEARER abc.DEF-ghi_~+/"])
def test_accepts_bearer_scheme_in_any_case(header: str) -> None:
    assert bearer_token((header,), MAX) == "abc.DEF-ghi_~+/"


def test_accepts_several_spaces_after_the_scheme() -> None:
    assert bearer_token(("Bearer     tok",), MAX) == "tok"


def test_rejects_no_header_as_missing_credential() -> None:
    with pytest.raises(MissingCredential) as info:
        bearer_token((), MAX)
    _assert_missing(info.value)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "DPoP abc"])
def test_rejects_other_scheme_as_missing_credential(header: str) -> None:
    with pytest.raises(MissingCredential) as info:
        bearer_token((header,), MAX)
    _assert_missing(info.value)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer    "])
def test_rejects_empty_bearer_token_as_invalid_request(header: str) -> None:
    with pytest.raises(MalformedCredential) as info:
        bearer_token((header,), MAX)
    _assert_malformed(info.value)


def test_rejects_two_tokens_as_invalid_request() -> None:
    with pytest.raises(MalformedCredential) as info:
        bearer_token(("Bearer a b",), MAX)
    _assert_malformed(info.value)


@pytest.mark.parametrize("header", ["Bearer a,Bearer b", "Bearer a, Bearer b", "Bearer a,b"])
def test_rejects_merged_duplicate_headers_as_invalid_request(header: str) -> None:
    with pytest.raises(MalformedCredential) as info:
        bearer_token((header,), MAX)
    _assert_malformed(info.value)


def test_rejects_two_header_values_as_invalid_request() -> None:
    with pytest.raises(MalformedCredential) as info:
        bearer_token(("Bearer a", "Bearer a"), MAX)
    _assert_malformed(info.value)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer a!b",
        'Bearer a"b',
        "Bearer ä",
        "Bearer a\tb",
        "Bearer a\x00b",
        "Bearer abc\n",
        "Bearer a\x7fb",
        "Bearer a;b",
        "Bearer a%2Bb",
    ],
    ids=["bang", "quote", "non-ascii", "tab", "nul", "trailing-newline", "del", "semicolon", "percent"],
)
def test_rejects_illegal_characters_as_invalid_request(header: str) -> None:
    with pytest.raises(MalformedCredential) as info:
        bearer_token((header,), MAX)
    _assert_malformed(info.value)


@pytest.mark.parametrize("token", ["abc=", "abc==", "a.b-c_d~e+f/g=="])
def test_accepts_trailing_padding(token: str) -> None:
    assert bearer_token((f"Bearer {token}",), MAX) == token


@pytest.mark.parametrize("token", ["a=b", "=abc", "ab==c"])
def test_rejects_padding_in_the_middle_as_invalid_request(token: str) -> None:
    with pytest.raises(MalformedCredential) as info:
        bearer_token((f"Bearer {token}",), MAX)
    _assert_malformed(info.value)


def test_accepts_token_of_exactly_max_length() -> None:
    token = "t" * MAX
    assert bearer_token((f"Bearer {token}",), MAX) == token


def test_rejects_token_over_max_length_as_invalid_request() -> None:
    with pytest.raises(MalformedCredential) as info:
        bearer_token((f"Bearer {'t' * (MAX + 1)}",), MAX)
    _assert_malformed(info.value)


def test_rejects_huge_header_as_invalid_request() -> None:
    with pytest.raises(MalformedCredential) as info:
        bearer_token(("Bearer " + "t" * 1_000_000,), MAX)
    _assert_malformed(info.value)


def test_rejects_huge_non_bearer_header_as_invalid_request() -> None:
    # the size limit applies before the scheme is read: an absurd header is a bad request, not a missing token
    with pytest.raises(MalformedCredential) as info:
        bearer_token(("Basic " + "x" * 1_000_000,), MAX)
    _assert_malformed(info.value)
