"""``make run``: dev AS (8443), echo upstream (8080), phantom-authz (9001; admin API 9002, metrics 9102) and Envoy
(8000, admin 9901) in the foreground.

Every port is checked first: one that is taken is named, and nothing starts. Ctrl-C (or SIGTERM) stops all four.
A process that exits on its own is reported (its exit status or signal, its log's last lines) and the others keep
running. Logs go to ``run/logs/``, each process's pid to ``run/<name>.pid`` (``kill -STOP $(cat run/dev-as.pid)``
stops the dev AS, ``kill -CONT`` continues it: an AS outage to watch). The demo client is ``demo-client`` /
``demo-secret``.

``make run MODE=http`` (``--mode http``) runs Envoy's HTTP ext_authz mode instead: Envoy with
``envoy/envoy-http.yaml``, and phantom-authz with its HTTP transport on 127.0.0.1:9192 as well (the environment
override ``AUTHZ__SERVER__HTTP__LISTEN``; ``deploy/authz.yaml`` is used unchanged). ``--ports NAME=PORT,...`` moves
ports (names: envoy, envoy-admin, dev-as, echo, authz, authz-http, authz-admin, authz-metrics) through the same
overrides and a copy of the Envoy config in the work directory.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from devtools.auth_server import default_clients
from devtools.envoy_config import TEMPLATES
from devtools.processes import Process, envoy_binary, wait_for_port
from devtools.quickstart_ports import DEFAULT_PORTS, authz_overrides, envoy_config, mode_ports, parse_ports, taken

__all__ = ["HTTP_LISTEN", "MODES", "exit_cause", "main", "processes"]

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "authz.yaml"
MODES = tuple(TEMPLATES)  # grpc (envoy/envoy.yaml), http (envoy/envoy-http.yaml)
HTTP_LISTEN = f"127.0.0.1:{DEFAULT_PORTS['authz-http']}"  # HTTP transport in http mode; envoy-http.yaml's cluster

INSTRUCTIONS = """
phantom-authz quickstart is running (logs in {logs}, pids in {run}/<name>.pid):
  Envoy            http://127.0.0.1:{p[envoy]}   config {envoy_config}, admin http://127.0.0.1:{p[envoy-admin]}
                   routes /httpbin/ (scope read), /admin/ (scope admin),
                   /records/ (scope read + OPA policy deploy/policies/records.rego), /public/ (no auth)
  dev AS           http://127.0.0.1:{p[dev-as]}   demo client: demo-client / demo-secret,
                   may get scopes {scopes} (default: {default_scopes})
  phantom-authz    {transport}
                   cache admin API 127.0.0.1:{p[authz-admin]}, metrics http://127.0.0.1:{p[authz-metrics]}/metrics
  echo upstream    http://127.0.0.1:{p[echo]}

Try it:
  token() {{ curl -s -u demo-client:demo-secret -d grant_type=client_credentials "$@" \\
             http://127.0.0.1:{p[dev-as]}/oauth/v2/oauth-token \\
             | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }}
  TOKEN=$(token -d scope=read); echo "opaque token: $TOKEN"
  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{p[envoy]}/httpbin/get    # upstream sees a JWT
  curl -si http://127.0.0.1:{p[envoy]}/httpbin/get                                     # 401, WWW-Authenticate
  curl -si -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{p[envoy]}/admin/get     # 403 insufficient_scope
  curl -s -u demo-client:demo-secret -d token=$TOKEN http://127.0.0.1:{p[dev-as]}/oauth/v2/oauth-revoke
  curl -si -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{p[envoy]}/httpbin/get    # 401 at once: cache evicted

  The seed's fine-grained rules (see README): a token for user alice (dev AS field `subject`):
  ALICE=$(token -d 'scope=read approve' -d subject=alice)
  curl -s  -H "Authorization: Bearer $ALICE" http://127.0.0.1:{p[envoy]}/records/alice/profile   # 200: owner
  curl -si -H "Authorization: Bearer $ALICE" http://127.0.0.1:{p[envoy]}/records/bob/profile     # 403: not the owner

  An AS outage (README "When the AS is down"): stop the dev AS, and continue it.
  CACHED=$(token -d scope=read); FRESH=$(token -d scope=read)
  curl -s -o /dev/null -w '%{{http_code}}\\n' -H "Authorization: Bearer $CACHED" http://127.0.0.1:{p[envoy]}/httpbin/get
  kill -STOP $(cat {run}/dev-as.pid)       # the dev AS stops answering (its tokens are kept)
  curl -s -o /dev/null -w '%{{http_code}}\\n' -H "Authorization: Bearer $CACHED" http://127.0.0.1:{p[envoy]}/httpbin/get
                                         # 200: the cached answer (stale-if-error once its TTL has passed)
  curl -si -H "Authorization: Bearer $FRESH" http://127.0.0.1:{p[envoy]}/httpbin/get   # 503 + Retry-After, after 2 s
  kill -CONT $(cat {run}/dev-as.pid)       # the dev AS answers again: $FRESH gets 200
  curl -s http://127.0.0.1:{p[authz-metrics]}/metrics | grep -E '^phantom_authz_(cache_lookups|as_calls)_total'

  One request in every log: each line of Envoy's access log ({logs}/envoy.log, JSON) names the request's
  x-request-id as request_id, and so do phantom-authz's lines about it: grep ID {logs}/*.log finds both.

  Operator CLI (. .venv/bin/activate first, or write .venv/bin/authz):
  authz admin stats --admin 127.0.0.1:{p[authz-admin]}          # the cache's sizes and counters
  AUTHZ_CHECK_TOKEN=$ALICE authz check --target 127.0.0.1:{p[authz]} --host localhost --path /httpbin/get \\
      --ext required_scopes=read                     # the decision and why (authz check --help)

