"""Stage 2: the bearer credential, by RFC 6750 §2.1. Pure: no I/O.

``credentials = "Bearer" 1*SP b64token`` where ``b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
*"="``. The scheme is case-insensitive. No header, or another scheme, is a missing credential (401 without an error
code); everything else that is wrong is a malformed request (400 ``invalid_request``).
"""

from __future__ import annotations

import re

from authz.errors import MalformedCredential, MissingCredential

__all__ = ["bearer_token"]

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_token(authorization: tuple[str, ...], max_length: int) -> str:
    """Return the token, or raise ``MissingCredential`` / ``MalformedCredential``."""
    if not authorization:
        raise MissingCredential("no Authorization header")
    if len(authorization) > 1:
        raise MalformedCredential("several Authorization headers")
    value = authorization[0]
    if len(value) > max_length + 16:
        raise MalformedCredential("Authorization header exceeds the size limit")
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        raise MissingCredential("Authorization header is not a Bearer credential")
    token = rest.lstrip(" ")
    if not token:
        raise MalformedCredential("empty bearer token")
    if len(token) > max_length:
        raise MalformedCredential("bearer token exceeds the size limit")
    if " " in token or "," in token:
        raise MalformedCredential("more than one bearer token")
    if not _B64TOKEN.fullmatch(token):
        raise MalformedCredential("bearer token has characters outside RFC 6750 b64token")
    return token
