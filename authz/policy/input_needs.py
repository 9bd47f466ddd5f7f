"""Which parts of the input document the loaded policies can read, so the rest need not be built per request.

A conservative scan of the Rego sources (comments removed, string literals kept aside): a reference
``input.a.b["c"]...`` names the subtree at ``a/b/c``; the reference ends where something other than ``.<name>`` or
``["<literal>"]`` follows, and the policy may then read everything under that point. Any other use of ``input`` —
``input[x]``, ``input`` passed to a function, ``walk(input)``, ``import input``, ``with input as`` — means
"everything", so a policy always sees every field it could read.

The scan also keeps every name written after a dot and every string literal (``names``): what a policy that holds a
subtree of ``input`` in a variable (``http := input.attributes.request.http``) may look up in it.

The scan also says whether the policies are *deterministic*: the same input and data always give the same decision
(no clock, randomness, network or printing builtins). Only then may a decision be reused for an equal input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ALL_INPUT", "InputNeeds", "Tree", "input_needs", "prune"]

# A node of the tree of read paths: a dict of child names, or None for "the whole subtree".
Tree = dict[str, Any] | None

_INPUT = re.compile(r"(?<![\w.])input(?!\w)")
_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*\"\x00(\d+)\"\s*\]")
_DOT_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_STRING_OR_COMMENT = re.compile(r'"(?:\\.|[^"\\\n])*"|`[^`]*`|#[^\n]*')
# Builtins whose answer does not follow from input and data alone (the clock, randomness, the network, output).
_IMPURE = re.compile(r"(?<![\w.])(?:time\.now_ns|rand\.|uuid\.|http\.send|opa\.runtime|net\.lookup_ip_addr|io\.jwt\."
                     r"|crypto\.x509\.parse_and_verify|print\s*\(|trace\s*\()")


@dataclass(frozen=True, slots=True)
class InputNeeds:
    tree: Tree = None  # every path they read (see the module docstring); None: all
    deterministic: bool = False  # decisions depend only on input and data
    names: frozenset[str] = frozenset()  # every `.name` and string literal of the sources (see the docstring)

    def prune(self, document: dict[str, Any]) -> dict[str, Any]:
        """The document without what no loaded policy can read (a new dict; ``document`` is not changed)."""
        return prune(document, self.tree)  # type: ignore[no-any-return]


ALL_INPUT = InputNeeds()


def prune(value: Any, node: Tree) -> Any:
    """``value`` without what is not under the read paths ``node`` (new dicts; leaves are shared)."""
    if node is None or not isinstance(value, dict):
        return value
    return {key: prune(value[key], child) for key, child in node.items() if key in value}


def _code_and_strings(text: str) -> tuple[str, list[str]]:
    """The source with comments gone and each string literal replaced by ``"\\x00<n>"``; the literals' values."""
    literals: list[str] = []

    def replace(m: re.Match[str]) -> str:
        token = m.group(0)
        if token[0] == "#":
            return ""
        try:
            literals.append(token[1:-1] if token[0] == "`" else json.loads(token))
        except ValueError:
            literals.append("\x00")  # not a valid JSON string: matches no key
        return f'"\x00{len(literals) - 1}"'

    return _STRING_OR_COMMENT.sub(replace, text), literals


def _insert(root: dict[str, Any], path: list[str]) -> None:
    node = root
    for name in path[:-1]:
        if name in node and node[name] is None:
            return  # a shorter path already reads all of it
        node = node.setdefault(name, {})
    node[path[-1]] = None


def input_needs(sources: Iterable[str]) -> InputNeeds:
    root: dict[str, Any] = {}
    deterministic = True
    names: set[str] = set()
    for source in sources:
        text, literals = _code_and_strings(source)
        deterministic = deterministic and _IMPURE.search(text) is None
        names.update(_DOT_NAME.findall(text), literals)
        for use in _INPUT.finditer(text):
            path: list[str] = []
            pos = use.end()
            while (field := _FIELD.match(text, pos)) is not None:
                path.append(field.group(1) if field.group(1) is not None else literals[int(field.group(2))])
                pos = field.end()
            if not path:
                return InputNeeds(deterministic=False)  # input on its own, indexed by a variable, or passed whole
            _insert(root, path)
    return InputNeeds(root, deterministic, frozenset(names))
