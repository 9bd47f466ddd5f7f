"""ClaimsChecker and scopes_of: a token's claims become an Identity; exp/nbf (with leeway), iss and aud are checked.

Failing claims are the client's problem (401 invalid_token); claims of the wrong type are the AS's (502).
"""

from __future__ import annotations

from typing import Any

import pytest

from authz.claims import ClaimsChecker, scopes_of
from authz.errors import InvalidToken, UpstreamMisbehaved
from authz.models import Answer, Introspection

NOW = 1_700_000_000.0
LEEWAY = 30.0
ISSUER = "https://as.example/oauth"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"  # the checker never parses it; it is passed through


def _checker(issuer: str | None = None, audiences: tuple[str, ...] = (), leeway: float = LEEWAY) -> ClaimsChecker:
    return ClaimsChecker(issuer, audiences, leeway, clock=lambda: NOW)


def _invalid(checker: ClaimsChecker, claims: dict[str, Any], jwt: str | None = JWT) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        checker.identity(claims, jwt)
    assert info.value.status == 401
    assert info.value.oauth_error == "invalid_token"
    return info.value


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


def test_reads_identity_from_claims() -> None:
    claims = {"sub": "alice", "client_id": "web", "scope": "read write", "exp": NOW + 300, "iss": ISSUER}
    identity = _checker(ISSUER).identity(claims, JWT)
    assert identity.jwt == JWT
    assert identity.subject == "alice"
    assert identity.client_id == "web"
    assert identity.scopes == frozenset({"read", "write"})
    assert identity.expires_at == NOW + 300
    assert identity.claims["iss"] == ISSUER


def test_identity_without_a_jwt_keeps_jwt_none() -> None:
    identity = _checker().identity({"sub": "bob", "scope": "read"}, None)
    assert identity.jwt is None
    assert identity.subject == "bob"
    assert identity.expires_at is None


def test_rejects_token_expired_beyond_leeway() -> None:
    _invalid(_checker(), {"sub": "a", "exp": NOW - LEEWAY - 1})


def test_rejects_token_expiring_exactly_at_leeway_edge() -> None:
    _invalid(_checker(), {"exp": NOW - LEEWAY})


def test_accepts_token_expired_within_leeway() -> None:
    assert _checker().identity({"sub": "a", "exp": NOW - LEEWAY + 1}, JWT).subject == "a"


def test_rejects_token_not_yet_valid_beyond_leeway() -> None:
    _invalid(_checker(), {"nbf": NOW + LEEWAY + 1, "exp": NOW + 600})


def test_accepts_token_not_yet_valid_within_leeway() -> None:
    assert _checker().identity({"sub": "a", "nbf": NOW + LEEWAY - 1, "exp": NOW + 600}, JWT).subject == "a"


def test_claims_only_answers_are_time_checked_too() -> None:
    _invalid(_checker(), {"sub": "a", "exp": NOW - 3600}, jwt=None)


def test_uses_the_injected_clock_on_every_check() -> None:
    now = [NOW]
    checker = ClaimsChecker(None, (), 0, clock=lambda: now[0])
    claims = {"exp": NOW + 10}
    checker.identity(claims, JWT)
    now[0] = NOW + 11
    with pytest.raises(InvalidToken):
        checker.identity(claims, JWT)


def test_a_cached_answer_is_time_checked_on_every_call_though_the_rest_is_checked_once() -> None:
    now = [NOW]
    checker = ClaimsChecker(None, (), 0, clock=lambda: now[0])
    answer = Answer(Introspection(active=True, jwt=JWT, claims={"nbf": NOW + 5, "exp": NOW + 10}))
    with pytest.raises(InvalidToken, match="not yet valid"):
        checker.identity_of(answer)
    assert answer.identity is None  # nothing kept from a failed check
    now[0] = NOW + 6
    first = checker.identity_of(answer)
    assert answer.identity is first and checker.identity_of(answer) is first  # kept on the answer
    assert checker.identity_of(Answer(answer.introspection)) is not first  # another answer: checked afresh
    now[0] = NOW + 10
    with pytest.raises(InvalidToken, match="expired"):
        checker.identity_of(answer)


