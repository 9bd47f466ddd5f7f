"""Issue 17's goals on phantom-authz's own CPU per request, from a bench/envoy_bench.py run (its ``scenarios``).

Each goal compares one CPU figure (µs of CPU per request of one process tree in one scenario) with a bound made
from figures of the same run:

- ch ≤ j - a: phantom-authz's CPU per cached HTTP-mode check at most the CPU Envoy's own ``jwt_authn`` filter adds
  to Envoy for verifying an RS256 JWT (Envoy's CPU in j minus Envoy's CPU in a);
- dh ≤ 60 µs: the same with the embedded records policy;
- c ≤ 1.1x b: phantom-authz's CPU per cached gRPC check at most 1.1x the no-op grpc.aio server's.

Reported, not asserted. ``bench/summarize_runs.py`` gives their medians over several runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CPU_GOALS", "cpu_goals", "cpu_goals_markdown", "cpu_us"]

Scenarios = Mapping[str, Mapping[str, Any]]


def cpu_us(scenarios: Scenarios, key: str, role: str) -> float | None:
    """µs of CPU per request of ``role``'s process tree in scenario ``key`` (None: not measured)."""
    found = scenarios.get(key)
    if not isinstance(found, Mapping) or not found.get("requests"):
        return None
    seconds = found.get("cpu_seconds", {}).get(role)
    return None if seconds is None else float(seconds) / float(found["requests"]) * 1e6


def _difference(scenarios: Scenarios) -> float | None:
    j, a = cpu_us(scenarios, "j", "envoy"), cpu_us(scenarios, "a", "envoy")
    return None if j is None or a is None else j - a


def _scaled_b(scenarios: Scenarios) -> float | None:
    b = cpu_us(scenarios, "b", "ext_authz")
    return None if b is None else 1.1 * b


# (label, scenario measured (its ext_authz CPU), the bound from the same run, how the bound reads)
CPU_GOALS: tuple[tuple[str, str, Callable[[Scenarios], float | None], str], ...] = (
    ("ch ≤ jwt_authn's extra Envoy CPU (j - a)", "ch", _difference, "j - a"),
    ("dh ≤ 60 µs", "dh", lambda _: 60.0, "60"),
    ("c ≤ 1.1x b", "c", _scaled_b, "1.1x b"),
)


def cpu_goals(scenarios: Scenarios) -> list[dict[str, Any]]:
    """The goals whose figures this run measured: measured µs, bound µs, met."""
    out = []
    for label, key, bound_of, bound_text in CPU_GOALS:
        measured, bound = cpu_us(scenarios, key, "ext_authz"), bound_of(scenarios)
        if measured is not None and bound is not None:
            out.append({"goal": label, "scenario": key, "measured_us": round(measured, 1), "bound": bound_text,
                        "bound_us": round(bound, 1), "met": measured <= bound})
    return out


def cpu_goals_markdown(goals: list[dict[str, Any]]) -> list[str]:
    if not goals:
        return []
    lines = ["", "CPU goals of issue 17 (phantom-authz's own CPU per request, µs; the bounds from this run; reported, "
             "not asserted):", "", "| goal | measured | bound | met |", "|---|---:|---:|---|"]
    lines += [f"| {g['goal']} | {g['scenario']} {g['measured_us']:.1f} | {g['bound']} = {g['bound_us']:.1f} | "
              f"{'yes' if g['met'] else '**no**'} |" for g in goals]
    return lines
