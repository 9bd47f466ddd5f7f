"""``make run``: dev AS (8443), echo upstream (8080), phantom-authz (9001) and Envoy (8000) in the foreground.

Ctrl-C (or SIGTERM) stops all four. Logs go to ``run/logs/``. The demo client is ``demo-client`` / ``demo-secret``.

``make run MODE=http`` (``--mode http``) runs Envoy's HTTP ext_authz mode instead: Envoy with
``envoy/envoy-http.yaml``, and phantom-authz with its HTTP transport on 127.0.0.1:9192 as well (the environment
override ``AUTHZ__SERVER__HTTP__LISTEN``; ``deploy/authz.yaml`` is used unchanged).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from devtools.envoy_config import TEMPLATES
from devtools.processes import Process, envoy_binary, wait_for_port

__all__ = ["HTTP_LISTEN", "MODES", "main", "processes"]

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "authz.yaml"
MODES = tuple(TEMPLATES)  # grpc (envoy/envoy.yaml), http (envoy/envoy-http.yaml)
HTTP_LISTEN = "127.0.0.1:9192"  # phantom-authz's HTTP transport in http mode; envoy-http.yaml's phantom_authz_http

INSTRUCTIONS = """
phantom-authz quickstart is running (logs in {logs}):
  Envoy            http://127.0.0.1:8000   config {envoy_config}
                   routes /httpbin/ (scope read), /admin/ (scope admin),
                   /records/ (scope read + OPA policy deploy/policies/records.rego), /public/ (no auth)
  dev AS           http://127.0.0.1:8443   demo client: demo-client / demo-secret
  phantom-authz    {transport}
                   cache admin API 127.0.0.1:9002, metrics http://127.0.0.1:9102/metrics
  echo upstream    http://127.0.0.1:8080

Try it:
  TOKEN=$(curl -s -u demo-client:demo-secret -d grant_type=client_credentials -d scope=read \\
          http://127.0.0.1:8443/oauth/v2/oauth-token \\
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  echo "opaque token: $TOKEN"
  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/httpbin/get    # upstream sees a JWT
  curl -si http://127.0.0.1:8000/httpbin/get                                     # 401, WWW-Authenticate
  curl -si -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/admin/get     # 403 insufficient_scope
  curl -s -u demo-client:demo-secret -d token=$TOKEN http://127.0.0.1:8443/oauth/v2/oauth-revoke
  curl -si -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/httpbin/get    # 401 at once: cache evicted

  The seed's fine-grained rules (see README): a token for user alice (dev AS field `subject`):
  ALICE=$(curl -s -u demo-client:demo-secret -d grant_type=client_credentials -d 'scope=read approve' \\
          -d subject=alice http://127.0.0.1:8443/oauth/v2/oauth-token \\
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s  -H "Authorization: Bearer $ALICE" http://127.0.0.1:8000/records/alice/profile   # 200: owner
  curl -si -H "Authorization: Bearer $ALICE" http://127.0.0.1:8000/records/bob/profile     # 403: not the owner

  One request in every log: each line of Envoy's access log ({logs}/envoy.log, JSON) names the request's
  x-request-id as request_id, and so do phantom-authz's lines about it: grep ID {logs}/*.log finds both.

  Operator CLI (in .venv/bin):
  authz admin stats                                   # the cache's sizes and counters (admin API 127.0.0.1:9002)
  AUTHZ_CHECK_TOKEN=$TOKEN authz check --target 127.0.0.1:9001 --host localhost --path /httpbin/get \\
      --ext required_scopes=read                     # the decision and why (authz check --help)

Press Ctrl-C to stop everything.
"""


TRANSPORTS = {
    "grpc": "127.0.0.1:9001 (gRPC ext_authz v3)",
    "http": f"{HTTP_LISTEN} (HTTP ext_authz, Envoy's http_service) and 127.0.0.1:9001 (gRPC)",
}


def processes(mode: str, logs: Path, env: dict[str, str]) -> list[Process]:
    """The quickstart's four processes, in start order, for ext_authz ``mode`` (``grpc`` or ``http``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    py = sys.executable
    # the service's logs as text for a human reading run/logs/ (production's default is JSON, server.log_format)
    authz_env = {**env, "AUTHZ__SERVER__LOG_FORMAT": "text"}
    if mode == "http":
        authz_env["AUTHZ__SERVER__HTTP__LISTEN"] = HTTP_LISTEN
    return [
        Process("dev-as", [py, "-m", "devtools.auth_server", "--port", "8443",
                           "--revocation-hook", "127.0.0.1:9002"], 8443, logs, env),
        Process("echo", [py, "-m", "devtools.echo", "--port", "8080"], 8080, logs),
        # ready when the gRPC port accepts; in http mode the HTTP port is awaited too (main)
        Process("phantom-authz", [py, "-m", "authz", "serve", "--config", str(CONFIG)], 9001, logs, authz_env),
        Process("envoy", [envoy_binary(), "-c", str(TEMPLATES[mode]), "--log-level", "warn"], 8000, logs),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "run", help="where logs go (default: run/)")
    parser.add_argument("--mode", choices=MODES, default="grpc",
                        help="Envoy's ext_authz mode: grpc (envoy/envoy.yaml, default) or http (envoy/envoy-http.yaml)")
    args = parser.parse_args(argv)
    logs = args.workdir / "logs"
    # one random secret per run, shared by the dev AS and phantom-authz: no secret is ever defaulted
    secret = os.environ.get("DEV_AS_GATEWAY_SECRET") or secrets.token_urlsafe(32)
    env = {"DEV_AS_GATEWAY_SECRET": secret}
    procs = processes(args.mode, logs, env)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started: list[Process] = []
    try:
        for proc in procs:
            print(f"starting {proc.name} ...", flush=True)
            started.append(proc.start())
            if proc.name == "phantom-authz" and args.mode == "http":
                wait_for_port(int(HTTP_LISTEN.rpartition(":")[2]), 20.0, proc.proc)
        print(INSTRUCTIONS.format(logs=logs, transport=TRANSPORTS[args.mode],
                                  envoy_config=TEMPLATES[args.mode].relative_to(ROOT)), flush=True)
        while not stop.wait(0.5):
            dead = [p.name for p in started if not p.running]
            if dead:
                print(f"{', '.join(dead)} exited; see {logs}", file=sys.stderr)
                return 1
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"quickstart failed: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        for proc in reversed(started):
            proc.stop()


if __name__ == "__main__":
    raise SystemExit(main())
