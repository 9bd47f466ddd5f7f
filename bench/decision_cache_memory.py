"""Decision-cache memory under big bodies (issue 12, item 4). Prints figures; asserts nothing.

Starts the dev AS and phantom-authz (embedded engine, deploy/policies) on loopback and sends N allowed Check calls
over gRPC, each an approval (``records/decision``, which reads the JSON body) with a distinct body, so every request
offers the decision cache a new key as big as its body: 256 KiB (over the per-entry limit: never kept) and 48 KiB
(kept until the byte bound). Prints phantom-authz's resident memory (VmRSS) before and after, next to the configured
``policy.decision_cache_max_bytes``.

Run alone: ``python bench/decision_cache_memory.py [--calls 1000] [--max-bytes 16777216]``. Old/new comparison: run
it from another checkout's directory with ``PYTHONPATH=<this checkout>``; phantom-authz (started in the current
directory) then runs that checkout's code, e.g. ``cd /tmp/old && PYTHONPATH=$OLDPWD python $OLDPWD/bench/...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from tests.harness import ROOT, Stack

POLICIES = str(ROOT / "deploy" / "policies")
BODY_SIZES = (256 * 1024, 48 * 1024)
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def approval(token: str, n: int, body_bytes: int) -> CheckRequest:
    """carol approves a transaction alice created: allowed by records.rego; the body is distinct per n."""
    request = CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host, http.scheme = "POST", f"/records/bob/transactions/t{n}/approve", "b", "http"
    http.headers["authorization"] = f"Bearer {token}"
    http.headers["content-type"] = "application/json"
    head = json.dumps({"created_by": "alice", "n": n, "pad": ""})[:-2]
    http.body = head + "x" * (body_bytes - len(head) - 2) + '"}'
    http.headers["content-length"] = str(len(http.body))
    request.attributes.context_extensions.update({"required_scopes": "approve", "policy": "records/decision"})
    return request


async def send(target: str, token: str, first: int, calls: int, body_bytes: int) -> dict[int, int]:
    outcomes: dict[int, int] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for n in range(first, first + calls):
            response = await stub.Check(approval(token, n, body_bytes), timeout=10)
            status = 200 if response.status.code == 0 else int(response.denied_response.status.code)
            outcomes[status] = outcomes.get(status, 0) + 1
    return outcomes


def run(calls: int, max_bytes: int | None, body_bytes: int) -> tuple[float, float]:
    """(RSS before, RSS after) in MiB for ``calls`` allowed approvals with distinct ``body_bytes`` bodies."""
    with tempfile.TemporaryDirectory() as tmp:
        s = Stack(Path(tmp))
        try:
            policy: dict[str, object] = {"paths": [POLICIES], "watch_interval_seconds": 0, "decision_log": "off"}
            if max_bytes is not None:
                policy["decision_cache_max_bytes"] = max_bytes
            s.start_dev_as()
            s.start_authz(policy=policy)
            assert s.authz is not None and s.authz.proc is not None
            target = f"127.0.0.1:{s.authz_port}"
            token = s.token("read approve", subject="carol")
            warm = asyncio.run(send(target, token, -20, 20, body_bytes))  # warm: code paths, arenas, the token
            assert warm == {200: 20}, warm
            before = rss_bytes(s.authz.proc.pid)
            outcomes = asyncio.run(send(target, token, 0, calls, body_bytes))
            assert outcomes == {200: calls}, f"unexpected outcomes {outcomes}"
            after = rss_bytes(s.authz.proc.pid)
        finally:
            s.stop()
    return before / MIB, after / MIB


def report(calls: int, max_bytes: int | None) -> None:
    for body_bytes in BODY_SIZES:
        before, after = run(calls, max_bytes, body_bytes)
        bound = f"{max_bytes / MIB:.0f} MiB" if max_bytes is not None else "unset: default, 16 MiB"
        print(f"decision cache memory: {calls} allowed checks with distinct {body_bytes // 1024} KiB bodies: "
              f"phantom-authz RSS {before:.1f} -> {after:.1f} MiB (+{after - before:.1f} MiB; "
              f"decision_cache_max_bytes {bound})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--max-bytes", type=int, default=None, help="policy.decision_cache_max_bytes (default: unset)")
    args = parser.parse_args(argv)
    report(args.calls, args.max_bytes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
