"""Command line: ``authz serve --config FILE`` and friends. Also ``python -m authz``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from authz.config import ConfigError, config_schema, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authz", description="phantom-authz: Envoy ext_authz for phantom tokens")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the ext_authz gRPC service"),
                       ("validate-config", "check a configuration file and exit")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", default=os.environ.get("AUTHZ_CONFIG"),
                         help="YAML configuration file (default: $AUTHZ_CONFIG)")
        cmd.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT); overrides "
                                                     "server.workers")
    sub.add_parser("config-schema", help="print the configuration file's JSON Schema")
    sub.add_parser("health", help="probe a running service's grpc.health.v1 (exit 0 when SERVING)", add_help=False)
    sub.add_parser("routes", help="explain which route rule a request matches (authz routes explain --help)",
                   add_help=False)
    sub.add_parser("admin", help="the cache admin API: stats, evict-token, evict-subject, purge", add_help=False)
    sub.add_parser("check", help="simulate one request against a running service or a config file; print the "
                                 "decision and why", add_help=False)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from authz.app import Server, run
    from authz.log_format import configure_logging
    from authz.policy.embedded import EmbeddedEngine
    from authz.policy.engine import PolicyLoadError
    from authz.transport.http_gaps import refuse_http_gaps
    from authz.workers import WORKER_ENV, supervise

    if args.workers is not None:
        if args.workers < 1:
            print("authz: --workers must be >= 1", file=sys.stderr)
            return 2
        os.environ["AUTHZ__SERVER__WORKERS"] = str(args.workers)
    try:
        config = load_config(args.config)
        if config.policy.engine == "embedded":  # policies that do not load stop the start, naming file and line
            engine = EmbeddedEngine(config.policy.paths, config.policy.timeout_seconds)
            if config.server.http.enabled:  # and so do policies that read what HTTP mode does not send
                refuse_http_gaps(config, engine)
    except ConfigError as exc:
        print(f"authz: config error: {exc}", file=sys.stderr)
        return 2
    except PolicyLoadError as exc:
        print(f"authz: policy error: {exc}", file=sys.stderr)
        return 2
    if args.command == "validate-config":
        print(f"authz: {args.config or '(environment only)'}: configuration is valid")
        return 0
    if config.server.workers > 1 and WORKER_ENV not in os.environ:
        return supervise(["serve", *(["--config", args.config] if args.config else [])], config.server.workers)
    configure_logging(config.server.log_level, config.server.log_format)

    def ready(server: Server) -> None:
        print(f"phantom-authz listening on {config.server.listen} (port {server.port})", flush=True)

    try:
        if config.server.event_loop == "uvloop":
            import uvloop

            return int(uvloop.run(run(config, ready, args.config)))
        return asyncio.run(run(config, ready, args.config))
    except OSError as exc:
        print(f"authz: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    delegated = {"health": "authz.transport.health_probe", "routes": "authz.route_rules.explain",
                 "admin": "authz.cli.admin", "check": "authz.cli.check"}
    if argv and argv[0] in delegated:
        import importlib

        module = importlib.import_module(delegated[argv[0]])
        return int(module.main(argv[1:]))
    args = _parser().parse_args(argv)
    if args.command == "config-schema":
        print(json.dumps(config_schema(), indent=2))
        return 0
    return _serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
