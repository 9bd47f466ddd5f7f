"""IdentityReader and scopes_of: the AS's JWT becomes an Identity; time claims are checked with clock skew."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from authz.errors import InvalidToken, UpstreamMisbehaved
from authz.token import IdentityReader, scopes_of

NOW = 1_700_000_000.0
SKEW = 30.0


def _jwt(**claims: Any) -> str:
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def _reader() -> IdentityReader:
    return IdentityReader(SKEW, clock=lambda: NOW)


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"scope": "read write"}, {"read", "write"}),
        ({"scope": "  read   write "}, {"read", "write"}),
        ({"scope": ["read", "admin"]}, {"read", "admin"}),
        ({"scp": ["read"]}, {"read"}),
        ({"scope": ""}, set()),
        ({}, set()),
    ],
    ids=["string", "spaces", "list", "scp", "empty", "missing"],
)
def test_scopes_of_reads_string_or_list(claims: dict[str, Any], expected: set[str]) -> None:
    assert scopes_of(claims) == frozenset(expected)


@pytest.mark.parametrize("scope", [42, {"read": True}, ["read", 1], True], ids=["int", "dict", "mixed-list", "bool"])
def test_scopes_of_rejects_wrong_type_as_upstream_misbehaved(scope: Any) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        scopes_of({"scope": scope})
    assert info.value.status == 502


def test_reads_identity_from_jwt() -> None:
    token = _jwt(sub="alice", client_id="web", scope="read write", exp=NOW + 300, iss="https://as")
    identity = _reader().read(token, "curity")
    assert identity.jwt == token
    assert identity.subject == "alice"
    assert identity.client_id == "web"
    assert identity.scopes == frozenset({"read", "write"})
    assert identity.expires_at == NOW + 300
    assert identity.claims["iss"] == "https://as"


def test_rejects_token_expired_beyond_skew() -> None:
    with pytest.raises(InvalidToken) as info:
        _reader().read(_jwt(sub="a", exp=NOW - SKEW - 1), "curity")
    assert info.value.status == 401
    assert info.value.oauth_error == "invalid_token"


def test_rejects_token_expiring_exactly_at_skew_edge() -> None:
    with pytest.raises(InvalidToken):
        _reader().read(_jwt(exp=NOW - SKEW), "curity")


def test_accepts_token_expired_within_skew() -> None:
    assert _reader().read(_jwt(sub="a", exp=NOW - SKEW + 1), "curity").subject == "a"


def test_rejects_token_not_yet_valid_beyond_skew() -> None:
    with pytest.raises(InvalidToken):
        _reader().read(_jwt(nbf=NOW + SKEW + 1, exp=NOW + 600), "curity")


def test_accepts_token_not_yet_valid_within_skew() -> None:
    assert _reader().read(_jwt(sub="a", nbf=NOW + SKEW - 1, exp=NOW + 600), "curity").subject == "a"


def test_uses_the_injected_clock_on_every_read() -> None:
    now = [NOW]
    reader = IdentityReader(0, clock=lambda: now[0])
    token = _jwt(exp=NOW + 10)
    reader.read(token, "curity")
    now[0] = NOW + 11
    with pytest.raises(InvalidToken):
        reader.read(token, "curity")


@pytest.mark.parametrize(
    "claims",
    [{"exp": "tomorrow"}, {"exp": True}, {"nbf": "now"}, {"sub": 42}, {"client_id": ["web"]}],
    ids=["exp-string", "exp-bool", "nbf-string", "sub-int", "client_id-list"],
)
def test_rejects_wrong_claim_types_as_upstream_misbehaved(claims: dict[str, Any]) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        _reader().read(_jwt(**claims), "curity")
    assert info.value.status == 502


@pytest.mark.parametrize("claim", ["exp", "nbf"])
def test_rejects_nan_time_claim(claim: str) -> None:
    with pytest.raises((UpstreamMisbehaved, InvalidToken)):
        _reader().read(_jwt(**{claim: float("nan")}), "curity")


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "", _jwt(sub="a").rsplit(".", 2)[0] + ".!!!.sig"],
    ids=["word", "dots", "empty", "bad-payload"],
)
def test_rejects_garbage_jwt_as_upstream_misbehaved(token: str) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        _reader().read(token, "curity")
    assert info.value.status == 502
    assert "curity" in info.value.detail


def test_rejects_jwt_whose_payload_is_not_an_object() -> None:
    header = _jwt().split(".")[0]
    token = f"{header}.WzEsMl0.sig"  # payload [1,2]
    with pytest.raises(UpstreamMisbehaved):
        _reader().read(token, "curity")
