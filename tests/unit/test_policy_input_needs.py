"""Which input keys the loaded policies can read: narrowing only for plain ``input.<key>`` references."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.policy.input_needs import ALL_INPUT, InputNeeds, input_needs
from authz.policy.projection import build_input

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_policy_reads_only_what_it_names() -> None:
    needs = input_needs([(ROOT / "deploy" / "policies" / "records.rego").read_text()])
    assert needs.tree == {
        "attributes": {"request": {"http": {"method": None, "headers": {"x-transaction-creator": None}}}},
        "parsed_path": None,
        "parsed_body": {"created_by": None},
        "token": {"subject": None, "scopes": None},
    }
    assert needs.deterministic


@pytest.mark.parametrize("source", [
    "x := walk(input)",
    "x := input[k]",
    "x := object.get(input, \"token\", null)",
    "import input",
    "some k, v in input",
    "f(input)",
])
def test_any_loose_use_of_input_means_everything(source: str) -> None:
    needs = input_needs(["package p\n" + source])
    assert needs.tree is None and not needs.deterministic
    assert needs.prune({"a": 1, "b": {"c": 2}}) == {"a": 1, "b": {"c": 2}}
    assert ALL_INPUT.tree is None


def test_attributes_on_their_own_mean_all_attributes() -> None:
    needs = input_needs(["package p\nx := input.attributes\ny := input.token.sub"])
    assert needs.tree == {"attributes": None, "token": {"sub": None}}


def test_comments_and_strings_do_not_widen() -> None:
    needs = input_needs(['package p\n# reads the whole input\nmsg := "input here"\nx := input.token.sub'])
    assert needs.tree == {"token": {"sub": None}}


def test_import_of_a_subtree_narrows() -> None:
    needs = input_needs(["package p\nimport input.attributes.request.http as h\nx := h.method"])
    assert needs.tree == {"attributes": {"request": {"http": None}}}  # all of http: h.<anything> is possible


def test_union_over_all_policy_files() -> None:
    needs = input_needs(["x := input.token.sub", "y := input.attributes.source.address"])
    assert needs.tree == {"token": {"sub": None}, "attributes": {"source": {"address": None}}}


@pytest.mark.parametrize(("source", "tree"), [
    ('x := input.attributes.request.http.headers["x-a"]',
     {"attributes": {"request": {"http": {"headers": {"x-a": None}}}}}),
    ("x := input.attributes.request.http.headers[k]", {"attributes": {"request": {"http": {"headers": None}}}}),
    ('x := input["token"].sub', {"token": {"sub": None}}),
    ("x := input.parsed_path[1]", {"parsed_path": None}),
    ("x := count(input.parsed_path)", {"parsed_path": None}),
    ('x := object.get(input.token, "sub", "")', {"token": None}),
    ("x := input.token.sub\ny := input.token", {"token": None}),  # the wider read wins, whatever the order
    ("x := input.token\ny := input.token.sub", {"token": None}),
    ("x := input.token.claims[\"a.b\"]", {"token": {"claims": {"a.b": None}}}),
])
def test_the_tree_of_read_paths(source: str, tree: dict[str, object]) -> None:
    assert input_needs(["package p\n" + source]).tree == tree


@pytest.mark.parametrize("call", ["time.now_ns()", "rand.intn(\"k\", 10)", "uuid.rfc4122(\"k\")",
                                  "http.send({})", "opa.runtime()", "io.jwt.decode(input.token.jwt)",
                                  "print(input.token.sub)", "net.lookup_ip_addr(\"x\")"])
def test_impure_builtins_make_the_policies_non_deterministic(call: str) -> None:
    assert input_needs([f"package p\nx := {call}", "package q\ny := input.token.sub"]).deterministic is False


def test_builtin_names_inside_strings_or_comments_do_not_count() -> None:
    needs = input_needs(['package p\n# time.now_ns() is not used\nmsg := "rand.intn(x)"\nx := input.token.sub'])
    assert needs.deterministic


def test_build_input_leaves_out_what_no_policy_reads() -> None:
    request = CheckRequest()
    request.attributes.source.address.socket_address.address = "10.0.0.1"
    request.attributes.request.http.method = "GET"
    request.attributes.request.http.path = "/a/b?x=1"
    request.attributes.request.http.headers["content-type"] = "application/json"
    request.attributes.request.http.body = '{"k": 1}'
    full = build_input(request, None)
    narrow = build_input(request, None, needs=InputNeeds({"attributes": {"request": None}, "parsed_path": None}))
    assert "source" in full["attributes"] and "source" not in narrow["attributes"]
    assert narrow["attributes"]["request"] == full["attributes"]["request"]
    assert narrow["parsed_path"] == full["parsed_path"] == ["a", "b"]
    assert "parsed_body" in full and "parsed_body" not in narrow and "token" not in narrow


def test_build_input_prunes_to_the_paths_read() -> None:
    request = CheckRequest()
    request.attributes.source.address.socket_address.port_value = 50123
    http = request.attributes.request.http
    http.id, http.method, http.path = "req-1", "GET", "/records/alice"
    http.headers["x-request-id"] = "abc"
    http.headers["x-transaction-creator"] = "bob"
    needs = input_needs([(ROOT / "deploy" / "policies" / "records.rego").read_text()])
    document = build_input(request, None, needs=needs)
    assert document == {
        "attributes": {"request": {"http": {"method": "GET", "headers": {"x-transaction-creator": "bob"}}}},
        "parsed_path": ["records", "alice"],
        "parsed_body": None,
        "token": None,
    }


@pytest.mark.parametrize("source", [
    'x := input.attributes.request.http.headers["authorization"]',
    'x := input.attributes.request.http.headers["x-missing"]',
    "x := input.attributes.request.http.headers",
    "x := input.attributes.request.http.method\ny := input.attributes.request.http.size",
    "x := input.attributes.request.http.headerMap",
    "x := input.attributes.request.http.rawBody\ny := input.attributes.request.time",
    "x := input.attributes.request.http.body\ny := input.parsed_body",
    "x := input.attributes.request",
])
def test_building_only_what_is_read_equals_pruning_the_whole_document(source: str) -> None:
    from authz.models import Identity

    request = CheckRequest()
    http = request.attributes.request.http
    request.attributes.request.time.FromSeconds(1_700_000_000)
    http.method, http.path, http.size, http.body = "POST", "/r/a", 7, '{"k":1}'
    http.headers.update({"authorization": "Bearer opaque", "content-type": "application/json", "x-a": "1"})
    identity = Identity("h.p.s", {"sub": "a"}, frozenset(), "a", None, None)
    needs = input_needs(["package p\n" + source])
    assert build_input(request, identity, needs=needs) == needs.prune(build_input(request, identity))
    raw = CheckRequest()
    raw.CopyFrom(request)
    raw.attributes.request.http.ClearField("headers")
    raw.attributes.request.http.header_map.headers.add(key="authorization", value="Bearer opaque")
    assert build_input(raw, identity, needs=needs) == needs.prune(build_input(raw, identity))
