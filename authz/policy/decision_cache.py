"""Decisions of deterministic embedded policies, reused for equal inputs.

A policy whose sources use no clock, randomness, network or output builtins (``InputNeeds.deterministic``) gives
the same result for the same input and data. The input holds only what the policies read, so requests that differ
only in what the policy ignores (request id, time, other headers, the client's port) have equal inputs. The key is
the decision path and the canonical form of that input's values (``authz.policy.projection``: equal keys, equal
inputs), found before the input is built; data changes only by a reload, which starts an empty cache. Errors and
undefined decisions are never stored: they are evaluated again each time.

An entry is a ``Decided``: the result, and the ``PolicyDecision`` the policy stage checked it into, kept on it once
made, so a reused decision carries its parsed form (and what the replies keep for it) with it.

Keys can hold what the policy reads of a request, bodies and header values included, so the cache is bounded by
bytes as well as by entries: every entry is charged what its key and value hold (``footprint``: ``sys.getsizeof``
over the whole object graph, shared parts counted each time, plus the dictionary slot), an entry over
``entry_limit`` (a sixteenth of the bound, at most 64 KiB) is never stored (such requests are evaluated every
time), and a put that would pass either bound empties the cache first.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Any

from authz.policy.decision import PolicyDecision

__all__ = ["DEFAULT_MAX_BYTES", "MAX_ENTRY_BYTES", "Decided", "DecisionCache", "footprint"]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
MAX_ENTRY_BYTES = 64 * 1024  # the most one entry (key and value) may hold; bigger ones are evaluated every time
_SLOT_BYTES = 100  # a dictionary slot and its share of the table, generously
_ATOMS = frozenset({str, bytes, int, float, bool, type(None)})


def footprint(value: object, limit: int) -> int:
    """Bytes ``value`` holds (its object graph, shared parts counted each time), or more than ``limit`` as soon as
    the count passes it. A type this does not know (an object whose contents it cannot see) counts as over."""
    total = 0
    stack = [value]
    pop, push, size = stack.pop, stack.extend, sys.getsizeof
    while stack:
        item = pop()
        total += size(item)
        kind = type(item)
        if kind is tuple or kind is list:
            push(item)  # type: ignore[arg-type]
        elif kind is dict:
            push(item.keys())  # type: ignore[attr-defined]
            push(item.values())  # type: ignore[attr-defined]
        elif kind not in _ATOMS:
            return limit + 1
        if total > limit:
            return total
    return total


class Decided:
    """A policy's result, and its ``PolicyDecision`` once the stage has checked it."""

    __slots__ = ("decision", "result")

    def __init__(self, result: Any) -> None:
        self.result = result
        self.decision: PolicyDecision | None = None  # None until checked (a result failing the check stays None)


class DecisionCache:
    __slots__ = ("_bytes", "_entries", "_entry_limit", "_max_bytes", "_size")

    def __init__(self, size: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._size = size if max_bytes > 0 else 0  # 0: off
        self._max_bytes = max_bytes
        self._entry_limit = min(MAX_ENTRY_BYTES, max_bytes // 16)
        self._entries: dict[Hashable, Decided] = {}  # by Projection.key
        self._bytes = 0  # what the entries' keys and values hold, as footprint() counts it

    def renewed(self, deterministic: bool) -> DecisionCache:
        """An empty cache of the same bounds (off when the new policies are not deterministic)."""
        return DecisionCache(self._size if deterministic else 0, self._max_bytes)

    @property
    def enabled(self) -> bool:
        return self._size > 0

    @property
    def entry_limit(self) -> int:
        """Entries (key and value) holding more bytes than this are not stored."""
        return self._entry_limit

    @property
    def bytes(self) -> int:
        """The bytes the entries' keys and values hold (never above the configured bound)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable | None) -> Decided | None:
        return None if key is None else self._entries.get(key)

    def put(self, key: Hashable | None, decided: Decided) -> None:
        """File ``decided`` under ``key``; charged for the key and the result (its PolicyDecision is charged
        ``_SLOT_BYTES``: equal results share one, ``authz.policy.stage``)."""
        if key is None or not self._size:
            return
        limit = self._entry_limit
        cost = footprint(key, limit)
        if cost <= limit:
            cost += footprint(decided.result, limit - cost) + 2 * _SLOT_BYTES
        if cost > limit:
            return  # too big to keep: this request shape is evaluated every time
        if key in self._entries:
            return  # already charged (an equal decision raced in)
        if len(self._entries) >= self._size or self._bytes + cost > self._max_bytes:
            self._entries.clear()  # a bounded memo; the next requests fill it again
            self._bytes = 0
        self._entries[key] = decided
        self._bytes += cost
