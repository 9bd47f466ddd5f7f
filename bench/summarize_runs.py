"""Medians over several runs of bench/envoy_bench.py: one run on a shared 2-core VM moves ±10-30 %, a ratio of two
scenarios measured a minute apart more. Prints a markdown table; asserts nothing.

    python bench/summarize_runs.py --last 3                      # the three newest runs in bench/results/
    python bench/summarize_runs.py bench/results/2026...json ...  # given runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(RESULTS.parent))

from cpu_goals import CPU_GOALS, cpu_us  # noqa: E402

# (label, numerator, denominator, figure, bound, higher is better)
GOALS = [
    ("c >= 0.8x b throughput", "c", "b", "requests_per_s", 0.8, True),
    ("c p99 <= 1.25x b p99", "c", "b", "p99_ms", 1.25, False),
    ("d within 10% of c (throughput)", "d", "c", "requests_per_s", 0.9, True),
    ("ch >= 0.8x j throughput", "ch", "j", "requests_per_s", 0.8, True),
    ("ch p99 <= 1.3x j p99", "ch", "j", "p99_ms", 1.3, False),
    ("dh >= 0.7x j throughput", "dh", "j", "requests_per_s", 0.7, True),
    ("ch >= 2x c throughput", "ch", "c", "requests_per_s", 2.0, True),
]


def load(paths: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for path in paths:
        run = json.loads(path.read_text())
        if run.get("settings", {}).get("quick"):
            print(f"note: {path.name} is a quick run", file=sys.stderr)
        runs.append(run)
    return runs


def figure(run: dict[str, Any], scenario: str, name: str) -> float | None:
    found = run.get("scenarios", {}).get(scenario)
    value = found.get(name) if isinstance(found, dict) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def spread(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):,.2f} ({min(values):,.2f}-{max(values):,.2f})"


def report(runs: list[dict[str, Any]]) -> str:
    names = [str(r.get("timestamp", "?")) for r in runs]
    lines = [f"Medians (min-max) over {len(runs)} runs: {', '.join(names)}", "",
             "| scenario | req/s | p99 ms |", "|---|---:|---:|"]
    scenarios = list(dict.fromkeys(k for r in runs for k in r.get("scenarios", {})))
    for key in scenarios:
        rps = [v for r in runs if (v := figure(r, key, "requests_per_s")) is not None]
        p99 = [v for r in runs if (v := figure(r, key, "p99_ms")) is not None]
        lines.append(f"| {key} | {spread(rps)} | {spread(p99)} |")
    lines += ["", "| goal | per run | median | met (median) |", "|---|---|---:|---|"]
    for label, num, den, name, bound, higher in GOALS:
        ratios = []
        for r in runs:
            a, b = figure(r, num, name), figure(r, den, name)
            if a is not None and b is not None:
                ratios.append(a / b)
        if not ratios:
            continue
        median = statistics.median(ratios)
        met = median >= bound if higher else median <= bound
        lines.append(f"| {label} | {', '.join(f'{x:.2f}' for x in ratios)} | {median:.2f} | "
                     f"{'yes' if met else '**no**'} |")
    lines += cpu_report(runs)
    ours = [float(r["miss"]["ours_on_miss_p50_ms"]) for r in runs
            if isinstance(r.get("miss"), dict) and isinstance(r["miss"].get("ours_on_miss_p50_ms"), (int, float))]
    if ours:
        median = statistics.median(ours)
        lines.append(f"| f adds <= 1 ms over the AS at p50 | {', '.join(f'{x:.2f} ms' for x in ours)} | "
                     f"{median:.2f} ms | {'yes' if median <= 1.0 else '**no**'} |")
    return "\n".join(lines)


def cpu_report(runs: list[dict[str, Any]]) -> list[str]:
    """Issue 17's CPU goals: per run the measured µs and its bound from the same run; the medians of both."""
    lines: list[str] = []
    for label, key, bound_of, bound_text in CPU_GOALS:
        pairs = [(m, b) for r in runs
                 if (m := cpu_us(r.get("scenarios", {}), key, "ext_authz")) is not None
                 and (b := bound_of(r.get("scenarios", {}))) is not None]
        if not pairs:
            continue
        if not lines:
            lines = ["", "CPU goals (phantom-authz's CPU per request, µs; each bound from its own run):", "",
                     "| goal | per run: measured / bound | median measured | median bound | met (medians) |",
                     "|---|---|---:|---:|---|"]
        measured = statistics.median(m for m, _ in pairs)
        bound = statistics.median(b for _, b in pairs)
        lines.append(f"| {label} | {', '.join(f'{m:.1f} / {b:.1f}' for m, b in pairs)} | {key} {measured:.1f} | "
                     f"{bound_text} = {bound:.1f} | {'yes' if measured <= bound else '**no**'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="results JSON files")
    parser.add_argument("--last", type=int, default=0, help="the N newest runs in bench/results/")
    args = parser.parse_args(argv)
    paths = list(args.runs)
    if args.last:
        paths += sorted(p for p in RESULTS.glob("2*.json"))[-args.last:]
    if not paths:
        parser.error("give results files or --last N")
    print(report(load(paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
