"""The compiled policy-input projection: its reuse key and its input come from one reading of the request, so equal
keys must mean equal inputs (else a reused decision would be someone else's), and requests that differ only in what
the policies ignore must share a key (else nothing is reused). Over random requests of both transports."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.models import Answer, Identity, Introspection
from authz.policy.input_needs import input_needs
from authz.policy.parse import PolicyInputError
from authz.policy.projection import Projection, build_input, freeze
from authz.policy.view import RequestView
from authz.transport.http_request import HttpCheckTranslator

ROOT = Path(__file__).resolve().parents[2]

POLICIES = {
    "records": (ROOT / "deploy" / "policies" / "records.rego").read_text(),
    "method-and-path": "package p\nx := input.attributes.request.http.method\ny := input.parsed_path",
    "query": "package p\nx := input.parsed_query.page",
    "some-headers": 'package p\nx := input.attributes.request.http.headers["x-a"]\ny := input.token.subject',
    "authorization": 'package p\nx := input.attributes.request.http.headers["authorization"]',
    "all-headers": "package p\nx := input.attributes.request.http.headers",
    "body": "package p\nx := input.parsed_body\ny := input.truncated_body\nz := input.attributes.request.http.body",
    "token": "package p\nx := input.token",
    "host-scheme-size": "package p\nx := input.attributes.request.http.host\n"
                        "y := input.attributes.request.http.scheme\nz := input.attributes.request.http.size",
    "source-address": "package p\nx := input.attributes.source.address.socketAddress.address",
    "header-map": "package p\nx := input.attributes.request.http.headerMap",
    "context-extensions": "package p\nx := input.attributes.contextExtensions",
    "everything": "package p\nx := walk(input)",
}

IDENTITIES = [
    None,
    Identity("h.alice.s", {"sub": "alice", "scope": "read"}, frozenset({"read"}), "alice", "c1", None),
    Identity("h.alice2.s", {"sub": "alice", "scope": "read"}, frozenset({"read"}), "alice", "c1", None),
    Identity(None, {"sub": "bob", "scope": "read write"}, frozenset({"read", "write"}), "bob", None, None),
]
ANSWERS = {id(i): Answer(Introspection(active=True)) for i in IDENTITIES if i is not None}


def random_request(rng: random.Random) -> CheckRequest:
    request = CheckRequest()
    a = request.attributes
    a.source.address.socket_address.address = rng.choice(["10.0.0.1", "10.0.0.2"])
    a.source.address.socket_address.port_value = rng.randrange(1024, 65535)
    a.request.time.FromSeconds(rng.randrange(1_700_000_000, 1_700_000_100))
    if rng.random() < 0.3:
        a.context_extensions["policy"] = rng.choice(["p/x", "p/y"])
    http = a.request.http
    http.id = str(rng.randrange(10**6))
    http.method = rng.choice(["GET", "POST"])
    http.path = rng.choice(["/records/alice/x", "/records/bob/x", "/a?page=1", "/a?page=2", "/a%2Fb", "/"])
    http.host = rng.choice(["api.example", "other.example"])
    http.scheme = rng.choice(["http", "https", ""])
    headers = {"x-request-id": str(rng.randrange(10**6))}
    for name, values in (("x-a", ["1", "2"]), ("authorization", ["Bearer t1", "Bearer t2"]),
                         ("content-type", ["application/json", "application/x-www-form-urlencoded", "text/plain"]),
                         ("x-envoy-auth-partial-body", ["true", "false"]), ("content-length", ["5", "999"])):
        if rng.random() < 0.5:
            headers[name] = rng.choice(values)
    if rng.random() < 0.2:  # Envoy's encode_raw_headers
        for name, value in headers.items():
            http.header_map.headers.add(key=name, value=value)
    else:
        http.headers.update(headers)
    body = rng.choice(["", '{"created_by": "alice"}', '{"created_by": "bob"}', "a=1&b=2", "not json"])
    if body:
        http.body = body
        http.size = len(body)
    return request


def random_http_check(rng: random.Random) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    """One check call as Envoy's http_service sends it: method, prefixed path, raw headers, body."""
    path = rng.choice(["/records/alice/x", "/records/bob/x", "/a?page=1", "/a?page=2", "/a%2Fb", "/"])
    headers = [(b"host", rng.choice([b"api.example", b"other.example"])),
               (b"x-request-id", str(rng.randrange(10**6)).encode())]
    for name, values in ((b"x-a", [b"1", b"2"]), (b"authorization", [b"Bearer t1", b"Bearer t2"]),
                         (b"x-forwarded-proto", [b"http", b"https"]),
                         (b"content-type", [b"application/json", b"application/x-www-form-urlencoded"])):
        if rng.random() < 0.5:
            headers.append((name, rng.choice(values)))
    body = rng.choice([b"", b'{"created_by": "alice"}', b"a=1&b=2", b"\xff\xfe not utf-8"])
    return rng.choice(["GET", "POST"]), "/phantom-authz;required_scopes=read" + path, headers, body


