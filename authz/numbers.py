"""The one rule for numeric JSON claims (``exp``, ``nbf``, ``iat``): a real int or float, finite, within float range.

``true`` is not a number here, NaN and infinities are not, and an integer too large for a float is not (comparing
it would raise ``OverflowError``). Callers decide what "not a number" means for them.
"""

from __future__ import annotations

import math

__all__ = ["finite_number"]


def finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
