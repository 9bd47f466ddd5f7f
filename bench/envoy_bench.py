"""End-to-end benchmark through real Envoy 1.40, driven by wrk. Prints figures and writes them; asserts nothing.

On loopback it starts the echo upstream, the dev AS (with an artificial introspection latency standing for a real
AS across a network, 5 ms by default), phantom-authz (log level WARNING) and Envoy, and measures in one run:

  a   Envoy -> upstream with the ext_authz filter removed: the ceiling
  j   Envoy's own jwt_authn filter verifying an RS256 JWT (fresh key, inline JWKS), no ext_authz: the ceiling for
      any token check in Envoy
  b   Envoy -> bench/noop_authz.py (grpc.aio, answers OK with a fixed Authorization header): the Python floor
  h   Envoy -> bench/noop_http_authz.py --stack aiohttp (HTTP ext_authz, same answer): the Python HTTP floor
  c   phantom-authz, cache hit, scope check only (/httpbin/get, one token, cache warmed first)
  r   c with 1,000 route rules in phantom-authz's config (routes.rules, bench_route_rules): the request is matched
      against them on every check (goal: within 5 % of c)
  d   c + the embedded Rego policy records/decision (/records/alice/profile, subject alice)
  ch  c with phantom-authz's HTTP transport (server.http.listen) behind envoy/envoy-http.yaml
  dh  d the same way
  e   c + remote OPA (the Data API double tests/opa_double.py), same route and policy
  f   a cache miss on every request: pre-issued tokens, wrk's Lua script sends each once; also at -c1 (unloaded)
  g   1,000 concurrent requests carrying one fresh token: how many introspections reached the AS (goal 1)

ch and dh need phantom-authz's HTTP transport (authz/transport/http_server.py, server.http.listen) and
envoy/envoy-http.yaml;
without them they are skipped (logged and reported as such, the exit status is not affected).

For each wrk scenario: requests/s, latency p50/p99/p99.9, non-2xx responses, the CPU time each process used, and
the CPU the machine spent outside the benchmark meanwhile (a warning when other load disturbed a scenario).
Writes bench/results/<timestamp>.json and .md (and .png when matplotlib is importable) plus latest.json/latest.md.

    python bench/envoy_bench.py                 # full run, ~10 s per scenario
    python bench/envoy_bench.py --quick         # smoke run, under a minute
    python bench/envoy_bench.py --scenarios c,d --duration 20 --connections 32
    python bench/envoy_bench.py --scenarios j,ch,dh      # HTTP mode against Envoy's jwt_authn
    python bench/envoy_bench.py --scenarios c,ch,d,dh --baseline b4206c0   # A/B: c, ch, d, dh vs that commit

With --baseline REF, c, ch, d and dh (those selected) are measured as an A/B (bench/baseline_ab.py): phantom-authz
from the current tree (new) and from a temporary git worktree of REF (old), interleaved over --ab-rounds rounds
(old/new order flipped each round), against the same dev AS, echo upstream, Envoy config (REF's own, said so, when
REF's service does not work behind the current one), policies and tokens (d and dh: subject alice); the table
gives new/old for req/s and phantom-authz CPU per request and whether issue 12's 5 % budget holds.
Other scenarios run as without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

from baseline_ab import (  # noqa: E402
    DEFAULT_ROUNDS,
    BaselineError,
    Checkout,
    SourceTree,
    ab_markdown,
    ab_rows,
    pooled,
    start_failure,
    tree_state,
    worktree,
)
from cpu_goals import cpu_goals, cpu_goals_markdown  # noqa: E402
from envoy_mutations import with_http_ext_authz, with_jwt_authn, without_ext_authz  # noqa: E402
from noop_http_authz import AUTHORIZATION as NOOP_HTTP_AUTHORIZATION  # noqa: E402

from devtools.processes import Process, envoy_binary, free_port, wait_for_port  # noqa: E402
from devtools.signing_keys import SigningKeys  # noqa: E402
from tests.harness import GATEWAY_SECRET, Response, Stack, basic, http_request  # noqa: E402

POLICIES = ROOT / "deploy" / "policies"
STATIC_LUA = BENCH / "wrk_static.lua"
ROTATE_LUA = BENCH / "wrk_rotate.lua"
ENVOY_GRPC = ROOT / "envoy" / "envoy.yaml"  # Envoy -> phantom-authz over gRPC (a, j, b, h mutate it; c, d, e, f, g)
ENVOY_HTTP = ROOT / "envoy" / "envoy-http.yaml"  # Envoy -> phantom-authz's HTTP transport (ch, dh)
HTTPBIN_PATH = "/httpbin/get"
RECORDS_PATH = "/records/alice/profile"
AUDIENCE = "api.example.com"  # the dev AS's (and tests/harness.py's) audience

# In the order the phases run (and the help lists them).
SCENARIOS: dict[str, str] = {
    "a": "Envoy -> upstream, no ext_authz (ceiling)",
    "j": "Envoy jwt_authn, RS256 JWT, no ext_authz (token-check ceiling)",
    "b": "no-op Python grpc.aio ext_authz (floor)",
    "h": "no-op Python aiohttp HTTP ext_authz (HTTP floor)",
    "c": "phantom-authz, cache hit, scope check",
    "r": "c with 1,000 route rules (routes.rules)",
    "t": "c with tracing on (a span per check, exporter none)",
    "d": "c + embedded Rego policy",
    "f": "cache miss on every request",
    "g": "1,000 concurrent requests, one fresh token",
    "ch": "phantom-authz HTTP mode, cache hit, scope check",
    "dh": "ch + embedded Rego policy",
    "e": "c + remote OPA (Data API double)",
}
# The table's rows, in reading order: ceilings, floors, then phantom-authz (gRPC next to HTTP).
WRK_SCENARIOS = ("a", "j", "b", "h", "c", "c1", "r", "t", "ch", "d", "dh", "e", "f", "f1")
ROWS: dict[str, str] = {**SCENARIOS, "c1": "c at 1 connection (unloaded)", "f1": "f at 1 connection (unloaded)"}
HTTP_MODE = ("ch", "dh")
AB_SCENARIOS = ("c", "ch", "d", "dh")  # what --baseline measures as an A/B, in this order within a round
POLICY_SCENARIOS = ("d", "dh")  # the embedded Rego policy: RECORDS_PATH with a token of subject alice
NOT_PHANTOM = ("a", "j", "b", "h")  # no phantom-authz in these: no RSS figure
OTHER_LOAD_WARNING = 0.5  # cores used outside the benchmark during a run, on average, that make a warning


def bench_route_rules(count: int) -> dict[str, Any]:
    """``routes`` with ``count`` rules of every kind (exact, prefix, template with methods, host-bound); the bench's
    requests (HTTPBIN_PATH, any host) win the ``httpbin`` rule after passing over ten more specific ones in the same
    index bucket, the way a real table crowds a popular first segment."""
    rules: list[dict[str, Any]] = [{"name": "httpbin", "match": {"paths": ["/httpbin/**"]}, "required_scopes": "read"}]
    rules += [{"name": f"httpbin-{n}", "match": {"paths": [f"/httpbin/x{n}"]}, "required_scopes": "admin"}
              for n in range(10)]
    shapes = (lambda n: {"paths": [f"/svc{n}/health"]},
              lambda n: {"paths": [f"/svc{n}/**"]},
              lambda n: {"paths": [f"/svc{n}/{{id}}/**"], "methods": ["GET", "HEAD"]},
              lambda n: {"hosts": [f"svc{n}.example.com"], "paths": ["/api/**"]})
    rules += [{"name": f"svc-{n}", "match": shapes[n % 4](n), "required_scopes": "read"}
              for n in range(count - len(rules))]
    return {"rules": rules}


class ScenarioError(RuntimeError):
    """A scenario could not be measured (a sanity request failed, wrk failed); the others still run."""


# --------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    quick: bool
    scenarios: tuple[str, ...]
    duration: int  # seconds of wrk per scenario
    warmup: int  # seconds of wrk before each measured run (not recorded)
    threads: int
    connections: int
    latency_ms: float  # the dev AS's artificial introspection latency
    max_tokens: int  # bound on pre-issued tokens for f
    burst: int  # concurrent requests in g
    workers: int | None  # phantom-authz --workers, if its CLI has the flag
    envoy_concurrency: int
    decision_log: str
    wrk: str
    out: Path
    baseline: str | None = None  # --baseline REF: c, ch, d, dh as an A/B against phantom-authz from REF
    ab_rounds: int = DEFAULT_ROUNDS


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="envoy_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s per scenario, fewer tokens (< 60 s)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)")
    parser.add_argument("--duration", type=int, help="seconds of wrk per scenario (default 10; 2 with --quick)")
    parser.add_argument("--warmup", type=int, help="seconds of wrk warm-up before each scenario (2; 1 with --quick)")
    parser.add_argument("--threads", "-t", type=int, default=2, help="wrk -t (default %(default)s)")
    parser.add_argument("--connections", "-c", type=int, default=16, help="wrk -c (default %(default)s)")
    parser.add_argument("--as-latency-ms", type=float, default=5.0,
                        help="dev AS --latency-ms: artificial introspection latency (default %(default)s)")
    parser.add_argument("--max-tokens", type=int,
                        help="bound on tokens pre-issued for f (default 100000; 20000 with --quick)")
    parser.add_argument("--burst", type=int, default=1000, help="concurrent requests in g (default %(default)s)")
    parser.add_argument("--workers", type=int, help="passed to `authz serve --workers` if the CLI has that flag")
    parser.add_argument("--envoy-concurrency", type=int, default=1, help="Envoy --concurrency (default %(default)s)")
    parser.add_argument("--decision-log", default="summary", choices=("off", "summary", "full"),
                        help="phantom-authz policy.decision_log (default %(default)s, as deploy/authz.yaml)")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="wrk binary")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="results directory")
    parser.add_argument("--baseline", metavar="REF",
                        help="git commit/ref: measure c, ch, d and dh with phantom-authz from REF (a temporary "
                             "worktree) and from this tree, interleaved, and report new/old against the 5 %% budget")
    parser.add_argument("--ab-rounds", type=int, default=DEFAULT_ROUNDS,
                        help="with --baseline: rounds of each side per scenario (default %(default)s, at least 2)")
    args = parser.parse_args(argv)
    scenarios = tuple(dict.fromkeys(s.strip().lower() for s in args.scenarios.split(",") if s.strip()))
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        parser.error(f"--scenarios: unknown {','.join(unknown) or '(none given)'}; choose from "
                     f"{','.join(SCENARIOS)}")
    duration = args.duration if args.duration is not None else (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if not 1 <= duration <= 120 or not 0 <= warmup <= 30:
        parser.error("--duration must be 1..120 and --warmup 0..30 (seconds)")
    if args.threads < 1 or args.connections < args.threads:
        parser.error("--threads must be >= 1 and --connections >= --threads")
    if not 1 <= args.burst <= 5000:
        parser.error("--burst must be 1..5000")
    max_tokens = args.max_tokens if args.max_tokens is not None else (20_000 if args.quick else 100_000)
    if not 100 <= max_tokens <= 500_000:
        parser.error("--max-tokens must be 100..500000")
    if not 2 <= args.ab_rounds <= 20:
        parser.error("--ab-rounds must be 2..20")
    if args.baseline is not None and not set(AB_SCENARIOS) & set(scenarios):
        parser.error(f"--baseline measures {','.join(AB_SCENARIOS)}: select at least one of them with --scenarios")
    return Settings(quick=args.quick, scenarios=scenarios, duration=duration, warmup=warmup, threads=args.threads,
                    connections=args.connections, latency_ms=args.as_latency_ms, max_tokens=max_tokens,
                    burst=args.burst, workers=args.workers, envoy_concurrency=args.envoy_concurrency,
                    decision_log=args.decision_log, wrk=args.wrk, out=args.out, baseline=args.baseline,
                    ab_rounds=args.ab_rounds)


# ------------------------------------------------------------------------------------------------- processes


def _relative(text: str) -> str:
    """Commands as someone would type them in the repository: paths relative to it, the venv's python."""
    text = text.replace(sys.executable, ".venv/bin/python" if sys.executable.startswith(str(ROOT)) else "python")
    return text.replace(str(ROOT) + "/", "")


