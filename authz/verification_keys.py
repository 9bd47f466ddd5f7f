"""Which JWKS entries may verify which JWS algorithms (RFC 7517 §4, RFC 7518 §3, RFC 8037).

A key is usable only when everything it says about itself allows signature verification: ``use`` (when present)
is ``sig``, ``key_ops`` (when present) holds ``verify``, it carries no private part, its ``kty`` and curve are ones
we verify with, an RSA modulus has at least 2048 bits, and its ``alg`` (when present) is an asymmetric JWS
algorithm that fits the key. A usable key then verifies only the algorithms that fit it:

- ``RSA``: RS256/384/512 and PS256/384/512 (or only its ``alg``);
- ``EC``: ES256 on P-256, ES384 on P-384, ES512 on P-521;
- ``OKP``: EdDSA on Ed25519 or Ed448.

Anything else (``oct``, ``secp256k1``, ``X25519``, an encryption key, a 1024-bit RSA key) is never a verification
key, so it can neither verify a JWS nor crash a verifier that expected another key type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

__all__ = ["MIN_RSA_BITS", "UnusableKey", "VerificationKey", "verification_key"]

MIN_RSA_BITS = 2048
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class UnusableKey(ValueError):
    """Why a JWK is not a verification key (the message names no key material)."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str | None
    kty: str
    algorithms: frozenset[str]  # the JWS algorithms this key may verify
    key: Any  # a cryptography public key object


def verification_key(raw: Mapping[str, Any]) -> VerificationKey:
    """The verification key a JWK describes; raises ``UnusableKey`` saying why it is none."""
    use = raw.get("use")
    if use is not None and use != "sig":
        raise UnusableKey(f"use is {str(use)[:20]!r}, not 'sig'")
    ops = raw.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey("key_ops does not include 'verify'")
    if any(member in raw for member in _PRIVATE_MEMBERS):
        raise UnusableKey("it carries private key members")
    kty = raw.get("kty")
    crv = raw.get("crv")
    if kty == "RSA":
        fits = _RSA_ALGS
    elif kty == "EC" and crv in _EC_ALGS:
        fits = frozenset({_EC_ALGS[crv]})
    elif kty == "OKP" and crv in _OKP_CURVES:
        fits = frozenset({"EdDSA"})
    else:
        raise UnusableKey(f"kty {str(kty)[:10]!r} crv {str(crv)[:12]!r} is not a JWS verification key type")
    alg = raw.get("alg")
    if alg is not None:
        if alg not in fits:
            raise UnusableKey(f"alg {str(alg)[:20]!r} does not fit a {kty} key{f' on {crv}' if crv else ''}")
        fits = frozenset({alg})
    key = _public_key(kty, raw)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise UnusableKey(f"RSA modulus of {key.key_size} bits is below {MIN_RSA_BITS}")
    kid = raw.get("kid")
    return VerificationKey(kid if isinstance(kid, str) else None, kty, fits, key)


def _public_key(kty: str, raw: Mapping[str, Any]) -> Any:
    parse = {"RSA": RSAAlgorithm.from_jwk, "EC": ECAlgorithm.from_jwk, "OKP": OKPAlgorithm.from_jwk}[kty]
    try:
        key = parse(dict(raw))
    except (InvalidKeyError, ValueError, TypeError, KeyError):
        raise UnusableKey(f"its {kty} parameters do not make a public key") from None
    expected = {"RSA": (rsa.RSAPublicKey,), "EC": (ec.EllipticCurvePublicKey,),
                "OKP": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)}[kty]
    if not isinstance(key, expected):
        raise UnusableKey(f"its {kty} parameters do not make a public key")
    return key
