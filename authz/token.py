"""Stage 4a: verify a JWT the AS handed back (the phantom JWT, an RFC 7662 ``jwt`` field, an RFC 9701 response).

Only the AS's own keys are trusted: the ``alg`` must be on the AS's allow-list (asymmetric only: never ``none``,
never HS*, so a public key can never double as an HMAC secret), the key is found by ``kid`` in the AS's JWKS, and
the signature must verify. Any failure here is the AS's (or our configuration's) fault: 502, not 401.
Claim checks (time, issuer, audience) are ``authz.claims``'s job.
"""

from __future__ import annotations

from typing import Any, Protocol

import jwt as pyjwt

from authz.errors import UpstreamMisbehaved

__all__ = ["JwtVerifier", "KeySource"]


class KeySource(Protocol):
    """The AS's keys (``authz.introspection.jwks.KeySet``)."""

    @property
    def name(self) -> str: ...

    async def key(self, kid: str | None) -> pyjwt.PyJWK: ...


class JwtVerifier:
    def __init__(self, keys: KeySource, algorithms: tuple[str, ...]) -> None:
        self._keys = keys
        self._algorithms = frozenset(algorithms)

    async def verify(self, token: str, expected_typ: str | None = None) -> dict[str, Any]:
        """Return the JWT's claims once its signature verifies with the AS's key."""
        name = self._keys.name
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError as exc:
            raise UpstreamMisbehaved(f"AS {name}: returned JWT does not decode ({exc})") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise UpstreamMisbehaved(f"AS {name}: JWT alg {str(alg)[:20]!r} is not on the allow-list")
        if expected_typ is not None and str(header.get("typ", "")).lower() not in (
            expected_typ, f"application/{expected_typ}"
        ):
            raise UpstreamMisbehaved(f"AS {name}: JWT typ {str(header.get('typ'))[:40]!r} is not {expected_typ!r}")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise UpstreamMisbehaved(f"AS {name}: JWT kid is not a string")
        key = await self._keys.key(kid)
        try:
            claims = pyjwt.decode(token, key.key, algorithms=[alg],
                                  options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                           "verify_aud": False, "verify_iss": False})
        except pyjwt.InvalidSignatureError:
            raise UpstreamMisbehaved(f"AS {name}: JWT signature does not verify with kid {kid!r}") from None
        except (pyjwt.PyJWTError, TypeError, ValueError) as exc:  # TypeError: kid names a key of another type
            raise UpstreamMisbehaved(f"AS {name}: JWT does not verify ({type(exc).__name__}: {exc})") from None
        if not isinstance(claims, dict):
            raise UpstreamMisbehaved(f"AS {name}: JWT payload is not a JSON object")
        return claims
