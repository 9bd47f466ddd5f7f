"""decision_from_result: the OPA result contract (opa-envoy-plugin's keys and shapes), validated strictly."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from authz.policy.decision import HeaderMutation, PolicyDecision, PolicyResultError, decision_from_result

HEADER_KEYS = ["headers", "response_headers_to_add"]


def _error(result: object) -> str:
    with pytest.raises(PolicyResultError) as info:
        decision_from_result(result)
    return str(info.value)


def _allow(**keys: Any) -> dict[str, Any]:
    return {"allowed": True, **keys}


# --- booleans and the "allowed" key -------------------------------------------------------------------------------


def test_true_allows_with_nothing_else() -> None:
    assert decision_from_result(True) == PolicyDecision(allowed=True)


def test_false_denies_with_defaults() -> None:
    decision = decision_from_result(False)
    assert decision == PolicyDecision(allowed=False)
    assert decision.http_status is None and decision.body is None and decision.headers == ()


@pytest.mark.parametrize("result", [1, 0, "true", "allow", None, 1.0, [True], (True,), b"true"])
def test_anything_but_a_boolean_or_an_object_is_an_error(result: object) -> None:
    assert _error(result).startswith("result: must be a boolean or an object")


def test_object_without_allowed_is_an_error() -> None:
    assert _error({"headers": {"x": "y"}}).startswith("allowed: missing")
    assert _error({}).startswith("allowed: missing")


@pytest.mark.parametrize(("value", "type_name"), [("true", "string"), (1, "number"), (0, "number"), (None, "null"),
                                                   ({}, "object"), ([True], "array")])
def test_allowed_must_be_a_boolean(value: object, type_name: str) -> None:
    assert _error({"allowed": value}) == f"allowed: must be a boolean, got {type_name}"


@pytest.mark.parametrize("allowed", [True, False])
def test_object_with_only_allowed(allowed: bool) -> None:
    assert decision_from_result({"allowed": allowed}) == PolicyDecision(allowed=allowed)


def test_unknown_keys_are_ignored_as_in_opa_envoy_plugin() -> None:
    decision = decision_from_result({"allowed": False, "reason": 7, "Headers": 3, "allow": True, "status": "x"})
    assert decision == PolicyDecision(allowed=False)


def test_an_allow_with_a_malformed_key_fails_closed() -> None:
    assert _error(_allow(http_status="200")).startswith("http_status:")
    assert _error(_allow(body=1)).startswith("body:")  # read only on denials by OPA-Envoy; still checked here


# --- headers / response_headers_to_add ----------------------------------------------------------------------------


def test_headers_object_of_strings_and_arrays_in_document_order() -> None:
    decision = decision_from_result(_allow(headers={"X-User": "alice", "x-groups": ["a", "b"], "x-empty": []}))
    assert decision.headers == (
        HeaderMutation("x-user", "alice", append=False),
        HeaderMutation("x-groups", "a", append=False),
        HeaderMutation("x-groups", "b", append=True),
    )


def test_headers_array_of_objects_repeats_append() -> None:
    decision = decision_from_result(_allow(headers=[{"x-a": "1"}, {"X-A": "2", "x-b": "3"}, {}]))
    assert decision.headers == (
        HeaderMutation("x-a", "1", append=False),
        HeaderMutation("x-a", "2", append=True),
        HeaderMutation("x-b", "3", append=False),
    )


def test_headers_on_a_deny_are_the_reply_headers() -> None:
    decision = decision_from_result({"allowed": False, "headers": {"Content-Type": "application/json"}})
    assert decision.headers == (HeaderMutation("content-type", "application/json", append=False),)


def test_response_headers_to_add_are_all_added() -> None:
    decision = decision_from_result(_allow(response_headers_to_add=[{"Set-Cookie": ["a=1", "b=2"]}, {"x-r": "r"}]))
    assert decision.response_headers_to_add == (
        HeaderMutation("set-cookie", "a=1", append=True),
        HeaderMutation("set-cookie", "b=2", append=True),
        HeaderMutation("x-r", "r", append=True),
    )
    assert decision.headers == ()


def test_authorization_header_from_a_policy_is_kept() -> None:
    decision = decision_from_result(_allow(headers={"Authorization": "Bearer policy-made"}))
    assert decision.headers == (HeaderMutation("authorization", "Bearer policy-made", append=False),)


def test_empty_header_value_is_allowed() -> None:
    assert decision_from_result(_allow(headers={"x-a": ""})).headers == (HeaderMutation("x-a", "", append=False),)


def test_tuples_count_as_arrays() -> None:
    decision = decision_from_result(_allow(headers=({"x-a": ("1", "2")},), request_headers_to_remove=("X-B",)))
    assert [m.value for m in decision.headers] == ["1", "2"]
    assert decision.request_headers_to_remove == ("x-b",)


@pytest.mark.parametrize("key", HEADER_KEYS)
@pytest.mark.parametrize(("value", "message"), [
    ("x-a: 1", "{key}: must be an object or an array of objects, got string"),
    (1, "{key}: must be an object or an array of objects, got number"),
    (None, "{key}: must be an object or an array of objects, got null"),
    (True, "{key}: must be an object or an array of objects, got boolean"),
    ([{"x-a": "1"}, "x-b"], "{key}[1]: must be an object, got string"),
    ([[{"x-a": "1"}]], "{key}[0]: must be an object, got array"),
])
def test_header_container_shapes(key: str, value: object, message: str) -> None:
    assert _error(_allow(**{key: value})) == message.format(key=key)


@pytest.mark.parametrize("key", HEADER_KEYS)
@pytest.mark.parametrize(("value", "message"), [
    (1, "x-a: must be a string or an array of strings, got number"),
    (None, "x-a: must be a string or an array of strings, got null"),
    ({"v": "1"}, "x-a: must be a string or an array of strings, got object"),
    (True, "x-a: must be a string or an array of strings, got boolean"),
    (["1", 2], "x-a: header value must be a string, got number"),
    (["1", ["2"]], "x-a: header value must be a string, got array"),
])
def test_header_value_shapes(key: str, value: object, message: str) -> None:
    assert _error(_allow(**{key: {"x-a": value}})) == f"{key}.{message}"


@pytest.mark.parametrize("key", HEADER_KEYS)
@pytest.mark.parametrize("name", ["", "x a", "x:a", ":path", "x\r\na", "x\x00", "ü-header", "x/y", "(x)", 'x"'])
def test_header_names_must_be_tokens(key: str, name: str) -> None:
    message = _error(_allow(**{key: {name: "v"}}))
    assert message.startswith(f"{key}: header name ")
    assert message.endswith("is not a valid HTTP field name (RFC 9110 token)")
    assert "\r" not in message and "\n" not in message and "\x00" not in message


def test_header_name_in_message_is_shortened() -> None:
    message = _error(_allow(headers={"bad name " * 40: "v"}))
    assert len(message) < 200


def test_non_string_header_name_is_an_error() -> None:
    assert _error(_allow(headers={1: "v"})).startswith("headers: header name number is not a valid")


@pytest.mark.parametrize("key", HEADER_KEYS)
@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb", "a\x00b", "\r\n"])
def test_header_injection_is_refused_without_echoing_the_value(key: str, value: str) -> None:
    for shape in ({"x-a": value}, {"x-a": ["ok", value]}, [{"x-a": value}]):
        message = _error(_allow(**{key: shape}))
        assert message == f"{key}.x-a: header value contains CR, LF or NUL"


def test_header_injection_in_a_deny_is_refused_too() -> None:
    assert _error({"allowed": False, "headers": {"location": "/x\r\nset-cookie: a=b"}}).startswith("headers.location")


def test_token_characters_are_accepted() -> None:
    name = "!#$%&'*+-.^_`|~09azAZ"
    assert decision_from_result(_allow(headers={name: "v"})).headers[0].name == name.lower()


# --- request_headers_to_remove ------------------------------------------------------------------------------------


def test_request_headers_to_remove() -> None:
    decision = decision_from_result(_allow(request_headers_to_remove=["X-User-Id", "cookie"]))
    assert decision.request_headers_to_remove == ("x-user-id", "cookie")
    assert decision_from_result(_allow(request_headers_to_remove=[])).request_headers_to_remove == ()


@pytest.mark.parametrize(("value", "message"), [
    ("x-a", "must be an array of strings, got string"),
    ({"x-a": True}, "must be an array of strings, got object"),
    (None, "must be an array of strings, got null"),
    ([1], "header name number is not a valid HTTP field name (RFC 9110 token)"),
    (["bad name"], "header name 'bad name' is not a valid HTTP field name (RFC 9110 token)"),
])
def test_request_headers_to_remove_shapes(value: object, message: str) -> None:
    assert _error(_allow(request_headers_to_remove=value)) == f"request_headers_to_remove: {message}"


# --- query parameters ---------------------------------------------------------------------------------------------


def test_query_parameters_to_set_strings_and_arrays() -> None:
    decision = decision_from_result(_allow(query_parameters_to_set={"a": "1", "b": ["2", "3"], "c": [], "d": ""}))
    assert decision.query_parameters_to_set == (("a", "1"), ("b", "2"), ("b", "3"), ("d", ""))


def test_query_values_may_be_percent_encoded_and_carry_reserved_characters() -> None:
    value = "a%20b%26c=d/e?f:g@h!$'()*+,;~"
    decision = decision_from_result(_allow(query_parameters_to_set={"q%5B%5D": value}))
    assert decision.query_parameters_to_set == (("q%5B%5D", value),)


@pytest.mark.parametrize(("value", "message"), [
    ([{"a": "1"}], "must be an object, got array"),
    ("a=1", "must be an object, got string"),
    (None, "must be an object, got null"),
])
def test_query_parameters_to_set_container(value: object, message: str) -> None:
    assert _error(_allow(query_parameters_to_set=value)) == f"query_parameters_to_set: {message}"


@pytest.mark.parametrize(("value", "message"), [
    (1, "must be a string or an array of strings, got number"),
    ([1], "value must be a string, got number"),
    ({"x": "y"}, "must be a string or an array of strings, got object"),
])
def test_query_parameters_to_set_value_types(value: object, message: str) -> None:
    assert _error(_allow(query_parameters_to_set={"a": value})) == f"query_parameters_to_set.'a': {message}"


@pytest.mark.parametrize("value", ["a&admin=true", "a#frag", "a b", "a\r\nb", "a\x00", "ä", "%zz", "%2"])
def test_query_values_that_would_rewrite_the_path_are_refused(value: str) -> None:
    for shape in (value, ["ok", value]):
        message = _error(_allow(query_parameters_to_set={"a": shape}))
        assert message == "query_parameters_to_set.'a': value must be percent-encoded query text without '&' or '#'"


@pytest.mark.parametrize("name", ["", "a=b", "a&b", "a b", "a#", "a\n", "ü"])
def test_query_names_are_checked(name: str) -> None:
    rule = "query parameter name must be non-empty percent-encoded query text without '&', '#' or '='"
    assert _error(_allow(query_parameters_to_set={name: "1"})) == f"query_parameters_to_set: {rule}"
    assert _error(_allow(query_parameters_to_remove=[name])) == f"query_parameters_to_remove: {rule}"


def test_query_parameters_to_remove() -> None:
    decision = decision_from_result(_allow(query_parameters_to_remove=["token", "debug"]))
    assert decision.query_parameters_to_remove == ("token", "debug")


@pytest.mark.parametrize(("value", "message"), [
    ("token", "must be an array of strings, got string"),
    ({"token": True}, "must be an array of strings, got object"),
    (None, "must be an array of strings, got null"),
    ([1], "query parameter name must be a string, got number"),
])
def test_query_parameters_to_remove_shapes(value: object, message: str) -> None:
    assert _error(_allow(query_parameters_to_remove=value)) == f"query_parameters_to_remove: {message}"


# --- http_status / body -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "status"), [(401, 401), (403.0, 403), (100, 100), (599, 599), (499, 499),
                                               (302, 302), (200.0, 200)])
def test_http_status(value: float, status: int) -> None:
    decision = decision_from_result({"allowed": False, "http_status": value})
    assert decision.http_status == status and type(decision.http_status) is int


@pytest.mark.parametrize(("value", "message"), [
    (99, "must be in 100..599, got 99"),
    (600, "must be in 100..599, got 600"),
    (0, "must be in 100..599, got 0"),
    (-403, "must be in 100..599, got -403"),
    (99.0, "must be in 100..599, got 99"),
    (403.5, "must be an integer, got 403.5"),
    (math.nan, "must be an integer, got nan"),
    (math.inf, "must be an integer, got inf"),
    (True, "must be a number, got boolean"),
    ("403", "must be a number, got string"),
    (None, "must be a number, got null"),
    ([403], "must be a number, got array"),
])
def test_http_status_errors(value: object, message: str) -> None:
    assert _error({"allowed": False, "http_status": value}) == f"http_status: {message}"


def test_body() -> None:
    assert decision_from_result({"allowed": False, "body": "no"}).body == "no"
    assert decision_from_result({"allowed": False, "body": ""}).body == ""
    assert decision_from_result({"allowed": False}).body is None


@pytest.mark.parametrize(("value", "type_name"), [(1, "number"), ({"e": 1}, "object"), (["a"], "array"),
                                                   (None, "null"), (False, "boolean")])
def test_body_must_be_a_string(value: object, type_name: str) -> None:
    assert _error({"allowed": False, "body": value}) == f"body: must be a string, got {type_name}"


# --- dynamic_metadata ---------------------------------------------------------------------------------------------


def test_dynamic_metadata_is_a_private_read_only_copy() -> None:
    source: dict[str, Any] = {"user": "alice", "n": 2, "x": 1.5, "ok": True, "none": None,
                              "nested": {"list": [1, "a", {"b": False}]}}
    decision = decision_from_result(_allow(dynamic_metadata=source))
    assert decision.dynamic_metadata == source
    source["nested"]["list"].append("later")
    source["user"] = "mallory"
    assert decision.dynamic_metadata is not None
    assert decision.dynamic_metadata["user"] == "alice"
    assert decision.dynamic_metadata["nested"]["list"] == [1, "a", {"b": False}]
    with pytest.raises(TypeError):
        decision.dynamic_metadata["user"] = "x"


def test_dynamic_metadata_on_a_deny_and_empty() -> None:
    assert decision_from_result({"allowed": False, "dynamic_metadata": {"r": "x"}}).dynamic_metadata == {"r": "x"}
    assert decision_from_result(_allow(dynamic_metadata={})).dynamic_metadata == {}
    assert decision_from_result(True).dynamic_metadata is None


@pytest.mark.parametrize(("value", "message"), [
    ("x", "dynamic_metadata: must be an object, got string"),
    ([{"a": 1}], "dynamic_metadata: must be an object, got array"),
    (None, "dynamic_metadata: must be an object, got null"),
    ({1: "a"}, "dynamic_metadata: object keys must be strings, got number"),
    ({"a": {"b": {2: 1}}}, "dynamic_metadata.'a'.'b': object keys must be strings, got number"),
    ({"a": [1, math.nan]}, "dynamic_metadata.'a'[1]: nan is not a JSON number"),
    ({"a": {1, 2}}, "dynamic_metadata.'a': set is not a JSON value"),
    ({"a": b"x"}, "dynamic_metadata.'a': bytes is not a JSON value"),
])
def test_dynamic_metadata_shapes(value: object, message: str) -> None:
    assert _error(_allow(dynamic_metadata=value)) == message


# --- the decision object ------------------------------------------------------------------------------------------


def test_decision_is_frozen_and_hashable() -> None:
    decision = decision_from_result(_allow(headers={"x-a": "1"}, dynamic_metadata={"a": [1]}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = False  # type: ignore[misc]
    assert isinstance(hash(decision), int)


def test_a_full_opa_envoy_style_result() -> None:
    result = {
        "allowed": True,
        "headers": {"x-ext-auth-allow": "yes", "x-validated-by": ["security-checkpoint"]},
        "request_headers_to_remove": ["one-auth-header", "another-auth-header"],
        "response_headers_to_add": {"x-foo": "bar"},
        "query_parameters_to_set": {"foo": "bar", "multi": ["a", "b"]},
        "query_parameters_to_remove": ["remove-me"],
        "http_status": 200,
        "body": "",
        "dynamic_metadata": {"my_new_metadata": "foo"},
        "decision_note": "ignored",
    }
    decision = decision_from_result(result)
    assert decision == PolicyDecision(
        allowed=True,
        headers=(HeaderMutation("x-ext-auth-allow", "yes", False), HeaderMutation("x-validated-by",
                                                                                 "security-checkpoint", False)),
        request_headers_to_remove=("one-auth-header", "another-auth-header"),
        response_headers_to_add=(HeaderMutation("x-foo", "bar", True),),
        query_parameters_to_set=(("foo", "bar"), ("multi", "a"), ("multi", "b")),
        query_parameters_to_remove=("remove-me",),
        http_status=200,
        body="",
        dynamic_metadata={"my_new_metadata": "foo"},
    )
