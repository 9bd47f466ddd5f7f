"""The numeric-claim rule shared by the claims check, the cache's TTL and the RFC 9701 envelope."""

from __future__ import annotations

import math

import pytest

from authz.numbers import finite_number


@pytest.mark.parametrize("value", [True, False, "1", None, [1], math.nan, math.inf, -math.inf, 10**400])
def test_refuses_what_is_not_a_finite_real(value: object) -> None:
    assert finite_number(value) is None


@pytest.mark.parametrize(("value", "number"), [(0, 0.0), (1_700_000_000, 1.7e9), (2.5, 2.5), (-3, -3.0)])
def test_accepts_ints_and_floats(value: object, number: float) -> None:
    assert finite_number(value) == number
