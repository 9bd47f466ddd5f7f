"""The HTTP transport's two translations (check request -> RequestInfo, CheckResponse -> HTTP answer) and the
start-up refusal of policies that need what HTTP mode does not send. Pure functions, no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption, QueryParameter
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse
from google.rpc import code_pb2

from authz.errors import MalformedCredential, RouteMisconfigured
from authz.models import RequestInfo
from authz.policy.input_needs import input_needs
from authz.policy.projection import build_input
from authz.transport.http_gaps import http_gap
from authz.transport.http_request import HttpCheckTranslator
from authz.transport.http_response import http_answer

T = HttpCheckTranslator("/phantom-authz", 64 * 1024)


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def test_settings_segment_becomes_the_context_extensions_and_the_rest_the_original_path() -> None:
    info = T.request_info("POST", "/phantom-authz;required_scopes=read+write&policy=records%2Fdecision/r/a%2Fb?q=1",
                          headers(Host="api.example", Authorization="Bearer x", X_Request_Id="r1"), b"")
    assert info.context_extensions == {"required_scopes": "read write", "policy": "records/decision"}
    assert (info.method, info.path, info.host) == ("POST", "/r/a%2Fb?q=1", "api.example")
    assert info.make_view is not None and info.make_view().id == "r1"
    assert info.authorization == ("Bearer x",) and info.headers["authorization"] == "Bearer x"


def test_empty_settings_segment_means_the_service_defaults() -> None:
    assert T.request_info("GET", "/phantom-authz/x", [], b"").context_extensions == {}


@pytest.mark.parametrize("path", ["/x", "/phantom-authz", "/phantom-authzx/y", "/phantom-authz;a=1",
                                  "/phantom-authz;a=1&a=2/x", "/phantom-authz;required_scopes=read",
                                  "/phantom-authz//x", "/phantom-authz;required_scopes=read//x",
                                  "/phantom-authz/required_scopes=read/x", "/phantom-authz/disabled=true&as=dev/",
                                  "/phantom-authz;required_scopes=read/disabled=true/x"])
def test_paths_envoy_config_did_not_make_are_misconfigured_routes(path: str) -> None:
    with pytest.raises(RouteMisconfigured):
        T.request_info("GET", path, [], b"")


def test_repeated_headers_are_merged_as_envoy_merges_them_and_authorization_values_kept_apart() -> None:
    info = T.request_info("GET", "/phantom-authz/x", [(b"Authorization", b"Bearer a"), (b"authorization", b"Bearer b"),
                                                       (b"X-A", b"1"), (b"x-a", b"2")], b"")
    assert info.authorization == ("Bearer a", "Bearer b") and info.headers["x-a"] == "1,2"


def test_oversized_header_block_is_a_malformed_request() -> None:
    small = HttpCheckTranslator("/phantom-authz", 100)
    with pytest.raises(MalformedCredential):
        small.request_info("GET", "/phantom-authz/x", [(b"x-big", b"a" * 200)], b"")


def _input(info: RequestInfo) -> dict[str, Any]:
    assert info.make_view is not None
    return build_input(info.make_view(), None)


def test_the_policy_sees_the_input_grpc_mode_would_give() -> None:
    info = T.request_info("POST", "/phantom-authz;policy=p%2Fq/r?x=1",
                          headers(Host="api.example", X_Forwarded_Proto="https", X_Request_Id="r1",
                                  X_Envoy_Expected_Rq_Timeout_Ms="5000", X_Envoy_Internal="true",
                                  Content_Type="application/json"),
                          b'{"a": 1}')
    document = _input(info)
    http = document["attributes"]["request"]["http"]
    assert (http["method"], http["path"], http["host"], http["scheme"], http["id"]) == (
        "POST", "/r?x=1", "api.example", "https", "r1")
    assert http["headers"][":authority"] == "api.example" and http["headers"][":path"] == "/r?x=1"
    assert http["headers"][":method"] == "POST" and http["headers"][":scheme"] == "https"
    assert "host" not in http["headers"] and "x-envoy-expected-rq-timeout-ms" not in http["headers"]
    assert "x-envoy-internal" not in http["headers"]
    assert http["body"] == '{"a": 1}' and http["size"] == "8" and document["parsed_body"] == {"a": 1}
    assert document["attributes"]["contextExtensions"] == {"policy": "p/q"}
    assert document["attributes"]["request"]["time"].endswith("Z")
    assert (document["parsed_path"], document["parsed_query"]) == (["r"], {"x": ["1"]})
    assert not {"source", "destination", "tlsSession", "metadataContext"} & set(document["attributes"])
    binary = _input(T.request_info("POST", "/phantom-authz/r", [], b"\xff\xfe"))["attributes"]["request"]["http"]
    assert binary["rawBody"] == "//4=" and "body" not in binary


def _option(key: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=key, value=value))


def test_allow_becomes_200_with_upstream_headers_and_the_removal_list() -> None:
    response = CheckResponse()
    response.status.code = code_pb2.OK
    ok = response.ok_response
    ok.headers.extend([_option("authorization", "Bearer jwt"), _option("x-authz-policy", "records")])
    ok.headers_to_remove.extend(["x-user-id", "x-role"])
    ok.response_headers_to_add.append(_option("x-seen", "1"))
    status, answer_headers, body = http_answer(response)
    assert (status, body) == (200, b"")
    assert answer_headers == (("authorization", "Bearer jwt"), ("x-authz-policy", "records"), ("x-seen", "1"),
                              ("x-envoy-auth-headers-to-remove", "x-user-id,x-role"))


def test_query_parameter_changes_cannot_travel_over_http_mode_and_fail_closed() -> None:
    response = CheckResponse()
    response.ok_response.query_parameters_to_set.append(QueryParameter(key="a", value="1"))
    assert http_answer(response)[0] == 500
    response = CheckResponse()
    response.ok_response.query_parameters_to_remove.append("a")
    assert http_answer(response)[0] == 500


@pytest.mark.parametrize(("status", "sent"), [(0, 403), (200, 403), (101, 403), (204, 204), (401, 401), (418, 418),
                                              (503, 503)])
def test_denials_keep_their_status_except_those_envoy_would_read_as_allow(status: int, sent: int) -> None:
    response = CheckResponse()
    response.status.code = code_pb2.PERMISSION_DENIED
    response.denied_response.status.code = status  # type: ignore[assignment]
    response.denied_response.headers.append(_option("www-authenticate", 'Bearer realm="api"'))
    response.denied_response.body = '{"error":"x"}'
    assert http_answer(response) == (sent, (("www-authenticate", 'Bearer realm="api"'),), b'{"error":"x"}')


@pytest.mark.parametrize(("source", "gap"), [
    ("x := input.attributes.request.http.method", None),
    ("x := input.token.subject\ny := input.parsed_path", None),
    ("x := input.attributes.source.address", "input.attributes.source"),
    ("x := input.attributes.destination.principal", "input.attributes.destination"),
    ("x := input.attributes.tlsSession.sni", "input.attributes.tlsSession"),
    ("x := input.attributes.metadataContext", "input.attributes.metadataContext"),
    ("x := input.source_principal", "input.source_principal"),
    ("x := input.attributes", "input.attributes as a whole"),
    ("x := walk(input)", "as a whole"),
    # issue 16 item 6: the client's protocol (Envoy's HTTP check request is its own)
    ("x := input.attributes.request.http.protocol", "input.attributes.request.http.protocol"),
    ('x := input.attributes.request.http["protocol"]', "input.attributes.request.http.protocol"),
    ("h := input.attributes.request.http\nx := h.protocol", "input.attributes.request.http whole"),
    ('r := input.attributes.request\nx := object.get(r.http, "protocol", "")', "input.attributes.request whole"),
    ("h := input.attributes.request.http\nx := h.method", None),  # whole, but no `protocol` named anywhere
    ("x := input.attributes.request.http.method\ny := input.parsed_body.protocol", None),  # not under http
])
def test_policies_reading_what_http_mode_does_not_send_are_named(source: str, gap: str | None) -> None:
    found = http_gap(input_needs(["package p\n" + source]))
    assert (found is None) if gap is None else (found is not None and gap in found)


def test_item19_header_bytes_read_as_envoys_grpc_headers_map_has_them() -> None:
    """HTTP mode decoded header values as latin-1 (``José`` sent as UTF-8 became ``JosÃ©``): the same text as gRPC
    mode's headers map now, so a policy decides alike in both."""
    from tests.unit.test_request import ENVOY_HEADERS_MAP

    for raw, text in ENVOY_HEADERS_MAP:
        info = T.request_info("GET", "/phantom-authz/x", [(b"authorization", b"Bearer t"), (b"x-name", raw)], b"")
        assert info.headers["x-name"] == text and info.authorization == ("Bearer t",)
    with pytest.raises(MalformedCredential):
        T.request_info("GET", "/phantom-authz/x", [(b"authorization", "Bearer été".encode())], b"")
