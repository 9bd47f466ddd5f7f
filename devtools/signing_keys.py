"""The dev AS's signing keys: RSA-2048, RS256, ``kid`` = the RFC 7638 JWK thumbprint, all published in the JWKS.

Development only: keys live in memory and a new one is generated at every start (and on ``rotate()``).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["SigningKey", "SigningKeys"]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {"kty": "RSA", "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e), "kid": self.kid,
                "alg": "RS256", "use": "sig"}


class SigningKeys:
    """RSA-2048 signing keys: all are published in the JWKS, the active one signs."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = []
        self.active_index = 0
        self.rotate()

    @property
    def active(self) -> SigningKey:
        return self.keys[self.active_index]

    def rotate(self) -> SigningKey:
        """Add a new key and make it the active one; older keys stay published."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = private_key.public_key().public_numbers()
        # kid: the RFC 7638 thumbprint (SHA-256 of the required members, in lexical order, without whitespace).
        canonical = f'{{"e":"{_b64_uint(numbers.e)}","kty":"RSA","n":"{_b64_uint(numbers.n)}"}}'
        self.keys.append(SigningKey(_b64url(hashlib.sha256(canonical.encode()).digest()), private_key))
        self.active_index = len(self.keys) - 1
        return self.active

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def sign(self, claims: dict[str, Any], typ: str = "at+jwt") -> str:
        """A compact RS256 JWS of ``claims`` by the active key, with header ``kid`` and ``typ``."""
        key = self.active
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": typ})