def command_line(argv: list[str]) -> str:
    return _relative(shlex.join(argv))


def _proc_table() -> dict[int, int]:
    """pid -> ppid for every process we can see."""
    table: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            table[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return table


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (phantom-authz with --workers runs a supervisor and worker processes)."""
    table = _proc_table()
    tree, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in table.items() if pp == parent]
        tree.extend(children)
        frontier.extend(children)
    return tree


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent running processes (user, nice, system; all cores, /proc/stat) or
    stolen by the hypervisor, in seconds. Interrupt and softirq time (loopback networking, charged to no process)
    is left out."""
    with contextlib.suppress(OSError, ValueError):
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = ticks
        return (user + nice + system + steal) / _TICK
    return 0.0


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, summed over ``pid`` and its descendants."""
    totals = {"VmRSS": 0, "VmHWM": 0}
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in totals:
                    totals[key] += int(value.split()[0])
    return totals


def cli_has_workers() -> bool:
    """Whether `authz serve` has a --workers flag (being added elsewhere; skipped silently when absent)."""
    try:
        out = subprocess.run([sys.executable, "-m", "authz", "serve", "--help"], capture_output=True, text=True,
                             timeout=60, cwd=ROOT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--workers" in out.stdout


class BenchStack(Stack):
    """tests.harness.Stack with what the benchmark needs on top (harness untouched): processes by role, several
    phantom-authz/Envoy instances one after another, our own port choice for phantom-authz so its whole
    ``server`` section can be given (log level WARNING), Envoy's concurrency, and the commands used."""

    def __init__(self, workdir: Path, settings: Settings, workers_flag: bool) -> None:
        super().__init__(workdir)
        self.settings = settings
        self.workers_flag = workers_flag
        self.roles: dict[str, Process] = {}
        self.commands: dict[str, str] = {}
        self.configs: dict[str, dict[str, Any]] = {}  # phantom-authz configurations, for the report

    def _start_role(self, role: str, proc: Process, timeout: float = 30.0) -> Process:
        self.procs.append(proc)
        self.commands[proc.name] = command_line(proc.argv)
        proc.start(timeout)
        self.roles[role] = proc
        return proc

    def stop_role(self, role: str) -> None:
        proc = self.roles.pop(role, None)
        if proc is not None:
            proc.stop()
            with contextlib.suppress(ValueError):
                self.procs.remove(proc)

    def start_bench_as(self) -> Process:
        proc = self.start_dev_as("--latency-ms", f"{self.settings.latency_ms:g}", "--token-ttl", "3600")
        self.commands[proc.name] = command_line(proc.argv)
        self.roles["dev AS"] = proc
        return proc

    def start_bench_echo(self) -> Process:
        proc = self.start_echo()
        self.commands[proc.name] = command_line(proc.argv)
        self.roles["echo"] = proc
        return proc

    def start_noop(self) -> Process:
        self.authz_port = port = free_port()
        return self._start_role("ext_authz", Process(
            "noop-authz", [sys.executable, str(BENCH / "noop_authz.py"), "--port", str(port)], port, self.dir))

    def start_noop_http(self) -> int:
        """bench/noop_http_authz.py on aiohttp (as http_stack_bench.py runs it); its port."""
        port = free_port()
        self._start_role("ext_authz", Process(
            "noop-http-authz", [sys.executable, str(BENCH / "noop_http_authz.py"), "--stack", "aiohttp", "--port",
                                str(port)], port, self.dir))
        return port

    def start_opa_double(self) -> str:
        port = free_port()
        self._start_role("OPA double", Process(
            "opa-double", [sys.executable, "-m", "tests.opa_double", "--port", str(port), "--policies",
                           str(POLICIES)], port, self.dir, env={"PYTHONPATH": str(ROOT)}))
        return f"http://127.0.0.1:{port}"

    def start_phantom(self, name: str, policy: dict[str, Any], http_port: int | None = None,
                      tree: SourceTree | None = None, **sections: Any) -> Process:
        """phantom-authz on a port we choose, so the whole ``server`` section can be given (Stack.start_authz
        picks the port itself and would need ``server`` to be left at its DEBUG default). With ``http_port``, its
        HTTP transport listens there too (``server.http.listen``) and is what we wait for. With ``tree`` (the
        --baseline A/B), it runs from that source tree, with the configuration that tree accepts. ``sections``: more
        top-level configuration sections (``routes``, ``tracing``)."""
        self.authz_port = port = free_port()
        server: dict[str, Any] = {"listen": f"127.0.0.1:{port}", "log_level": "WARNING", "shutdown_grace_seconds": 2}
        if http_port is not None:  # server.http.listen; server.http_listen in the first drafts of HTTP mode
            address = f"127.0.0.1:{http_port}"
            server.update({"http": {"listen": address}} if http_listen_key() == "http.listen"
                          else {"http_listen": address})
        config = self.authz_config(server=server, policy={**policy, "decision_log": self.settings.decision_log},
                                   **sections)
        path = self.dir / f"{name}.yaml"
        env = {"TEST_GATEWAY_SECRET": GATEWAY_SECRET}
        if tree is None:
            path.write_text(yaml.safe_dump(config, sort_keys=False))
        else:
            config = tree.prepare_config(config, path, env)
        self.configs[name] = json.loads(json.dumps(config).replace(str(ROOT) + "/", ""))
        argv = [sys.executable, "-m", "authz", "serve", "--config", str(path)]
        if self.settings.workers is not None and self.workers_flag:
            argv += ["--workers", str(self.settings.workers)]
        self.authz = self._start_role("ext_authz", Process(name, argv, http_port or port, self.dir, env=env)
                                      if tree is None else tree.process(name, argv, http_port or port, self.dir, env))
        if http_port is not None:
            wait_for_port(port, 10.0, self.authz.proc)  # the gRPC listener too
        return self.authz

    def start_bench_envoy(self, name: str, mutate: Callable[[dict[str, Any]], None] | None = None, *,
                          template: Path | None = None, clusters: dict[str, int | str] | None = None) -> Process:
        """Envoy with ``envoy/envoy.yaml`` (or ``template``) re-pointed at this stack; ``clusters`` replaces the
        default {phantom_authz: <authz port>, echo: <echo port>}."""
        from devtools.envoy_config import render_envoy_config

        self.envoy_port = free_port()
        admin = free_port()
        if clusters is None:
            authz_port = self.authz_port or free_port()  # a, j: the cluster stays defined, nothing calls it
            clusters = {"phantom_authz": authz_port, "echo": self.echo_port}
        config = render_envoy_config(self.dir / f"{name}.yaml", listen_port=self.envoy_port, admin_port=admin,
                                     clusters=clusters, mutate=mutate, template=template or ENVOY_GRPC)
        return self._start_role("envoy", Process(
            name, [envoy_binary(), "-c", str(config), "--log-level", "warn", "--concurrency",
                   str(self.settings.envoy_concurrency), "--base-id", str(admin)], self.envoy_port, self.dir))

    def cpu_snapshot(self) -> dict[str, float]:
        return {role: cpu_seconds(proc.proc.pid) for role, proc in self.roles.items()
                if proc.proc is not None and proc.running}

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """phantom-authz's /metrics, parsed; with several workers, each one's (on the metrics port + its index)
        summed. Empty when unreachable."""
        workers = self.settings.workers if self.settings.workers and self.workers_flag else 1
        total: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for index in range(workers):
            try:
                text = http_request("GET", self.metrics_port + index, "/metrics", timeout=5).body.decode()
            except OSError:
                return {}
            for key, value in parse_prometheus(text).items():
                total[key] = total.get(key, 0.0) + value
        return total


# ---------------------------------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
MetricKey = tuple[str, frozenset[tuple[str, str]]]


def parse_prometheus(text: str) -> dict[MetricKey, float]:
    samples: dict[MetricKey, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        labels = frozenset(_LABEL.findall(match.group(2) or ""))
        with contextlib.suppress(ValueError):
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def metric_sum(samples: dict[MetricKey, float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def histogram_delta(before: dict[MetricKey, float], after: dict[MetricKey, float], name: str
                    ) -> dict[str, Any] | None:
    """Count and mean (ms) of the observations between two scrapes, and the bucket holding their median (the
    buckets are too coarse, e.g. 5-10 ms, to interpolate a p50 from)."""
    count = metric_sum(after, f"{name}_count") - metric_sum(before, f"{name}_count")
    if count <= 0:
        return None
    total = metric_sum(after, f"{name}_sum") - metric_sum(before, f"{name}_sum")
    cumulative: dict[float, float] = {}
    for (n, labels), value in after.items():
        if n == f"{name}_bucket":
            le = dict(labels).get("le", "+Inf")
            bound = math.inf if le == "+Inf" else float(le)
            cumulative[bound] = cumulative.get(bound, 0.0) + value - before.get((n, labels), 0.0)
    lower, median_bucket = 0.0, [0.0, math.inf]
    for bound in sorted(cumulative):
        if cumulative[bound] >= count / 2:
            median_bucket = [lower * 1000, bound * 1000]
            break
        lower = bound
    return {"count": count, "mean_ms": round(total / count * 1000, 3), "p50_bucket_ms": median_bucket}


# -------------------------------------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    command: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    wrapped: int  # f: requests that reused a token (ran out of pre-issued tokens)
    duration_s: float
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # CPU the machine spent outside the benchmark's processes (and wrk, and this script) during the run: other
    # load on a shared machine, plus some kernel network work not charged to a process. High: figures disturbed.
    other_cpu_seconds: float | None = None
    rss_mib: float | None = None
    notes: list[str] = field(default_factory=list)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(output: str, command: str) -> WrkResult:
    """wrk's own report (Requests/sec, the 50%/99% latency lines) plus our Lua done() line (p99.9 and exact
    figures in µs). wrk's text is used for requests/s, p50 and p99; the Lua line for p99.9 and counts."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    lua = re.search(r"^BENCH (.*)$", output, re.M)
    if rate is None or lua is None:
        raise ScenarioError(f"cannot parse wrk output:\n{output[-2000:]}")
    figures = {k: float(v) for k, v in (item.split("=", 1) for item in lua.group(1).split())}
    percentiles = {int(p): float(v) * _UNITS_MS[u] for p, v, u in
                   re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)}
    socket = sum(figures.get(k, 0) for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return WrkResult(
        command=command, requests_per_s=float(rate.group(1)),
        p50_ms=percentiles.get(50, figures["p50_us"] / 1000), p99_ms=percentiles.get(99, figures["p99_us"] / 1000),
        p999_ms=figures["p999_us"] / 1000, max_ms=figures["max_us"] / 1000, requests=int(figures["requests"]),
        non_2xx=int(figures["non2xx"]), socket_errors=int(socket), wrapped=int(figures.get("wrapped", 0)),
        duration_s=figures["duration_us"] / 1e6)


def wrk_argv(settings: Settings, url: str, script: Path, script_args: list[str], seconds: int,
             threads: int | None = None, connections: int | None = None) -> list[str]:
    return [settings.wrk, f"-t{threads or settings.threads}", f"-c{connections or settings.connections}",
            f"-d{seconds}s", "--latency", "-s", str(script), url, "--", *script_args]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(stack: BenchStack, argv: list[str], seconds: int) -> WrkResult:
    before, wrk_before = stack.cpu_snapshot(), _children_cpu()
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    except subprocess.TimeoutExpired:
        raise ScenarioError(f"wrk did not finish within {seconds + 60}s") from None
    wrk_cpu = _children_cpu() - wrk_before
    after = stack.cpu_snapshot()
    busy, own = machine_busy_seconds() - busy_before, own_cpu_seconds() - own_before
    if done.returncode != 0:
        raise ScenarioError(f"wrk exited {done.returncode}: {done.stderr.strip()[-1000:]}")
    result = parse_wrk(done.stdout, command_line(argv))
    result.cpu_seconds = {role: round(after[role] - before[role], 3) for role in after if role in before}
    result.cpu_seconds["wrk"] = round(wrk_cpu, 3)
    if busy > 0:
        result.other_cpu_seconds = round(busy - sum(result.cpu_seconds.values()) - own, 3)
    if result.non_2xx or result.socket_errors:
        result.notes.append(f"{result.non_2xx} non-2xx responses, {result.socket_errors} socket errors")
    return result


def warm_up(settings: Settings, url: str, token_file: Path) -> None:
    if settings.warmup > 0:
        subprocess.run(wrk_argv(settings, url, STATIC_LUA, [str(token_file)], settings.warmup),
                       capture_output=True, timeout=settings.warmup + 60, check=False)


# ------------------------------------------------------------------------------------------- tokens and burst


def issue_tokens(as_port: int, count: int, scope: str = "read", timeout: float = 300.0) -> list[str]:
    """``count`` fresh opaque tokens from the dev AS's token endpoint, 32 requests at a time."""

    async def issue() -> list[str]:
        url = f"http://127.0.0.1:{as_port}/oauth/v2/oauth-token"
        headers = {"Authorization": basic("demo-client", "demo-secret")}
        tokens: list[str] = []
        pending = iter(range(count))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:

            async def worker() -> None:
                for _ in pending:
                    async with session.post(url, data={"grant_type": "client_credentials", "scope": scope},
                                            headers=headers) as resp:
                        if resp.status != 200:
                            raise ScenarioError(f"token endpoint answered {resp.status}")
                        tokens.append(str((await resp.json())["access_token"]))

            async with asyncio.timeout(timeout):
                await asyncio.gather(*(worker() for _ in range(32)))
        return tokens

    return asyncio.run(issue())


def probe_as(as_port: int, token: str, calls: int, timeout: float = 120.0) -> dict[str, float]:
    """The AS's own latency as a client sees it: ``calls`` sequential introspections (phantom dialect, kept-alive
    connection, the gateway's credentials), unloaded. p50 and mean in ms."""

    async def probe() -> list[float]:
        url = f"http://127.0.0.1:{as_port}/oauth/v2/oauth-introspect"
        headers = {"Authorization": basic("gateway-client", GATEWAY_SECRET), "Accept": "application/jwt"}
        times: list[float] = []
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
            for _ in range(calls):
                began = time.perf_counter()
                async with session.post(url, data={"token": token}, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise ScenarioError(f"introspection endpoint answered {resp.status}")
                times.append((time.perf_counter() - began) * 1000)
        return sorted(times)

    times = asyncio.run(probe())
    return {"calls": calls, "p50_ms": round(times[len(times) // 2], 3), "mean_ms": round(sum(times) / len(times), 3)}


def burst(port: int, path: str, token: str, n: int, timeout: float = 60.0) -> dict[str, Any]:
    """n HTTP/1.1 connections opened first, then one request written on each at once; statuses and times."""
    request = (f"GET {path} HTTP/1.1\r\nHost: bench.local\r\nAuthorization: Bearer {token}\r\n"
               "Connection: close\r\n\r\n").encode()

    async def fire() -> dict[str, Any]:
        gate = asyncio.Semaphore(100)

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            async with gate:
                return await asyncio.open_connection("127.0.0.1", port)

        async with asyncio.timeout(timeout):
            connections = await asyncio.gather(*(connect() for _ in range(n)))
        try:
            started = time.perf_counter()
            for _, writer in connections:
                writer.write(request)

            async def answer(reader: asyncio.StreamReader) -> tuple[int, float]:
                status_line = await reader.readline()
                await reader.read()  # to EOF: Connection: close
                parts = status_line.split()
                return (int(parts[1]) if len(parts) > 1 else 0), time.perf_counter() - started

            async with asyncio.timeout(timeout):
                answers = await asyncio.gather(*(answer(r) for r, _ in connections))
        finally:
            for _, writer in connections:
                writer.close()
        statuses: dict[str, int] = {}
        for status, _ in answers:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        times = sorted(t * 1000 for _, t in answers)
        return {"requests": n, "statuses": statuses, "p50_ms": times[len(times) // 2], "max_ms": times[-1]}

    return asyncio.run(fire())


# ------------------------------------------------------------------------------------------------- scenarios


def check_route(stack: BenchStack, path: str, token: str, status: int = 200) -> Response:
    resp = stack.get(path, token=token)
    if resp.status != status:
        raise ScenarioError(f"GET {path} through Envoy answered {resp.status} (expected {status}): "
                            f"{resp.body[:300]!r}")
    return resp


def upstream_authorization(resp: Response) -> str | None:
    """The ``authorization`` header the echo upstream received, from its JSON answer."""
    headers = resp.json().get("headers", {})
    return next((str(v) for k, v in headers.items() if k.lower() == "authorization"), None)


def http_listen_key() -> str | None:
    """Where phantom-authz's ``server`` section takes the HTTP transport's address: ``http.listen`` (a
    ``server.http`` section), ``http_listen`` (flat), or None when its configuration has neither."""
    try:
        from authz.config import ServerConfig
    except ImportError:
        return None
    fields = getattr(ServerConfig, "model_fields", None)  # pydantic models since issue 13; dataclasses before
    names = set(fields) if fields is not None else {f.name for f in dataclasses.fields(ServerConfig)}
    return "http.listen" if "http" in names else "http_listen" if "http_listen" in names else None


def http_mode_missing() -> list[str]:
    """What ch/dh need and is not there yet: phantom-authz's HTTP transport and Envoy's HTTP-mode config."""
    missing = []
    if importlib.util.find_spec("authz.transport.http_server") is None:
        missing.append("authz/transport/http_server.py")
    if http_listen_key() is None:
        missing.append("server.http.listen (or server.http_listen) in phantom-authz's configuration")
    if not ENVOY_HTTP.exists():
        missing.append(_relative(str(ENVOY_HTTP)))
    return missing


def bench_jwt(issuer: str, keys: SigningKeys) -> str:
    """A JWT like those the dev AS signs (devtools/auth_server.py claims(): RS256, kid = JWK thumbprint, typ
    at+jwt, the same claims), valid for an hour."""
    now = int(time.time())
    return keys.sign({"iss": issuer, "sub": "demo-client", "aud": AUDIENCE, "scope": "read",
                      "client_id": "demo-client", "exp": now + 3600, "iat": now, "jti": uuid.uuid4().hex})


def tampered(jwt_text: str) -> str:
    """The same JWT with one signature character changed: a bad signature."""
    head, _, signature = jwt_text.rpartition(".")
    middle = len(signature) // 2
    return f"{head}.{signature[:middle]}{'A' if signature[middle] != 'A' else 'B'}{signature[middle + 1:]}"


class Runner:
    """Runs the selected scenarios phase by phase; each phase starts the processes it needs and stops them."""

    def __init__(self, stack: BenchStack, settings: Settings, workdir: Path, checkout: Checkout | None = None
                 ) -> None:
        self.stack = stack
        self.settings = settings
        self.dir = workdir
        self.checkout = checkout  # --baseline: c, ch, d and dh are measured by ab_phase() instead
        self.ab_keys = tuple(k for k in AB_SCENARIOS if k in settings.scenarios) if checkout is not None else ()
        self.ab: dict[str, Any] = {}
        self.results: dict[str, WrkResult] = {}
        self.errors: dict[str, str] = {}
        self.invalid: dict[str, str] = {}  # measured, but not every response was a 2xx
        self.extra: dict[str, Any] = {}
        self.token_files: list[Path] = []
        self.peaks_mib: dict[str, float] = {}
        self.skipped: dict[str, str] = {}  # selected, but what it needs is not there (ch, dh before HTTP mode)

    def token_file(self, name: str, tokens: list[str]) -> Path:
        path = self.dir / f"{name}.tokens"
        path.write_text("\n".join(tokens) + "\n")
        path.chmod(0o600)
        self.token_files.append(path)
        return path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.stack.envoy_port}{path}"

    def log(self, text: str) -> None:
        print(text, flush=True)

    def measure(self, key: str, path: str, token_file: Path, *, script: Path = STATIC_LUA,
                script_args: list[str] | None = None, threads: int | None = None,
                connections: int | None = None, warm: bool = True) -> WrkResult:
        args = script_args if script_args is not None else [str(token_file)]
        if warm:
            warm_up(self.settings, self.url(path), token_file)
        argv = wrk_argv(self.settings, self.url(path), script, args, self.settings.duration, threads, connections)
        result = run_wrk(self.stack, argv, self.settings.duration)
        if result.non_2xx or result.socket_errors:  # figures of denials or errors are not the figures asked for
            self.invalid[key] = result.notes[0]
        authz = self.stack.roles.get("ext_authz")
        if key not in NOT_PHANTOM and authz is not None and authz.proc is not None:
            result.rss_mib = round(memory_kib(authz.proc.pid)["VmRSS"] / 1024, 1)
        self.results[key] = result
        other = (result.other_cpu_seconds or 0.0) / result.duration_s if result.duration_s else 0.0
        busy = f" — other load {other:.2f} cores" if other >= OTHER_LOAD_WARNING else ""
        self.log(f"  [{key}] {ROWS[key]}: {result.requests_per_s:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                 f"p99 {result.p99_ms:.2f} ms, p99.9 {result.p999_ms:.2f} ms"
                 + (f" — {'; '.join(result.notes)}" if result.notes else "") + busy)
        return result

    def attempt(self, key: str, body: Callable[[], None]) -> None:
        if key not in self.settings.scenarios or key in self.ab_keys:
            return
        try:
            body()
        except (ScenarioError, OSError, RuntimeError, TimeoutError) as exc:
            self.errors[key] = str(exc)
            self.log(f"  [{key}] FAILED: {exc}")

    # phases ---------------------------------------------------------------------------------------------------

    def run(self) -> None:
        s = self.stack
        wanted = set(self.settings.scenarios) - set(self.ab_keys)
        read_token = s.token("read")
        static = self.token_file("read", [read_token])
        if "a" in wanted:
            self.log("phase a: Envoy without ext_authz")
            s.authz_port = 0
            s.start_bench_envoy("envoy-no-authz", mutate=without_ext_authz)
            self.attempt("a", lambda: self.cache_hit("a", read_token, static))
            s.stop_role("envoy")
        if "j" in wanted:
            self.log("phase j: Envoy with jwt_authn (RS256, inline JWKS), no ext_authz")
            self.attempt("j", self.jwt_authn)
            s.stop_role("envoy")
        if "b" in wanted:
            self.log("phase b: Envoy -> no-op grpc.aio ext_authz")
            s.start_noop()
            s.start_bench_envoy("envoy-noop")
            self.attempt("b", lambda: self.cache_hit("b", read_token, static))
            s.stop_role("envoy")
            s.stop_role("ext_authz")
        if "h" in wanted:
            self.log("phase h: Envoy -> no-op aiohttp HTTP ext_authz")
            self.attempt("h", lambda: self.noop_http(read_token, static))
            s.stop_role("envoy")
            s.stop_role("ext_authz")
        if wanted & {"c", "d", "f", "g"}:
            self.log("phase c/d/f/g: Envoy -> phantom-authz (embedded policy engine)")
            s.start_phantom("phantom-authz", {"paths": [str(POLICIES)], "watch_interval_seconds": 0})
            s.start_bench_envoy("envoy")
            self.attempt("c", lambda: self.cache_hit("c", read_token, static))
            self.attempt("d", lambda: self.policy("d"))
            self.attempt("f", self.cache_miss)
            self.attempt("g", self.single_flight)
            self.record_peak("embedded")
            s.stop_role("envoy")
            s.stop_role("ext_authz")
        if "r" in wanted:
            self.log("phase r: Envoy -> phantom-authz with 1,000 route rules")
            self.c_with("r", "rules", read_token, static, routes=bench_route_rules(1000))
        if "t" in wanted:
            self.log("phase t: Envoy -> phantom-authz with tracing on (exporter none)")
            self.c_with("t", "traced", read_token, static, tracing={"enabled": True, "exporter": "none"})
        if wanted & set(HTTP_MODE):
            self.http_mode(read_token, static)
        if "e" in wanted:
            self.log("phase e: Envoy -> phantom-authz (remote policy engine) -> OPA Data API double")
            try:
                opa = s.start_opa_double()
                s.start_phantom("phantom-authz-remote", {"engine": "remote", "remote": {"url": opa}})
                s.start_bench_envoy("envoy-remote")
            except RuntimeError as exc:
                self.errors["e"] = str(exc)
                self.log(f"  [e] FAILED to start: {exc}")
            else:
                self.attempt("e", lambda: self.policy("e"))
                self.record_peak("remote")
            for role in ("envoy", "ext_authz", "OPA double"):
                s.stop_role(role)
        if self.ab_keys:
            self.ab_phase(read_token, static)

    def c_with(self, key: str, name: str, token: str, token_file: Path, **sections: Any) -> None:
        """Scenario ``key``: c against a phantom-authz with these configuration ``sections`` added."""
        s = self.stack
        try:
            s.start_phantom(f"phantom-authz-{name}", {"paths": [str(POLICIES)], "watch_interval_seconds": 0},
                            **sections)
            s.start_bench_envoy(f"envoy-{name}")
        except (RuntimeError, TimeoutError, OSError) as exc:
            self.errors[key] = str(exc)
            self.log(f"  [{key}] FAILED to start: {exc}")
        else:
            self.attempt(key, lambda: self.cache_hit(key, token, token_file))
        s.stop_role("envoy")
        s.stop_role("ext_authz")

    def ab_phase(self, token: str, token_file: Path) -> None:
        """--baseline: c, ch, d and dh (those selected) with phantom-authz from the current tree (new) and from the
        baseline's worktree (old), one slot at a time (a fresh phantom-authz and Envoy, the cache warmed, wrk's
        warm-up, the measured run), in rounds whose order flips (new then old, then old then new, ...) so that drift
        on the machine falls on both sides alike. d and dh request RECORDS_PATH with one token of subject alice
        (as policy() does without --baseline), the same token on both sides. The pooled new figures are also the
        scenarios' rows of the main table."""
        assert self.checkout is not None
        checkout, rounds = self.checkout, self.settings.ab_rounds
        keys = list(self.ab_keys)
        if (missing := http_mode_missing()):
            for key in (k for k in HTTP_MODE if k in keys):
                self.skipped[key] = "not there yet: " + ", ".join(missing)
                keys.remove(key)
        routes = {key: (HTTPBIN_PATH, token, token_file) for key in keys}  # key -> (path, token, wrk's token file)
        if set(POLICY_SCENARIOS) & set(keys):
            alice = self.stack.token("read", subject="alice")
            alice_file = self.token_file("alice-ab", [alice])
            routes.update({key: (RECORDS_PATH, alice, alice_file) for key in POLICY_SCENARIOS if key in keys})
        commit, dirty = tree_state(ROOT)
        new = SourceTree("new", ROOT, commit, validate=False)
        old = SourceTree("old", checkout.path, checkout.commit, validate=True)
        sides: dict[str, dict[str, list[dict[str, Any]]]] = {key: {"new": [], "old": []} for key in keys}
        order: list[str] = []
        failed: dict[str, str] = {}
        changes = ", with uncommitted changes" if dirty else ""
        self.log(f"phase A/B ({','.join(keys)}): phantom-authz new ({commit[:7]}{changes}) vs old ({checkout.ref} = "
                 f"{checkout.commit[:7]}, worktree {checkout.path}), {rounds} "
                 "rounds of each, interleaved")
        for index in range(rounds):
            pair = (new, old) if index % 2 == 0 else (old, new)
            for key in keys:
                for tree in pair:
                    if key in failed:
                        break
                    try:
                        result = self.ab_slot(key, tree, index + 1, *routes[key])
                    except (ScenarioError, OSError, RuntimeError, TimeoutError) as exc:
                        failed[key] = self.errors[key] = f"A/B, {tree.label} side: {exc}"
                        self.log(f"  [{key} {tree.label}] A/B FAILED:\n{exc}")
                        continue
                    finally:
                        self.stack.stop_role("envoy")
                        self.stack.stop_role("ext_authz")
                    sides[key][tree.label].append(asdict(result))
                    order.append(f"{key} {tree.label}")
        for key in keys:
            if key in failed:
                continue
            self.results[key] = WrkResult(**pooled(sides[key]["new"]))
            for label in ("new", "old"):
                bad = sum(r["non_2xx"] + r["socket_errors"] for r in sides[key][label])
                if bad:
                    self.invalid[key] = f"{bad} non-2xx responses or socket errors ({label} side of the A/B)"
        self.ab = {"ref": checkout.ref, "rounds": rounds, "order": order, "rows": ab_rows(sides), "errors": failed,
                   "new": {"commit": commit, "dirty": dirty, "origin": new.origin},
                   "old": {"commit": checkout.commit, "subject": checkout.subject, "origin": old.origin,
                           "worktree": str(checkout.path), "dropped": old.dropped, "own_envoy": old.own_envoy},
                   "sides": sides}

    def ab_envoy(self, key: str, template: Path, http_port: int | None, path: str, token: str) -> None:
        """Envoy from ``template`` in front of the phantom-authz just started; one request to ``path`` checked (it
        warms the cache): 200, and in HTTP mode (ch, dh) the upstream got phantom-authz's JWT."""
        s = self.stack
        if http_port is None:
            s.start_bench_envoy("envoy-ab", template=template)
            check_route(s, path, token)
            return
        s.start_bench_envoy("envoy-http-ab", template=template,
                            clusters={"phantom_authz_http": http_port, "echo": s.echo_port})
        seen = upstream_authorization(check_route(s, path, token))
        if seen is None or seen == f"Bearer {token}":
            raise ScenarioError(f"{key}: the upstream did not receive phantom-authz's JWT in place of the opaque token")

    def ab_slot(self, key: str, tree: SourceTree, round_no: int, path: str, token: str, token_file: Path
                ) -> WrkResult:
        """One measured run of c, ch, d or dh (``path`` with ``token``) with phantom-authz from ``tree``."""
        s = self.stack
        name = f"phantom-authz-{tree.label}-{key}"
        http_port = free_port() if key in HTTP_MODE else None
        try:
            s.start_phantom(name, {"paths": [str(POLICIES)], "watch_interval_seconds": 0}, http_port=http_port,
                            tree=tree)
        except BaselineError:
            raise
        except (RuntimeError, TimeoutError) as exc:
            raise BaselineError(start_failure(tree, exc, self.dir / f"{name}.log")) from None
        assert s.authz is not None
        tree.check_running(s.authz)
        current = ENVOY_HTTP if http_port is not None else ENVOY_GRPC
        own = tree.path / "envoy" / current.name  # this tree's own Envoy config
        try:
            self.ab_envoy(key, own if key in tree.own_envoy else current, http_port, path, token)
        except ScenarioError as exc:
            # The Envoy <-> service contract may differ between the commits (e.g. HTTP mode's settings prefix):
            # the baseline then runs behind its own Envoy config, and the report says so.
            if tree.label != "old" or key in tree.own_envoy or not own.exists():
                raise
            s.stop_role("envoy")
            self.log(f"  [{key} old] behind the current {_relative(str(current))}: {exc}; retrying behind the "
                     f"baseline's own envoy/{current.name}")
            self.ab_envoy(key, own, http_port, path, token)
            tree.own_envoy[key] = f"behind the current {_relative(str(current))}: {str(exc)[:200]}"
        warm_up(self.settings, self.url(path), token_file)
        argv = wrk_argv(self.settings, self.url(path), STATIC_LUA, [str(token_file)], self.settings.duration)
        result = run_wrk(s, argv, self.settings.duration)
        if s.authz.proc is not None:
            result.rss_mib = round(memory_kib(s.authz.proc.pid)["VmRSS"] / 1024, 1)
        cpu = result.cpu_seconds.get("ext_authz")
        per_request = (f", phantom-authz {cpu / result.requests * 1e6:,.0f} µs CPU/req" if cpu and result.requests
                       else "")
        other = (result.other_cpu_seconds or 0.0) / result.duration_s if result.duration_s else 0.0
        self.log(f"  [{key} {tree.label}] round {round_no}: {result.requests_per_s:,.0f} req/s{per_request}, "
                 f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, other load {other:.2f} cores"
                 + (f" — {'; '.join(result.notes)}" if result.notes else ""))
        return result

    def jwt_authn(self) -> None:
        """j: a fresh RSA key, its JWKS inline in Envoy's jwt_authn provider (issuer, audience), one JWT of the dev
        AS's shape sent by wrk; checked first: the JWT -> 200 and forwarded upstream, a bad signature -> 401."""
        s = self.stack
        issuer = f"http://127.0.0.1:{s.as_port}/oauth/v2/oauth-anonymous"
        keys = SigningKeys()
        token = bench_jwt(issuer, keys)
        s.authz_port = 0
        s.start_bench_envoy("envoy-jwt-authn", mutate=with_jwt_authn(issuer, [AUDIENCE], keys.jwks(),
                                                                         ["/httpbin/"]))
        resp = check_route(s, HTTPBIN_PATH, token)
        if upstream_authorization(resp) != f"Bearer {token}":
            raise ScenarioError("j: the upstream did not receive the JWT (jwt_authn forward: true)")
        check_route(s, HTTPBIN_PATH, tampered(token), status=401)
        self.extra["j"] = {"issuer": issuer, "audiences": [AUDIENCE], "kid": keys.active.kid, "jwt_bytes": len(token),
                           "checked": "valid JWT -> 200 (forwarded upstream), bad signature -> 401"}
        self.log(f"  [j] {len(token)}-byte RS256 JWT: 200 and forwarded upstream; bad signature: 401")
        self.measure("j", HTTPBIN_PATH, self.token_file("jwt-j", [token]))

    def noop_http(self, token: str, token_file: Path) -> None:
        """h: Envoy's HTTP ext_authz (bench/envoy_mutations.py, as http_stack_bench.py) -> the no-op on aiohttp;
        checked first: 200 and the upstream got the no-op's authorization header."""
        s = self.stack
        port = s.start_noop_http()
        s.start_bench_envoy("envoy-noop-http", mutate=with_http_ext_authz(port), clusters={
            "phantom_authz": port, "echo": s.echo_port})  # with_http_ext_authz renames that cluster ext_authz_http
        if upstream_authorization(check_route(s, HTTPBIN_PATH, token)) != NOOP_HTTP_AUTHORIZATION:
            raise ScenarioError("h: the upstream did not receive the no-op's authorization header")
        self.measure("h", HTTPBIN_PATH, token_file)

    def http_mode(self, token: str, token_file: Path) -> None:
        """ch, dh: phantom-authz with its HTTP transport (server.http.listen, the gRPC listener kept), behind
        envoy/envoy-http.yaml (cluster phantom_authz_http); skipped, with a log line, until both exist."""
        s = self.stack
        selected = [key for key in HTTP_MODE if key in self.settings.scenarios and key not in self.ab_keys]
        missing = http_mode_missing()
        if missing:
            reason = "not there yet: " + ", ".join(missing)
            self.skipped.update(dict.fromkeys(selected, reason))
            self.log(f"phase ch/dh: SKIPPED ({','.join(selected)}): phantom-authz HTTP mode {reason}")
            return
        self.log(f"phase ch/dh: Envoy ({_relative(str(ENVOY_HTTP))}) -> phantom-authz HTTP transport "
                 "(embedded engine)")
        try:
            http_port = free_port()
            s.start_phantom("phantom-authz-http", {"paths": [str(POLICIES)], "watch_interval_seconds": 0},
                            http_port=http_port)
            s.start_bench_envoy("envoy-http", template=ENVOY_HTTP,
                                clusters={"phantom_authz_http": http_port, "echo": s.echo_port})
        except (RuntimeError, TimeoutError, OSError) as exc:
            for key in selected:
                self.errors[key] = str(exc)
            self.log(f"  [ch/dh] FAILED to start: {exc}")
        else:
            self.attempt("ch", lambda: self.http_cache_hit(token, token_file))
            self.attempt("dh", lambda: self.policy("dh"))
            self.record_peak("http")
        s.stop_role("envoy")
        s.stop_role("ext_authz")

    def http_cache_hit(self, token: str, token_file: Path) -> None:
        seen = upstream_authorization(check_route(self.stack, HTTPBIN_PATH, token))  # warms the cache
        if seen is None or seen == f"Bearer {token}":
            raise ScenarioError("ch: the upstream did not receive phantom-authz's JWT in place of the opaque token")
        self.measure("ch", HTTPBIN_PATH, token_file)

    def cache_hit(self, key: str, token: str, token_file: Path) -> None:
        check_route(self.stack, HTTPBIN_PATH, token)  # c: warms the cache (and the JWKS)
        self.measure(key, HTTPBIN_PATH, token_file)
        if key == "c":  # the same, unloaded: the path's own latency, to set f1 against
            self.measure("c1", HTTPBIN_PATH, token_file, threads=1, connections=1, warm=False)

    def record_peak(self, phase: str) -> None:
        """Peak RSS (VmHWM) of phantom-authz over its phase, read before it stops."""
        authz = self.stack.roles.get("ext_authz")
        if authz is not None and authz.proc is not None and authz.running:
            self.peaks_mib[phase] = round(memory_kib(authz.proc.pid)["VmHWM"] / 1024, 1)

    def policy(self, key: str) -> None:
        alice = self.stack.token("read", subject="alice")
        check_route(self.stack, RECORDS_PATH, alice)
        self.measure(key, RECORDS_PATH, self.token_file(f"alice-{key}", [alice]))

    def tokens_for(self, connections: int) -> int:
        """Enough tokens that none is sent twice: on a miss a connection waits at least the AS latency per
        request, so it cannot send more than duration / latency of them (+15 % and a margin), within the bound."""
        if self.settings.latency_ms <= 0:
            return self.settings.max_tokens
        per_connection = self.settings.duration / (self.settings.latency_ms / 1000)
        return min(self.settings.max_tokens, math.ceil(connections * per_connection * 1.15) + 200)

    def cache_miss(self) -> None:
        s, settings = self.stack, self.settings
        loaded, unloaded = self.tokens_for(settings.connections), self.tokens_for(1)
        started = time.perf_counter()
        tokens = issue_tokens(s.as_port, loaded + unloaded + 1)
        issued_in = time.perf_counter() - started
        self.log(f"  [f] issued {len(tokens):,} tokens in {issued_in:.1f}s")
        check_route(s, HTTPBIN_PATH, tokens.pop())  # one miss end to end before measuring
        probe = probe_as(s.as_port, s.token("read"), 100 if settings.quick else 300)
        self.extra["as_direct"] = probe
        self.log(f"  [f] the AS alone, unloaded: introspection p50 {probe['p50_ms']:.2f} ms, mean "
                 f"{probe['mean_ms']:.2f} ms (configured latency {settings.latency_ms:g} ms)")
        self.extra["f_tokens"] = {"loaded": loaded, "unloaded": unloaded, "issue_seconds": round(issued_in, 2)}
        for key, count, threads, connections in (("f", loaded, settings.threads, settings.connections),
                                                 ("f1", unloaded, 1, 1)):
            batch, tokens = tokens[:count], tokens[count:]
            path = self.token_file(f"miss-{key}", batch)
            before = s.metrics()
            result = self.measure(key, HTTPBIN_PATH, path, script=ROTATE_LUA, script_args=[str(path), str(threads)],
                                  threads=threads, connections=connections, warm=False)
            as_calls = histogram_delta(before, s.metrics(), "phantom_authz_as_call_seconds")
            self.extra[f"{key}_as_call"] = as_calls
            if as_calls is not None:
                low, high = as_calls["p50_bucket_ms"]
                self.log(f"  [{key}] AS calls as phantom-authz timed them: mean {as_calls['mean_ms']:.2f} ms over "
                         f"{as_calls['count']:.0f} calls, median in the {low:g}-{high:g} ms bucket")
            if result.wrapped:
                result.notes.append(f"{result.wrapped} requests reused a token (ran out): raise --max-tokens")
                self.invalid[key] = result.notes[-1]
                self.log(f"  [{key}] WARNING: {result.notes[-1]}")

    def single_flight(self) -> None:
        s = self.stack
        token = s.token("read")
        before = s.metrics()
        http_request("POST", s.as_port, "/dev/reset-stats")
        outcome = burst(s.envoy_port, HTTPBIN_PATH, token, self.settings.burst)
        outcome["as_introspections"] = int(s.as_stats()["introspections"])
        after = s.metrics()
        if before and after:
            outcome["singleflight_joins"] = int(metric_sum(after, "phantom_authz_singleflight_joins_total")
                                                - metric_sum(before, "phantom_authz_singleflight_joins_total"))
        self.extra["g"] = outcome
        self.log(f"  [g] {outcome['requests']} concurrent requests, one fresh token -> "
                 f"{outcome['as_introspections']} AS introspection(s) (goal 1); statuses {outcome['statuses']}, "
                 f"p50 {outcome['p50_ms']:.1f} ms, last answer after {outcome['max_ms']:.1f} ms")


# ---------------------------------------------------------------------------------------------------- report


def _version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def machine_info(settings: Settings) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "unknown")
    grpc_version = "unknown"
    with contextlib.suppress(ImportError):
        grpc_version = importlib.import_module("grpc").__version__
    return {
        "cores": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
        "python": platform.python_version(), "grpcio": grpc_version,
        "envoy": _version([envoy_binary(), "--version"], r"/(\d+\.\d+\.\d+)/"),
        "wrk": _version([settings.wrk, "-v"], r"wrk (\S+)"),
    }


# "x/y": x's throughput and p99 over y's, when both were measured.
RATIOS: dict[str, str] = {
    "c/b": "phantom-authz (gRPC) against the no-op gRPC floor",
    "d/b": "the same with the embedded policy",
    "e/b": "the same with remote OPA",
    "h/b": "no-op HTTP floor against the no-op gRPC floor",
    "ch/h": "phantom-authz (HTTP) against the no-op HTTP floor",
    "ch/j": "phantom-authz (HTTP) against Envoy's own jwt_authn",
    "dh/j": "the same with the embedded policy",
    "ch/c": "phantom-authz HTTP mode against gRPC mode, same pipeline",
    "dh/d": "the same with the embedded policy",
    "j/a": "jwt_authn against no token check at all",
    "r/c": "1,000 route rules against none",
    "t/c": "tracing on (exporter none) against off",
}
# The issue's goals for HTTP mode, reported, not asserted: (label, ratio, figure, bound, at least?).
GOALS: tuple[tuple[str, str, str, float, bool], ...] = (
    ("ch ≥ 0.8x j throughput", "ch/j", "throughput", 0.8, True),
    ("ch p99 ≤ 1.3x j p99", "ch/j", "p99", 1.3, False),
    ("dh ≥ 0.7x j throughput", "dh/j", "throughput", 0.7, True),
    ("ch ≥ 2x c throughput", "ch/c", "throughput", 2.0, True),
    ("r within 5 % of c throughput (1,000 route rules)", "r/c", "throughput", 0.95, True),
)


def ratios(results: dict[str, WrkResult]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in RATIOS:
        top, bottom = (results.get(key) for key in name.split("/"))
        if top is None or bottom is None or bottom.requests_per_s <= 0 or bottom.p99_ms <= 0:
            continue
        out[name] = {"throughput": round(top.requests_per_s / bottom.requests_per_s, 3),
                     "p99": round(top.p99_ms / bottom.p99_ms, 3)}
    return out


def goals(measured: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The HTTP-mode goals against this run's ratios (those whose scenarios were measured)."""
    out = []
    for label, name, figure, bound, at_least in GOALS:
        if name in measured:
            value = measured[name][figure]
            out.append({"goal": label, "ratio": name, "figure": figure, "bound": bound, "measured": value,
                        "met": value >= bound if at_least else value <= bound})
    return out


def miss_breakdown(results: dict[str, WrkResult], extra: dict[str, Any], latency_ms: float) -> dict[str, float]:
    """The goal "ours adds <= 1 ms over the AS latency at p50", unloaded (1 connection, no queueing):
    f1 p50 - c1 p50 is what a miss costs over a hit; minus the AS's own p50 (probed directly, same client
    settings), what is left is ours (building the introspection request, verifying the JWT, caching)."""
    out: dict[str, float] = {"as_configured_ms": latency_ms}
    f1, c1, probe = results.get("f1"), results.get("c1"), extra.get("as_direct")
    if probe is not None:
        out["as_direct_p50_ms"] = probe["p50_ms"]
    if f1 is not None:
        out["f1_p50_ms"] = f1.p50_ms
        out["f1_p50_over_configured_ms"] = round(f1.p50_ms - latency_ms, 3)
        if probe is not None:
            out["f1_p50_over_as_direct_ms"] = round(f1.p50_ms - probe["p50_ms"], 3)
    if f1 is not None and c1 is not None:
        out["miss_minus_hit_p50_ms"] = round(f1.p50_ms - c1.p50_ms, 3)
        if probe is not None:
            out["ours_on_miss_p50_ms"] = round(f1.p50_ms - c1.p50_ms - probe["p50_ms"], 3)
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    results: dict[str, dict[str, Any]] = report["scenarios"]
    kind = "quick run" if s["quick"] else "full run"
    lines = [
        f"# Envoy benchmark — {report['timestamp']} ({kind})", "",
        f"{m['cores']} cores ({m['cpu']}), {m['platform']}; Python {m['python']}, grpcio {m['grpcio']}, "
        f"Envoy {m['envoy']} (--concurrency {s['envoy_concurrency']}), wrk {m['wrk']}. "
        f"wrk -t{s['threads']} -c{s['connections']}, {s['duration']} s per scenario after {s['warmup']} s warm-up; "
        f"dev AS latency {s['latency_ms']:g} ms; phantom-authz log level WARNING, decision_log {s['decision_log']}"
        + (f", --workers {s['workers']}" if s.get("workers_applied") else "")
        + f". Wall time {report['wall_seconds']:.0f} s.",
        "", "| | scenario | req/s | p50 ms | p99 ms | p99.9 ms | errors | RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in WRK_SCENARIOS:
        if key in results:
            r = results[key]
            lines.append(f"| {key} | {ROWS[key]} | {r['requests_per_s']:,.0f} | {_fmt(r['p50_ms'])} | "
                         f"{_fmt(r['p99_ms'])} | {_fmt(r['p999_ms'])} | {r['non_2xx'] + r['socket_errors']} | "
                         f"{_fmt(r['rss_mib'], 1)} |")
    for key, error in report["errors"].items():
        lines.append(f"| {key} | {ROWS[key]} | failed: {error.splitlines()[0][:100]} | | | | | |")
    for key, reason in report.get("skipped", {}).items():
        lines.append(f"| {key} | {ROWS[key]} | skipped: {reason[:100]} | | | | | |")
    lines += [f"\n**Warning — {key}**: {note}; these figures are not those of allowed requests."
              for key, note in report["invalid"].items()]
    if report["ratios"]:
        lines += ["", "Ratios x/y: x's figure over y's (throughput: higher is better; p99: lower is better):", "",
                  "| ratio | throughput | p99 | what |", "|---|---:|---:|---|"]
        lines += [f"| {k} | {v['throughput']:.2f} | {v['p99']:.2f} | {RATIOS[k]} |"
                  for k, v in report["ratios"].items()]
    if report.get("goals"):
        lines += ["", "HTTP-mode goals of the issue (reported, not asserted):", "", "| goal | measured | met |",
                  "|---|---:|---|"]
        lines += [f"| {g['goal']} | {g['ratio']} {g['figure']} = {g['measured']:.2f} | "
                  f"{'yes' if g['met'] else '**no**'} |" for g in report["goals"]]
    extra = report["extra"]
    if "f" in results or "f1" in results:
        miss = report.get("miss", {})
        direct = (f"; the AS alone, probed directly and unloaded: p50 {miss['as_direct_p50_ms']:.2f} ms"
                  if "as_direct_p50_ms" in miss else "")
        lines += ["", f"Cache miss (f): AS configured latency {s['latency_ms']:g} ms{direct}."]
        for key, label in (("f", f"-c{s['connections']}"), ("f1", "-c1")):
            if key in results:
                call = extra.get(f"{key}_as_call")
                seen = f"; AS calls as phantom-authz timed them: mean {call['mean_ms']:.2f} ms" if call else ""
                lines.append(f"- {label}: p50 {results[key]['p50_ms']:.2f} ms = configured AS latency + "
                             f"{results[key]['p50_ms'] - s['latency_ms']:.2f} ms{seen}.")
        if "ours_on_miss_p50_ms" in miss:
            lines.append(f"- unloaded: a miss costs {miss['miss_minus_hit_p50_ms']:.2f} ms more than a hit at p50 "
                         f"(f1 - c1); the AS's own p50 is {miss['as_direct_p50_ms']:.2f} ms of it, so phantom-authz's "
                         f"own work on a miss adds **{miss['ours_on_miss_p50_ms']:.2f} ms** (goal <= 1 ms).")
    if "g" in extra:
        g = extra["g"]
        joins = f", {g['singleflight_joins']} single-flight joins" if "singleflight_joins" in g else ""
        lines += ["", f"Single-flight (g): {g['requests']} concurrent requests with one fresh token -> "
                      f"**{g['as_introspections']} AS introspection(s)** (goal 1){joins}; statuses {g['statuses']}; "
                      f"p50 {g['p50_ms']:.1f} ms, last answer {g['max_ms']:.1f} ms."]
    peaks = report["rss"]["peak_mib"]
    if peaks:
        lines += ["", "phantom-authz RSS: the table's column is VmRSS of its process tree right after each scenario; "
                      "peak (VmHWM) over its phase: "
                      + ", ".join(f"{phase} {mib:.1f} MiB" for phase, mib in peaks.items()) + "."]
    cpu_rows = [(k, results[k]) for k in WRK_SCENARIOS if k in results and results[k]["requests"]]
    if cpu_rows:
        roles = list(dict.fromkeys(role for _, r in cpu_rows for role in r["cpu_seconds"]))
        lines += ["", "CPU time per request, µs (all processes share the cores; ext_authz = the no-op gRPC server "
                      "in b, the no-op HTTP server in h, phantom-authz in c-f, ch, dh; j has none; other, cores = the "
                      "CPU the machine spent outside these processes during the run, in cores on average: other "
                      "load on a shared machine; within about ±0.2 of 0 when the machine is otherwise idle):", "",
                  "| | " + " | ".join(roles) + " | other, cores |", "|---|" + "---:|" * (len(roles) + 1)]
        for key, r in cpu_rows:
            cells = [_fmt(r["cpu_seconds"][role] / r["requests"] * 1e6, 0) if role in r["cpu_seconds"] else ""
                     for role in roles]
            other = r.get("other_cpu_seconds")
            cells.append("" if other is None or not r["duration_s"] else _fmt(other / r["duration_s"], 2))
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines += cpu_goals_markdown(report.get("cpu_goals") or [])
        busy = [f"{key} ({r['other_cpu_seconds'] / r['duration_s']:.2f})" for key, r in cpu_rows
                if r.get("other_cpu_seconds") is not None and r["duration_s"]
                and r["other_cpu_seconds"] / r["duration_s"] >= OTHER_LOAD_WARNING]
        if busy:
            lines += ["", f"**Warning — other load**: the machine spent >= {OTHER_LOAD_WARNING} cores on average "
                          f"outside the benchmark during {', '.join(busy)}; those figures are disturbed."]
    if report.get("baseline"):
        lines += ab_markdown(report["baseline"], ROWS, OTHER_LOAD_WARNING)
    lines += ["", "Commands (ports are picked per run; configs are under run/bench/<timestamp>/, phantom-authz's are "
                  "also in the JSON; Envoy's configs: a is envoy/envoy.yaml without the ext_authz filter and its "
                  "per-route settings, j the same plus jwt_authn, h the same plus an HTTP ext_authz filter "
                  "(bench/envoy_mutations.py), ch/dh envoy/envoy-http.yaml):", "", "```",
              f"{report['commands']['bench']}"]
    lines += [f"{name}: {cmd}" for name, cmd in report["commands"]["processes"].items()]
    lines += [f"{key}: {cmd}" for key, cmd in report["commands"]["wrk"].items()]
    lines += ["```", ""]
    return "\n".join(lines)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def chart(report: dict[str, Any], path: Path) -> bool:
    """A PNG bar chart of req/s and p99 per scenario, if matplotlib is importable (it is not installed for this)."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    keys = [k for k in WRK_SCENARIOS if k in report["scenarios"]]
    if not keys:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(keys, [report["scenarios"][k]["requests_per_s"] for k in keys])
    left.set_title("requests/s")
    right.bar(keys, [report["scenarios"][k]["p99_ms"] for k in keys], color="tab:orange")
    right.set_title("p99 latency, ms")
    fig.suptitle(f"phantom-authz through Envoy — {report['timestamp']}")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def write_results(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = report["timestamp"]
    body_json = (json.dumps(report, indent=2, sort_keys=False) + "\n").encode()
    body_md = markdown(report).encode()
    written = []
    for name, data in ((f"{stamp}.json", body_json), (f"{stamp}.md", body_md), ("latest.json", body_json),
                       ("latest.md", body_md)):
        write_atomic(out / name, data)
        written.append(out / name)
    if chart(report, out / f"{stamp}.png"):
        shutil.copyfile(out / f"{stamp}.png", out / "latest.png")
        written.append(out / f"{stamp}.png")
    return written


def print_summary(report: dict[str, Any]) -> None:
    print()
    print(markdown(report).split("\nCommands (")[0].rstrip())


# ------------------------------------------------------------------------------------------------------ main


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop every process we started."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def raise_fd_limit() -> None:
    """g opens ~1,000 client connections, and Envoy and the echo upstream as many each; children inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    settings = parse_args(raw_argv)
    if settings.baseline is None:
        return run_bench(settings, raw_argv)
    try:  # the worktree is removed however the run ends (SIGTERM included)
        with sigterm_as_interrupt(), worktree(ROOT, settings.baseline) as checkout:
            print(f"envoy_bench: baseline {settings.baseline} = {checkout.commit[:12]} ({checkout.subject[:70]}), "
                  f"a worktree at {checkout.path} (removed at the end)", flush=True)
            return run_bench(settings, raw_argv, checkout)
    except BaselineError as exc:
        print(f"envoy_bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("envoy_bench: interrupted", file=sys.stderr)
        return 130


def run_bench(settings: Settings, raw_argv: list[str], checkout: Checkout | None = None) -> int:
    if shutil.which(settings.wrk) is None and not Path(settings.wrk).exists():
        print(f"envoy_bench: wrk not found ({settings.wrk}); apt-get install wrk", file=sys.stderr)
        return 2
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = ROOT / "run" / "bench" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    raise_fd_limit()
    workers_flag = cli_has_workers() if settings.workers is not None else False
    noop_runtime: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
        noop_runtime = json.loads(subprocess.run([sys.executable, str(BENCH / "noop_authz.py"), "--describe"],
                                                 capture_output=True, text=True, timeout=60, check=False).stdout)
    print(f"envoy_bench: scenarios {','.join(settings.scenarios)}; wrk -t{settings.threads} -c{settings.connections} "
          f"{settings.duration}s (+{settings.warmup}s warm-up); AS latency {settings.latency_ms:g} ms; "
          f"logs in {_relative(str(workdir))}", flush=True)
    stack = BenchStack(workdir, settings, workers_flag)
    runner = Runner(stack, settings, workdir, checkout)
    interrupted = False
    with sigterm_as_interrupt():
        try:
            stack.start_bench_as()
            stack.start_bench_echo()
            runner.run()
        except KeyboardInterrupt:
            interrupted = True
            print("envoy_bench: interrupted; stopping everything", file=sys.stderr)
        except (RuntimeError, OSError) as exc:  # a process that does not start: nothing to report
            print(f"envoy_bench: {exc}", file=sys.stderr)
            return 1
        finally:
            stack.stop()
            for path in runner.token_files:
                with contextlib.suppress(OSError):
                    path.unlink()
    if interrupted:
        return 130
    results = {k: asdict(v) for k, v in runner.results.items()}
    ratio_figures = ratios(runner.results)
    report: dict[str, Any] = {
        "schema": 1,
        "timestamp": stamp,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "settings": {**{k: (_relative(str(v)) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
                     "latency_ms": settings.latency_ms, "workers_applied": bool(settings.workers and workers_flag)},
        "machine": {**machine_info(settings), "phantom_authz_event_loop_uvloop": noop_runtime.get("uvloop"),
                    "noop_authz_runtime": noop_runtime},
        "scenarios": results,
        "errors": runner.errors,
        "invalid": runner.invalid,
        "skipped": runner.skipped,
        "ratios": ratio_figures,
        "goals": goals(ratio_figures),
        "cpu_goals": cpu_goals(results),  # issue 17: phantom-authz's CPU per request (bench/cpu_goals.py)
        "baseline": runner.ab or None,  # --baseline: the A/B of c, ch, d, dh (bench/baseline_ab.py)
        "miss": miss_breakdown(runner.results, runner.extra, settings.latency_ms),
        "extra": runner.extra,
        "rss": {"after_scenario_mib": {k: v.rss_mib for k, v in runner.results.items() if v.rss_mib is not None},
                "peak_mib": runner.peaks_mib},
        "commands": {
            "bench": command_line([sys.executable, str(Path(__file__).resolve()), *raw_argv]),
            "processes": stack.commands,
            "envoy_config_a": "envoy/envoy.yaml re-pointed by devtools/envoy_config.py, then without_ext_authz(): "
                              "the ext_authz HTTP filter and its typed_per_filter_config removed",
            "envoy_config_j": "as a, plus envoy.filters.http.jwt_authn first (bench/envoy_mutations.py "
                              "with_jwt_authn: one provider, issuer + audiences, local_jwks inline_string, "
                              "forward: true, required on /httpbin/; no JWT cache)",
            "envoy_config_h": "as a, plus an HTTP ext_authz filter (http_service) to bench/noop_http_authz.py "
                              "--stack aiohttp (bench/envoy_mutations.py with_http_ext_authz, as "
                              "bench/http_stack_bench.py)",
            "envoy_config_ch": "envoy/envoy-http.yaml re-pointed by devtools/envoy_config.py "
                               "(cluster phantom_authz_http -> phantom-authz's server.http.listen)",
            "wrk": {k: v.command for k, v in runner.results.items()},
            "phantom_authz_configs": stack.configs,
        },
    }
    print_summary(report)
    for path in write_results(report, settings.out):
        print(f"wrote {_relative(str(path))}")
    for key, note in runner.invalid.items():
        print(f"envoy_bench: WARNING: scenario {key}: {note}; its figures are not those of allowed requests",
              file=sys.stderr)
    return 1 if runner.errors or runner.invalid else 0


if __name__ == "__main__":
    raise SystemExit(main())
