"""PolicyDecision -> OkHttpResponse / DeniedHttpResponse / dynamic metadata, encoded the way Envoy 1.40 honours it."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse, DeniedHttpResponse, OkHttpResponse
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from authz.policy.decision import HeaderMutation, PolicyDecision, decision_from_result
from authz.policy.response_mapping import (
    DEFAULT_DENY_STATUS,
    apply_to_ok,
    denied_http_response,
    metadata_struct,
    request_header_option,
    response_header_option,
)

OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def _ok(result: object) -> OkHttpResponse:
    ok = OkHttpResponse()
    apply_to_ok(decision_from_result(result), ok)
    return ok


def _options(options: Any) -> list[tuple[str, str, str]]:
    """(name, value, how): how = 'append' (deprecated BoolValue true), or the append_action's name."""
    out = []
    for option in options:
        if option.HasField("append"):
            assert option.append.value is True
            assert option.append_action == APPEND  # the default; never combined with an explicit action
            how = "append"
        else:
            how = HeaderValueOption.HeaderAppendAction.Name(option.append_action)
        out.append((option.header.key, option.header.value, how))
    return out


# --- header options -----------------------------------------------------------------------------------------------


def test_request_header_option_overwrite_uses_append_action() -> None:
    option = request_header_option(HeaderMutation("x-a", "1", append=False))
    assert not option.HasField("append")
    assert option.append_action == OVERWRITE
    assert (option.header.key, option.header.value) == ("x-a", "1")


def test_request_header_option_append_uses_the_bool_envoy_1_40_reads() -> None:
    option = request_header_option(HeaderMutation("x-a", "2", append=True))
    assert option.HasField("append") and option.append.value is True


@pytest.mark.parametrize(("append", "action"), [(False, OVERWRITE), (True, APPEND)])
def test_response_header_option_uses_append_action_only(append: bool, action: int) -> None:
    option = response_header_option(HeaderMutation("x-r", "v", append=append))
    assert not option.HasField("append")
    assert option.append_action == action


# --- allow --------------------------------------------------------------------------------------------------------


def test_allow_maps_every_key_to_its_ok_response_field() -> None:
    ok = _ok({
        "allowed": True,
        "headers": [{"X-User": "alice", "x-groups": ["a", "b"]}, {"x-groups": "c"}],
        "request_headers_to_remove": ["X-User-Id", "cookie"],
        "response_headers_to_add": {"x-r": ["r1", "r2"], "x-s": "s"},
        "query_parameters_to_set": {"q": "a%20b", "p": ["1", "2"]},
        "query_parameters_to_remove": ["token"],
    })
    assert _options(ok.headers) == [
        ("x-user", "alice", "OVERWRITE_IF_EXISTS_OR_ADD"),
        ("x-groups", "a", "OVERWRITE_IF_EXISTS_OR_ADD"),
        ("x-groups", "b", "append"),
        ("x-groups", "c", "append"),
    ]
    assert list(ok.headers_to_remove) == ["x-user-id", "cookie"]
    assert _options(ok.response_headers_to_add) == [
        ("x-r", "r1", "APPEND_IF_EXISTS_OR_ADD"),
        ("x-r", "r2", "APPEND_IF_EXISTS_OR_ADD"),
        ("x-s", "s", "APPEND_IF_EXISTS_OR_ADD"),
    ]
    assert [(p.key, p.value) for p in ok.query_parameters_to_set] == [("q", "a%20b"), ("p", "1"), ("p", "2")]
    assert list(ok.query_parameters_to_remove) == ["token"]


def test_boolean_true_changes_nothing() -> None:
    ok = _ok(True)
    assert ok == OkHttpResponse()
    assert ok.ByteSize() == 0


def test_apply_to_ok_keeps_what_the_pipeline_put_first() -> None:
    ok = OkHttpResponse(headers=[request_header_option(HeaderMutation("authorization", "Bearer jwt", False))],
                        headers_to_remove=["x-user-id"])
    apply_to_ok(decision_from_result({"allowed": True, "headers": {"x-a": "1"},
                                      "request_headers_to_remove": ["x-b"]}), ok)
    assert [o.header.key for o in ok.headers] == ["authorization", "x-a"]
    assert list(ok.headers_to_remove) == ["x-user-id", "x-b"]


def test_a_header_the_policy_overwrites_is_not_removed_after_it_is_set() -> None:
    # Envoy removes after it adds: the service's own removal of a client's copy must not take the policy's value too
    ok = OkHttpResponse(headers_to_remove=["x-user-id", "x-authz-policy", "x-roles"])
    apply_to_ok(decision_from_result({"allowed": True, "headers": {"X-Authz-Policy": "records"}}), ok)
    assert list(ok.headers_to_remove) == ["x-user-id", "x-roles"]


def test_a_header_the_policy_sets_several_values_of_is_not_removed() -> None:
    ok = OkHttpResponse(headers_to_remove=["x-roles"])  # the first value overwrites the client's, the rest append
    apply_to_ok(decision_from_result({"allowed": True, "headers": {"x-roles": ["a", "b"]}}), ok)
    assert list(ok.headers_to_remove) == []


def test_a_header_only_appended_to_stays_removed() -> None:
    # appending alone would keep the client's copy beside the policy's value: the client's copy goes, ours too
    ok = OkHttpResponse(headers_to_remove=["x-roles"])
    apply_to_ok(PolicyDecision(allowed=True, headers=(HeaderMutation("x-roles", "a", True),)), ok)
    assert list(ok.headers_to_remove) == ["x-roles"]