@pytest.mark.parametrize(
    "claims",
    [{"exp": "tomorrow"}, {"exp": True}, {"nbf": "now"}, {"sub": 42}, {"client_id": ["web"]}, {"iss": 7},
     {"aud": 5}, {"aud": ["api", 5]}],
    ids=["exp-string", "exp-bool", "nbf-string", "sub-int", "client_id-list", "iss-int", "aud-int", "aud-mixed"],
)
def test_rejects_wrong_claim_types_as_upstream_misbehaved(claims: dict[str, Any]) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        _checker(ISSUER, ("api",)).identity({"iss": ISSUER, "aud": "api", **claims}, JWT)
    assert info.value.status == 502


@pytest.mark.parametrize("claim", ["exp", "nbf"])
def test_rejects_nan_time_claim(claim: str) -> None:
    with pytest.raises((UpstreamMisbehaved, InvalidToken)):
        _checker().identity({claim: float("nan")}, JWT)


def test_wrong_issuer_is_invalid_token() -> None:
    error = _invalid(_checker(ISSUER), {"sub": "a", "iss": "https://evil.example"})
    assert "evil.example" in error.detail


def test_issuer_must_match_exactly() -> None:
    _invalid(_checker(ISSUER), {"iss": ISSUER + "/"})


def test_wrong_issuer_in_claims_only_answer_is_invalid_token() -> None:
    _invalid(_checker(ISSUER), {"sub": "a", "iss": "https://evil.example"}, jwt=None)


def test_jwt_without_iss_is_invalid_token_when_an_issuer_is_configured() -> None:
    _invalid(_checker(ISSUER), {"sub": "a"}, jwt=JWT)


def test_claims_without_iss_and_without_jwt_are_accepted() -> None:
    assert _checker(ISSUER).identity({"sub": "a", "active": True}, None).subject == "a"


def test_any_iss_is_accepted_without_a_configured_issuer() -> None:
    assert _checker(None).identity({"sub": "a", "iss": "https://anyone"}, JWT).subject == "a"


@pytest.mark.parametrize("aud", ["api", ["other", "api"], ["api"]], ids=["string", "list", "single-list"])
def test_audience_is_accepted_when_it_holds_one_of_ours(aud: Any) -> None:
    checker = _checker(audiences=("api", "billing"))
    assert checker.identity({"sub": "a", "aud": aud}, JWT).subject == "a"


@pytest.mark.parametrize("aud", ["other", ["other", "more"], [], "ap", "API"],
                         ids=["string", "list", "empty-list", "prefix", "case"])
def test_foreign_audience_is_invalid_token(aud: Any) -> None:
    _invalid(_checker(audiences=("api",)), {"sub": "a", "aud": aud})


def test_audience_is_required_when_audiences_are_configured() -> None:
    _invalid(_checker(audiences=("api",)), {"sub": "a"})
    _invalid(_checker(audiences=("api",)), {"sub": "a"}, jwt=None)


def test_no_audience_check_without_configured_audiences() -> None:
    assert _checker().identity({"sub": "a", "aud": "whatever"}, JWT).subject == "a"
    assert _checker().identity({"sub": "b"}, JWT).subject == "b"


# --- issue 12 item 1: RFC 6749 §3.3 scope grammar (split on SP only; tokens outside NQCHAR grant nothing) ---------

# characters Python's str.split() treats as whitespace but RFC 6749 does not: none of them separates scopes
NOT_SP = ["\u00a0", "\t", "\x0b", "\x0c", "\n", "\r", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u1680", "\u2000",
          "\u2003", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]


@pytest.mark.parametrize("sep", NOT_SP, ids=[f"U+{ord(c):04X}" for c in NOT_SP])
@pytest.mark.parametrize("claim", ["scope", "scp"])
def test_item01_non_sp_whitespace_does_not_split_a_scope(sep: str, claim: str) -> None:
    granted = scopes_of({claim: f"read files:{sep}admin"})
    assert granted == frozenset({"read"}), "a token holding a non-NQCHAR character grants nothing, whole"
    assert "admin" not in granted


@pytest.mark.parametrize("sep", NOT_SP, ids=[f"U+{ord(c):04X}" for c in NOT_SP])
def test_item01_list_elements_are_single_scope_tokens(sep: str) -> None:
    assert scopes_of({"scope": ["read", f"files:{sep}admin", "write admin", ""]}) == frozenset({"read"})
    assert scopes_of({"scp": [f"admin{sep}"]}) == frozenset()


