"""Policy benchmark (issue: OPA stage). Prints figures; asserts nothing.

Starts the dev AS and phantom-authz twice on loopback — once with the embedded engine, once with the remote engine
against the OPA Data API double (tests/opa_double.py, real Rego via regorus) — and fires N sequential Check calls
over gRPC (devtools/bench_check.py's client) with one cached token on three simulated routes: no policy, and the
quickstart's `records/decision` policy. The difference of medians is the latency the policy stage adds per Check.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import decision_cache_memory  # bench/, next to this script

from devtools.bench_check import _request, _run, percentile
from devtools.processes import Process, free_port
from tests.harness import ROOT, Stack

POLICIES = str(ROOT / "deploy" / "policies")


def measure(target: str, token: str, extensions: dict[str, str], calls: int) -> tuple[float, float]:
    request = _request(token, "/records/alice/profile", extensions)
    latencies, _, outcomes = asyncio.run(_run(target, request, calls, 1, 200))
    assert set(outcomes) == {200}, f"unexpected outcomes {outcomes}"
    ms = sorted(v * 1000 for v in latencies)
    return statistics.median(ms), percentile(ms, 99)


def run(engine: str, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = Stack(Path(tmp))
        try:
            policy: dict[str, object] = {"paths": [POLICIES], "watch_interval_seconds": 0, "decision_log": "off"}
            if engine == "remote":
                port = free_port()
                s._start(Process("opa-double", [sys.executable, "-m", "tests.opa_double", "--port", str(port),
                                                "--policies", POLICIES], port, s.dir))
                policy = {"engine": "remote", "remote": {"url": f"http://127.0.0.1:{port}"}, "decision_log": "off"}
            s.start_dev_as()
            s.start_authz(policy=policy)
            target = f"127.0.0.1:{s.authz_port}"
            token = s.token("read", subject="alice")
            base = measure(target, token, {"required_scopes": "read"}, calls)
            with_policy = measure(target, token, {"required_scopes": "read", "policy": "records/decision"}, calls)
        finally:
            s.stop()
    print(f"{engine:8s} policy: median {with_policy[0]:.3f} ms (p99 {with_policy[1]:.3f}) vs no policy "
          f"{base[0]:.3f} ms (p99 {base[1]:.3f}) -> adds {with_policy[0] - base[0]:.3f} ms per Check at the median")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    # make bench passes BENCH_ARGS to every benchmark: envoy_bench.py's A/B options are accepted, and unused here
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    parser.add_argument("--ab-rounds", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    calls = 300 if args.quick else 3000
    run("embedded", calls)
    run("remote", calls)
    decision_cache_memory.report(1000, None)  # issue 12 item 4: RSS stays within decision_cache_max_bytes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
