"""L2 values sealed so that only the gateway, for one token, can read them or write one Redis will serve for it.

- The Redis key is the lookup key (``cache_key``: SHA-256 of a "lookup" tag, the AS identity and the token).
- The value key is HKDF-SHA256 of the token (salt: a hash of the AS identity and the gateway's own credential at that
  AS — its client secret or private key, which every sidecar of one deployment shares and a Redis writer does not
  have; info: ``l2-value``): another function of the token, so a Redis reader who has the lookup key learns nothing
  about the value key, and a Redis writer cannot seal a value for any token string, issued or made up.
- The value is ``0x02 ‖ 12-byte random nonce ‖ AES-256-GCM(JSON answer)``, with the full Redis key name as
  associated data: a value copied under another key (another token, another AS, another prefix) fails
  authentication. A Redis writer without the token can neither read an answer nor write one we accept.

Anything that does not open, or opens to a document of the wrong shape, is ``None`` (a miss).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authz.models import Introspection

__all__ = ["Sealed", "ValueKey"]

VERSION = 2
_VERSION_BYTE = bytes([VERSION])
_NONCE_BYTES = 12
_TAG_BYTES = 16
_INFO = b"phantom-authz l2-value v2"


@dataclass(frozen=True, slots=True)
class Sealed:
    """What a sealed value holds: the answer, when the writer's TTL ends, and when its AS call started."""

    answer: Introspection
    until: float
    asked_at: float


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def _parse(plain: bytes) -> Sealed | None:
    try:
        doc = json.loads(plain)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("active"), bool):
        return None
    jwt, claims = doc.get("jwt"), doc.get("claims")
    until, asked_at = _number(doc.get("until")), _number(doc.get("asked_at"))
    if (jwt is not None and not isinstance(jwt, str)) or not isinstance(claims, dict):
        return None
    if until is None or asked_at is None:  # without its deadline an answer could outlive the AS's max-age
        return None
    answer = Introspection(active=True, jwt=jwt, claims=claims) if doc["active"] else Introspection(active=False)
    return Sealed(answer, until, asked_at)


class ValueKey:
    """The AEAD key of one (AS, token) pair. Built on an L1 miss only, never on the hit path."""

    __slots__ = ("_aead",)

    def __init__(self, authority_id: str, token: str, *, secret: bytes) -> None:
        """``secret``: the gateway's credential at the AS (``Authority.sealing_secret``); never empty."""
        if not secret:
            raise ValueError("an L2 value key needs the gateway's secret")
        salt = hashlib.sha256(b"phantom-authz l2-value\0" + authority_id.encode("utf-8", "surrogatepass") + b"\0"
                              + hashlib.sha256(secret).digest()).digest()
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(
            token.encode("utf-8", "surrogatepass"))
        self._aead = AESGCM(key)

    def seal(self, name: str, answer: Introspection, until: float, asked_at: float) -> bytes:
        doc = {"active": answer.active, "jwt": answer.jwt, "claims": dict(answer.claims), "until": until,
               "asked_at": asked_at}
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(doc, separators=(",", ":")).encode()
        return _VERSION_BYTE + nonce + self._aead.encrypt(nonce, plain, name.encode())

    def open(self, name: str, raw: Any) -> Sealed | None:
        """The answer sealed under ``name``, or None for anything else (other version, other key, forged, cut)."""
        if not isinstance(raw, bytes) or len(raw) < 1 + _NONCE_BYTES + _TAG_BYTES or raw[:1] != _VERSION_BYTE:
            return None
        nonce, box = raw[1:1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES:]
        try:
            plain = self._aead.decrypt(nonce, box, name.encode())
        except InvalidTag:
            return None
        return _parse(plain)
