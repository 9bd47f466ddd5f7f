"""Stage 4: turn the AS's JWT into an ``Identity`` and check its time claims.

The spine reads the JWT the AS returned over the introspection channel (as Curity's gateway plugins do); the
signature, ``iss`` and ``aud`` checks against the AS's JWKS come with the verification stage. A JWT whose structure
or claim types are not what an access token must have is the AS's fault (502); an expired one is the client's (401).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt as pyjwt

from authz.errors import InvalidToken, UpstreamMisbehaved
from authz.models import Identity

__all__ = ["IdentityReader", "scopes_of"]


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The ``scope`` claim as a set: a space-separated string (RFC 9068) or a list of strings."""
    scope = claims.get("scope", claims.get("scp"))
    if scope is None:
        return frozenset()
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        return frozenset(scope)
    raise UpstreamMisbehaved("JWT scope claim is neither a string nor a list of strings")


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UpstreamMisbehaved(f"JWT {name} claim is not a finite number")
    return float(value)


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None or isinstance(value, str):
        return value
    raise UpstreamMisbehaved(f"JWT {name} claim is not a string")


class IdentityReader:
    def __init__(self, skew_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._skew = skew_seconds
        self._clock = clock

    def read(self, jwt: str, as_name: str) -> Identity:
        try:
            claims = pyjwt.decode(jwt, options={"verify_signature": False})
        except pyjwt.PyJWTError as exc:
            raise UpstreamMisbehaved(f"AS {as_name}: returned JWT does not decode ({exc})") from None
        return self.identity(jwt, claims)

    def identity(self, jwt: str, claims: Mapping[str, Any]) -> Identity:
        now = self._clock()
        exp = _number(claims, "exp")
        if exp is not None and exp <= now - self._skew:
            raise InvalidToken("token expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + self._skew:
            raise InvalidToken("token not yet valid")
        return Identity(
            jwt=jwt,
            claims=claims,
            scopes=scopes_of(claims),
            subject=_string(claims, "sub"),
            client_id=_string(claims, "client_id"),
            expires_at=exp,
        )
