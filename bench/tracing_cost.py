"""Micro-benchmark: the in-process cost of one cached check with tracing off and on (issue 15 item 3). Prints;
asserts nothing.

One phantom-authz (``authz.app.Server``) in this process against the dev AS; after one check has filled the cache,
``AuthorizationService.Check`` (the gRPC servicer: translation, pipeline, response; no network) is timed over the
same CheckRequest: best of 5 rounds of N calls, µs per check. The request carries a ``traceparent``, as through
Envoy. Variants, each in a process of its own (``--variant``), so one's OpenTelemetry state never touches another's:

- ``off``: ``tracing.enabled: false`` (the default);
- ``none``: tracing on, ``exporter: none`` (spans made and ended, sent nowhere);
- ``memory``: tracing on, spans batched (the SDK's BatchSpanProcessor, as with OTLP) into an in-memory exporter;
- ``policy-off`` / ``policy-memory``: ``off`` / ``memory`` on a route whose policy (deploy/policies) decides too.

``python bench/tracing_cost.py`` runs every variant; ``--baseline DIR`` also runs ``off`` and ``policy-off`` with
the checkout in DIR (e.g. a ``git worktree`` of the commit before tracing), for the cost of tracing being off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("off", "none", "memory", "policy-off", "policy-memory")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Context:
    """What the servicer reads of a grpc.aio ServicerContext."""

    @staticmethod
    def invocation_metadata() -> tuple[tuple[str, str], ...]:
        return ()


async def _measure(variant: str, runs: int, root: Path) -> float:
    sys.path.insert(0, str(root))
    from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

    from authz.app import Server
    from authz.config import load_config
    from authz.transport.grpc_service import AuthorizationService
    from tests.harness import Stack

    work = Path(tempfile.mkdtemp(prefix="tracing-cost-"))
    stack = Stack(work)
    try:
        stack.start_dev_as()
        overrides: dict[str, Any] = {"server": {"listen": "127.0.0.1:0", "log_level": "WARNING"},
                                     "admin_listen": None, "metrics_listen": None}
        if variant not in ("off", "policy-off"):
            overrides["tracing"] = {"enabled": True, "exporter": "none"}
        config_path = work / "authz.yaml"
        config_path.write_text(yaml.safe_dump(stack.authz_config(**overrides)))
        server = Server(load_config(config_path, {"TEST_GATEWAY_SECRET": "gateway-test-secret"}))
        await server.start()
        exporter = None
        if variant.endswith("memory"):
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            assert server.tracing is not None
            exporter = InMemorySpanExporter()
            server.tracing.provider.add_span_processor(BatchSpanProcessor(exporter))
        try:
            request = CheckRequest()
            http = request.attributes.request.http
            http.method, http.host, http.id = "GET", "api.example", "1"
            http.path = "/records/alice/profile" if variant.startswith("policy") else "/get"
            http.headers.update({"authorization": f"Bearer {stack.token(subject='alice')}",
                                 "traceparent": TRACEPARENT, "x-request-id": "bench"})
            request.attributes.context_extensions.update(
                {"required_scopes": "read", **({"policy": "records/decision"} if variant.startswith("policy") else {})})
            service = AuthorizationService(server.authorizer)
            context = _Context()
            assert (await service.Check(request, context)).status.code == 0, "the benchmark check must be allowed"
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(runs):
                    await service.Check(request, context)
                best = min(best, (time.perf_counter() - started) / runs)
                if exporter is not None:
                    exporter.clear()
            return best * 1e6
        finally:
            await server.stop(grace=0)
    finally:
        stack.stop()


def _run(variant: str, runs: int, root: Path) -> float:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--runs", str(runs),
                           "--root", str(root)], capture_output=True, text=True, check=True, cwd=root)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["us_per_check"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose authz is measured")
    parser.add_argument("--baseline", type=Path, help="also measure off / policy-off with the checkout in DIR")
    args = parser.parse_args(argv)
    if args.variant is not None:
        print(json.dumps({"us_per_check": asyncio.run(_measure(args.variant, args.runs, args.root))}))
        return 0
    figures = {variant: _run(variant, args.runs, ROOT) for variant in VARIANTS}
    if args.baseline is not None:
        for variant in ("off", "policy-off"):
            figures[f"baseline {variant}"] = _run(variant, args.runs, args.baseline)
    print(f"cached check, in process, best of 5 x {args.runs} (µs per check):")
    for name, value in figures.items():
        base = figures["policy-off" if name.startswith(("policy", "baseline policy")) else "off"]
        print(f"  {name:20} {value:7.1f}   {value / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
