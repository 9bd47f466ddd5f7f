"""``bench/envoy_bench.py --baseline REF``: phantom-authz from another commit next to the current tree, in one run.

The issue-12 budget ("nothing may cost the cache-hit path more than 5 %") is checked by an A/B: scenarios c, ch, d
and dh (the cache hit, gRPC and HTTP mode, without and with the embedded Rego policy) are measured with phantom-authz
from the current tree ("new") and from REF ("old"), interleaved, with everything else (dev AS, echo upstream, Envoy
and its config, the policies, the tokens, wrk) the same processes and files from the current tree. This module
holds what that needs apart from the runner itself:

- ``worktree()``: a temporary ``git worktree`` of REF, removed at the end;
- ``SourceTree``: one side of the A/B. Its phantom-authz runs with cwd and PYTHONPATH at the tree, so
  ``python -m authz serve`` imports that tree's package (checked before the first start: ``authz.__file__``, and
  on every start: the running process's cwd). For the baseline, the configuration the harness writes is first given
  to the baseline's own ``authz validate-config``; keys it does not know (or refuses) are left out, and said so;
- ``pooled()``, ``ab_rows()``, ``ab_markdown()``: the rounds of one side summed, and the table.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.processes import Process

BUDGET = 0.05  # issue 12: at most 5 % more CPU per request, at most 5 % less throughput
DEFAULT_ROUNDS = 2
# Keys that are never left out of the baseline's configuration: without them it would not be the same service on
# the ports the benchmark waits for, or not talk to the same AS. A refusal naming one of these fails the A/B.
PROTECTED = ("server", "server.listen", "server.http", "server.http.listen", "authorization_servers",
             "admin_listen", "metrics_listen")
_REFUSED = re.compile(r"^authz: config error: (\S+?): (.*)$", re.M)
MAX_DROPS = 20


class BaselineError(RuntimeError):
    """The baseline cannot be prepared or started; the message says why (the service's own output included)."""


def _git(root: Path, *args: str, timeout: float = 120.0) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise BaselineError(f"git {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


def tree_state(root: Path) -> tuple[str, bool]:
    """HEAD's commit, and whether the package (authz/) has uncommitted changes: what "new" measures."""
    return _git(root, "rev-parse", "HEAD"), bool(_git(root, "status", "--porcelain", "--", "authz"))


@dataclass(frozen=True)
class Checkout:
    ref: str
    commit: str
    subject: str
    path: Path


@contextlib.contextmanager
def worktree(root: Path, ref: str) -> Iterator[Checkout]:
    """A detached ``git worktree`` of ``ref`` in a temporary directory; removed (and pruned) on exit."""
    try:
        commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") if ref else ""
    except BaselineError:
        commit = ""
    if not commit:
        raise BaselineError(f"--baseline {ref!r}: not a commit in {root}")
    subject = _git(root, "log", "-1", "--format=%s", commit)
    with contextlib.suppress(BaselineError):
        _git(root, "worktree", "prune")  # entries of earlier runs whose directory is gone
    parent = Path(tempfile.mkdtemp(prefix="envoy-bench-baseline-"))
    path = parent / commit[:12]
    try:
        _git(root, "worktree", "add", "--detach", "--quiet", str(path), commit)
        yield Checkout(ref=ref, commit=commit, subject=subject, path=path)
    finally:
        with contextlib.suppress(BaselineError, OSError, subprocess.TimeoutExpired):
            _git(root, "worktree", "remove", "--force", str(path))
        shutil.rmtree(parent, ignore_errors=True)
        with contextlib.suppress(BaselineError, OSError, subprocess.TimeoutExpired):
            _git(root, "worktree", "prune")


class TreeProcess(Process):
    """A Process started with cwd and PYTHONPATH at a source tree, so ``python -m authz`` imports its package
    (the venv's editable install of the current tree is a meta-path finder consulted after sys.path)."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log_dir: Path, tree: Path,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(name, argv, port, log_dir, env={**(env or {}), "PYTHONPATH": str(tree)})
        self.tree = tree
        self.cwd = tree


def _drop(config: dict[str, Any], dotted: str) -> bool:
    """Remove the key ``a.b.c`` (``a.b[0].c`` for list items) from ``config``; whether it was there."""
    parts = [p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]
    node: Any = config
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    last = parts[-1] if parts else ""
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False


@dataclass
class SourceTree:
    """One side of the A/B: ``new`` (the current tree) or ``old`` (the baseline's worktree)."""

    label: str
    path: Path
    commit: str
    validate: bool  # give the configuration to this tree's `authz validate-config` first, leaving out what it refuses
    dropped: dict[str, str] = field(default_factory=dict)  # key -> why this tree refused it
    own_envoy: dict[str, str] = field(default_factory=dict)  # scenario -> why it runs behind this tree's Envoy config
    origin: str = ""  # authz.__file__ as this tree's service imports it

    def describe(self) -> str:
        return f"{self.label} ({self.commit[:7]}, {self.path})"

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        return {**os.environ, **extra, "PYTHONPATH": str(self.path)}

    def check_origin(self, extra_env: dict[str, str]) -> str:
        """The ``authz`` package this tree's service will import, as ``python -m authz`` would find it (sys.path[0]
        is the cwd); a BaselineError unless it is this tree's."""
        done = subprocess.run([sys.executable, "-c", "import authz; print(authz.__file__)"], cwd=self.path,
                              env=self.env(extra_env), capture_output=True, text=True, timeout=120, check=False)
        origin = done.stdout.strip()
        if done.returncode != 0 or not Path(origin).resolve().is_relative_to(self.path.resolve()):
            raise BaselineError(f"{self.describe()}: `import authz` with cwd/PYTHONPATH there gives "
                                f"{origin or done.stderr.strip()[-500:]!r}, not this tree's package")
        self.origin = origin
        return origin

    def prepare_config(self, config: dict[str, Any], path: Path, extra_env: dict[str, str]) -> dict[str, Any]:
        """Write ``config`` to ``path`` for this tree; for the baseline, leave out (and record) each key its own
        ``authz validate-config`` refuses, unless the key is PROTECTED; its refusal of anything else is an error
        that quotes its output."""
        if not self.origin:
            self.check_origin(extra_env)
        config = copy.deepcopy(config)
        for key in self.dropped:  # refused in an earlier round: the same config, other ports
            _drop(config, key)
        for _ in range(MAX_DROPS + 1):
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            if not self.validate:
                return config
            done = subprocess.run([sys.executable, "-m", "authz", "validate-config", "--config", str(path)],
                                  cwd=self.path, env=self.env(extra_env), capture_output=True, text=True,
                                  timeout=120, check=False)
            output = (done.stdout + done.stderr).strip()
            if done.returncode == 0:
                return config
            if "invalid choice: 'validate-config'" in output:  # a baseline older than that command: just start it
                self.validate = False
                return config
            refused = _REFUSED.search(output)
            if refused is None or refused.group(1) in PROTECTED or not _drop(config, refused.group(1)):
                raise BaselineError(f"{self.describe()}: its `authz validate-config --config {path}` refused the "
                                    f"benchmark's configuration (exit {done.returncode}):\n"
                                    + _indent(output or "(no output)"))
            self.dropped[refused.group(1)] = refused.group(2)
        raise BaselineError(f"{self.describe()}: more than {MAX_DROPS} configuration keys refused: "
                            f"{', '.join(self.dropped)}")

    def process(self, name: str, argv: Sequence[str], port: int, log_dir: Path, env: dict[str, str]) -> Process:
        return TreeProcess(name, argv, port, log_dir, self.path, env)

    def check_running(self, proc: Process) -> None:
        """The started service runs in this tree (its cwd; PYTHONPATH was set by TreeProcess)."""
        if proc.proc is None:
            raise BaselineError(f"{self.describe()}: no process")
        cwd = Path(os.readlink(f"/proc/{proc.proc.pid}/cwd"))
        if cwd.resolve() != self.path.resolve():
            raise BaselineError(f"{self.describe()}: phantom-authz runs in {cwd}, not in this tree")


def _indent(text: str, lines: int = 40) -> str:
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])


def start_failure(tree: SourceTree, exc: Exception, log: Path) -> str:
    """A clear message for a service that did not start: which tree, why, and the end of its own output (stdout
    and stderr, from its log file; earlier rounds are in the same file)."""
    head = str(exc).partition("\n")[0]
    try:
        output = log.read_text(errors="replace").strip()
    except OSError:
        output = ""
    return (f"phantom-authz from {tree.describe()} did not start: {head}\n  its output ({log}, last lines):\n"
            + _indent(output or "(none)"))


# ------------------------------------------------------------------------------------------------------ figures


def pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one side (WrkResult dicts) as one: counts and CPU summed, req/s = requests / seconds, latency
    percentiles the median of the rounds' (the mean of two), max the max."""
    first = rounds[0]
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["duration_s"] for r in rounds)
    cpu: dict[str, float] = {}
    for r in rounds:
        for role, value in r["cpu_seconds"].items():
            cpu[role] = round(cpu.get(role, 0.0) + value, 3)
    others = [r["other_cpu_seconds"] for r in rounds if r.get("other_cpu_seconds") is not None]
    return {
        **first,
        "command": first["command"],
        "requests_per_s": round(requests / seconds, 2) if seconds else 0.0,
        "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 3),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 3),
        "p999_ms": round(statistics.median(r["p999_ms"] for r in rounds), 3),
        "max_ms": max(r["max_ms"] for r in rounds),
        "requests": requests,
        "non_2xx": sum(r["non_2xx"] for r in rounds),
        "socket_errors": sum(r["socket_errors"] for r in rounds),
        "wrapped": sum(r["wrapped"] for r in rounds),
        "duration_s": round(seconds, 3),
        "cpu_seconds": cpu,
        "other_cpu_seconds": round(sum(others), 3) if others else None,
        "rss_mib": rounds[-1].get("rss_mib"),
        "notes": [note for r in rounds for note in r.get("notes", [])],
    }


