"""Acknowledged evictions: how a sender learns that every listener *applied* a message, not only that Redis wrote it
to their connections (``PUBLISH``'s count, which a foreign subscriber also inflates).

- The sender frames each message with a fresh nonce, ``ack <16 hex> <payload>``; listeners get the payload as it was.
- A listener, once its ``received(payload)`` has returned, pushes its listener id onto ``<prefix>:acks:<nonce>``
  (``RPUSH``, then ``PEXPIRE`` so an ack nobody collects goes away): one key, so any topology, a Cluster's too.
- The sender pops ids off that list (``BLPOP``) until every listener it expected is among them — by id: a foreign
  subscriber, a listener that registered since, or an id twice counts for nothing — or its bound runs out.
- A message without the frame (an older sidecar's, during a rolling upgrade) is delivered all the same but cannot be
  acknowledged; an older listener acknowledges nothing, so a newer sender answers "retry" until every listener is
  upgraded.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

__all__ = ["acknowledge", "collect_acks", "frame", "new_nonce", "unframe"]

_FRAME = re.compile(rb"ack ([0-9a-f]{16}) ")
_SHORTEST_BLOCK = 0.01  # seconds: BLPOP rounds its timeout to ms, and 0 would block for ever


def new_nonce() -> str:
    return secrets.token_hex(8)


def frame(nonce: str, payload: bytes) -> bytes:
    return b"ack " + nonce.encode() + b" " + payload


def unframe(raw: Any) -> tuple[str | None, Any]:
    """``(nonce, payload)`` of a framed message; ``(None, raw)`` for one without the frame (an older sender's)."""
    if isinstance(raw, bytes) and (match := _FRAME.match(raw)) is not None:
        return match.group(1).decode(), raw[match.end():]
    return None, raw


async def acknowledge(client: Any, key: str, listener_id: str, keep_seconds: float) -> None:
    """Say that ``listener_id`` applied the message whose acks go to ``key``; raises what Redis raises."""
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, listener_id)
    pipe.pexpire(key, max(1, int(keep_seconds * 1000)))
    await pipe.execute()


async def collect_acks(client: Any, key: str, expected: set[str], seconds: float) -> set[str]:
    """Pop acks off ``key`` (``client`` must allow reads that block ``seconds``) until every id in ``expected`` is
    among them or ``seconds`` have passed; returns the ids still missing."""
    missing = set(expected)
    deadline = time.monotonic() + seconds
    while missing:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        popped = await client.blpop([key], timeout=round(max(_SHORTEST_BLOCK, left), 3))
        if popped is None:
            break
        member = popped[1]
        missing.discard(member.decode() if isinstance(member, bytes) else str(member))
    return missing
