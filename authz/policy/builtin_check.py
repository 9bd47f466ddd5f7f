"""Refuse at load a policy that calls a function the embedded engine cannot evaluate: ``refuse_unevaluable_calls``.

regorus resolves a function only when a rule that calls it is evaluated, so a policy calling a built-in it lacks
(``crypto.x509.parse_and_verify_certificates``, ``net.lookup_ip_addr``, a misspelt ``startwith``) would load and
then fail every decision. Instead, every call in the loaded modules (regorus's own AST, ``get_ast_as_json``) is
resolved as OPA resolves it:

1. a function the policies define: in the caller's package (``f(x)``, ``a.b(x)``), through an import
   (``import data.lib`` then ``lib.f(x)``) or by its full path (``data.lib.f(x)``) — one that no module defines is
   refused (OPA's "undefined function");
2. otherwise a built-in: one regorus evaluates (the list it reports itself in ``opa.runtime().builtins``, plus
   ``print``), or one phantom-authz provides as an extension (``io.jwt.*``, ``crypto.*``, ``net.cidr_*`` ...).

``http.send`` is in regorus's list but answers undefined without sending anything: it is refused too. The refusal
(``PolicyLoadError``: the start fails, a reload keeps the old policies) names the file, line and column of each call
and the function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import cache
from typing import Any

os.environ.setdefault("RUST_LIB_BACKTRACE", "0")
import regorus

from authz.policy.engine import PolicyLoadError

__all__ = ["refuse_unevaluable_calls", "unevaluable_calls"]

_STUBS = {"http.send": "regorus answers undefined without sending the request"}
_HINT = "policies that need other built-ins can run on a real OPA (policy.engine: remote)"


@cache
def regorus_builtins() -> frozenset[str]:
    """The built-ins regorus evaluates, as it reports them (``print`` is a statement it handles itself)."""
    engine = regorus.Engine()
    engine.add_policy("builtins.rego", "package builtins\nlisted := opa.runtime().builtins\n")
    return frozenset(engine.eval_rule("data.builtins.listed")) | {"print"}


def _ref(node: Any) -> tuple[list[str], dict[str, int]] | None:
    """A reference's parts (``a.b["c"]`` -> ``["a", "b", "c"]``) and its root's span; None for any other term."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    kind, body = next(iter(node.items()))
    if kind == "Var":
        return [body["value"]], body["span"]
    if kind == "RefDot":
        inner = _ref(body["refr"])
        return None if inner is None else ([*inner[0], body["field"][1]], inner[1])
    if kind == "RefBrack":
        inner, index = _ref(body["refr"]), body["index"]
        if inner is None or not isinstance(index, dict) or "String" not in index:
            return None
        return [*inner[0], index["String"]["value"]], inner[1]
    return None


def _calls(node: Any) -> Iterator[tuple[list[str], dict[str, int]]]:
    """Every call in an AST subtree: the callee's parts and where it is written."""
    if isinstance(node, dict):
        call = node.get("Call")
        if isinstance(call, dict) and "fcn" in call:
            ref = _ref(call["fcn"])
            if ref is not None:
                yield ref
        for value in node.values():
            yield from _calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _calls(value)


class _Module:
    def __init__(self, entry: dict[str, Any]) -> None:
        self.file: str = entry["source"]["file"]
        source: bytes = entry["source"]["contents"].encode()
        ast = entry["ast"]
        package = _ref(ast["package"]["refr"])
        self.package = ["data", *(package[0] if package else [])]
        self.imports: dict[str, list[str]] = {}
        for imported in ast.get("imports", []):
            ref = _ref(imported["refr"])
            if ref is None or ref[0][0] != "data":
                continue  # rego.v1, future.keywords, input
            alias = imported.get("as")
            name = source[alias["start"]:alias["end"]].decode() if alias else ref[0][-1]
            self.imports[name] = ref[0]
        self.rules: list[Any] = ast.get("rules", [])

    def functions(self) -> Iterator[str]:
        """The full names of the functions this module defines (``data.pkg.f``)."""
        for rule in self.rules:
            kind, body = next(iter(rule.items()))
            head = body.get("head", {}).get("Func") if kind == "Spec" else body if "args" in body else None
            ref = _ref(head["refr"]) if isinstance(head, dict) and "refr" in head else None
            if ref is not None:
                yield ".".join([*self.package, *ref[0]])


def _problem(module: _Module, parts: list[str], defined: set[str], provided: frozenset[str]) -> str | None:
    """Why the call cannot be evaluated, or None when it can."""
    local = ".".join([*module.package, *parts])
    if local in defined:
        return None
    if parts[0] == "data" or parts[0] in module.imports:
        full = ".".join(parts if parts[0] == "data" else [*module.imports[parts[0]], *parts[1:]])
        return None if full in defined else f"`{full}` is not a function any loaded policy defines"
    name = ".".join(parts)
    if name in _STUBS:
        return f"`{name}`: {_STUBS[name]}"
    if name in provided or name in regorus_builtins():
        return None
    return f"`{name}` is not a built-in the embedded engine can evaluate"


def unevaluable_calls(engine: Any, provided: frozenset[str]) -> list[str]:
    """``file:line:col: why`` for each call in the engine's policies that it cannot evaluate (first place each)."""
    modules = [_Module(entry) for entry in json.loads(engine.get_ast_as_json())]
    defined = {name for module in modules for name in module.functions()}
    found: dict[str, str] = {}
    for module in modules:
        for parts, span in _calls(module.rules):
            problem = _problem(module, parts, defined, provided)
            if problem is not None and problem not in found:
                found[problem] = f"{module.file}:{span['line']}:{span['col']}: {problem}"
    return list(found.values())


def refuse_unevaluable_calls(engine: Any, provided: frozenset[str]) -> None:
    """Raise ``PolicyLoadError`` naming the calls the engine cannot evaluate (the first four), if any."""
    problems = unevaluable_calls(engine, provided)
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise PolicyLoadError(f"{'; '.join(problems[:4])}{more}; {_HINT}")
