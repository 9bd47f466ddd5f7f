"""Values worked out once per object and found again by that object's identity.

Cache hits hand back the same answer, claims, identity and response objects, so what follows from them (the Allow,
the Identity, the HTTP answer, a decision key) is computed once per cached answer. Keyed by ``id()`` with the object
kept alongside, so a recycled id never returns another object's value; bounded, emptied when full.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["IdentityMemo"]

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._entries: dict[int, tuple[object, V]] = {}

    def get(self, obj: object) -> V | None:
        found = self._entries.get(id(obj))
        return found[1] if found is not None and found[0] is obj else None

    def put(self, obj: object, value: V) -> V:
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[id(obj)] = (obj, value)
        return value
