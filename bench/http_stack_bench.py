"""Which Python HTTP stack to serve Envoy's HTTP ext_authz (``http_service``) with: a measurement, not a test.

On loopback it starts the echo upstream, then for each stack bench/noop_http_authz.py (200 + a fixed ~650-byte
``authorization`` header, nothing else) and Envoy 1.40 (``--concurrency 1``) with the HTTP ext_authz filter in front
of the echo upstream, checks one request end to end (200, and the upstream received the replaced ``authorization``
header), warms up, and runs ``wrk -t2 -c16 -d<N>s --latency`` against ``/httpbin/get``. Also once with the ext_authz
filter removed (the ceiling). For each run: requests/s, p50/p99/p99.9, non-2xx/socket errors, CPU time per request
(µs; utime+stime from /proc, descendants included) of the no-op server and of Envoy (and of the echo upstream), the
no-op server's RSS, and its exit status when stopped with SIGTERM (0 = it stopped gracefully).

Envoy's filter: ``envoy/envoy.yaml`` re-pointed by devtools/envoy_config.py, its gRPC ext_authz filter replaced by

    http_service: {server_uri: {uri: 127.0.0.1:<port>, cluster: ext_authz_http, timeout: 5s},
                   authorization_response: {allowed_upstream_headers: {patterns: [{exact: authorization}]}}}
    failure_mode_allow: false, transport_api_version: V3

and its ``phantom_authz`` cluster replaced by ``ext_authz_http`` (plain HTTP/1.1, kept-alive connections).

    python bench/http_stack_bench.py                               # every stack, 8 s each (about 1.5 min)
    python bench/http_stack_bench.py --stacks aiohttp,granian --duration 15 --rounds 3

Prints markdown; writes it and the figures (JSON) under run/bench/http-stack-<timestamp>/ with the logs and configs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

from envoy_bench import (  # noqa: E402
    STATIC_LUA,
    ScenarioError,
    cpu_seconds,
    memory_kib,
    parse_wrk,
    raise_fd_limit,
    sigterm_as_interrupt,
)
from envoy_mutations import HTTP_CLUSTER, with_http_ext_authz, without_ext_authz  # noqa: E402
from noop_http_authz import AUTHORIZATION, STACKS  # noqa: E402

from devtools.envoy_config import render_envoy_config  # noqa: E402
from devtools.processes import Process, envoy_binary, free_port  # noqa: E402
from tests.harness import http_request  # noqa: E402

CEILING = "ceiling"  # Envoy without the ext_authz filter
CLUSTER = HTTP_CLUSTER  # Envoy -> the no-op server (bench/envoy_mutations.py)
PATH = "/httpbin/get"
CLIENT_TOKEN = "opaque-client-token-0123456789abcdefghijklmnop"  # what the client sends; the no-op replaces it
PACKAGES = ("aiohttp", "uvicorn", "httptools", "granian", "uvloop", "h11", "click", "multidict", "grpcio", "grpclib",
            "h2", "protobuf")


@dataclass(frozen=True)
class Settings:
    stacks: tuple[str, ...]
    duration: int
    warmup: int
    threads: int
    connections: int
    rounds: int
    wrk: str


def parse_args(argv: list[str] | None, stacks: tuple[str, ...] = STACKS, prog: str = "http_stack_bench",
               description: str | None = __doc__, optional: tuple[str, ...] = ()) -> Settings:
    """``optional``: stacks ``--stacks`` accepts that are not run by default."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", default=",".join(stacks),
                        help=f"comma-separated subset of {','.join(stacks + optional)} (default: "
                             f"{','.join(stacks)})")
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per run (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each run (default %(default)s)")
    parser.add_argument("--threads", "-t", type=int, default=2, help="wrk -t (default %(default)s)")
    parser.add_argument("--connections", "-c", type=int, default=16, help="wrk -c (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat everything, the order rotated each round; medians printed (default 1)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the run without ext_authz")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="wrk binary")
    args = parser.parse_args(argv)
    chosen = tuple(dict.fromkeys(s.strip() for s in args.stacks.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in stacks + optional]
    if unknown or not chosen:
        parser.error(f"--stacks: unknown {','.join(unknown) or '(none given)'}; choose from "
                     f"{','.join(stacks + optional)}")
    if not 1 <= args.duration <= 120 or not 0 <= args.warmup <= 30 or not 1 <= args.rounds <= 10:
        parser.error("--duration must be 1..120, --warmup 0..30 (seconds) and --rounds 1..10")
    if args.threads < 1 or args.connections < args.threads:
        parser.error("--threads must be >= 1 and --connections >= --threads")
    runs = chosen if args.no_ceiling else (CEILING, *chosen)
    return Settings(stacks=runs, duration=args.duration, warmup=args.warmup, threads=args.threads,
                    connections=args.connections, rounds=args.rounds, wrk=args.wrk)


# ------------------------------------------------------------------------------------------------------ runs


@dataclass
class Run:
    stack: str
    round: int
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    requests: int = 0
    errors: int = 0  # non-2xx responses + socket errors
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)  # role -> µs of CPU per request
    rss_mib: float | None = None  # the no-op server's process tree, after the run
    authz_connections: int | None = None  # Envoy's cluster.ext_authz_http.upstream_cx_total, whole Envoy life
    authz_ok: int | None = None  # Envoy's http.ingress.ext_authz.ok, whole Envoy life (check + warm-up + run)
    exit_status: int | None = None  # the no-op server's, after SIGTERM
    stop_seconds: float | None = None
    error: str | None = None


