"""parse_json_object: the one parse-or-raise for a JSON object from an AS, OPA or a JWT payload."""

from __future__ import annotations

import pytest

from authz.errors import UpstreamMisbehaved
from authz.json_body import parse_json_object
from authz.policy.engine import PolicyEvaluationError


@pytest.mark.parametrize("body", [b'{"active": true}', '{"active": true}'], ids=["bytes", "str"])
def test_an_object_is_returned(body: bytes | str) -> None:
    assert parse_json_object(body, "AS corp: answer", UpstreamMisbehaved) == {"active": True}


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"{'a': 1}", b"[" * 100_000 + b"]" * 100_000],
                         ids=["empty", "truncated", "not-utf8", "python-repr", "nested-too-deep"])
def test_a_body_that_is_not_json_raises_the_callers_error(body: bytes) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        parse_json_object(body, "AS corp: JWKS", UpstreamMisbehaved)
    assert info.value.status == 502
    assert info.value.detail == "AS corp: JWKS is not JSON"


@pytest.mark.parametrize("body", [b"[]", b"null", b"1", b'"{}"'])
def test_json_that_is_not_an_object_raises_the_callers_error(body: bytes) -> None:
    with pytest.raises(PolicyEvaluationError, match=r"^OPA /v1/data/authz: answer is not a JSON object$"):
        parse_json_object(body, "OPA /v1/data/authz: answer", PolicyEvaluationError)
