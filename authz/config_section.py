"""Typed reading of one YAML mapping: every error names its dotted key; leftovers are unknown keys."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Secret", "Section", "read_file", "url"]


class ConfigError(ValueError):
    """A configuration problem; ``str()`` is one line naming the key and why."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}" if key else why)
        self.key = key


class Secret:
    """A secret string whose ``repr``/``str`` never shows the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Section:
    """Reads typed values out of one mapping, naming the dotted key in every error; rejects leftovers."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(path, "must be a mapping")
        self._data = dict(data)
        self._path = path

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str, default: Any = None) -> Any:
        return self._data.pop(name, default)

    def str_(self, name: str, default: str | None = None) -> str:
        value = self._data.pop(name, default)
        if value is None:
            raise ConfigError(self.key(name), "is required")
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), "must be a non-empty string")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0, integer: bool = False) -> float:
        value = self._data.pop(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(self.key(name), f"must be a finite number, got {value!r}")
        if integer and not float(value).is_integer():
            raise ConfigError(self.key(name), "must be a whole number")
        if value <= minimum:
            raise ConfigError(self.key(name), f"must be > {minimum:g}, got {value}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._data.pop(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), "must be true or false")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str_(name, default)
        if value not in choices:
            raise ConfigError(self.key(name), f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def strings(self, name: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        value = self._data.pop(name, [])
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), "must be a list of strings")
        for item in value:
            if not pattern.match(item):
                raise ConfigError(self.key(name), f"{item!r} is not a valid {what}")
        return tuple(value)

    def section(self, name: str) -> Section:
        return Section(self._data.pop(name, None), self.key(name))

    def done(self) -> None:
        if self._data:
            unknown = sorted(self._data)[0]
            raise ConfigError(self.key(unknown), "unknown key")


def read_file(sec: Section, name: str) -> str:
    path = Path(sec.str_(name))
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(sec.key(name), f"cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(sec.key(name), f"{path} is empty")
    return value


def url(sec: Section, name: str, required: bool = False) -> str | None:
    if not required and not sec.has(name):
        return None
    value = sec.str_(name)
    if not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(sec.key(name), f"must be an http(s) URL, got {value!r}")
    return value