class Bench:
    """One no-op server per stack behind Envoy's HTTP ext_authz filter (``bench/grpc_stack_bench.py`` changes the
    server, the filter and the cluster)."""

    cluster = CLUSTER  # Envoy's cluster to the no-op server
    note = ("httptools, aiohttp, uvicorn and granian-embed run in one process with a uvloop loop the server owns; "
            "granian = its supervisor + one worker process. Envoy->ext_authz conns: connections Envoy opened to the "
            "no-op server in its whole life (HTTP/1.1 keep-alive: about one per concurrent request).")
    server_script = BENCH / "noop_http_authz.py"

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.dir = workdir
        self.started: list[Process] = []
        self.echo_port = 0
        self.token_file = workdir / "client.token"
        self.token_file.write_text(CLIENT_TOKEN + "\n")

    def start(self, proc: Process, timeout: float = 20.0) -> Process:
        self.started.append(proc)
        return proc.start(timeout)

    def stop(self, proc: Process) -> int | None:
        with contextlib.suppress(ValueError):
            self.started.remove(proc)
        return proc.stop(timeout=10.0)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            with contextlib.suppress(Exception):
                proc.stop(timeout=10.0)
        self.started.clear()

    def start_echo(self) -> None:
        self.echo_port = port = free_port()
        self.echo = self.start(Process("echo", [sys.executable, "-m", "devtools.echo", "--port", str(port)], port,
                                       self.dir))

    def start_envoy(self, name: str, authz_port: int | None) -> tuple[Process, int, int]:
        port, admin = free_port(), free_port()
        mutate = without_ext_authz if authz_port is None else self.with_ext_authz(authz_port)
        config = render_envoy_config(self.dir / f"{name}.yaml", listen_port=port, admin_port=admin,
                                     clusters={"phantom_authz": authz_port or free_port(), "echo": self.echo_port},
                                     mutate=mutate)
        proc = Process(name, [envoy_binary(), "-c", str(config), "--log-level", "warn", "--concurrency", "1",
                              "--base-id", str(admin)], port, self.dir)
        return self.start(proc, 30.0), port, admin

    def with_ext_authz(self, authz_port: int) -> Callable[[dict[str, Any]], None]:
        return with_http_ext_authz(authz_port)

    def envoy_stats(self, admin: int) -> dict[str, int]:
        text = http_request("GET", admin, f"/stats?filter=ext_authz|{self.cluster}", timeout=10.0).body.decode()
        stats: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            with contextlib.suppress(ValueError):
                stats[name.strip()] = int(value)
        return stats

    def check(self, envoy_port: int, stack: str) -> None:
        resp = http_request("GET", envoy_port, PATH, {"Authorization": f"Bearer {CLIENT_TOKEN}"}, timeout=10.0)
        if resp.status != 200:
            raise ScenarioError(f"{stack}: GET {PATH} through Envoy answered {resp.status}: {resp.body[:300]!r}")
        seen = {k.lower(): v for k, v in resp.json()["headers"].items()}.get("authorization")
        wanted = f"Bearer {CLIENT_TOKEN}" if stack == CEILING else AUTHORIZATION
        if seen != wanted:
            raise ScenarioError(f"{stack}: the upstream saw authorization {str(seen)[:60]!r}..., not the expected one")

    def wrk_argv(self, port: int, seconds: int) -> list[str]:
        s = self.settings
        return [s.wrk, f"-t{s.threads}", f"-c{s.connections}", f"-d{seconds}s", "--latency", "-s", str(STATIC_LUA),
                f"http://127.0.0.1:{port}{PATH}", "--", str(self.token_file)]

    def wrk(self, port: int, seconds: int) -> str:
        try:
            done = subprocess.run(self.wrk_argv(port, seconds), capture_output=True, text=True, timeout=seconds + 30,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ScenarioError(f"wrk did not finish within {seconds + 30}s") from None
        if done.returncode != 0:
            raise ScenarioError(f"wrk exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def measure(self, stack: str, round_no: int) -> Run:
        run = Run(stack=stack, round=round_no)
        noop: Process | None = None
        envoy: Process | None = None
        try:
            authz_port = None
            if stack != CEILING:
                authz_port = free_port()
                noop = self.start(Process(f"noop-{stack}-r{round_no}", [
                    sys.executable, str(self.server_script), "--stack", stack, "--port", str(authz_port)],
                    authz_port, self.dir))
            envoy, envoy_port, admin = self.start_envoy(f"envoy-{stack}-r{round_no}", authz_port)
            self.check(envoy_port, stack)
            if self.settings.warmup:
                self.wrk(envoy_port, self.settings.warmup)
            roles = {"ext_authz": noop, "envoy": envoy, "echo": self.echo}
            pids = {role: p.proc.pid for role, p in roles.items() if p is not None and p.proc is not None}
            before = {role: cpu_seconds(pid) for role, pid in pids.items()}
            output = self.wrk(envoy_port, self.settings.duration)
            after = {role: cpu_seconds(pid) for role, pid in pids.items()}
            result = parse_wrk(output, "")
            run.requests_per_s, run.p50_ms, run.p99_ms = result.requests_per_s, result.p50_ms, result.p99_ms
            run.p999_ms, run.requests = result.p999_ms, result.requests
            run.errors = result.non_2xx + result.socket_errors
            if result.requests:
                run.cpu_us_per_request = {role: round((after[role] - before[role]) / result.requests * 1e6, 1)
                                          for role in pids}
            if noop is not None and noop.proc is not None:
                run.rss_mib = round(memory_kib(noop.proc.pid)["VmRSS"] / 1024, 1)
            self.check(envoy_port, stack)  # still answering after the load
            if stack != CEILING:
                stats = self.envoy_stats(admin)
                run.authz_connections = stats.get(f"cluster.{self.cluster}.upstream_cx_total")
                run.authz_ok = stats.get("http.ingress.ext_authz.ok")
                if run.authz_ok is None or run.authz_ok < result.requests:
                    raise ScenarioError(f"{stack}: Envoy counted {run.authz_ok} ext_authz OKs for "
                                        f"{result.requests} requests")
        except (ScenarioError, RuntimeError, OSError, ValueError, KeyError) as exc:
            run.error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        finally:
            if envoy is not None:
                self.stop(envoy)
            if noop is not None:
                began = time.monotonic()
                run.exit_status = self.stop(noop)
                run.stop_seconds = round(time.monotonic() - began, 2)
        return run

    def run(self) -> list[Run]:
        self.start_echo()
        runs: list[Run] = []
        order = list(self.settings.stacks)
        for round_no in range(1, self.settings.rounds + 1):
            for stack in order:
                run = self.measure(stack, round_no)
                runs.append(run)
                print(f"  round {round_no} {stack}: " + (f"FAILED: {run.error}" if run.error else
                      f"{run.requests_per_s:,.0f} req/s, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, "
                      f"CPU µs/req {run.cpu_us_per_request}"), flush=True)
            order = order[1:] + order[:1]  # rotate, so no stack always runs first (or last)
        return runs


# ------------------------------------------------------------------------------------------------------ report


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
        found["envoy"] = next((part for part in out.split("/") if part[:1].isdigit() and "." in part), out.strip())
    return found


def _cell(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


HEADER = ("| stack | req/s | p50 ms | p99 ms | p99.9 ms | errors | ext_authz CPU µs/req | Envoy CPU µs/req | "
          "echo CPU µs/req | ext_authz RSS MiB | Envoy->ext_authz conns | SIGTERM exit (s) |")
RULE = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"


def row(run: Run) -> str:
    if run.error:
        return f"| {run.stack} | failed: {run.error} | | | | | | | | | | |"
    cpu = run.cpu_us_per_request
    exit_cell = "" if run.exit_status is None else f"{run.exit_status} ({run.stop_seconds:.2f})"
    return (f"| {run.stack} | {run.requests_per_s:,.0f} | {run.p50_ms:.2f} | {run.p99_ms:.2f} | {run.p999_ms:.2f} | "
            f"{run.errors} | {_cell(cpu.get('ext_authz'), 0)} | {_cell(cpu.get('envoy'), 0)} | "
            f"{_cell(cpu.get('echo'), 0)} | {_cell(run.rss_mib, 1)} | "
            f"{'' if run.authz_connections is None else run.authz_connections} | {exit_cell} |")


def median_run(stack: str, runs: list[Run]) -> Run:
    ok = [r for r in runs if r.stack == stack and not r.error]
    if not ok:
        return Run(stack=stack, round=0, error="no successful round")

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    roles = {role for r in ok for role in r.cpu_us_per_request}
    return Run(stack=stack, round=0, requests_per_s=med([r.requests_per_s for r in ok]),
               p50_ms=med([r.p50_ms for r in ok]), p99_ms=med([r.p99_ms for r in ok]),
               p999_ms=med([r.p999_ms for r in ok]), requests=int(med([r.requests for r in ok])),
               errors=sum(r.errors for r in ok),
               cpu_us_per_request={role: med([r.cpu_us_per_request[role] for r in ok if role in r.cpu_us_per_request])
                                   for role in roles},
               rss_mib=med([r.rss_mib for r in ok if r.rss_mib is not None]) if ok[0].rss_mib is not None else None,
               authz_connections=max((r.authz_connections for r in ok if r.authz_connections is not None),
                                     default=None),
               exit_status=max((r.exit_status for r in ok if r.exit_status is not None), default=None),
               stop_seconds=max((r.stop_seconds for r in ok if r.stop_seconds is not None), default=None))


def markdown(settings: Settings, runs: list[Run], found: dict[str, str], argv: list[str],
             name: str = "http_stack_bench", kind: str = "HTTP", note: str = "") -> str:
    s = settings
    lines = [f"{kind} ext_authz stacks behind Envoy {found.get('envoy', '?')} (--concurrency 1), wrk -t{s.threads} "
             f"-c{s.connections} -d{s.duration}s --latency (+{s.warmup}s warm-up), {os.cpu_count()} CPUs, "
             f"Python {found['python']}; " + ", ".join(f"{k} {v}" for k, v in found.items()
                                                        if k not in ("python", "envoy")) + ".", ""]
    for round_no in range(1, s.rounds + 1):
        if s.rounds > 1:
            lines += [f"Round {round_no}:", ""]
        lines += [HEADER, RULE] + [row(r) for r in runs if r.round == round_no] + [""]
    if s.rounds > 1:
        lines += [f"Median of {s.rounds} rounds (errors: summed; conns and SIGTERM exit: the worst):", "", HEADER,
                  RULE]
        lines += [row(median_run(stack, runs)) for stack in s.stacks] + [""]
    lines += [f"ceiling = Envoy -> echo with no ext_authz filter. CPU is utime+stime per request of each process tree "
              f"during the measured run; all processes (and wrk) share the CPUs. {note}",
              "", "```", " ".join(["python", f"bench/{name}.py", *argv]).strip(), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None, bench_class: type[Bench] = Bench, stacks: tuple[str, ...] = STACKS,
         name: str = "http_stack_bench", kind: str = "HTTP", description: str | None = __doc__,
         optional: tuple[str, ...] = ()) -> int:
    raw = sys.argv[1:] if argv is None else argv
    settings = parse_args(raw, stacks, name, description, optional)
    if shutil.which(settings.wrk) is None and not Path(settings.wrk).exists():
        print(f"{name}: wrk not found ({settings.wrk}); apt-get install wrk", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = ROOT / "run" / "bench" / f"{name.removesuffix('_bench').replace('_', '-')}-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    raise_fd_limit()
    found = versions()
    print(f"{name}: {','.join(settings.stacks)} x {settings.rounds} round(s), {settings.duration}s each; "
          f"logs in {workdir.relative_to(ROOT)}", flush=True)
    bench = bench_class(settings, workdir)
    with sigterm_as_interrupt():
        try:
            runs = bench.run()
        except KeyboardInterrupt:
            print(f"{name}: interrupted; stopping everything", file=sys.stderr)
            return 130
        except (RuntimeError, OSError) as exc:  # the echo upstream did not start
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.stop_all()
    text = markdown(settings, runs, found, raw, name, kind, bench_class.note)
    print()
    print(text)
    (workdir / "results.md").write_text(text)
    (workdir / "results.json").write_text(json.dumps({"settings": asdict(settings), "versions": found,
                                                      "runs": [asdict(r) for r in runs]}, indent=2) + "\n")
    return 1 if any(r.error or r.errors for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
