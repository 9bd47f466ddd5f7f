"""The one TTL rule (DESIGN.md "Cache rule"): min(configured max, Cache-Control max-age, exp - now - skew)."""

from __future__ import annotations

import pytest

from authz.cache import Entry, cache_key, fresh_seconds
from authz.config import CacheConfig
from authz.models import Introspection

NOW = 1_700_000_000.0
CONFIG = CacheConfig(max_ttl_seconds=300.0, expiry_skew_seconds=5.0, stale_if_error_seconds=60.0)


def _answer(exp: object = None, max_age: int | None = None, **claims: object) -> Introspection:
    if exp is not None:
        claims["exp"] = exp
    return Introspection(active=True, jwt="header.payload.sig", claims=claims, max_age=max_age)


@pytest.mark.parametrize(
    ("exp_in", "max_age", "expected"),
    [
        (None, None, 300.0),  # configured max only
        (10_000, None, 300.0),  # far exp: configured max wins
        (None, 30, 30.0),  # max-age shorter than configured max
        (None, 3_600, 300.0),  # max-age longer: configured max wins
        (65, None, 60.0),  # exp - now - skew
        (65, 30, 30.0),
        (65, 100, 60.0),
        (20, 10, 10.0),
    ],
)
def test_fresh_seconds_is_the_minimum_of_the_three_bounds(exp_in: int | None, max_age: int | None,
                                                          expected: float) -> None:
    exp = None if exp_in is None else NOW + exp_in
    assert fresh_seconds(_answer(exp, max_age), NOW, CONFIG) == pytest.approx(expected)


def test_fresh_seconds_follows_the_clock_toward_exp() -> None:
    answer = _answer(NOW + 100)
    assert fresh_seconds(answer, NOW, CONFIG) == pytest.approx(95.0)
    assert fresh_seconds(answer, NOW + 50, CONFIG) == pytest.approx(45.0)
    assert fresh_seconds(answer, NOW + 95, CONFIG) <= 0
    assert fresh_seconds(answer, NOW + 200, CONFIG) < 0


def test_configured_max_comes_from_the_config() -> None:
    config = CacheConfig(max_ttl_seconds=7.5)
    assert fresh_seconds(_answer(), NOW, config) == pytest.approx(7.5)


@pytest.mark.parametrize("bad_exp", ["1700000100", True, float("nan"), float("inf"), None, [NOW + 100]])
def test_answers_without_a_usable_exp_get_the_other_bounds(bad_exp: object) -> None:
    claims = {} if bad_exp is None else {"exp": bad_exp}
    answer = Introspection(active=True, claims=claims)
    assert fresh_seconds(answer, NOW, CONFIG) == pytest.approx(300.0)
    entry = Entry.build(answer, NOW, 0.0, CONFIG, "abc")
    assert entry is not None
    assert entry.fresh_until == pytest.approx(NOW + 300)
    assert entry.stale_until == pytest.approx(NOW + 360)


def test_entry_build_sets_fresh_and_stale_windows() -> None:
    entry = Entry.build(_answer(NOW + 1_000, sub="alice"), NOW, 0.0, CONFIG, "0123456789ab")
    assert entry is not None
    assert entry.fresh_until == pytest.approx(NOW + 300)
    assert entry.stale_until == pytest.approx(NOW + 360)
    assert entry.subject == "alice"
    assert entry.token_id == "0123456789ab"


@pytest.mark.parametrize(
    ("exp_in", "max_age"),
    [(5, None), (4, None), (-100, None), (None, 0), (1_000, 0)],
)
def test_entry_build_returns_none_when_ttl_is_not_positive(exp_in: int | None, max_age: int | None) -> None:
    exp = None if exp_in is None else NOW + exp_in
    assert Entry.build(_answer(exp, max_age), NOW, 0.0, CONFIG, "abc") is None


def test_zero_configured_max_disables_caching() -> None:
    assert Entry.build(_answer(), NOW, 0.0, CacheConfig.model_construct(max_ttl_seconds=0), "abc") is None


@pytest.mark.parametrize("exp_in", [6, 30, 100, 301, 340, 365, 400, 10_000])
def test_stale_window_never_reaches_past_exp_minus_skew(exp_in: int) -> None:
    exp = NOW + exp_in
    entry = Entry.build(_answer(exp), NOW, 0.0, CONFIG, "abc")
    assert entry is not None
    assert entry.fresh_until <= exp - CONFIG.expiry_skew_seconds
    assert entry.stale_until <= exp - CONFIG.expiry_skew_seconds
    assert entry.stale_until >= entry.fresh_until
    assert entry.stale_until <= entry.fresh_until + CONFIG.stale_if_error_seconds


def test_stale_window_is_cut_at_exp_minus_skew() -> None:
    entry = Entry.build(_answer(NOW + 330), NOW, 0.0, CONFIG, "abc")
    assert entry is not None
    assert entry.fresh_until == pytest.approx(NOW + 300)
    assert entry.stale_until == pytest.approx(NOW + 325)


def test_no_stale_window_when_stale_if_error_is_off() -> None:
    config = CacheConfig(max_ttl_seconds=300.0, stale_if_error_seconds=0.0)
    entry = Entry.build(_answer(), NOW, 0.0, config, "abc")
    assert entry is not None
    assert entry.stale_until == entry.fresh_until


def test_subject_is_kept_only_when_it_is_a_string() -> None:
    entry = Entry.build(_answer(sub=42), NOW, 0.0, CONFIG, "abc")
    assert entry is not None
    assert entry.subject is None


def test_entry_size_grows_with_the_jwt_and_claims() -> None:
    small = Entry.build(Introspection(active=True, jwt="a.b.c", claims={}), NOW, 0.0, CONFIG, "abc")
    big = Entry.build(Introspection(active=True, jwt="a.b.c" + "x" * 5_000, claims={"groups": "g" * 1_000}),
                      NOW, 0.0, CONFIG, "abc")
    assert small is not None and big is not None
    assert big.size() >= small.size() + 6_000


def test_cache_key_is_a_hash_of_authority_and_token() -> None:
    key = cache_key("as-1", "secret-opaque-token")
    assert len(key) == 64
    assert all(c in "0123456789abcdef" for c in key)
    assert "secret-opaque-token" not in key
    assert key == cache_key("as-1", "secret-opaque-token")
    assert key != cache_key("as-2", "secret-opaque-token")
    assert key != cache_key("as-1", "other-token")