@pytest.mark.parametrize("token", ['say"hi"', "back\\slash", "caf\u00e9", "nul\x00", "del\x7f", "é"])
def test_item01_tokens_outside_nqchar_grant_nothing(token: str) -> None:
    assert scopes_of({"scope": f"read {token} write"}) == frozenset({"read", "write"})


def test_all_of_nqchar_is_a_scope_token() -> None:
    nqchar = "".join(chr(c) for c in (0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F)))
    assert scopes_of({"scope": f"{nqchar} read"}) == frozenset({nqchar, "read"})


def test_item01_a_granted_scope_with_nbsp_never_satisfies_admin_through_the_checker() -> None:
    identity = _checker().identity({"sub": "a", "scope": "files:\u00a0admin"}, JWT)
    assert identity.scopes == frozenset()


# --- issue 12 item 8: only access tokens, and no sender-constrained (cnf) tokens --------------------------------------

@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER", "access_token", "Access_Token",
                                        "urn:ietf:params:oauth:token-type:access_token",
                                        "URN:IETF:PARAMS:OAUTH:TOKEN-TYPE:ACCESS_TOKEN"])
def test_access_token_types_are_accepted(token_type: str) -> None:
    assert _checker().identity({"sub": "a", "token_type": token_type}, None).subject == "a"


@pytest.mark.parametrize("token_type", ["refresh_token", "id_token", "DPoP", "N_A", "mac", "",
                                        "urn:ietf:params:oauth:token-type:refresh_token",
                                        "urn:ietf:params:oauth:token-type:id_token", "bearer ", "be\u0430rer"])
@pytest.mark.parametrize("jwt", [JWT, None], ids=["jwt", "claims-only"])
def test_item08_non_access_token_type_is_invalid_token(token_type: str, jwt: str | None) -> None:
    error = _invalid(_checker(), {"sub": "a", "scope": "read admin", "token_type": token_type}, jwt)
    assert "token_type" in error.detail


@pytest.mark.parametrize("cnf", [{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", "jwk": {"kty": "EC"}}, {}, None,
                                 {"x5t": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg0"},
                                 {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2", "jku": "https://x"}],
                         ids=["dpop-and-unknown", "empty", "null", "sha1-x5t", "mtls-and-unknown"])
@pytest.mark.parametrize("token_type", [None, "Bearer", "DPoP"])
def test_item08_sender_constrained_token_is_invalid_token(cnf: Any, token_type: str | None) -> None:
    claims = {"sub": "a", "scope": "read", "cnf": cnf, **({"token_type": token_type} if token_type else {})}
    _invalid(_checker(), claims, None)
    _invalid(_checker(), claims, JWT)


@pytest.mark.parametrize("token_type", [None, "DPoP", "dpop", "Bearer"])
def test_issue16_dpop_bound_token_keeps_its_jkt_for_the_pipeline(token_type: str | None) -> None:
    """The binding is checked by the pipeline on every request (authz.dpop): the identity carries cnf.jkt."""
    jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    claims = {"sub": "a", "cnf": {"jkt": jkt}, **({"token_type": token_type} if token_type else {})}
    assert _checker().identity(claims, JWT).jkt == jkt
    assert _checker().identity({"sub": "a"}, JWT).jkt is None


@pytest.mark.parametrize("jkt", ["abc", 5, "", None, ["0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"]])
def test_issue16_malformed_jkt_is_upstream_misbehaved(jkt: Any) -> None:
    with pytest.raises((UpstreamMisbehaved, InvalidToken)):
        _checker().identity({"sub": "a", "cnf": {"jkt": jkt}}, JWT)


def test_item08_token_type_of_the_wrong_type_is_upstream_misbehaved() -> None:
    with pytest.raises(UpstreamMisbehaved):
        _checker().identity({"sub": "a", "token_type": ["Bearer"]}, None)


@pytest.mark.parametrize("thumbprint", ["abc", 5, "", None, ["bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"]])
def test_issue16_malformed_x5t_s256_is_never_an_unbound_token(thumbprint: Any) -> None:
    """``cnf: {"x5t#S256": null}`` names a binding it does not give: refused, not read as an unbound token."""
    with pytest.raises((UpstreamMisbehaved, InvalidToken)):
        _checker().identity({"sub": "a", "cnf": {"x5t#S256": thumbprint}}, JWT)
