"""RequestKeyer: equal keys must mean equal pruned inputs (else a reused decision would be someone else's), and
requests that differ only in what the policies ignore must share a key (else nothing is reused)."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.http_request import HttpCheckTranslator
from authz.models import Identity
from authz.policy.input import PolicyInputError, build_input
from authz.policy.input_needs import input_needs
from authz.policy.request_key import RequestKeyer, check_request_fields, http_fields

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
}

IDENTITIES = [
    None,
    Identity("h.alice.s", {"sub": "alice", "scope": "read"}, frozenset({"read"}), "alice", "c1", None),
    Identity("h.alice2.s", {"sub": "alice", "scope": "read"}, frozenset({"read"}), "alice", "c1", None),
    Identity(None, {"sub": "bob", "scope": "read write"}, frozenset({"read", "write"}), "bob", None, None),
]


def random_request(rng: random.Random) -> CheckRequest:
    request = CheckRequest()
    a = request.attributes
    a.source.address.socket_address.address = rng.choice(["10.0.0.1", "10.0.0.2"])
    a.source.address.socket_address.port_value = rng.randrange(1024, 65535)
    a.request.time.FromSeconds(rng.randrange(1_700_000_000, 1_700_000_100))
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
    http.headers.update(headers)
    body = rng.choice(["", '{"created_by": "alice"}', '{"created_by": "bob"}', "a=1&b=2", "not json"])
    if body:
        http.body = body
        http.size = len(body)
    return request


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_equal_keys_mean_equal_pruned_inputs_and_ignored_fields_share_a_key(name: str) -> None:
    needs = input_needs([POLICIES[name]])
    keyer = RequestKeyer(needs)
    assert keyer.enabled
    rng = random.Random(name)  # noqa: S311 (reproducible test data)
    groups: dict[object, set[str]] = defaultdict(set)
    for _ in range(1500):
        request, identity = random_request(rng), rng.choice(IDENTITIES)
        try:
            document = build_input(request, identity, needs=needs)
        except PolicyInputError:
            continue
        groups[keyer.key("p/x", check_request_fields(request), identity)].add(json.dumps(document, sort_keys=True))
    assert all(len(documents) == 1 for documents in groups.values()), name
    # what the policy cannot read does not split the key: request id, time, the client's port, x-request-id
    request = random_request(rng)
    other = CheckRequest()
    other.CopyFrom(request)
    other.attributes.request.http.id = "another"
    other.attributes.request.time.FromSeconds(1_800_000_000)
    other.attributes.source.address.socket_address.port_value = 1
    if name != "all-headers":
        other.attributes.request.http.headers["x-request-id"] = "another"
    assert keyer.key("p/x", check_request_fields(request), IDENTITIES[1]) == keyer.key(
        "p/x", check_request_fields(other), IDENTITIES[1])


@pytest.mark.parametrize("source", [
    "package p\nx := input.attributes.source.address",
    "package p\nx := input.attributes.request.time",
    "package p\nx := input.attributes.request.http.headerMap",
    "package p\nx := input.attributes",
    "package p\nx := input.source_principal",
    "package p\nx := walk(input)",
])
def test_no_key_for_policies_reading_what_the_key_does_not_cover(source: str) -> None:
    keyer = RequestKeyer(input_needs([source]))
    request = random_request(random.Random(1))  # noqa: S311
    assert not keyer.enabled and keyer.key("p/x", check_request_fields(request), None) is None


def test_no_key_for_raw_header_lists_and_the_opaque_token_never_in_a_key() -> None:
    keyer = RequestKeyer(input_needs([POLICIES["all-headers"]]))
    request = random_request(random.Random(2))  # noqa: S311
    request.attributes.request.http.headers["authorization"] = "Bearer opaque-token-value"
    assert "opaque-token-value" not in repr(keyer.key("p/x", check_request_fields(request), IDENTITIES[1]))
    request.attributes.request.http.header_map.headers.add(key="x-a", value="1")
    assert keyer.key("p/x", check_request_fields(request), IDENTITIES[1]) is None


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


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_http_mode_keys_from_plain_fields_equal_the_keys_of_the_check_request_built_for_the_input(name: str) -> None:
    """HTTP mode finds reused decisions without building a CheckRequest: its plain fields must key exactly as the
    CheckRequest it builds when the input is needed (the same decision either way)."""
    keyer = RequestKeyer(input_needs([POLICIES[name]]))
    translator = HttpCheckTranslator("/phantom-authz", 64 * 1024)
    rng = random.Random("http-" + name)  # noqa: S311 (reproducible test data)
    keys = set()
    for _ in range(300):
        info = translator.request_info(*random_http_check(rng))
        identity = rng.choice(IDENTITIES)
        from_fields = keyer.key("p/x", http_fields(info), identity)
        assert from_fields is not None
        assert from_fields == keyer.key("p/x", check_request_fields(info.check_request()), identity)
        keys.add(from_fields)
    assert len(keys) > 1  # the requests differ in what the policy reads
