"""Stage 2: the bearer credential, by RFC 6750 §2.1 (and RFC 9449 §7.1's ``DPoP`` scheme on routes taking DPoP).
Pure: no I/O.

``credentials = "Bearer" 1*SP b64token`` where ``b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
*"="`` (``DPoP 1*SP token68``: the same characters). The scheme is case-insensitive. No header, or a scheme the route
does not take, is a missing credential (401 without an error code); everything else that is wrong is a malformed
request (400 ``invalid_request``).
"""

from __future__ import annotations

import re

from authz.errors import MalformedCredential, MissingCredential

__all__ = ["BEARER", "DPOP", "access_token", "bearer_token", "token_as_presented"]

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
BEARER, DPOP = "bearer", "dpop"  # schemes, lower-cased
_BEARER_ONLY = frozenset({BEARER})


def bearer_token(authorization: tuple[str, ...], max_length: int) -> str:
    """Return the token, or raise ``MissingCredential`` / ``MalformedCredential``."""
    return access_token(authorization, max_length, _BEARER_ONLY)[1]


def access_token(authorization: tuple[str, ...], max_length: int, schemes: frozenset[str]) -> tuple[str, str]:
    """Return (the scheme, lower-cased, the token) for a credential in one of ``schemes``; raise
    ``MissingCredential`` (no header, another scheme) or ``MalformedCredential``."""
    if not authorization:
        raise MissingCredential("no Authorization header")
    if len(authorization) > 1:
        raise MalformedCredential("several Authorization headers")
    value = authorization[0]
    if len(value) > max_length + 16:
        raise MalformedCredential("Authorization header exceeds the size limit")
    scheme, _, rest = value.partition(" ")
    scheme = scheme.lower()
    if scheme not in schemes:
        raise MissingCredential("Authorization header is not a Bearer credential" if schemes is _BEARER_ONLY
                                else f"Authorization header is not a {' or '.join(sorted(schemes))} credential")
    token = rest.lstrip(" ")
    if not token:
        raise MalformedCredential("empty bearer token")
    if len(token) > max_length:
        raise MalformedCredential("bearer token exceeds the size limit")
    if " " in token or "," in token:
        raise MalformedCredential("more than one bearer token")
    if not _B64TOKEN.fullmatch(token):
        raise MalformedCredential("bearer token has characters outside RFC 6750 b64token")
    return scheme, token


def token_as_presented(text: str) -> str:
    """The token a request carries when it presents ``text``: the token alone, or an ``Authorization`` value in the
    ``Bearer`` or ``DPoP`` scheme, surrounding whitespace (a line's CR LF) ignored, as the request path reads it. So
    an eviction (``authz admin evict-token``) names the very token a request presents, hence the same cache key.
    Raises ``MalformedCredential`` for what no request could present as a token."""
    value = text.strip()
    scheme, space, rest = value.partition(" ")
    if space and scheme.lower() in (BEARER, DPOP):
        value = rest.lstrip(" ")
    elif value.lower() in (BEARER, DPOP):  # a scheme and no token ("Bearer " read from a line)
        value = ""
    if not value:
        raise MalformedCredential("empty token")
    if not _B64TOKEN.fullmatch(value):
        raise MalformedCredential("not one token: a scheme other than Bearer or DPoP, several words, or characters "
                                  "outside RFC 6750 b64token")
    return value
