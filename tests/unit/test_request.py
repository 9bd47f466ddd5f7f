"""request_info: an Envoy v3 CheckRequest becomes a RequestInfo, from the headers map or the raw header_map."""

from __future__ import annotations

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.errors import MalformedCredential
from authz.transport.grpc_request import MAX_HEADER_BYTES, request_info


def _request(headers: dict[str, str] | None = None) -> CheckRequest:
    req = CheckRequest()
    http = req.attributes.request.http
    http.method = "GET"
    http.path = "/orders?x=1"
    http.host = "api.example"
    http.id = "req-123"
    for name, value in (headers or {}).items():
        http.headers[name] = value
    return req


def test_rejects_request_without_http_attributes() -> None:
    with pytest.raises(MalformedCredential) as info:
        request_info(CheckRequest())
    assert info.value.status == 400


def test_rejects_request_with_attributes_but_no_http() -> None:
    req = CheckRequest()
    req.attributes.request.time.seconds = 1
    with pytest.raises(MalformedCredential):
        request_info(req)


def test_reads_method_path_host_and_id() -> None:
    info = request_info(_request({":authority": "api.example"}))
    assert (info.method, info.path, info.host) == ("GET", "/orders?x=1", "api.example")


def test_headers_map_gives_one_authorization_value() -> None:
    info = request_info(_request({"authorization": "Bearer abc", "x-trace": "1"}))
    assert info.authorization == ("Bearer abc",)
    assert info.headers["x-trace"] == "1"


def test_headers_map_without_authorization_gives_none() -> None:
    assert request_info(_request({"accept": "*/*"})).authorization == ()


def test_header_map_keeps_two_authorization_headers_apart() -> None:
    req = _request()
    hm = req.attributes.request.http.header_map
    hm.headers.add(key="authorization", value="Bearer a")
    hm.headers.add(key="Authorization", value="Bearer b")
    hm.headers.add(key="x-forwarded-for", value="10.0.0.1")
    info = request_info(req)
    assert info.authorization == ("Bearer a", "Bearer b")
    assert info.headers["authorization"] == "Bearer a,Bearer b"
    assert info.headers["x-forwarded-for"] == "10.0.0.1"


def test_header_map_reads_ascii_raw_value() -> None:
    req = _request()
    req.attributes.request.http.header_map.headers.add(key="authorization", raw_value=b"Bearer raw-token")
    assert request_info(req).authorization == ("Bearer raw-token",)


def test_headers_in_both_encodings_are_a_bad_request() -> None:
    """Envoy sends the headers map or header_map, never both: two encodings could disagree about the credential."""
    req = _request({"authorization": "Bearer merged"})
    req.attributes.request.http.header_map.headers.add(key="authorization", value="Bearer raw")
    with pytest.raises(MalformedCredential):
        request_info(req)


def test_a_header_whose_value_and_raw_value_disagree_is_a_bad_request() -> None:
    req = _request()
    req.attributes.request.http.header_map.headers.add(key="authorization", value="Bearer a", raw_value=b"Bearer b")
    with pytest.raises(MalformedCredential):
        request_info(req)


def test_rejects_non_ascii_raw_value() -> None:
    req = _request()
    req.attributes.request.http.header_map.headers.add(key="authorization", raw_value="Bearer ä".encode())
    with pytest.raises(MalformedCredential) as info:
        request_info(req)
    assert info.value.status == 400
    assert info.value.oauth_error == "invalid_request"


def test_rejects_huge_headers_map() -> None:
    with pytest.raises(MalformedCredential):
        request_info(_request({"authorization": "Bearer a", "x-big": "b" * MAX_HEADER_BYTES}))


def test_rejects_huge_header_map() -> None:
    req = _request()
    hm = req.attributes.request.http.header_map
    for i in range(5):
        hm.headers.add(key=f"x-h{i}", value="v" * (MAX_HEADER_BYTES // 4))
    with pytest.raises(MalformedCredential):
        request_info(req)


def test_accepts_headers_just_under_the_limit() -> None:
    info = request_info(_request({"x-big": "b" * (MAX_HEADER_BYTES - len("x-big"))}))
    assert len(info.headers["x-big"]) == MAX_HEADER_BYTES - len("x-big")


def test_copies_context_extensions() -> None:
    req = _request()
    req.attributes.context_extensions["required_scopes"] = "read write"
    req.attributes.context_extensions["as"] = "curity"
    info = request_info(req)
    assert dict(info.context_extensions) == {"required_scopes": "read write", "as": "curity"}
    req.attributes.context_extensions["disabled"] = "true"
    assert "disabled" not in info.context_extensions


def test_no_context_extensions_give_empty_mapping() -> None:
    assert dict(request_info(_request()).context_extensions) == {}


# Envoy 1.40's headers map for these header bytes (read from a real Envoy's CheckRequest): UTF-8, each byte of an
# invalid sequence "!"
ENVOY_HEADERS_MAP = [
    ("José".encode(), "José"),
    (b"Jos\xe9", "Jos!"),
    (b"a\xff\xfeb", "a!!b"),
    (b"\xed\xa0\x80z", "!!!z"),  # a UTF-16 surrogate
    (b"\xc0\xafz", "!!z"),  # overlong
    (b"\xf4\x90\x80\x80z", "!!!!z"),  # beyond U+10FFFF
    (b"\xf0\x9f\x98z", "!!!z"),  # cut short
    (b"\xef\xbf\xbfz", "\uffffz"),
]


@pytest.mark.parametrize(("raw", "text"), ENVOY_HEADERS_MAP)
def test_item19_a_non_ascii_raw_value_reads_as_envoys_headers_map_has_it(raw: bytes, text: str) -> None:
    """encode_raw_headers made any non-ASCII header value a 400; the same request in the headers map was allowed."""
    raw_request = _request()
    raw_request.attributes.request.http.header_map.headers.add(key="authorization", raw_value=b"Bearer t")
    raw_request.attributes.request.http.header_map.headers.add(key="x-name", raw_value=raw)
    from_raw = request_info(raw_request)
    from_map = request_info(_request({"authorization": "Bearer t", "x-name": text}))
    assert from_raw.headers["x-name"] == from_map.headers["x-name"] == text
    assert from_raw.authorization == from_map.authorization == ("Bearer t",)


@pytest.mark.parametrize("value", ["Bearer été", "Basic José", "Bearer t\u2028"])
def test_item19_an_authorization_header_that_is_not_ascii_is_malformed_in_either_encoding(value: str) -> None:
    raw_request = _request()
    raw_request.attributes.request.http.header_map.headers.add(key="authorization", raw_value=value.encode())
    for request in (raw_request, _request({"authorization": value})):
        with pytest.raises(MalformedCredential) as info:
            request_info(request)
        assert info.value.status == 400
