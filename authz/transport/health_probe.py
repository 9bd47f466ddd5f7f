"""``authz health``: ask a running phantom-authz's grpc.health.v1 service; exit 0 when SERVING, 1 otherwise.

For container probes where the service listens on loopback only (as a sidecar should: Envoy reaches it over
127.0.0.1, nobody else may trade opaque tokens for JWTs through it), so the kubelet's own gRPC probe cannot reach it.
Against a TLS listener (``server.tls``) give ``--ca-file`` (and, with mutual TLS, ``--cert-file``/``--key-file``: any
certificate the client CA signed, the service's own included; the health service is exempt from
``allowed_client_sans``); ``--server-name`` is the name the server certificate must carry when it differs from the
target's host (``--target 127.0.0.1:9001 --server-name authz.example.svc``).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.config.tls import read_pem
from authz.config.types import ConfigError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="authz health", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:9001", help="HOST:PORT or unix:PATH (default %(default)s)")
    parser.add_argument("--service", default="envoy.service.auth.v3.Authorization")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--ca-file", help="TLS: the CA bundle that signed the server certificate")
    parser.add_argument("--cert-file", help="mutual TLS: a client certificate (PEM chain)")
    parser.add_argument("--key-file", help="mutual TLS: its private key")
    parser.add_argument("--server-name", help="TLS: the name the server certificate carries (default: target host)")
    args = parser.parse_args(argv)
    try:
        with _channel(args) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except ConfigError as exc:
        print(f"authz health: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"authz health: {args.target}: {exc.code().name if hasattr(exc, 'code') else exc}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{args.target} {args.service or '(server)'}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if not (args.ca_file or args.cert_file or args.key_file):
        return grpc.insecure_channel(args.target)
    if bool(args.cert_file) != bool(args.key_file):
        raise ConfigError("--cert-file" if args.key_file else "--key-file", "is needed with the other")
    root = read_pem(args.ca_file, "--ca-file") if args.ca_file else None
    key = read_pem(args.key_file, "--key-file") if args.key_file else None
    chain = read_pem(args.cert_file, "--cert-file") if args.cert_file else None
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.target, grpc.ssl_channel_credentials(root, key, chain), options=options)
