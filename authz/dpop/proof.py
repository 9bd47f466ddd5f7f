"""One DPoP proof JWT (RFC 9449 §4), verified for one request. Pure but for the clock.

The checks of §4.3, each failing with ``InvalidDpopProof(why)`` (reason ``dpop_<why>`` in logs and metrics):

- ``oversized``: longer than ``max_bytes`` (refused before anything is decoded);
- ``malformed``: not three strict base64url segments (no padding, no stray bits), a header or payload that is not a
  JSON object, a ``crit`` header (we understand no extension);
- ``typ``: the header's ``typ`` is not ``dpop+jwt``;
- ``alg``: ``alg`` is not on the allow-list (``none`` and ``HS*`` never are: the configuration takes asymmetric
  algorithms only), or does not fit the key;
- ``jwk`` / ``private_key``: no usable public ``jwk`` in the header (``authz.verification_keys`` rules: key type,
  curve, RSA size, ``use``/``key_ops``; an RSA exponent over 2^32 too), or one carrying private members;
- ``signature``: the signature does not verify with that key (PyJWT's algorithm implementations);
- ``jti``, ``htm``, ``htu``, ``ath``: missing or not the expected value (``ath`` = base64url(SHA-256(token)));
- ``iat``, ``expired``, ``future``: no numeric ``iat``, older than ``max_age``, more than ``leeway`` ahead.

A client signs every proof with one key and the same header, so what the header yields once it has passed every
check (the algorithm, the public key, its thumbprint) is kept in a small bounded table keyed by the header segment's
exact text: a hit skips decoding the header and parsing the key. The signature and the claims are checked on every
request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import Algorithm, get_default_algorithms

from authz.dpop.uri import normalized
from authz.errors import InvalidDpopProof
from authz.numbers import finite_number
from authz.verification_keys import UnusableKey, verification_key

__all__ = ["DPOP_TYP", "Proof", "ProofVerifier", "access_token_hash", "thumbprint"]

DPOP_TYP = "dpop+jwt"
MAX_JTI = 256  # characters; a jti is a random identifier (RFC 9449 §4.2: 96 bits suffice)
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_STRAY_BITS = {2: 0b1111, 3: 0b11}  # segment length % 4 -> bits of the last character that carry no data
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
_MAX_RSA_EXPONENT = 2**32  # larger exponents verify slowly: a CPU lever for anyone who can send a proof
_Header = tuple[Algorithm, Any, str]  # the PyJWT algorithm, the public key, its RFC 7638 thumbprint


@dataclass(frozen=True, slots=True)
class Proof:
    """What a verified proof tells the binding and replay checks."""

    thumbprint: str  # RFC 7638 SHA-256 thumbprint of the proof's jwk, base64url
    jti: str
    iat: float
    nonce: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """``ath``: base64url(SHA-256(the ASCII access token))."""
    return _b64(hashlib.sha256(token.encode("ascii")).digest())


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (its required members, sorted, no whitespace)."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode("utf-8")).digest())


def _segment(segment: str) -> bytes:
    """A strict base64url segment: the alphabet only, no padding, no bits beyond the data."""
    rest = len(segment) % 4
    if rest == 1 or not _SEGMENT.fullmatch(segment):
        raise InvalidDpopProof("malformed", "DPoP proof segment is not base64url")
    if rest and _ALPHABET.index(segment[-1]) & _STRAY_BITS[rest]:
        raise InvalidDpopProof("malformed", "DPoP proof segment is not canonical base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (4 - rest) if rest else segment)
    except (binascii.Error, ValueError):
        raise InvalidDpopProof("malformed", "DPoP proof segment is not base64url") from None


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(_segment(segment))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidDpopProof("malformed", f"DPoP proof {what} is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidDpopProof("malformed", f"DPoP proof {what} is not a JSON object")
    return doc


def _string(claims: Mapping[str, Any], name: str, max_length: int = 8192) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise InvalidDpopProof(name, f"DPoP proof has no usable {name} claim")
    return value


class ProofVerifier:
    """Verifies proofs against one allow-list and one time window; ``clock`` is injectable."""

    def __init__(self, algorithms: tuple[str, ...], max_age_seconds: float, leeway_seconds: float,
                 max_bytes: int, clock: Callable[[], float] = time.time, max_keys: int = 1024) -> None:
        implementations = get_default_algorithms()
        self.algorithms = algorithms
        self._algorithms: dict[str, Algorithm] = {name: implementations[name] for name in algorithms}
        self._max_age = max_age_seconds
        self._leeway = leeway_seconds
        self._max_bytes = max_bytes
        self._clock = clock
        self._headers: dict[str, _Header] = {}  # header segment -> what it yielded once every check passed
        self._max_keys = max_keys

    def verify(self, proof: str, method: str, uri: str, access_token: str) -> Proof:
        """The proof of a request ``method uri`` (``uri`` in ``authz.dpop.uri.normalized`` form) presenting
        ``access_token``; raises ``InvalidDpopProof``. The nonce and the jti's uniqueness are the caller's."""
        if len(proof) > self._max_bytes:
            raise InvalidDpopProof("oversized", f"DPoP proof of {len(proof)} bytes is over {self._max_bytes}")
        parts = proof.split(".")
        if len(parts) != 3:
            raise InvalidDpopProof("malformed", "DPoP proof is not a compact JWS")
        header = self._headers.get(parts[0])
        if header is None:
            header = self._header(parts[0])
            if len(self._headers) >= self._max_keys:
                del self._headers[next(iter(self._headers))]  # the oldest
            self._headers[parts[0]] = header
        algorithm, key, print_ = header
        if not algorithm.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), key, _segment(parts[2])):
            raise InvalidDpopProof("signature", "DPoP proof signature does not verify with its jwk")
        return self._claims(_json_object(parts[1], "payload"), print_, method, uri, access_token)

    def _header(self, segment: str) -> _Header:
        """The algorithm, public key and thumbprint a header names, once it passes every check."""
        header = _json_object(segment, "header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidDpopProof("alg", f"DPoP proof alg {str(alg)[:20]!r} is not one of {' '.join(self.algorithms)}")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() != DPOP_TYP:
            raise InvalidDpopProof("typ", f"DPoP proof typ {str(typ)[:40]!r} is not {DPOP_TYP!r}")
        if "crit" in header:
            raise InvalidDpopProof("malformed", "DPoP proof carries critical header extensions")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise InvalidDpopProof("jwk", "DPoP proof header has no jwk object")
        if _PRIVATE_MEMBERS.intersection(jwk):
            raise InvalidDpopProof("private_key", "DPoP proof jwk carries private key members")
        try:
            key = verification_key(jwk)
        except UnusableKey as exc:
            raise InvalidDpopProof("jwk", f"DPoP proof jwk is not a verification key: {exc}") from None
        if isinstance(key.key, rsa.RSAPublicKey) and key.key.public_numbers().e > _MAX_RSA_EXPONENT:
            raise InvalidDpopProof("jwk", "DPoP proof jwk has an RSA exponent over 2^32")
        if alg not in key.algorithms:
            raise InvalidDpopProof("alg", f"DPoP proof alg {alg} does not fit its {key.kty} jwk")
        return self._algorithms[alg], key.key, thumbprint(jwk)

    def _claims(self, claims: Mapping[str, Any], print_: str, method: str, uri: str, token: str) -> Proof:
        jti = _string(claims, "jti", MAX_JTI)
        if _string(claims, "htm", 64) != method:
            raise InvalidDpopProof("htm", f"DPoP proof htm is not the request's method {method}")
        htu = _string(claims, "htu")
        if htu != uri and normalized(htu) != uri:  # most clients send it in normal form already
            raise InvalidDpopProof("htu", f"DPoP proof htu is not the request's URI {uri[:200]}")
        iat = finite_number(claims.get("iat"))
        if iat is None:
            raise InvalidDpopProof("iat", "DPoP proof has no numeric iat")
        now = self._clock()
        if iat < now - self._max_age:
            raise InvalidDpopProof("expired", f"DPoP proof iat is {now - iat:.0f}s old (max {self._max_age:g}s)")
        if iat > now + self._leeway:
            raise InvalidDpopProof("future", f"DPoP proof iat is {iat - now:.0f}s ahead (leeway {self._leeway:g}s)")
        if _string(claims, "ath", 128) != access_token_hash(token):
            raise InvalidDpopProof("ath", "DPoP proof ath is not the hash of the presented access token")
        nonce = claims.get("nonce")
        if nonce is not None and not isinstance(nonce, str):
            raise InvalidDpopProof("nonce", "DPoP proof nonce is not a string")
        return Proof(print_, jti, iat, nonce)
