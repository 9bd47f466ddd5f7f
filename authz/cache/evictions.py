"""What an eviction names, how it travels between sidecars, and the tombstones it leaves behind.

An ``Eviction`` names lookup keys, token ids (the 12-hex id logs show), subject hashes (SHA-256 of ``sub``) or
everything: hashes only, never a token, so it may cross Redis pub/sub. Each applied eviction leaves tombstones:

- an epoch (a counter of this process's evictions), so a load that started before the eviction does not cache its
  answer when it lands (an introspection in flight cannot re-cache a revoked answer);
- a wall-clock time, so an L2 value whose AS call started before the eviction (``asked_at``) is refused, whichever
  sidecar wrote it and whenever it landed in Redis. ``CLOCK_SKEW_SECONDS`` widens the window for clocks that differ
  between hosts: a value asked within it after the eviction costs one more AS call, nothing else.

Tombstones live for the longest a cached answer may (``max_ttl_seconds``) and are bounded in count; when one has
to go early, every answer asked before it is refused instead (the floor), so the bound never makes us forget.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["CLOCK_SKEW_SECONDS", "Eviction", "Tombstones"]

CLOCK_SKEW_SECONDS = 1.0
_HEX = re.compile(r"[0-9a-f]{12}|[0-9a-f]{64}")
_MAX_NAMES = 10_000


@dataclass(frozen=True, slots=True)
class Eviction:
    keys: tuple[str, ...] = ()  # lookup keys (``cache_key``)
    token_ids: tuple[str, ...] = ()  # ``authz.logs.token_id``
    subjects: tuple[str, ...] = ()  # ``subject_hash``
    purge: bool = False

    def message(self, origin: str) -> bytes:
        return json.dumps({"o": origin, "k": self.keys, "t": self.token_ids, "s": self.subjects, "p": self.purge},
                          separators=(",", ":")).encode()

    @classmethod
    def from_message(cls, raw: Any) -> tuple[str, Eviction] | None:
        """``(origin, eviction)`` from ``message``'s bytes, or None for anything else."""
        try:
            doc = json.loads(raw)
        except (TypeError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("o"), str) or not isinstance(doc.get("p"), bool):
            return None
        lists = [doc.get(name) for name in ("k", "t", "s")]
        for names in lists:
            if not isinstance(names, list) or len(names) > _MAX_NAMES:
                return None
            if not all(isinstance(n, str) and _HEX.fullmatch(n) for n in names):
                return None
        keys, token_ids, subjects = (tuple(names) for names in lists)  # type: ignore[arg-type]
        return doc["o"], cls(keys, token_ids, subjects, doc["p"])


class Tombstones:
    """``(epoch, wall time)`` of the last eviction of each name ("k:…", "t:…", "s:…") and of the last purge."""

    def __init__(self, lifetime_seconds: float, max_entries: int = 100_000) -> None:
        self._lifetime = lifetime_seconds + CLOCK_SKEW_SECONDS
        self._max = max(1, max_entries)
        self._marks: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.floor: tuple[int, float] = (0, float("-inf"))  # purges, and tombstones dropped early

    def outlive(self, lifetime_seconds: float) -> None:
        """Keep tombstones at least ``lifetime_seconds`` (a reload that raised the cache's max TTL)."""
        self._lifetime = max(self._lifetime, lifetime_seconds + CLOCK_SKEW_SECONDS)

    def mark(self, names: list[str], epoch: int, wall: float) -> None:
        for name in names:
            self._marks.pop(name, None)
            self._marks[name] = (epoch, wall)
        while self._marks:
            name, (old_epoch, old_wall) = next(iter(self._marks.items()))
            if old_wall + self._lifetime > wall and len(self._marks) <= self._max:
                break
            del self._marks[name]
            if old_wall + self._lifetime > wall:  # dropped early: refuse everything asked before it instead
                self.floor = (max(self.floor[0], old_epoch), max(self.floor[1], old_wall))

    def raise_floor(self, epoch: int, wall: float) -> None:
        self.floor = (epoch, max(self.floor[1], wall))
        self._marks.clear()

    def spoil_loads(self, epoch: int) -> None:
        """No load that started before ``epoch`` is kept (what it asked may predate an eviction never heard of); L2
        values are judged as before."""
        self.floor = (max(self.floor[0], epoch), self.floor[1])

    def spoils_load(self, names: list[str], started_epoch: int) -> bool:
        """An eviction of one of ``names`` (or a purge) happened after a load that started at ``started_epoch``."""
        if self.floor[0] > started_epoch:
            return True
        return any((mark := self._marks.get(n)) is not None and mark[0] > started_epoch for n in names)

    def refuses_value(self, names: list[str], asked_at: float) -> bool:
        """An L2 value whose AS call started at ``asked_at`` may predate an eviction of one of ``names``."""
        if asked_at < self.floor[1] + CLOCK_SKEW_SECONDS:
            return True
        return any((mark := self._marks.get(n)) is not None and asked_at < mark[1] + CLOCK_SKEW_SECONDS
                   for n in names)
