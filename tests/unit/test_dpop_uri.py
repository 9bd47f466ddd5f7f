"""RFC 9449 §4.3's htu comparison: RFC 3986 normal form, no query or fragment (authz.dpop.uri)."""

from __future__ import annotations

import pytest

from authz.dpop.uri import normalized, request_uri


@pytest.mark.parametrize(("htu", "target"), [
    ("https://api.example/orders", "https://api.example/orders"),
    ("HTTPS://API.Example/orders", "https://api.example/orders"),  # scheme and host case
    ("https://api.example:443/orders", "https://api.example/orders"),  # default port
    ("http://api.example:80/orders", "http://api.example/orders"),
    ("https://api.example:/orders", "https://api.example/orders"),  # empty port
    ("https://api.example:08443/orders", "https://api.example:8443/orders"),
    ("https://api.example", "https://api.example/"),  # empty path
    ("https://api.example/orders?x=1", "https://api.example/orders"),  # query and fragment dropped
    ("https://api.example/orders#part", "https://api.example/orders"),
    ("https://api.example/%7Ealice/a%2fb", "https://api.example/~alice/a%2Fb"),  # unreserved decoded, hex upper
    ("https://api.example/a/./b/../c", "https://api.example/a/c"),  # dot segments
    ("https://api.example/a/%2E%2E/c", "https://api.example/c"),
    ("https://[::1]:8443/x", "https://[::1]:8443/x"),
])
def test_equal_after_normalization(htu: str, target: str) -> None:
    assert normalized(htu) == normalized(target) is not None


@pytest.mark.parametrize(("htu", "target"), [
    ("https://api.example/orders", "http://api.example/orders"),  # scheme
    ("https://api.example/orders", "https://api.example:8443/orders"),  # port
    ("https://api.example/orders", "https://other.example/orders"),  # host
    ("https://api.example/orders", "https://api.example/Orders"),  # path case matters
    ("https://api.example/orders", "https://api.example/orders/"),
    ("https://api.example/a%2Fb", "https://api.example/a/b"),  # an encoded slash is not a slash
    ("https://api.example./orders", "https://api.example/orders"),
])
def test_different_uris_stay_different(htu: str, target: str) -> None:
    assert normalized(htu) != normalized(target)


@pytest.mark.parametrize("htu", [
    "", "/orders", "api.example/orders", "ftp://api.example/orders", "https:///orders", "https://user@api.example/x",
    "https://api.example:99999/x", "https://api.example:12a/x", "https://api.example/a b", "https://api.example/\n",
    "https://api.exämple/x", "https://api.example/\x00", "https://[::1/x", "wss://api.example/x",
])
def test_what_is_no_http_uri_never_matches(htu: str) -> None:
    assert normalized(htu) is None


def test_request_uri_is_built_from_scheme_host_and_path_without_query() -> None:
    assert request_uri("https", "API.example:443", "/orders/1?expand=all") == "https://api.example/orders/1"
    assert request_uri("http", "127.0.0.1:8000", "/x") == "http://127.0.0.1:8000/x"
    assert request_uri("https", "", "/x") is None
