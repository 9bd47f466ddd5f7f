"""require_scopes: every required scope must be granted (all-of); the RFC 6749 §3.3 scope grammar."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from authz.errors import InsufficientScope
from authz.scopes import ScopeSyntaxError, granted_scopes, require_scopes, required_scopes


def test_passes_when_all_required_scopes_are_granted() -> None:
    require_scopes(frozenset({"read", "write", "admin"}), ("read", "admin"))


def test_passes_when_nothing_is_required() -> None:
    require_scopes(frozenset(), ())


def test_rejects_when_one_of_several_is_missing() -> None:
    with pytest.raises(InsufficientScope) as info:
        require_scopes(frozenset({"read"}), ("read", "admin"))
    assert info.value.status == 403
    assert info.value.oauth_error == "insufficient_scope"
    assert info.value.required == ("read", "admin")
    assert info.value.missing == ("admin",)


def test_rejects_token_without_scopes() -> None:
    with pytest.raises(InsufficientScope) as info:
        require_scopes(frozenset(), ("read", "write"))
    assert info.value.missing == ("read", "write")


def test_scope_match_is_exact_and_case_sensitive() -> None:
    with pytest.raises(InsufficientScope) as info:
        require_scopes(frozenset({"Read", "read:all", "rea"}), ("read",))
    assert info.value.missing == ("read",)


# --- issue 12 item 1: the one scope grammar (RFC 6749 §3.3), what a token grants and what a route requires -----------

# the RFC's ABNF as regular expressions, written out independently of authz.scopes
NQCHAR = r"[!#-\[\]-~]"  # %x21 / %x23-5B / %x5D-7E
SCOPE_TOKEN = f"{NQCHAR}+"
RFC_SCOPE = re.compile(f"{SCOPE_TOKEN}(?: {SCOPE_TOKEN})*")  # scope = scope-token *( SP scope-token )
# a granted token: a maximal run between SPs (or the ends) made of NQCHAR only
GRANTED = re.compile(f"(?<![^ ]){SCOPE_TOKEN}(?![^ ])")

# scope-ish text: NQCHAR, SP, the characters just outside NQCHAR, and Unicode whitespace str.split() would split on
ALPHABET = st.sampled_from(["a", "d", "m", "i", "n", ":", "-", "!", "~", "[", "]", " ", " ", '"', "\\", "\x7f",
                            "\x00", "\t", "\x0b", "\x0c", "\n", "\r", "\x1f", "\x85", "\u00a0", "\u2003", "\u2028",
                            "\u2029", "\u3000", "é"])
SCOPE_TEXT = st.text(ALPHABET, max_size=24) | st.text(max_size=24)


@given(SCOPE_TEXT)
@example("files:\u00a0admin")
@example("read files:\tadmin")
@example("a\n")  # "$" would match before a final newline: the reference uses \Z
def test_item01_granted_scopes_agree_with_the_rfc_grammar(text: str) -> None:
    granted = granted_scopes(text)
    assert granted == {m.group() for m in GRANTED.finditer(text)}
    if RFC_SCOPE.fullmatch(text):
        assert granted == set(text.split(" "))
    for scope in ("admin", "a", "-"):  # a route's scope is granted only as a whole SP-delimited token
        assert (scope in granted) == bool(re.search(f"(?:\\A| ){re.escape(scope)}(?: |\\Z)", text))


@given(st.lists(SCOPE_TEXT, max_size=6))
def test_item01_list_claims_grant_only_elements_that_are_one_scope_token(items: list[str]) -> None:
    assert granted_scopes(items) == {i for i in items if re.fullmatch(SCOPE_TOKEN, i)}


@given(SCOPE_TEXT)
@example("")
@example("   ")
@example("-")
@example("read\u00a0write")
def test_item01_required_scopes_are_parsed_with_the_same_grammar(text: str) -> None:
    tokens = [t for t in text.split(" ") if t]
    grammar = bool(re.fullmatch(f" *{SCOPE_TOKEN}(?: +{SCOPE_TOKEN})* *", text))
    valid = grammar and (tokens == ["-"] or "-" not in tokens)  # "-" (no scope) stands alone
    try:
        parsed = required_scopes(text)
    except ScopeSyntaxError:
        assert not valid
        return
    assert valid
    assert parsed == (() if tokens == ["-"] else tuple(tokens))
    assert set(parsed) <= granted_scopes(text)  # what a route requires, a token with the same text grants


@pytest.mark.parametrize("text", ["", " ", "read\u00a0write", "read\twrite", "a\x1fb", "x\u2028y", "- read", '"q"'])
def test_item01_bad_required_scopes_are_refused(text: str) -> None:
    with pytest.raises(ScopeSyntaxError):
        required_scopes(text)