A process that exits is reported here; the others keep running. Press Ctrl-C to stop everything.
"""


def processes(mode: str, logs: Path, env: dict[str, str], ports: Mapping[str, int] | None = None) -> list[Process]:
    """The quickstart's four processes, in start order, for ext_authz ``mode`` (``grpc`` or ``http``), on ``ports``
    (``quickstart_ports.PORTS``' names; the defaults where missing). Moved ports that Envoy uses give a copy of its
    config next to ``logs``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    p = mode_ports(mode, ports or {})
    py = sys.executable
    # the service's logs as text for a human reading run/logs/ (production's default is JSON, server.log_format)
    authz_env = {**env, "AUTHZ__SERVER__LOG_FORMAT": "text", **authz_overrides(p)}
    if mode == "http":
        authz_env["AUTHZ__SERVER__HTTP__LISTEN"] = f"127.0.0.1:{p['authz-http']}"
    envoy_yaml = envoy_config(mode, p, logs.parent / f"envoy-{mode}.yaml")
    # a second Envoy on this machine (the tests run the quickstart on other ports) needs its own shared-memory id
    base_id = [] if envoy_yaml == TEMPLATES[mode] else ["--base-id", str(p["envoy-admin"])]
    return [
        Process("dev-as", [py, "-m", "devtools.auth_server", "--port", str(p["dev-as"]),
                           "--revocation-hook", f"127.0.0.1:{p['authz-admin']}"], p["dev-as"], logs, env),
        Process("echo", [py, "-m", "devtools.echo", "--port", str(p["echo"])], p["echo"], logs),
        # ready when the gRPC port accepts; in http mode the HTTP port is awaited too (main)
        Process("phantom-authz", [py, "-m", "authz", "serve", "--config", str(CONFIG)], p["authz"], logs, authz_env),
        Process("envoy", [envoy_binary(), "-c", str(envoy_yaml), "--log-level", "warn", *base_id], p["envoy"], logs),
    ]


def exit_cause(returncode: int) -> str:
    """``exited with status 3``, ``killed by SIGKILL``: how a process ended, from its return code."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _shown(path: Path) -> str:
    """``path`` as the user would type it here: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _report_exit(proc: Process, others: list[str]) -> None:
    assert proc.proc is not None
    cause = exit_cause(proc.proc.returncode)
    still = f"{', '.join(others)} keep running" if others else "no process is left running"
    tail = "\n".join(f"    {line}" for line in proc.log_tail(10).splitlines()) or "    (empty)"
    print(f"\nquickstart: {proc.name} {cause}; {still}. The last lines of {_shown(proc.log_path)}:\n{tail}",
          file=sys.stderr, flush=True)


def _supervise(started: list[Process], stop: threading.Event) -> int:
    """Until Ctrl-C/SIGTERM: report each process that exits, once. 0 if none did, else 1."""
    ended: set[str] = set()
    while not stop.wait(0.25):
        for proc in started:
            if proc.name not in ended and not proc.running and not stop.is_set():  # Ctrl-C reaches them too
                ended.add(proc.name)
                _report_exit(proc, [p.name for p in started if p.name not in ended])
        if len(ended) == len(started):
            return 1
    return 1 if ended else 0


def _ports(text: str) -> dict[str, int]:
    try:
        return parse_ports(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "run", help="logs and pid files (default: run/)")
    parser.add_argument("--mode", choices=MODES, default="grpc",
                        help="Envoy's ext_authz mode: grpc (envoy/envoy.yaml, default) or http (envoy/envoy-http.yaml)")
    parser.add_argument("--ports", type=_ports, default={}, metavar="NAME=PORT,...",
                        help="move ports: " + ", ".join(f"{n} ({p})" for n, p in DEFAULT_PORTS.items()))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        ports = mode_ports(args.mode, args.ports)
    except ValueError as exc:
        parser.error(str(exc))
    busy = taken(ports)
    if busy:  # before anything starts: a half-started quickstart would only hide which port was the problem
        print("quickstart: nothing started; ports taken:\n  " + "\n  ".join(busy), file=sys.stderr)
        return 1
    run, logs = args.workdir, args.workdir / "logs"
    # one random secret per run, shared by the dev AS and phantom-authz: no secret is ever defaulted
    secret = os.environ.get("DEV_AS_GATEWAY_SECRET") or secrets.token_urlsafe(32)
    procs = processes(args.mode, logs, {"DEV_AS_GATEWAY_SECRET": secret}, ports)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started: list[Process] = []
    try:
        for proc in procs:
            print(f"starting {proc.name} ...", flush=True)
            started.append(proc.spawn())
            (run / f"{proc.name}.pid").write_text(f"{proc.proc.pid if proc.proc else ''}\n")
            proc.await_ready()
            if proc.name == "phantom-authz" and args.mode == "http":
                wait_for_port(ports["authz-http"], 20.0, proc.proc)
        demo = default_clients()["demo-client"]
        transport = f"127.0.0.1:{ports['authz']} (gRPC ext_authz v3)"
        if args.mode == "http":
            transport = f"127.0.0.1:{ports['authz-http']} (HTTP ext_authz, Envoy's http_service) and {transport}"
        print(INSTRUCTIONS.format(logs=_shown(logs), run=_shown(run), p=ports, transport=transport,
                                  envoy_config=_shown(Path(procs[-1].argv[2])), scopes=" ".join(demo.scopes),
                                  default_scopes=" ".join(demo.default_scopes)), flush=True)
        return _supervise(started, stop)
    except (RuntimeError, TimeoutError) as exc:
        print(f"quickstart failed: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        for proc in reversed(started):
            proc.stop()
            (run / f"{proc.name}.pid").unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