def test_the_policys_own_removals_stay_as_it_says() -> None:
    ok = OkHttpResponse()
    apply_to_ok(decision_from_result({"allowed": True, "headers": {"x-a": "1"}, "request_headers_to_remove": ["x-a"]}),
                ok)
    assert list(ok.headers_to_remove) == ["x-a"]


def test_allow_ignores_deny_only_fields() -> None:
    ok = _ok({"allowed": True, "http_status": 418, "body": "ignored"})
    assert ok == OkHttpResponse()


def test_apply_to_ok_refuses_a_deny() -> None:
    with pytest.raises(ValueError, match="allow decision"):
        apply_to_ok(PolicyDecision(allowed=False), OkHttpResponse())


def test_ok_response_round_trips_as_a_check_response() -> None:
    ok = _ok({"allowed": True, "headers": {"x-a": ["1", "2"]}, "query_parameters_to_set": {"q": "1"}})
    response = CheckResponse(ok_response=ok)
    parsed = CheckResponse.FromString(response.SerializeToString())
    assert parsed == response
    assert MessageToDict(parsed)["okResponse"]["headers"] == [
        {"header": {"key": "x-a", "value": "1"}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-a", "value": "2"}, "append": True},
    ]


# --- deny ---------------------------------------------------------------------------------------------------------


def test_deny_defaults_to_403_without_body_or_headers() -> None:
    denied = denied_http_response(decision_from_result(False))
    assert DEFAULT_DENY_STATUS == 403
    assert denied.status.code == 403
    assert denied.body == ""
    assert list(denied.headers) == []


def test_deny_object_without_status_is_403() -> None:
    assert denied_http_response(decision_from_result({"allowed": False})).status.code == 403


def test_deny_carries_the_policys_status_headers_and_body() -> None:
    denied = denied_http_response(decision_from_result({
        "allowed": False,
        "http_status": 451.0,
        "headers": {"Content-Type": "application/json", "x-d": ["d1", "d2"]},
        "body": '{"error":"unavailable_for_legal_reasons"}',
        "request_headers_to_remove": ["x-ignored-on-deny"],
        "response_headers_to_add": {"x-ignored": "on deny"},
    }))
    assert denied.status.code == 451
    assert denied.body == '{"error":"unavailable_for_legal_reasons"}'
    assert _options(denied.headers) == [
        ("content-type", "application/json", "OVERWRITE_IF_EXISTS_OR_ADD"),
        ("x-d", "d1", "OVERWRITE_IF_EXISTS_OR_ADD"),
        ("x-d", "d2", "APPEND_IF_EXISTS_OR_ADD"),  # never the deprecated bool: Envoy 1.40 drops it from local replies
    ]


@pytest.mark.parametrize("status", [401, 302, 499, 599, 100])
def test_deny_status_outside_envoys_named_codes_still_goes_through(status: int) -> None:
    denied = denied_http_response(decision_from_result({"allowed": False, "http_status": status}))
    assert DeniedHttpResponse.FromString(denied.SerializeToString()).status.code == status


def test_denied_http_response_refuses_an_allow() -> None:
    with pytest.raises(ValueError, match="deny decision"):
        denied_http_response(PolicyDecision(allowed=True))


# --- dynamic metadata ---------------------------------------------------------------------------------------------


def test_no_metadata_gives_none() -> None:
    assert metadata_struct(decision_from_result(True)) is None
    assert metadata_struct(decision_from_result({"allowed": False})) is None
    assert metadata_struct(decision_from_result({"allowed": True, "dynamic_metadata": {}})) is None


def test_metadata_struct_from_nested_json() -> None:
    metadata = {"user": "alice", "n": 2, "ok": True, "none": None, "nested": {"list": [1, "a", {"b": False}]}}
    struct = metadata_struct(decision_from_result({"allowed": True, "dynamic_metadata": metadata}))
    assert isinstance(struct, Struct)
    assert MessageToDict(struct) == {**metadata, "n": 2.0, "nested": {"list": [1.0, "a", {"b": False}]}}


def test_metadata_on_a_deny() -> None:
    struct = metadata_struct(decision_from_result({"allowed": False, "dynamic_metadata": {"rule": "r7"}}))
    assert struct is not None and struct["rule"] == "r7"


def test_decision_id_is_added_and_wins_like_opa_envoy_plugin() -> None:
    decision = decision_from_result({"allowed": True, "dynamic_metadata": {"decision_id": "policy's", "a": "b"}})
    struct = metadata_struct(decision, decision_id="d-1")
    assert struct is not None
    assert MessageToDict(struct) == {"decision_id": "d-1", "a": "b"}
    only_id = metadata_struct(decision_from_result(True), decision_id="d-2")
    assert only_id is not None and MessageToDict(only_id) == {"decision_id": "d-2"}


def test_metadata_attaches_to_a_check_response() -> None:
    struct = metadata_struct(decision_from_result({"allowed": True, "dynamic_metadata": {"k": "v"}}))
    assert struct is not None
    response = CheckResponse(dynamic_metadata=struct)
    assert CheckResponse.FromString(response.SerializeToString()).dynamic_metadata["k"] == "v"
