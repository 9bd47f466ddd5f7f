"""Scopes: the RFC 6749 §3.3 grammar (one module for what a token grants and what a route requires), and stage 5,
the all-of check of required scopes (pure; runs on every request, cache hit or not).

    scope       = scope-token *( SP scope-token )
    scope-token = 1*NQCHAR
    NQCHAR      = %x21 / %x23-5B / %x5D-7E

Only SP (0x20) separates scope tokens: a tab, NO-BREAK SPACE, LINE SEPARATOR or any other character outside NQCHAR
is part of a token, and a token holding one grants nothing (it is dropped whole, never split), so a granted
``files:\\u00a0admin`` can never satisfy a route requiring ``admin``. A route's required scopes follow the same
grammar and a violation is a configuration error; ``-`` alone says a route needs a token but no scope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from authz.errors import InsufficientScope

__all__ = ["NO_SCOPES", "SCOPE_TOKEN", "ScopeSyntaxError", "granted_scopes", "require_scopes", "required_scopes"]

SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # scope-token = 1*NQCHAR (use fullmatch)
NO_SCOPES = "-"  # a route's explicit "token needed, no scope"; an empty value is a misconfiguration


class ScopeSyntaxError(ValueError):
    """A route's required scopes do not follow the grammar; the message says what is wrong."""


def granted_scopes(value: str | Iterable[str]) -> frozenset[str]:
    """What a token's ``scope``/``scp`` claim grants: a string is split on SP only, a list is taken element by
    element; a token (or element) that is not exactly one scope-token grants nothing."""
    tokens = value.split(" ") if isinstance(value, str) else value
    return frozenset(t for t in tokens if SCOPE_TOKEN.fullmatch(t))


def required_scopes(value: str | list[str]) -> tuple[str, ...]:
    """A route's required scopes: a space-separated string (``"read write"``, extra SPs tolerated) or a list of
    scope-tokens; ``"-"`` (or ``["-"]``) for none. Raise ``ScopeSyntaxError`` for an empty value or any token outside
    the grammar."""
    tokens = [t for t in value.split(" ") if t] if isinstance(value, str) else list(value)
    if not tokens:
        raise ScopeSyntaxError(f"is empty; write {NO_SCOPES!r} for a route that needs a token but no scope")
    if tokens == [NO_SCOPES]:
        return ()
    for token in tokens:
        if token == NO_SCOPES:
            raise ScopeSyntaxError(f"{NO_SCOPES!r} (no scope) cannot be combined with scopes")
        if not SCOPE_TOKEN.fullmatch(token):
            raise ScopeSyntaxError(f"{token[:100]!r} is not a scope token (RFC 6749 §3.3: printable ASCII except "
                                   "space, '\"' and '\\', separated by single spaces)")
    return tuple(tokens)


def require_scopes(granted: frozenset[str], required: tuple[str, ...]) -> None:
    """Raise ``InsufficientScope`` unless every required scope is granted."""
    if not granted.issuperset(required):  # (one C call on the path of every allow; the generator only on a denial)
        raise InsufficientScope(required, tuple(s for s in required if s not in granted))
