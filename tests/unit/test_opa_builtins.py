"""OPA's ``crypto.*`` digests and HMACs and ``net.cidr_intersects``/``net.cidr_contains_matches``, which regorus lacks,
as phantom-authz provides them: evaluated from Rego by a real ``EmbeddedEngine``, against OPA's documented examples
(net) and the standards' test vectors (digests: RFC 1321, FIPS 180; HMACs: RFC 2104, RFC 2202, RFC 4231)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from authz.policy.crypto_builtins import cidr_contains
from authz.policy.embedded import EmbeddedEngine
from authz.policy.engine import PolicyEvaluationError

POLICY = """package b
import rego.v1

md5 := crypto.md5(input.x)
sha1 := crypto.sha1(input.x)
sha256 := crypto.sha256(input.x)
hmac_md5 := crypto.hmac.md5(input.x, input.key)
hmac_sha1 := crypto.hmac.sha1(input.x, input.key)
hmac_sha256 := crypto.hmac.sha256(input.x, input.key)
hmac_sha512 := crypto.hmac.sha512(input.x, input.key)
hmac_equal := crypto.hmac.equal(input.a, input.b)
intersects := net.cidr_intersects(input.a, input.b)
regorus_contains := net.cidr_contains(input.a, input.b)
matches := [m | some m in net.cidr_contains_matches(input.a, input.b)]

# OPA's documented examples (the policy reference, net.cidr_contains_matches)
doc_string := [m | some m in net.cidr_contains_matches("1.1.1.0/24", "1.1.1.128")]
doc_array := [m | some m in net.cidr_contains_matches(["1.1.1.0/24", "1.1.2.0/24"], "1.1.1.128")]
doc_tuples := [m | some m in net.cidr_contains_matches([["1.1.0.0/16", "foo"], "1.1.2.0/24"],
                                                       ["1.1.1.128", ["1.1.254.254", "bar"]])]
doc_sets_and_objects := [m | some m in net.cidr_contains_matches({["1.1.0.0/16", "foo"], "1.1.2.0/24"},
                                                                 {"x": "1.1.1.128", "y": ["1.1.254.254", "bar"]})]
string_set := [m | some m in net.cidr_contains_matches({"1.1.0.0/16", "1.1.2.0/24"}, {"x": "1.1.2.7"})]

# an Envoy-style use: a signed webhook, and callers from an allow-listed network
allow if {
    crypto.hmac.equal(input.attributes.request.http.headers["x-signature"],
                      crypto.hmac.sha256(input.attributes.request.http.body, data.webhook_secret))
    count(net.cidr_contains_matches(data.networks, input.client_ip)) > 0
}
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedEngine:
    directory = tmp_path_factory.mktemp("builtins")
    (directory / "b.rego").write_text(POLICY, encoding="utf-8")
    (directory / "data.json").write_text(json.dumps({"webhook_secret": "s3cret",
                                                     "networks": {"office": "192.0.2.0/24", "vpn": "10.8.0.0/16"}}))
    return EmbeddedEngine((str(directory),), timeout_seconds=5.0)


async def _eval(engine: EmbeddedEngine, rule: str, **policy_input: Any) -> Any:
    return (await engine.evaluate(f"b/{rule}", policy_input)).result


def _sorted(pairs: list[list[Any]]) -> list[list[Any]]:
    return sorted(pairs, key=json.dumps)


@pytest.mark.parametrize(("rule", "x", "expected"), [
    ("md5", "", "d41d8cd98f00b204e9800998ecf8427e"),
    ("md5", "abc", "900150983cd24fb0d6963f7d28e17f72"),
    ("sha1", "abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("sha256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ("sha256", "é", "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"),  # UTF-8, as Go's []byte(s)
])
async def test_digests(engine: EmbeddedEngine, rule: str, x: str, expected: str) -> None:
    assert await _eval(engine, rule, x=x) == expected


@pytest.mark.parametrize(("rule", "expected"), [  # key "Jefe", "what do ya want for nothing?"
    ("hmac_md5", "750c783e6ab0b503eaa86e310a5db738"),  # RFC 2104 / RFC 2202 test case 2
    ("hmac_sha1", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),  # RFC 2202 test case 2
    ("hmac_sha256", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),  # RFC 4231 test case 2
    ("hmac_sha512", "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fd"
                    "caeab1a34d4a6b4b636e070a38bce737"),
])
async def test_hmacs(engine: EmbeddedEngine, rule: str, expected: str) -> None:
    assert await _eval(engine, rule, x="what do ya want for nothing?", key="Jefe") == expected


async def test_hmac_equal(engine: EmbeddedEngine) -> None:
    assert await _eval(engine, "hmac_equal", a="abc", b="abc") is True
    assert await _eval(engine, "hmac_equal", a="abc", b="abd") is False
    assert await _eval(engine, "hmac_equal", a="abc", b="ab") is False


async def test_non_string_operands_are_evaluation_errors(engine: EmbeddedEngine) -> None:
    for rule, args in (("sha256", {"x": 5}), ("hmac_sha256", {"x": "a", "key": None}),
                       ("hmac_equal", {"a": ["x"], "b": "x"})):
        with pytest.raises(PolicyEvaluationError):
            await _eval(engine, rule, **args)


async def test_opa_documented_cidr_contains_matches_examples(engine: EmbeddedEngine) -> None:
    # the results are sets of arrays, read here as arrays (a set of arrays cannot cross into Python)
    assert await _eval(engine, "doc_string") == [["1.1.1.0/24", "1.1.1.128"]]
    assert await _eval(engine, "doc_array") == [[0, "1.1.1.128"]]
    assert _sorted(await _eval(engine, "doc_tuples")) == [[0, 0], [0, 1]]
    assert _sorted(await _eval(engine, "matches", a={"x": "1.1.0.0/16", "y": "1.1.2.0/24"},
                               b={"a": "1.1.1.128", "b": ["1.1.254.254", "bar"]})) == [["x", "a"], ["x", "b"]]
    assert _sorted(await _eval(engine, "string_set")) == [["1.1.0.0/16", "x"], ["1.1.2.0/24", "x"]]


async def test_a_set_of_arrays_is_an_evaluation_error_not_a_missed_match(engine: EmbeddedEngine) -> None:
    """OPA's sets-and-objects example: regorus cannot hand a set of arrays to an extension (it would answer
    ``{[["1.1.0.0/16", "foo"], "x"], [["1.1.0.0/16", "foo"], "y"]}``): the decision fails, never an empty match."""
    with pytest.raises(PolicyEvaluationError):
        await _eval(engine, "doc_sets_and_objects")


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("127.0.0.1/24", "127.0.0.64/26", [["127.0.0.1/24", "127.0.0.64/26"]]),  # the reference's cidr_contains example
    (["127.0.0.64/24", "10.0.0.64/24"], ["127.0.0.64/26", "127.0.0.1", "10.0.0.100", "1.0.0.1"],
     [[0, 0], [0, 1], [1, 2]]),
    ("2001:db8::/32", ["2001:db8:1::1", "2001:db9::1", "10.0.0.1"], [["2001:db8::/32", 0]]),
    ("10.0.0.0/8", "::ffff:10.1.2.3", [["10.0.0.0/8", "::ffff:10.1.2.3"]]),  # IPv4-mapped: its IPv4 address
    ([], "10.0.0.1", []),
])
async def test_cidr_contains_matches(engine: EmbeddedEngine, a: Any, b: Any, expected: list[list[Any]]) -> None:
    assert _sorted(await _eval(engine, "matches", a=a, b=b)) == expected


