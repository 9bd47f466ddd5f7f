"""The embedded engine: Rego v1 evaluated in process by regorus (``gordon-to-regorus``).

Policies (``*.rego``) and data (``data.json`` / ``data.yaml``; a data file in ``a/b/`` under a configured directory
lands at ``data.a.b``, as in OPA bundles) load from files or directories at start and compile once. OPA built-ins
regorus lacks are added as extensions (``authz.policy.extensions``); a policy calling a function the engine still
cannot evaluate is refused at load with its file, line and name (``authz.policy.builtin_check``). A reload
(``reload()``: on SIGHUP, or when the watcher sees a file change) compiles a whole new engine and swaps it in
atomically; if the new files do not load, the old engine stays and the error is logged.

regorus evaluates synchronously while holding the GIL and its engines cannot move between threads, so an embedded
evaluation cannot be preempted: ``timeout_seconds`` is enforced after the fact (a decision that took longer is
discarded and the request gets the OPA-failure status). Policies that may run long belong on the remote engine,
whose timeout is a real network deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import yaml

# regorus errors carry a Rust backtrace, captured at ~150 ms each unless this is off; an evaluation error must cost
# microseconds, not stall the event loop.
os.environ.setdefault("RUST_LIB_BACKTRACE", "0")
import regorus

from authz.policy.builtin_check import refuse_unevaluable_calls
from authz.policy.decision_cache import DEFAULT_MAX_BYTES, Decided, DecisionCache
from authz.policy.engine import Evaluation, PolicyEvaluationError, PolicyLoadError, new_decision_id, rego_ref
from authz.policy.extensions import register_extensions
from authz.policy.input_needs import ALL_INPUT, InputNeeds, input_needs
from authz.policy.jwt_builtins import JwtBuiltins
from authz.policy.projection import Projection

__all__ = ["EmbeddedEngine"]

log = logging.getLogger("authz.policy.embedded")

_DATA_FILES = ("data.json", "data.yaml", "data.yml")


def _first_line(exc: BaseException) -> str:
    """regorus's message in one line: where (``--> file:line:col``) and what (``error: ...``)."""
    text = str(exc).split("Stack backtrace")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    where = [line for line in lines if line.startswith("-->")]
    what = [line for line in lines if line.startswith("error")]
    picked = where[:1] + what[:1]
    return " ".join(picked) if picked else " ".join(lines[:2])


