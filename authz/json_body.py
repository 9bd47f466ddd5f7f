"""The one parse-or-raise for a JSON object another party sent us: an AS's introspection answer, its JWKS and
metadata, a JWT's payload, OPA's answer.

``parse_json_object(body, what, error)`` returns the object, or raises ``error(f"{what} is not JSON")`` /
``error(f"{what} is not a JSON object")``: the caller picks the error type (and so the status) and names the body.
Nesting too deep for the decoder is "not JSON" too, never a ``RecursionError`` that would surface as a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["parse_json_object"]


def parse_json_object(body: bytes | str, what: str, error: Callable[[str], Exception]) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # JSONDecodeError is a ValueError
        raise error(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise error(f"{what} is not a JSON object")
    return doc
