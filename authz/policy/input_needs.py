"""Which parts of the input document the loaded policies can read, so the rest need not be built per request.

A conservative scan of the Rego sources (comments and string literals removed first): only references of the form
``input.<key>`` (and ``input.attributes.<key>``) narrow the input. Any other use of ``input`` — ``input[...]``,
``input`` passed to a function, ``walk(input)``, ``import input``, ``input.attributes`` on its own — means
"everything", so a policy always sees every field it could read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ALL_INPUT", "InputNeeds", "input_needs"]

_USE = re.compile(r"(?<![\w.])input(?![\w])(?P<rest>(?:\.[A-Za-z_][A-Za-z0-9_]*){0,2})(?P<next>.?)")


@dataclass(frozen=True, slots=True)
class InputNeeds:
    keys: frozenset[str] | None = None  # top-level keys the policies read; None: all
    attributes: frozenset[str] | None = None  # keys of input.attributes they read; None: all

    def wants(self, key: str) -> bool:
        return self.keys is None or key in self.keys

    def wants_attribute(self, key: str) -> bool:
        return self.attributes is None or key in self.attributes


ALL_INPUT = InputNeeds()


_NOT_CODE = re.compile(r'"(?:\\.|[^"\\\n])*"|`[^`]*`|#[^\n]*')


def _code_only(text: str) -> str:
    return _NOT_CODE.sub(lambda m: '""' if m.group(0)[0] in '"`' else "", text)


def input_needs(sources: Iterable[str]) -> InputNeeds:
    keys: set[str] = set()
    attributes: set[str] = set()
    all_attributes = False
    for text in map(_code_only, sources):
        for use in _USE.finditer(text):
            parts = use.group("rest").split(".")[1:]
            if not parts:
                return ALL_INPUT  # input on its own, indexed (input[...]) or passed whole
            keys.add(parts[0])
            if parts[0] == "attributes":
                if len(parts) < 2:
                    all_attributes = True  # input.attributes used as a whole
                else:
                    attributes.add(parts[1])
    return InputNeeds(frozenset(keys), None if all_attributes else frozenset(attributes))
