"""A bounded LRU map: at most ``max_entries`` entries and ``max_bytes`` of accounted size; oldest use goes first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["BoundedStore"]

V = TypeVar("V")


class BoundedStore(Generic[V]):
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._data: OrderedDict[str, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[0]

    def put(self, key: str, value: V, size: int) -> None:
        self.delete(key)  # the old value goes even when the new one is too big to keep
        if size > self.max_bytes or self.max_entries <= 0:
            return
        self._data[key] = (value, size)
        self.bytes += size
        while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, old_size) = self._data.popitem(last=False)
            self.bytes -= old_size
            self.evictions += 1

    def delete(self, key: str) -> bool:
        item = self._data.pop(key, None)
        if item is None:
            return False
        self.bytes -= item[1]
        return True

    def clear(self) -> int:
        count = len(self._data)
        self._data.clear()
        self.bytes = 0
        return count

    def items(self) -> Iterator[tuple[str, V]]:
        return ((k, v) for k, (v, _) in list(self._data.items()))
