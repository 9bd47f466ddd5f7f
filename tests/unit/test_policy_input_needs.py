"""Which input keys the loaded policies can read: narrowing only for plain ``input.<key>`` references."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.policy.input import build_input
from authz.policy.input_needs import ALL_INPUT, InputNeeds, input_needs

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_policy_reads_only_what_it_names() -> None:
    needs = input_needs([(ROOT / "deploy" / "policies" / "records.rego").read_text()])
    assert needs == InputNeeds(frozenset({"attributes", "parsed_path", "parsed_body", "token"}),
                               frozenset({"request"}))


@pytest.mark.parametrize("source", [
    "x := walk(input)",
    'x := input["token"]',
    "x := object.get(input, \"token\", null)",
    "import input",
    "some k, v in input",
    "f(input)",
])
def test_any_loose_use_of_input_means_everything(source: str) -> None:
    assert input_needs(["package p\n" + source]) == ALL_INPUT


def test_attributes_on_their_own_mean_all_attributes() -> None:
    needs = input_needs(["package p\nx := input.attributes\ny := input.token.sub"])
    assert needs.keys == frozenset({"attributes", "token"}) and needs.attributes is None


def test_comments_and_strings_do_not_widen() -> None:
    needs = input_needs(['package p\n# reads the whole input\nmsg := "input here"\nx := input.token.sub'])
    assert needs == InputNeeds(frozenset({"token"}), frozenset())


def test_import_of_a_subtree_narrows() -> None:
    needs = input_needs(["package p\nimport input.attributes.request.http as h\nx := h.method"])
    assert needs == InputNeeds(frozenset({"attributes"}), frozenset({"request"}))


def test_union_over_all_policy_files() -> None:
    needs = input_needs(["x := input.token.sub", "y := input.attributes.source.address"])
    assert needs == InputNeeds(frozenset({"token", "attributes"}), frozenset({"source"}))


def test_build_input_leaves_out_what_no_policy_reads() -> None:
    request = CheckRequest()
    request.attributes.source.address.socket_address.address = "10.0.0.1"
    request.attributes.request.http.method = "GET"
    request.attributes.request.http.path = "/a/b?x=1"
    request.attributes.request.http.headers["content-type"] = "application/json"
    request.attributes.request.http.body = '{"k": 1}'
    full = build_input(request, None)
    narrow = build_input(request, None, needs=InputNeeds(frozenset({"attributes", "parsed_path"}),
                                                         frozenset({"request"})))
    assert "source" in full["attributes"] and "source" not in narrow["attributes"]
    assert narrow["attributes"]["request"] == full["attributes"]["request"]
    assert narrow["parsed_path"] == full["parsed_path"] == ["a", "b"]
    assert "parsed_body" in full and "parsed_body" not in narrow and "token" not in narrow
