"""build_input: opa-envoy-plugin's input document (v3, protojson) plus the verified token, from bare protobufs.

The oracle for ``attributes`` is ``json_format.MessageToDict`` of a copy of the request whose Authorization headers
were replaced on the protobuf itself (an independent route to the same document).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf import any_pb2, struct_pb2
from google.protobuf.json_format import MessageToDict

from authz.models import Identity
from authz.policy import protojson as policy_input
from authz.policy.engine import PolicyEvaluationError
from authz.policy.parse import PolicyInputError
from authz.policy.projection import build_input
from authz.policy.view import RequestView, check_parsable

OPAQUE = "opaque-7f3c9a1e5b-DO-NOT-LEAK"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
WITH_JWT = Identity(jwt=JWT, claims={"iss": "https://as.example", "sub": "alice", "scope": "write read"},
                    scopes=frozenset({"write", "read"}), subject="alice", client_id="demo-client", expires_at=1.0e9)
WITHOUT_JWT = Identity(jwt=None, claims={"sub": "bob", "iss": 7}, scopes=frozenset(), subject="bob", client_id=None,
                       expires_at=None)
IDENTITIES = {"anonymous": None, "jwt": WITH_JWT, "claims-only": WITHOUT_JWT}


# --- fixtures -------------------------------------------------------------------------------------------------------


def _typical() -> CheckRequest:
    req = CheckRequest()
    a = req.attributes
    a.source.address.socket_address.address = "10.0.0.7"
    a.source.address.socket_address.port_value = 51234
    a.destination.address.socket_address.address = "10.0.0.1"
    a.destination.address.socket_address.port_value = 8000
    a.request.time.FromSeconds(1_700_000_000)
    h = a.request.http
    h.id = "13359530607844510314"
    h.method = "GET"
    h.path = "/api/v1/products?page=2&sort=name"
    h.host = "api.example"
    h.scheme = "https"
    h.protocol = "HTTP/1.1"
    h.headers.update({":authority": "api.example", ":method": "GET", ":path": h.path, "accept": "*/*",
                      "authorization": f"Bearer {OPAQUE}", "user-agent": "curl/8.5.0",
                      "x-request-id": "5b1f0c7e-1c1d-4a59-9a0e-2f5f4c1d7e3a", "x-forwarded-proto": "https"})
    a.context_extensions.update({"required_scopes": "read", "as": "dev"})
    a.metadata_context.SetInParent()
    a.route_metadata_context.SetInParent()
    return req


def _unicode_headers() -> CheckRequest:
    req = _typical()
    h = req.attributes.request.http
    h.headers.update({"x-name": "Zoë ☃ 日本語", "x-emoji": "🙂", "x-empty": ""})
    h.path = "/caf%C3%A9/日本?q=%E2%98%83"
    req.attributes.context_extensions["note"] = "naïve"
    return req


def _empty_everything() -> CheckRequest:
    req = CheckRequest()
    a = req.attributes
    a.source.SetInParent()
    a.destination.address.SetInParent()
    a.request.http.SetInParent()
    a.request.http.header_map.SetInParent()
    a.tls_session.SetInParent()
    return req


def _json_body() -> CheckRequest:
    req = _typical()
    h = req.attributes.request.http
    h.method = "POST"
    h.body = '{"amount": 12.5, "to": "bob", "tags": ["a", "ü"]}'
    h.size = len(h.body.encode())
    h.headers.update({"content-type": "application/json", "content-length": str(h.size)})
    return req


def _raw_body() -> CheckRequest:
    req = _typical()
    h = req.attributes.request.http
    h.method = "PUT"
    h.raw_body = b"\x00\xff\xfebinary\x80"
    h.size = 9_223_372_036_854_775_807
    h.headers["content-type"] = "application/octet-stream"
    return req


def _header_map(raw: bool) -> Callable[[], CheckRequest]:
    def make() -> CheckRequest:
        req = _typical()
        h = req.attributes.request.http
        h.ClearField("headers")
        pairs = [(":authority", "api.example"), (":path", "/x"), ("authorization", f"Bearer {OPAQUE}"),
                 ("accept", "text/html"), ("authorization", f"Basic {OPAQUE}"), ("x-uni", "ünï"), ("x-empty", "")]
        for key, value in pairs:
            entry = h.header_map.headers.add(key=key)
            if raw:
                entry.raw_value = value.encode()
            else:
                entry.value = value
        return req

    return make


def _tls_and_peers() -> CheckRequest:
    req = _typical()
    a = req.attributes
    a.tls_session.sni = "api.example"
    a.source.principal = "spiffe://cluster.local/ns/default/sa/frontend"
    a.source.certificate = "-----BEGIN%20CERTIFICATE-----%0AMIIB..."
    a.source.service = "frontend"
    a.source.labels.update({"app": "frontend", "version": "v1"})
    a.destination.principal = "spiffe://cluster.local/ns/default/sa/api"
    return req


def _metadata() -> CheckRequest:
    req = _typical()
    a = req.attributes
    a.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].update(
        {"payload": {"sub": "x", "n": 3, "f": 2.5, "ok": True, "none": None, "list": [1, "two", {"k": []}]}})
    a.metadata_context.filter_metadata["empty"].SetInParent()
    packed = any_pb2.Any()
    packed.Pack(struct_pb2.Struct(fields={"k": struct_pb2.Value(string_value="v")}))
    a.metadata_context.typed_filter_metadata["typed"].CopyFrom(packed)
    a.route_metadata_context.filter_metadata["route"].update({"policy": "strict"})
    return req


def _socket_variants() -> CheckRequest:
    req = _typical()
    s = req.attributes.source.address.socket_address
    s.named_port = "https"
    s.resolver_name = "custom"
    s.ipv4_compat = True
    d = req.attributes.destination.address.socket_address
    d.port_value = 0
    d.protocol = d.UDP
    return req


def _pipe_and_internal() -> CheckRequest:
    req = _typical()
    req.attributes.source.address.pipe.path = "/run/envoy.sock"
    req.attributes.source.address.pipe.mode = 0o600
    req.attributes.destination.address.envoy_internal_address.server_listener_name = "internal"
    return req


def _timestamps() -> CheckRequest:
    req = _typical()
    req.attributes.request.time.seconds = -1
    req.attributes.request.time.nanos = 123_456_000
    return req


def _no_request() -> CheckRequest:
    req = CheckRequest()
    req.attributes.context_extensions["disabled"] = "true"
    return req


def _case_variants() -> CheckRequest:
    req = _typical()
    req.attributes.request.http.headers.update({"Authorization": f"Bearer {OPAQUE}", "AUTHORIZATION": OPAQUE})
    return req


def _all_scalars() -> CheckRequest:
    req = _typical()
    h = req.attributes.request.http
    h.query = "a=1"
    h.fragment = "frag"
    h.size = -1
    h.body = "ünïcode text"
    h.raw_body = b"raw"
    req.attributes.request.time.nanos = 1
    return req


def _form_body() -> CheckRequest:
    req = _typical()
    h = req.attributes.request.http
    h.method = "POST"
    h.body = "grant=ok&name=Zo%C3%AB&name=x+y"
    h.headers["content-type"] = "application/x-www-form-urlencoded; charset=utf-8"
    return req


def _no_authorization() -> CheckRequest:
    req = _typical()
    del req.attributes.request.http.headers["authorization"]
    return req


FIXTURES: dict[str, Callable[[], CheckRequest]] = {
    "typical": _typical,
    "unicode-headers": _unicode_headers,
    "empty-everything": _empty_everything,
    "json-body": _json_body,
    "raw-body": _raw_body,
    "header-map-values": _header_map(raw=False),
    "header-map-raw-values": _header_map(raw=True),
    "tls-and-peers": _tls_and_peers,
    "metadata": _metadata,
    "socket-variants": _socket_variants,
    "pipe-and-internal-address": _pipe_and_internal,
    "timestamps": _timestamps,
    "no-request": _no_request,
    "no-attributes": CheckRequest,
    "case-variant-authorization": _case_variants,
    "all-scalars": _all_scalars,
    "form-body": _form_body,
    "no-authorization": _no_authorization,
}


def _expected_attributes(req: CheckRequest, identity: Identity | None) -> dict[str, Any] | None:
    """MessageToDict of a copy whose Authorization headers were replaced on the protobuf."""
    copy = CheckRequest()
    copy.CopyFrom(req)
    if copy.attributes.request.HasField("http"):
        http = copy.attributes.request.http
        bearer = f"Bearer {identity.jwt}" if identity is not None and identity.jwt else None
        if http.headers or not http.HasField("header_map"):
            for key in [k for k in http.headers if k.lower() == "authorization"]:
                del http.headers[key]
            if bearer:
                http.headers["authorization"] = bearer
        if http.HasField("header_map"):
            old = list(http.header_map.headers)
            raw = bool(old) and bool(old[0].raw_value)
            new: list[base_pb2.HeaderValue] = []
            for entry in old:
                if entry.key.lower() != "authorization":
                    new.append(entry)
                elif bearer:
                    new.append(_header_value(bearer, bool(entry.raw_value)))
                    bearer = None
            if bearer:
                new.append(_header_value(bearer, raw))
            http.header_map.ClearField("headers")
            http.header_map.headers.extend(new)
    result: dict[str, Any] | None = MessageToDict(copy).get("attributes")
    return result


def _header_value(bearer: str, raw: bool) -> base_pb2.HeaderValue:
    if raw:
        return base_pb2.HeaderValue(key="authorization", raw_value=bearer.encode())
    return base_pb2.HeaderValue(key="authorization", value=bearer)


# --- attributes: equal to MessageToDict -----------------------------------------------------------------------------


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("name", FIXTURES)
def test_attributes_equal_message_to_dict(name: str, who: str) -> None:
    req = FIXTURES[name]()
    doc = build_input(req, IDENTITIES[who])
    assert doc.get("attributes") == _expected_attributes(req, IDENTITIES[who])
    json.dumps(doc, ensure_ascii=False).encode()  # a plain JSON document


@pytest.mark.parametrize("name", FIXTURES)
def test_fallback_path_gives_the_same_document(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = build_input(FIXTURES[name](), WITH_JWT)
    monkeypatch.setattr(policy_input, "_FAST_PATH", False)
    assert build_input(FIXTURES[name](), WITH_JWT) == fast


def test_schema_guard_accepts_the_installed_schema() -> None:
    assert policy_input._FAST_PATH


def test_attributes_without_authorization_are_exactly_message_to_dict() -> None:
    for make in (_no_authorization, _metadata, _empty_everything, _raw_body):
        req = make()
        if make is not _no_authorization:
            req.attributes.request.http.headers.pop("authorization", None)
        assert build_input(req, None).get("attributes") == MessageToDict(req).get("attributes")


def test_protojson_encodings() -> None:
    attrs = build_input(_all_scalars(), None)["attributes"]
    http = attrs["request"]["http"]
    assert http["size"] == "-1"  # int64 as a string
    assert http["rawBody"] == base64.b64encode(b"raw").decode()
    assert attrs["request"]["time"] == "2023-11-14T22:13:20.000000001Z"
    assert "service" not in attrs["source"] and "tlsSession" not in attrs  # unpopulated fields are omitted
    assert attrs["metadataContext"] == {} and attrs["contextExtensions"]["as"] == "dev"


# --- the opaque token never appears ---------------------------------------------------------------------------------


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("name", FIXTURES)
def test_opaque_token_never_in_the_document(name: str, who: str) -> None:
    doc = build_input(FIXTURES[name](), IDENTITIES[who])
    dump = json.dumps(doc, ensure_ascii=False)
    assert OPAQUE not in dump
    http = doc.get("attributes", {}).get("request", {}).get("http", {})
    for entry in http.get("headerMap", {}).get("headers", []):
        assert OPAQUE not in base64.b64decode(entry.get("rawValue", "")).decode()


def test_authorization_carries_the_verified_jwt() -> None:
    http = build_input(_typical(), WITH_JWT)["attributes"]["request"]["http"]
    assert http["headers"]["authorization"] == f"Bearer {JWT}"
    http = build_input(_case_variants(), WITH_JWT)["attributes"]["request"]["http"]
    assert [k for k in http["headers"] if k.lower() == "authorization"] == ["authorization"]


@pytest.mark.parametrize("identity", [None, WITHOUT_JWT])
def test_authorization_removed_without_jwt(identity: Identity | None) -> None:
    http = build_input(_typical(), identity)["attributes"]["request"]["http"]
    assert "authorization" not in http["headers"] and http["headers"]["accept"] == "*/*"


def test_header_map_authorization_replaced_once_keeping_its_encoding() -> None:
    for raw, field in ((False, "value"), (True, "rawValue")):
        entries = build_input(_header_map(raw)(), WITH_JWT)["attributes"]["request"]["http"]["headerMap"]["headers"]
        auth = [e for e in entries if e["key"] == "authorization"]
        bearer = f"Bearer {JWT}"
        assert auth == [{"key": "authorization", field: base64.b64encode(bearer.encode()).decode() if raw else bearer}]
        assert [e["key"] for e in entries][:3] == [":authority", ":path", "authorization"]
        gone = build_input(_header_map(raw)(), None)["attributes"]["request"]["http"]["headerMap"]["headers"]
        assert [e["key"] for e in gone] == [":authority", ":path", "accept", "x-uni", "x-empty"]


def test_jwt_added_when_the_request_had_no_authorization_header() -> None:
    http = build_input(_no_authorization(), WITH_JWT)["attributes"]["request"]["http"]
    assert http["headers"]["authorization"] == f"Bearer {JWT}"


@pytest.mark.parametrize("name", FIXTURES)
def test_callers_request_is_unchanged(name: str) -> None:
    req = FIXTURES[name]()
    before = req.SerializeToString(deterministic=True)
    doc = build_input(req, WITH_JWT)
    doc.get("attributes", {}).get("request", {}).get("http", {}).get("headers", {}).clear()
    assert req.SerializeToString(deterministic=True) == before
    assert req == FIXTURES[name]()
    assert req.HasField("attributes") == FIXTURES[name]().HasField("attributes")


# --- document shape, token ------------------------------------------------------------------------------------------


def test_top_level_document() -> None:
    doc = build_input(_typical(), WITH_JWT)
    assert set(doc) == {"attributes", "version", "parsed_path", "parsed_query", "parsed_body", "truncated_body",
                        "token"}
    assert doc["version"] == {"ext_authz": "v3", "encoding": "protojson"}
    assert doc["parsed_path"] == ["api", "v1", "products"]
    assert doc["parsed_query"] == {"page": ["2"], "sort": ["name"]}
    assert (doc["parsed_body"], doc["truncated_body"]) == (None, False)


def test_token_from_identity() -> None:
    assert build_input(_typical(), WITH_JWT)["token"] == {
        "claims": {"iss": "https://as.example", "sub": "alice", "scope": "write read"},
        "scopes": ["read", "write"], "subject": "alice", "client_id": "demo-client",
        "issuer": "https://as.example", "jwt": JWT}
    token = build_input(_typical(), WITHOUT_JWT)["token"]
    assert token["jwt"] is None and token["issuer"] is None and token["scopes"] == []
    assert build_input(_typical(), None)["token"] is None


def test_source_principal_as_the_plugin_adds_it() -> None:
    assert build_input(_tls_and_peers(), None)["source_principal"] == "spiffe://cluster.local/ns/default/sa/frontend"
    assert "source_principal" not in build_input(_typical(), None)


def test_request_without_attributes() -> None:
    doc = build_input(CheckRequest(), None)
    assert "attributes" not in doc
    parsed = (doc["parsed_path"], doc["parsed_query"], doc["parsed_body"], doc["truncated_body"])
    assert parsed == ([""], {}, None, False)


# --- parsed_path / parsed_query --------------------------------------------------------------------------------------


def _with_path(path: str) -> CheckRequest:
    req = CheckRequest()
    req.attributes.request.http.path = path
    return req


@pytest.mark.parametrize(("path", "parsed"), [
    ("/my/test/path", ["my", "test", "path"]),
    # split before unescaping (the plugin unescapes first): an encoded slash, which only a route with
    # allow_encoded_slashes lets through stage 0, stays inside its segment as the upstream sees it
    ("%2Fmy%2Ftest%2Fpath?a=1", ["/my/test/path"]),
    ("/files/a%2Fb/raw", ["files", "a/b", "raw"]),
    ("/a/b%20c?x=1", ["a", "b c"]),
    ("/", [""]),
    ("", [""]),
    ("//a//b/", ["a", "", "b", ""]),  # every leading slash trimmed
    ("/a+b", ["a+b"]),  # '+' is not a space in a path
    ("/caf%C3%A9/%e2%98%83", ["café", "☃"]),
    ("/日本", ["日本"]),
    ("/bad%FFbyte", ["bad\ufffdbyte"]),
    ("/a#frag?x=1", ["a#frag"]),  # the plugin cuts at '?' only
    ("?a=1", [""]),
])
def test_parsed_path(path: str, parsed: list[str]) -> None:
    assert build_input(_with_path(path), None)["parsed_path"] == parsed


@pytest.mark.parametrize(("path", "query"), [
    ("/p", {}),
    ("/p?", {}),
    ("/p?a=1&a=2&b", {"a": ["1", "2"], "b": [""]}),
    ("/p?a=1&b=2", {"a": ["1"], "b": ["2"]}),
    ("/p?a=1&a=new%0aline", {"a": ["1", "new\nline"]}),
    ("/p?a+b=c+d&e=%2B", {"a b": ["c d"], "e": ["+"]}),
    ("/p?=x&&y=", {"": ["x"], "y": [""]}),
    ("/p?a=b=c", {"a": ["b=c"]}),
    ("/p?q=%E2%98%83&r=%e9", {"q": ["☃"], "r": ["\ufffd"]}),
    ("/p?x=1#frag", {"x": ["1#frag"]}),
    ("/p?a=1?b=2", {"a": ["1?b=2"]}),
])
def test_parsed_query(path: str, query: dict[str, list[str]]) -> None:
    assert build_input(_with_path(path), None)["parsed_query"] == query


@pytest.mark.parametrize("path", ["/a%zz", "/a%2", "/a%", "/p?a=%zz", "/p?a=1;b=2", "/p?a;=1", "/p?%=1",
                                  "/p?ok=1&a=%4"])
def test_malformed_path_or_query_fails_like_the_plugin(path: str) -> None:
    with pytest.raises(PolicyInputError) as info:
        build_input(_with_path(path), WITH_JWT)
    assert isinstance(info.value, PolicyEvaluationError)  # the request gets the OPA-failure status
    assert OPAQUE not in str(info.value)


# --- parsed_body / truncated_body ----------------------------------------------------------------------------------


def _with_body(headers: dict[str, str], body: str = "", raw: bytes = b"", *, header_map: bool = False
               ) -> CheckRequest:
    req = CheckRequest()
    h = req.attributes.request.http
    h.path = "/submit"
    if header_map:
        for key, value in headers.items():
            h.header_map.headers.add(key=key, raw_value=value.encode())
    else:
        h.headers.update(headers)
    h.body = body
    h.raw_body = raw
    return req


def _parsed(req: CheckRequest, max_body_bytes: int | None = None) -> tuple[Any, bool]:
    doc = build_input(req, None, max_body_bytes=max_body_bytes)
    return doc["parsed_body"], doc["truncated_body"]


JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(("headers", "body", "raw", "expected"), [
    ({"content-length": "0"}, "", b"", None),
    ({"content-type": "text/html"}, "<p>", b"", None),
    ({}, '{"a": 1}', b"", None),  # no content-type: no parsing
    (JSON, '"foo"', b"", "foo"),
    (JSON, "true", b"", True),
    (JSON, "42", b"", 42),
    (JSON, "null", b"", None),
    (JSON, '{"firstname": "foo", "lastname": "bar"}', b"", {"firstname": "foo", "lastname": "bar"}),
    (JSON, '["hello", "opa"]', b"", ["hello", "opa"]),
    (JSON, r'["\"", "\\", "\/", "/", "\b", "\f", "\n", "\r", "\t", "\u0041"]', b"",
     ['"', "\\", "/", "/", "\b", "\f", "\n", "\r", "\t", "A"]),
    (JSON, "", b"", None),
    (JSON, "", b'{\n  "firstname": "foo"\n}', {"firstname": "foo"}),
    ({"content-type": "application/json; charset=utf-8"}, ' {"a": [1.5, -2e3]} \n', b"", {"a": [1.5, -2000.0]}),
    ({"content-type": "application/vnd.api+json"}, '{"a": 1}', b"", None),  # the plugin matches "application/json"
    (JSON, '{"k": "\\ud800x", "\\udfff": "\\ud83d\\ude00"}', b"", {"k": "\ufffdx", "\ufffd": "😀"}),
    (JSON, "", b'{"bad": "\xff"}', {"bad": "\ufffd"}),
    (FORM, "firstname=foo&lastname=bar", b"", {"firstname": ["foo"], "lastname": ["bar"]}),
    (FORM, "", b"firstname=foo&lastname=bar", {"firstname": ["foo"], "lastname": ["bar"]}),
    (FORM, "firstname=foo&lastname=bar&lastname=foobar", b"", {"firstname": ["foo"], "lastname": ["bar", "foobar"]}),
    (FORM, "", b"", None),
    (FORM, "&&", b"", {}),
    ({"content-type": "application/grpc"}, "", b"\x00\x00\x00\x00\x06\n\x04John", None),
    ({"content-type": "multipart/form-data; boundary=foo"},  # issue 16: parsed (tests/unit/test_multipart_body.py)
     '--foo\nContent-Disposition: form-data; name="foo"\n\nbar\n--foo--\n', b"", {"foo": ["bar"]}),
])
def test_parsed_body(headers: dict[str, str], body: str, raw: bytes, expected: Any) -> None:
    assert _parsed(_with_body(headers, body, raw)) == (expected, False)


@pytest.mark.parametrize(("headers", "body"), [
    (JSON, '["foo" : 42}'),
    (JSON, '{"a": 1} {"b": 2}'),
    (JSON, "NaN"),
    (JSON, "[Infinity]"),
    (JSON, "[1e400]"),
    (JSON, "\ufeff{}"),
    (JSON, "[" * 5000 + "]" * 5000),
    (JSON, "{'a': 1}"),
    ({**JSON, "content-length": "ten"}, "{}"),
    ({**JSON, "content-length": " 2"}, "{}"),
    ({**JSON, "content-length": "1_0"}, "{}"),
    ({**JSON, "content-length": "99999999999999999999"}, "{}"),
    (FORM, "a=%zz"),
    (FORM, "a=1;b=2"),
])
def test_item20_unparseable_body_fails_the_input(headers: dict[str, str], body: str) -> None:
    """As opa-envoy-plugin fails such requests (request_parse_error): never ``parsed_body: null`` for a policy to
    read as "nothing to deny" (authz.request_form turns it into a 400 before the policy stage)."""
    with pytest.raises(PolicyInputError, match="request body"):
        _parsed(_with_body(headers, body))
    with pytest.raises(PolicyInputError, match="request body"):
        check_parsable(RequestView.of_check(_with_body(headers, body)))


@pytest.mark.parametrize(("headers", "body"), [
    ({**JSON, "content-length": "1000"}, "true"),
    ({**FORM, "content-length": "1000"}, "firstname=foo&lastname=bar"),
    ({"content-type": "multipart/form-data; boundary=x", "content-length": "+99"}, "--x--"),
    ({**JSON, "x-envoy-auth-partial-body": "true"}, '{"complete": "looking"}'),
    ({"x-envoy-auth-partial-body": "true", "content-type": "text/plain"}, "abc"),
    ({"x-envoy-auth-partial-body": "true"}, ""),  # the header alone decides, as in the plugin
])
def test_truncated_body_is_not_parsed(headers: dict[str, str], body: str) -> None:
    assert _parsed(_with_body(headers, body)) == (None, True)


def test_content_length_counts_utf8_bytes() -> None:
    body = '"é"'  # 4 bytes
    assert _parsed(_with_body({**JSON, "content-length": "4"}, body)) == ("é", False)
    assert _parsed(_with_body({**JSON, "content-length": "5"}, body)) == (None, True)
    assert _parsed(_with_body({**JSON, "content-length": "-1"}, body)) == ("é", False)
    assert _parsed(_with_body({**JSON, "content-length": "-5"}, body)) == ("é", False)


def test_partial_body_header_must_say_true() -> None:
    assert _parsed(_with_body({**JSON, "x-envoy-auth-partial-body": "false"}, "[1]")) == ([1], False)
    assert _parsed(_with_body({**JSON, "x-envoy-auth-partial-body": "TRUE"}, "[1]")) == ([1], False)


def test_max_body_bytes() -> None:
    body = '{"a": "bcdef"}'  # 14 bytes
    assert _parsed(_with_body(JSON, body), max_body_bytes=14) == ({"a": "bcdef"}, False)
    assert _parsed(_with_body(JSON, body), max_body_bytes=13) == (None, True)
    assert _parsed(_with_body({"content-type": "text/plain"}, "x" * 20), max_body_bytes=10) == (None, True)
    assert _parsed(_with_body(JSON, "", b"[1, 2, 3]"), max_body_bytes=8) == (None, True)
    assert _parsed(_with_body(JSON, '"ééé"'), max_body_bytes=7) == (None, True)  # 8 bytes, 5 characters


def test_raw_headers_mode_reads_header_map() -> None:
    assert _parsed(_with_body(JSON, '{"a": 1}', header_map=True)) == ({"a": 1}, False)
    partial = {**JSON, "x-envoy-auth-partial-body": "true"}
    assert _parsed(_with_body(partial, '{"a": 1}', header_map=True)) == (None, True)


def test_body_stays_in_attributes_when_truncated() -> None:
    req = _with_body({**JSON, "x-envoy-auth-partial-body": "true"}, '{"cut')
    doc = build_input(req, None)
    assert doc["attributes"]["request"]["http"]["body"] == '{"cut'
    assert (doc["parsed_body"], doc["truncated_body"]) == (None, True)


@pytest.mark.parametrize("seconds", [0, 1, 59, 951_782_400, 1_700_000_000, 1_700_000_001, 4_102_444_800,
                                     253_402_300_799, -62_135_596_800, -1])
def test_request_time_as_protojson_writes_it(seconds: int) -> None:
    for nanos in (0, 1, 999, 1000, 120_000, 1_000_000, 500_000_000, 123_456_789, 999_999_999):
        req = CheckRequest()
        req.attributes.request.time.seconds = seconds
        req.attributes.request.time.nanos = nanos
        assert build_input(req, None)["attributes"]["request"]["time"] == req.attributes.request.time.ToJsonString()


def test_document_does_not_share_state_with_the_identity() -> None:
    doc = build_input(_typical(), WITH_JWT)
    doc["token"]["claims"]["sub"] = "mallory"
    doc["version"]["encoding"] = "changed"
    assert WITH_JWT.claims["sub"] == "alice"
    assert build_input(_typical(), WITH_JWT)["version"] == {"ext_authz": "v3", "encoding": "protojson"}
