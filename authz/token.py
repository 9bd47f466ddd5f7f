"""Stage 4a: verify a JWT the AS handed back (the phantom JWT, an RFC 7662 ``jwt`` field, an RFC 9701 response).

Only the AS's own keys are trusted: the ``alg`` must be on the AS's allow-list (asymmetric only: never ``none``,
never HS*, so a public key can never double as an HMAC secret), the key is found by ``kid`` in the AS's JWKS and
must fit the ``alg`` (its own ``alg``, type and curve: ``authz.verification_keys``), and the signature
must verify. Any failure here is the AS's (or our configuration's) fault: 502, not 401.
Claim checks (time, issuer, audience) are ``authz.claims``'s job.

PyJWT parses the compact JWS (strict base64url, a JSON-object header) and verifies the signature with the key
from the AS's JWKS. Our own header checks come between its reading of the header and the key lookup: ``alg`` on
the allow-list, ``typ`` when the caller expects one, no ``crit`` (we understand no extension, not even PyJWT's
``b64``), a string ``kid``. Cost on a cache miss: ~60 µs for a 1 kB RS256 JWT, of which ~25 µs is the RSA check.
"""

from __future__ import annotations

from typing import Any, Protocol

import jwt as pyjwt
from jwt.api_jws import PyJWS

from authz.errors import UpstreamMisbehaved
from authz.json_body import parse_json_object
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
        # PyJWT knows only the allow-list (a second line behind ours) and refuses a key below its minimum length
        self._jws = PyJWS(algorithms=sorted(self._algorithms), options={"enforce_minimum_key_length": True})

    async def verify(self, token: str, expected_typ: str | None = None) -> dict[str, Any]:
        """Return the JWT's claims once its signature verifies with the AS's key."""
        name = self._keys.name
        if token.count(".") != 2:
            raise UpstreamMisbehaved(f"AS {name}: returned JWT is not a compact JWS")
        try:  # the header alone (header segment + two empty ones): the payload is read once, by decode below
            header = self._jws.get_unverified_header(token.partition(".")[0] + "..")
        except pyjwt.DecodeError as exc:  # bad base64url, a header that is not a JSON object
            raise UpstreamMisbehaved(f"AS {name}: returned JWT does not decode ({str(exc)[:100]})") from None
        except pyjwt.InvalidTokenError as exc:  # PyJWT's own header rules (kid, crit)
            raise UpstreamMisbehaved(f"AS {name}: JWT header is refused ({str(exc)[:100]})") from None
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
            payload = self._jws.decode(token, key.key, algorithms=[alg])
        except pyjwt.InvalidSignatureError:  # before DecodeError, its base class
            raise UpstreamMisbehaved(f"AS {name}: JWT signature does not verify with kid {kid!r}") from None
        except pyjwt.DecodeError as exc:  # the payload or signature segment is not base64url
            raise UpstreamMisbehaved(f"AS {name}: returned JWT does not decode ({str(exc)[:100]})") from None
        except (pyjwt.PyJWTError, TypeError, ValueError) as exc:
            raise UpstreamMisbehaved(f"AS {name}: JWT does not verify ({type(exc).__name__}: {exc})") from None
        return parse_json_object(payload, f"AS {name}: JWT payload", UpstreamMisbehaved)
