"""Server-provided DPoP nonces (RFC 9449 §8-9) that need no shared state.

A nonce names a time window (``lifetime`` seconds long) and authenticates it: base64url(window as 8 bytes ||
the first 16 bytes of HMAC-SHA256(key, label || window)), the key derived from the configured secret. Every worker
and pod holding that secret issues the same nonce in a window and accepts it in that window and the next, so a
client's nonce lives between one and two lifetimes whichever replica it reaches. A forged, altered or older nonce
is refused; the server then answers ``use_dpop_nonce`` with the current one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

__all__ = ["NonceSource"]

_LABEL = b"phantom-authz dpop nonce v1:"
_TAG_BYTES = 16
_NONCE_CHARS = 32  # base64url of 8 + 16 bytes


class NonceSource:
    def __init__(self, secret: str, lifetime_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(_LABEL + secret.encode("utf-8")).digest()
        self._lifetime = lifetime_seconds
        self._clock = clock
        self._issued: tuple[int, str] = (-1, "")  # the current window's nonce, made once per window

    def _window(self) -> int:
        return int(self._clock() // self._lifetime)

    def _nonce(self, window: int) -> str:
        packed = window.to_bytes(8, "big", signed=True)
        tag = hmac.new(self._key, _LABEL + packed, hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(packed + tag).decode("ascii")

    def current(self) -> str:
        """The nonce to hand out now."""
        window = self._window()
        if self._issued[0] != window:
            self._issued = (window, self._nonce(window))
        return self._issued[1]

    def accepts(self, nonce: str) -> bool:
        """Whether ``nonce`` is one we issued in this window or the previous one."""
        if len(nonce) != _NONCE_CHARS:
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return False
        window = int.from_bytes(raw[:8], "big", signed=True)
        if window not in (self._window(), self._window() - 1):
            return False
        return hmac.compare_digest(self._nonce(window), nonce)