@pytest.mark.parametrize(("a", "b"), [("10.0.0.0", "10.0.0.1"), ("010.0.0.0/8", "10.0.0.1"), ("10.0.0.0/33", "1.1.1.1"),
                                      ("10.0.0.0/255.0.0.0", "10.0.0.1"), ("10.0.0.0/8", "not-an-ip"),
                                      ("fe80::/64%eth0", "fe80::1"), (["10.0.0.0/8", []], "10.0.0.1"),
                                      (["10.0.0.0/8", 7], "10.0.0.1")])
async def test_malformed_cidrs_are_evaluation_errors(engine: EmbeddedEngine, a: Any, b: Any) -> None:
    with pytest.raises(PolicyEvaluationError):
        await _eval(engine, "matches", a=a, b=b)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("192.168.0.0/16", "192.168.1.0/24", True), ("192.168.1.0/24", "192.168.0.0/16", True),
    ("10.0.0.0/8", "11.0.0.0/8", False), ("10.0.0.0/31", "10.0.0.1/32", True),
    ("2001:db8::/32", "2001:db8:ff::/48", True), ("2001:db8::/32", "10.0.0.0/8", False),
])
async def test_cidr_intersects(engine: EmbeddedEngine, a: str, b: str, expected: bool) -> None:
    assert await _eval(engine, "intersects", a=a, b=b) is expected


@pytest.mark.parametrize(("a", "b"), [("10.0.0.0/8", "10.1.2.3"), ("10.0.0.0/8", "11.1.2.3"),
                                      ("10.0.0.0/8", "10.1.0.0/16"), ("10.1.0.0/16", "10.0.0.0/8"),
                                      ("10.0.0.0/8", "10.0.0.0/8"),
                                      ("2001:db8::/32", "2001:db8::1"), ("2001:db8::/32", "2001:db9::/32"),
                                      ("0.0.0.0/0", "255.255.255.255"), ("192.0.2.7/32", "192.0.2.7")])
async def test_our_containment_agrees_with_regorus_net_cidr_contains(engine: EmbeddedEngine, a: str, b: str) -> None:
    """``net.cidr_contains_matches`` decides each pair as regorus's own ``net.cidr_contains`` does."""
    assert cidr_contains(a, b) is await _eval(engine, "regorus_contains", a=a, b=b)


async def test_an_envoy_style_policy_using_them(engine: EmbeddedEngine) -> None:
    import hashlib
    import hmac

    body = '{"event": "paid"}'
    signature = hmac.new(b"s3cret", body.encode(), hashlib.sha256).hexdigest()

    def request(sig: str, ip: str) -> dict[str, Any]:
        return {"attributes": {"request": {"http": {"headers": {"x-signature": sig}, "body": body}}}, "client_ip": ip}

    assert await _eval(engine, "allow", **request(signature, "10.8.3.4")) is True
    for sig, ip in ((signature, "203.0.113.9"), (signature[:-1] + "0", "10.8.3.4")):
        with pytest.raises(PolicyEvaluationError, match="undefined"):
            await _eval(engine, "allow", **request(sig, ip))
    assert engine.needs.deterministic  # decisions that use them may be reused


def test_every_provided_name_is_evaluable_from_rego(tmp_path: Path) -> None:
    """Loading is enough: the load-time check knows each provided built-in (tests/unit/test_builtin_check.py)."""
    (tmp_path / "p.rego").write_text(POLICY, encoding="utf-8")
    EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