class EmbeddedEngine:
    name = "embedded"

    def __init__(self, paths: tuple[str, ...], timeout_seconds: float, builtins: JwtBuiltins | None = None,
                 decision_cache_size: int = 10_000, decision_cache_max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._roots = [Path(p) for p in paths]
        self._timeout = timeout_seconds
        self._builtins = builtins or JwtBuiltins()
        self._signature = self._scan()
        self.needs = ALL_INPUT
        self._engine, self.needs = self._compile()  # raises PolicyLoadError: start-up fails with file and line
        self._decisions = DecisionCache(decision_cache_size if self.needs.deterministic else 0,
                                        decision_cache_max_bytes)
        self.projection = Projection(self.needs)  # what the policies read of a request: their input and reuse keys
        # set by a transport that cannot provide every input field: raises PolicyLoadError to refuse a reload
        self.needs_check: Callable[[InputNeeds], None] | None = None
        self._query_paths: set[str] = set()  # decision paths eval_rule cannot take (partial rules): use eval_query
        self.generation = 1

    # --- loading ----------------------------------------------------------------------------------------------

    def _files(self) -> list[tuple[Path, Path]]:
        """(file, root) pairs: every .rego and data file under the configured paths."""
        found: list[tuple[Path, Path]] = []
        for root in self._roots:
            if root.is_file():
                found.append((root, root.parent))
            elif root.is_dir():
                found.extend((f, root) for f in sorted(root.rglob("*"))
                             if f.is_file() and (f.suffix == ".rego" or f.name in _DATA_FILES))
            else:
                raise PolicyLoadError(f"{root}: no such policy file or directory")
        return found

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        try:
            return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f, _ in self._files())
        except (OSError, PolicyLoadError):
            return ()

    def _compile(self) -> tuple[Any, InputNeeds]:
        engine = regorus.Engine()
        provided = register_extensions(engine, self._builtins)
        policies = 0
        sources: list[str] = []
        for path, root in self._files():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise PolicyLoadError(f"{path}: cannot read ({exc})") from None
            if path.suffix == ".rego":
                try:
                    engine.add_policy(str(path), text)
                except Exception as exc:  # regorus raises RuntimeError with "--> file:line:col" in the text
                    raise PolicyLoadError(f"{path}: {_first_line(exc)}") from None
                policies += 1
                sources.append(text)
            else:
                engine.add_data(self._data_document(path, root, text))
        if policies == 0:
            raise PolicyLoadError(f"no .rego files under {', '.join(map(str, self._roots))}")
        refuse_unevaluable_calls(engine, provided)  # else every decision through such a call would fail
        return engine, input_needs(sources)

    @staticmethod
    def _data_document(path: Path, root: Path, text: str) -> dict[str, Any]:
        try:
            doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise PolicyLoadError(f"{path}: not valid {path.suffix[1:].upper()} ({str(exc).splitlines()[0]})") from None
        if not isinstance(doc, dict):
            raise PolicyLoadError(f"{path}: a data file must hold an object")
        for part in reversed(path.parent.relative_to(root).parts):
            doc = {part: doc}
        return doc

    def reload(self) -> bool:
        """Compile the files as they are now and swap them in; on failure keep the old engine."""
        signature = self._scan()
        try:
            engine, needs = self._compile()
            if self.needs_check is not None:
                self.needs_check(needs)
        except PolicyLoadError as exc:
            log.error("policy reload failed, keeping the policies loaded before: %s", exc)
            self._signature = signature  # do not retry the same broken files on every poll
            return False
        self._engine, self.needs, self._signature = engine, needs, signature
        self._decisions = self._decisions.renewed(needs.deterministic)  # decisions of the old policies are gone
        self.projection = Projection(needs)
        self._query_paths = set()
        self.generation += 1
        log.info("policies reloaded (generation %d, %d files)", self.generation, len(signature))
        return True

    async def watch(self, interval_seconds: float) -> None:
        """Reload when a policy or data file changes, is added or is removed. Runs until cancelled."""
        while True:
            await asyncio.sleep(interval_seconds)
            if self._scan() != self._signature:
                self.reload()

    # --- evaluation -------------------------------------------------------------------------------------------

    @property
    def cached_decisions(self) -> int:
        """How many decisions are held for reuse (always 0 when the policies are not deterministic)."""
        return len(self._decisions)

    @property
    def cached_decision_bytes(self) -> int:
        """The bytes the held decisions' keys and values hold (at most ``decision_cache_max_bytes``)."""
        return self._decisions.bytes

    @property
    def reuses_decisions(self) -> bool:
        """Whether decisions are reused (deterministic policies, a decision cache configured)."""
        return self._decisions.enabled

    def reused(self, key: Hashable) -> Evaluation | None:
        """The decision kept under ``key`` (``Projection.key``), with a decision id of its own."""
        decided = self._decisions.get(key)
        return None if decided is None else Evaluation(decided.result, new_decision_id(), decided)

    def remember(self, key: Hashable, evaluation: Evaluation) -> None:
        if evaluation.decided is not None:
            self._decisions.put(key, evaluation.decided)

    async def evaluate(self, decision_path: str, policy_input: dict[str, Any]) -> Evaluation:
        result = self._evaluate(decision_path, policy_input)
        return Evaluation(result, new_decision_id(), Decided(result))

    def _evaluate(self, decision_path: str, policy_input: dict[str, Any]) -> Any:
        engine = self._engine
        started = time.perf_counter()
        try:
            engine.set_input(policy_input)
            result = self._eval(engine, decision_path)
        except Exception as exc:
            raise PolicyEvaluationError(f"embedded policy {decision_path}: {_first_line(exc)}") from None
        elapsed = time.perf_counter() - started
        if elapsed > self._timeout:
            raise PolicyEvaluationError(f"embedded policy {decision_path}: took {elapsed * 1000:.1f} ms, over the "
                                        f"{self._timeout * 1000:.0f} ms timeout")
        if result is None:
            raise PolicyEvaluationError(f"embedded policy {decision_path}: decision is undefined")
        return result

    def _eval(self, engine: Any, decision_path: str) -> Any:
        """eval_rule (~5 µs) where it can; eval_query (~35 µs) for partial rules (``result["allowed"] := ...``)."""
        ref = rego_ref(decision_path)
        if decision_path not in self._query_paths:
            try:
                return engine.eval_rule(ref)
            except RuntimeError as exc:
                if "not a valid rule path" not in str(exc):
                    raise
                self._query_paths.add(decision_path)
        results = engine.eval_query(ref).get("result") or []
        return results[0]["expressions"][0]["value"] if results else None

    async def close(self) -> None:
        return None
