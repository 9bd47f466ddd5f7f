"""``authz health``: ask a running phantom-authz's grpc.health.v1 service; exit 0 when SERVING, 1 otherwise.

For container probes where the service listens on loopback only (as a sidecar should: Envoy reaches it over
127.0.0.1, nobody else may trade opaque tokens for JWTs through it), so the kubelet's own gRPC probe cannot reach it.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="authz health", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:9001", help="HOST:PORT or unix:PATH (default %(default)s)")
    parser.add_argument("--service", default="envoy.service.auth.v3.Authorization")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        with grpc.insecure_channel(args.target) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"authz health: {args.target}: {exc.code().name if hasattr(exc, 'code') else exc}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{args.target} {args.service or '(server)'}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1
