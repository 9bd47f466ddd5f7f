"""The ``rfc9701`` dialect: ``Accept: application/token-introspection+jwt``; the answer is a JWT signed by the AS.

The response JWT is verified before anything in it is believed: signature with the AS's JWKS (alg allow-list),
``typ`` ``token-introspection+jwt``, ``iss`` = the AS issuer, ``aud`` = our client id, ``iat`` present and not in
the future. Its ``token_introspection`` claim is the RFC 7662 answer. There is no access-token JWT to forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from authz.config import AuthorizationServerConfig
from authz.errors import UpstreamMisbehaved
from authz.introspection.client import AuthorizationServerClient
from authz.introspection.rfc7662 import claims_from_answer
from authz.models import Introspection
from authz.numbers import finite_number
from authz.token import JwtVerifier

__all__ = ["Rfc9701Introspector"]

MEDIA_TYPE = "application/token-introspection+jwt"


class Rfc9701Introspector:
    dialect = "rfc9701"

    def __init__(self, client: AuthorizationServerClient, verifier: JwtVerifier, config: AuthorizationServerConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self._verifier = verifier
        self._issuer = config.issuer
        self._client_id = config.client_id
        self._leeway = config.leeway_seconds
        self._clock = clock

    async def introspect(self, token: str) -> Introspection:
        name = self.client.name
        resp = await self.client.introspect(token, MEDIA_TYPE)
        if resp.status != 200:
            raise UpstreamMisbehaved(f"AS {name}: rfc9701 introspection answered HTTP {resp.status}, not 200")
        if resp.content_type != MEDIA_TYPE:
            raise UpstreamMisbehaved(f"AS {name}: expected {MEDIA_TYPE}, got {resp.content_type or 'none'!r}")
        try:
            jwt = resp.body.decode("ascii").strip()
        except UnicodeDecodeError:
            raise UpstreamMisbehaved(f"AS {name}: introspection JWT is not ASCII") from None
        claims = await self._verifier.verify(jwt, expected_typ="token-introspection+jwt")
        self._check_envelope(claims)
        answer = claims.get("token_introspection")
        if not isinstance(answer, dict):
            raise UpstreamMisbehaved(f"AS {name}: introspection JWT has no token_introspection object")
        return claims_from_answer(answer, name, resp.max_age)

    def _check_envelope(self, claims: dict[str, Any]) -> None:
        name = self.client.name
        if claims.get("iss") != self._issuer:
            raise UpstreamMisbehaved(f"AS {name}: introspection JWT iss {str(claims.get('iss'))[:100]!r} is not ours")
        aud = claims.get("aud")
        if not (aud == self._client_id or (isinstance(aud, list) and self._client_id in aud)):
            raise UpstreamMisbehaved(f"AS {name}: introspection JWT aud is not our client id")
        iat = finite_number(claims.get("iat"))
        if iat is None:  # also an iat of 10**400, which used to overflow into a 500
            raise UpstreamMisbehaved(f"AS {name}: introspection JWT has no numeric iat")
        if iat > self._clock() + self._leeway:
            raise UpstreamMisbehaved(f"AS {name}: introspection JWT iat lies in the future")