def cpu_us(result: dict[str, Any], role: str = "ext_authz") -> float | None:
    cpu = result["cpu_seconds"].get(role)
    return None if cpu is None or not result["requests"] else cpu / result["requests"] * 1e6


def _ratio(new: float | None, old: float | None) -> float | None:
    return None if new is None or not old else round(new / old, 3)


def ab_rows(sides: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per scenario: the pooled figures of each side, new/old ratios, the per-round ratios (round i new against
    round i old: the spread), and whether the budget holds (throughput >= 0.95x and CPU per request <= 1.05x)."""
    rows = []
    for key, by_side in sides.items():
        new_rounds, old_rounds = by_side.get("new", []), by_side.get("old", [])
        if not new_rounds or not old_rounds:
            continue
        new, old = pooled(new_rounds), pooled(old_rounds)
        throughput = _ratio(new["requests_per_s"], old["requests_per_s"])
        cpu = _ratio(cpu_us(new), cpu_us(old))
        per_round = [{"throughput": _ratio(n["requests_per_s"], o["requests_per_s"]),
                      "cpu_per_request": _ratio(cpu_us(n), cpu_us(o))} for n, o in zip(new_rounds, old_rounds,
                                                                                          strict=False)]
        holds = within_budget(throughput, cpu)
        agree = all(within_budget(r["throughput"], r["cpu_per_request"]) == holds for r in per_round)
        rows.append({
            "scenario": key, "rounds": len(new_rounds),
            "requests_per_s": {"new": new["requests_per_s"], "old": old["requests_per_s"], "ratio": throughput},
            "cpu_us_per_request": {"new": _round(cpu_us(new)), "old": _round(cpu_us(old)), "ratio": cpu},
            "p50_ms": {"new": new["p50_ms"], "old": old["p50_ms"], "ratio": _ratio(new["p50_ms"], old["p50_ms"])},
            "p99_ms": {"new": new["p99_ms"], "old": old["p99_ms"], "ratio": _ratio(new["p99_ms"], old["p99_ms"])},
            "other_cores": {side: _round(p["other_cpu_seconds"] / p["duration_s"] if p["other_cpu_seconds"]
                                         is not None and p["duration_s"] else None, 2)
                            for side, p in (("new", new), ("old", old))},
            "per_round": per_round,
            "budget_holds": holds,
            "rounds_agree": agree,  # every round's own new/old gives the same verdict (else: noise decides)
            "errors": new["non_2xx"] + new["socket_errors"] + old["non_2xx"] + old["socket_errors"],
        })
    return rows


def within_budget(throughput: float | None, cpu: float | None) -> bool:
    return throughput is not None and cpu is not None and throughput >= 1 - BUDGET and cpu <= 1 + BUDGET


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ab_markdown(ab: dict[str, Any], labels: dict[str, str], busy_cores: float = 0.5) -> list[str]:
    """The A/B section of the results markdown (and of what is printed)."""
    old = ab["old"]
    dirty = " + uncommitted changes in authz/" if ab["new"].get("dirty") else ""
    lines = ["", f"A/B against the baseline `{ab['ref']}` = {old['commit'][:7]} ({old['subject'][:80]}): phantom-authz "
                 f"from the current tree (new, {ab['new']['commit'][:7]}{dirty}) and from a worktree of the baseline "
                 f"(old), everything else the same; "
                 f"{ab['rounds']} rounds of each, interleaved ({', '.join(ab['order'])}); "
                 f"budget: new costs at most {BUDGET:.0%} more (throughput ≥ {1 - BUDGET:.2f}x old, phantom-authz "
                 f"CPU per request ≤ {1 + BUDGET:.2f}x old):", "",
             "| | scenario | req/s new | req/s old | new/old | CPU µs/req new | CPU µs/req old | new/old "
             "| p50 ms new | p50 ms old | p99 ms new | p99 ms old | 5 % budget |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in ab["rows"]:
        rps, cpu, p50, p99 = (row[k] for k in ("requests_per_s", "cpu_us_per_request", "p50_ms", "p99_ms"))
        verdict = ("holds" if row["budget_holds"] else "**exceeded**") + ("" if row["rounds_agree"]
                                                                            else " (rounds disagree)")
        lines.append(f"| {row['scenario']} | {labels.get(row['scenario'], '')} | {_num(rps['new'])} | "
                     f"{_num(rps['old'])} | {_num(rps['ratio'], 3)} | {_num(cpu['new'])} | {_num(cpu['old'])} | "
                     f"{_num(cpu['ratio'], 3)} | {_num(p50['new'], 2)} | {_num(p50['old'], 2)} | "
                     f"{_num(p99['new'], 2)} | {_num(p99['old'], 2)} | {verdict} |")
    for row in ab["rows"]:
        spread = "; ".join(f"round {i + 1}: req/s {_num(r['throughput'], 3)}, CPU/req {_num(r['cpu_per_request'], 3)}"
                           for i, r in enumerate(row["per_round"]))
        other = row["other_cores"]
        lines.append(f"- {row['scenario']}, new/old per round: {spread}; other load (cores) new "
                     f"{_num(other['new'], 2)}, old {_num(other['old'], 2)}"
                     + (f"; **{row['errors']} non-2xx or socket errors**" if row["errors"] else ""))
    disturbed = [row["scenario"] for row in ab["rows"]
                 if any(v is not None and v >= busy_cores for v in row["other_cores"].values())]
    if disturbed:
        lines.append(f"- **other load**: the machine spent >= {busy_cores} cores on average outside the benchmark "
                     f"during {', '.join(disturbed)}: the verdict is noise; rerun on an idle machine or with more "
                     "--ab-rounds.")
    for key, why in old.get("own_envoy", {}).items():
        lines.append(f"- **{key}: the old side ran behind the baseline's own Envoy config** (from its worktree), "
                     f"not the current one ({why}): the two commits' Envoy <-> phantom-authz contracts differ, so "
                     "this row compares each commit with its own Envoy config.")
    if old.get("dropped"):
        lines.append("- left out of the baseline's configuration (its `authz validate-config` refused them): "
                     + "; ".join(f"`{k}` ({why})" for k, why in old["dropped"].items()))
    lines.append(f"- phantom-authz imported `authz` from {ab['new']['origin']} (new) and {old['origin']} (old).")
    for key, error in ab.get("errors", {}).items():
        lines.append(f"- **{key}: A/B failed**: {error.splitlines()[0][:300]}")
    return lines