def _views(transport: str, rng: random.Random) -> RequestView:
    if transport == "grpc":
        return RequestView.of_check(random_request(rng))
    info = HttpCheckTranslator("/phantom-authz", 64 * 1024).request_info(*random_http_check(rng))
    assert info.make_view is not None
    return info.make_view()


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_equal_keys_mean_equal_inputs(name: str, transport: str) -> None:
    needs = input_needs([POLICIES[name]])
    projection = Projection(needs)
    rng = random.Random(f"{transport}-{name}")  # noqa: S311 (reproducible test data)
    groups: dict[object, set[str]] = defaultdict(set)
    for _ in range(600):
        view, identity = _views(transport, rng), rng.choice(IDENTITIES)
        answer = ANSWERS.get(id(identity)) if rng.random() < 0.5 else None
        try:
            values = projection.values(view, identity, answer)
            whole = build_input(view, identity)
        except PolicyInputError:
            continue
        document = projection.document(values)
        assert document == needs.prune(whole)  # the pruned input, and only it
        groups[projection.key("p/x", values)].add(json.dumps(document, sort_keys=True))
    assert all(len(documents) == 1 for documents in groups.values()), name
    assert len(groups) > 1 or transport == "http"  # HTTP mode has no peers, raw header lists or varied settings


@pytest.mark.parametrize("name", sorted(set(POLICIES) - {"all-headers", "everything", "header-map"}))
def test_what_the_policy_cannot_read_does_not_split_the_key(name: str) -> None:
    projection = Projection(input_needs([POLICIES[name]]))
    request = random_request(random.Random(name))  # noqa: S311
    other = CheckRequest()
    other.CopyFrom(request)
    other.attributes.request.http.id = "another"
    other.attributes.request.time.FromSeconds(1_800_000_000)
    other.attributes.source.address.socket_address.port_value = 1
    other.attributes.request.http.headers["x-request-id"] = "another"

    def key(check: CheckRequest) -> object:
        return projection.key("p/x", projection.values(RequestView.of_check(check), IDENTITIES[1]))

    assert key(request) == key(other)


def test_the_opaque_token_is_never_in_a_key_or_an_input() -> None:
    for name in ("all-headers", "everything", "header-map", "authorization"):
        projection = Projection(input_needs([POLICIES[name]]))
        request = random_request(random.Random(2))  # noqa: S311
        request.attributes.request.http.headers["authorization"] = "Bearer opaque-token-value"
        request.attributes.request.http.header_map.headers.add(key="authorization", value="Bearer opaque-token-value")
        for identity in IDENTITIES:
            values = projection.values(RequestView.of_check(request), identity)
            assert "opaque-token-value" not in repr(projection.key("p/x", values)) + repr(projection.document(values))


def test_the_token_leaf_is_worked_out_once_per_answer_and_policy_load() -> None:
    identity, answer = IDENTITIES[1], Answer(Introspection(active=True))
    projection = Projection(input_needs([POLICIES["records"]]))
    view = RequestView.of_check(random_request(random.Random(3)))  # noqa: S311
    first, second = projection.values(view, identity, answer), projection.values(view, identity, answer)
    assert first == second and answer.policy_token is not None and answer.policy_token[0] is projection
    reloaded = Projection(input_needs([POLICIES["token"]]))  # another load reads more of the token
    assert "claims" in reloaded.document(reloaded.values(view, identity, answer))["token"]


@pytest.mark.parametrize("values", [
    [1, 1.0, True, "1", None, [1], {"a": 1}, [["a", 1]], {"a": "1"}, {"a": [1]}, [], {}, "", 0, False, -0.0, 0.0,
     [None], {"a": None}, {"b": 1}, {"a": 1, "b": 1}, ["a", 1], "d", "l"],
])
def test_canonical_forms_of_distinct_json_values_differ(values: list[Any]) -> None:
    forms = [freeze(v) for v in values]
    assert len(set(forms)) == len(values)
    assert freeze({"a": 1, "b": [1, {"c": 2}]}) == freeze({"b": [1, {"c": 2}], "a": 1})
