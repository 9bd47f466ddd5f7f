"""Decisions of deterministic embedded policies, reused for equal inputs.

A policy whose sources use no clock, randomness, network or output builtins (``InputNeeds.deterministic``) gives
the same result for the same input and data. The input is already narrowed to what the policies read, so requests
that differ only in what the policy ignores (request id, time, other headers, the client's port) have equal inputs.
The key is the canonical JSON of that input and the decision path; data changes only by a reload, which starts an
empty cache. Errors and undefined decisions are never stored: they are evaluated again each time. A decision is also
filed under its ``RequestKeyer`` key, so an equal request finds it before its input is even built.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

__all__ = ["DecisionCache"]

_MAX_KEY_CHARS = 16_384  # inputs larger than this (big bodies) are evaluated every time


class DecisionCache:
    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = size  # 0: off
        self._entries: dict[Hashable, Any] = {}  # canonical-JSON keys and request keys

    def renewed(self, deterministic: bool) -> DecisionCache:
        """An empty cache of the same size (off when the new policies are not deterministic)."""
        return DecisionCache(self._size if deterministic else 0)

    @property
    def enabled(self) -> bool:
        return self._size > 0

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, decision_path: str, policy_input: dict[str, Any]) -> str | None:
        if not self._size:
            return None
        try:
            text = json.dumps(policy_input, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
        except (TypeError, ValueError):
            return None
        return None if len(text) > _MAX_KEY_CHARS else decision_path + "\n" + text

    def get(self, key: Hashable | None) -> Any:
        return None if key is None else self._entries.get(key)

    def put(self, key: Hashable | None, result: Any) -> None:
        if key is None:
            return
        if len(self._entries) >= self._size:
            self._entries.clear()  # a bounded memo; the next requests fill it again
        self._entries[key] = result
