"""Stage 4a: verify a JWT the AS handed back (the phantom JWT, an RFC 7662 ``jwt`` field, an RFC 9701 response).

Only the AS's own keys are trusted: the ``alg`` must be on the AS's allow-list (asymmetric only: never ``none``,
never HS*, so a public key can never double as an HMAC secret), the key is found by ``kid`` in the AS's JWKS and
must fit the ``alg`` (its own ``alg``, type and curve: ``authz.verification_keys``), and the signature
must verify. Any failure here is the AS's (or our configuration's) fault: 502, not 401.
Claim checks (time, issuer, audience) are ``authz.claims``'s job.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from typing import Any, Protocol

import jwt as pyjwt

from authz.errors import UpstreamMisbehaved
from authz.verification_keys import VerificationKey

__all__ = ["JwtVerifier", "KeySource"]


class KeySource(Protocol):
    """The AS's keys (``authz.introspection.jwks.KeySet``)."""

    @property
    def name(self) -> str: ...

    async def key(self, kid: str | None, alg: str) -> VerificationKey: ...


class JwtVerifier:
    def __init__(self, keys: KeySource, algorithms: tuple[str, ...]) -> None:
        self._keys = keys
        self._algorithms = frozenset(algorithms)

    async def verify(self, token: str, expected_typ: str | None = None) -> dict[str, Any]:
        """Return the JWT's claims once its signature verifies with the AS's key.

        The compact JWS is split and decoded here (a C regex and binascii) and only the signature check is pyjwt's
        algorithm object: pyjwt's own parser validates base64url character by character in Python, which cost
        ~0.4 ms per token and dominated a cache miss.
        """
        name = self._keys.name
        parts = token.split(".")
        if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
            raise UpstreamMisbehaved(f"AS {name}: returned JWT is not a compact JWS")
        try:
            header = json.loads(_b64decode(parts[0]))
            payload = _b64decode(parts[1])
            signature = _b64decode(parts[2])
        except (ValueError, binascii.Error):
            raise UpstreamMisbehaved(f"AS {name}: returned JWT does not decode") from None
        if not isinstance(header, dict):
            raise UpstreamMisbehaved(f"AS {name}: JWT header is not a JSON object")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise UpstreamMisbehaved(f"AS {name}: JWT alg {str(alg)[:20]!r} is not on the allow-list")
        if expected_typ is not None and str(header.get("typ", "")).lower() not in (
            expected_typ, f"application/{expected_typ}"
        ):
            raise UpstreamMisbehaved(f"AS {name}: JWT typ {str(header.get('typ'))[:40]!r} is not {expected_typ!r}")
        if header.get("crit") is not None:  # RFC 7515 §4.1.11: we understand no extensions
            raise UpstreamMisbehaved(f"AS {name}: JWT carries critical header extensions")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise UpstreamMisbehaved(f"AS {name}: JWT kid is not a string")
        key = await self._keys.key(kid, alg)  # a key that may verify alg (type, curve, its own alg), else 502
        try:
            verified = _algorithm(alg).verify(f"{parts[0]}.{parts[1]}".encode("ascii"), key.key, signature)
        except (pyjwt.PyJWTError, TypeError, ValueError, AttributeError) as exc:
            raise UpstreamMisbehaved(f"AS {name}: JWT does not verify ({type(exc).__name__}: {exc})") from None
        if not verified:
            raise UpstreamMisbehaved(f"AS {name}: JWT signature does not verify with kid {kid!r}")
        try:
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise UpstreamMisbehaved(f"AS {name}: JWT payload is not JSON") from None
        if not isinstance(claims, dict):
            raise UpstreamMisbehaved(f"AS {name}: JWT payload is not a JSON object")
        return claims


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@functools.cache
def _algorithm(name: str) -> Any:
    """pyjwt's algorithm object (``get_algorithm_by_name``); only asymmetric names reach here (allow-list)."""
    return pyjwt.get_algorithm_by_name(name)
