"""OPA's ``io.jwt`` built-ins for the embedded engine (regorus lacks them), with OPA's documented semantics.

- ``io.jwt.decode(jwt)`` -> ``[header, payload, signature_hex]``; a malformed token is an evaluation error.
- ``io.jwt.decode_verify(jwt, constraints)`` -> ``[valid, header, payload]``; ``constraints`` may hold ``cert``
  (a PEM public key/certificate or a JWKS as JSON), ``alg``, ``iss``, ``aud`` and ``time`` (nanoseconds). Without
  ``cert``, the key comes from the keys phantom-authz already holds for its authorization servers.
- ``io.jwt.verify_rs256/ps256/es256(jwt, cert)`` -> boolean.
``none`` and HMAC algorithms are never accepted here (no ``secret`` support): policies run against tokens the AS signed.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_pem_x509_certificate

from authz.json_body import parse_json_object
from authz.verification_keys import UnusableKey, verification_key

__all__ = ["JwtBuiltins", "KeyLookup"]

KeyLookup = Callable[[str | None, str], Any]  # (kid, alg) -> a public key object that may verify alg, or None
_ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def _b64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _public_keys(cert: str, alg: str) -> list[Any]:
    """The keys in ``cert`` that may verify ``alg``: a JWKS's keys by the rules of ``authz.verification_keys``
    (type, curve, ``alg``, ``use``, ``key_ops``, RSA size), or the key of a PEM key or certificate."""
    text = cert.strip()
    if text.startswith("{"):
        jwks = parse_json_object(text, "io.jwt cert (JWKS)", ValueError)  # ValueError: the token does not verify
        keys = jwks.get("keys", [jwks])
        found = []
        for k in keys:
            if not isinstance(k, dict):
                continue
            try:
                key = verification_key(k)
            except UnusableKey:
                continue  # one key we cannot use (an encryption key, an unknown curve) must not spoil the set
            if alg in key.algorithms:
                found.append(key.key)
        return found
    if "BEGIN CERTIFICATE" in text:
        return [load_pem_x509_certificate(text.encode()).public_key()]
    return [serialization.load_pem_public_key(text.encode())]


class JwtBuiltins:
    def __init__(self, key_lookup: KeyLookup | None = None, clock: Callable[[], float] = time.time) -> None:
        self._lookup = key_lookup
        self._clock = clock

    def register(self, engine: Any) -> None:
        engine.add_extension("io.jwt.decode", 1, self.decode)
        engine.add_extension("io.jwt.decode_verify", 2, self.decode_verify)
        for alg in ("RS256", "PS256", "ES256", "RS384", "ES384", "RS512", "PS384", "PS512", "ES512"):
            engine.add_extension(f"io.jwt.verify_{alg.lower()}", 2,
                                 lambda token, cert, alg=alg: self._verifies(token, cert, alg))

    def decode(self, token: str) -> list[Any]:
        header_b64, payload_b64, signature_b64 = str(token).split(".")
        signature = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
        return [_b64json(header_b64), _b64json(payload_b64), signature.hex()]

    def _keys(self, token: str, cert: str | None, alg: str) -> list[Any]:
        if cert:
            return _public_keys(cert, alg)
        if self._lookup is None:
            return []
        kid = pyjwt.get_unverified_header(token).get("kid")
        key = self._lookup(kid if isinstance(kid, str) else None, alg)
        return [] if key is None else [key]

    def _verifies(self, token: str, cert: str | None, alg: str) -> bool:
        try:
            if pyjwt.get_unverified_header(token).get("alg") != alg:
                return False
            for key in self._keys(token, cert, alg):
                try:
                    pyjwt.decode(token, key, algorithms=[alg], options={"verify_aud": False, "verify_exp": False,
                                                                          "verify_nbf": False, "verify_iat": False})
                    return True
                except (pyjwt.PyJWTError, TypeError, ValueError):
                    continue
        except (pyjwt.PyJWTError, TypeError, ValueError):
            return False
        return False

    def decode_verify(self, token: str, constraints: dict[str, Any]) -> list[Any]:
        invalid: list[Any] = [False, {}, {}]
        try:
            header, payload, _ = self.decode(token)
        except (ValueError, TypeError):
            return invalid
        alg = header.get("alg")
        if alg not in _ASYMMETRIC or (constraints.get("alg") not in (None, alg)):
            return invalid
        if not self._verifies(token, constraints.get("cert"), alg):
            return invalid
        now = float(constraints["time"]) / 1e9 if "time" in constraints else self._clock()
        if isinstance(payload.get("exp"), (int, float)) and now >= payload["exp"]:
            return invalid
        if isinstance(payload.get("nbf"), (int, float)) and now < payload["nbf"]:
            return invalid
        if "iss" in constraints and payload.get("iss") != constraints["iss"]:
            return invalid
        aud = payload.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if "aud" in constraints:
            if constraints["aud"] not in auds:
                return invalid
        elif auds:  # OPA: a token with an audience is invalid unless the constraints name one of them
            return invalid
        return [True, header, payload]
