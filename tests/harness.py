"""Real processes on loopback for service and end-to-end tests: dev AS, echo upstream, phantom-authz, Envoy."""

from __future__ import annotations

import base64
import http.client
import json
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from authz.dev.envoy_config import render_envoy_config
from authz.dev.processes import Process, envoy_binary, free_port

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_SECRET = "gateway-test-secret"


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:300]!r}>"


def http_request(method: str, port: int, path: str, headers: dict[str, str] | None = None,
                 body: bytes | str | None = None, timeout: float = 15.0) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class Stack:
    """Start what a test needs; ``stop()`` stops all of it, in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.procs: list[Process] = []
        self.as_port = 0
        self.echo_port = 0
        self.authz_port = 0
        self.envoy_port = 0
        self.authz: Process | None = None
        self.dev_as: Process | None = None
        self.admin_port = free_port()  # phantom-authz's cache admin API; the dev AS's revocation hook calls it
        self.metrics_port = free_port()

    def _start(self, proc: Process) -> Process:
        self.procs.append(proc)
        return proc.start()

    def start_dev_as(self, *args: str) -> Process:
        self.as_port = free_port()
        self.dev_as = self._start(Process(
            "dev-as", [sys.executable, "-m", "authz.dev.auth_server", "--port", str(self.as_port),
                       "--revocation-hook", f"127.0.0.1:{self.admin_port}", *args],
            self.as_port, self.dir, env={"DEV_AS_GATEWAY_SECRET": GATEWAY_SECRET}))
        return self.dev_as

    def start_echo(self) -> Process:
        self.echo_port = free_port()
        return self._start(Process("echo", [sys.executable, "-m", "authz.dev.echo", "--port", str(self.echo_port)],
                                   self.echo_port, self.dir))

    def authz_config(self, **overrides: Any) -> dict[str, Any]:
        as_entry = {
            "dialect": "phantom",
            "introspection_endpoint": f"http://127.0.0.1:{self.as_port}/oauth/v2/oauth-introspect",
            "client_id": "gateway-client",
            "client_secret_env": "TEST_GATEWAY_SECRET",
            "timeout_seconds": 1.0,
            "retry_after_seconds": 5,
            "issuer": f"http://127.0.0.1:{self.as_port}/oauth/v2/oauth-anonymous",
            "jwks_uri": f"http://127.0.0.1:{self.as_port}/oauth/v2/oauth-anonymous/jwks",
            "audiences": ["api.example.com"],
        }
        as_entry.update(overrides.pop("as_overrides", {}))
        as_entry = {k: v for k, v in as_entry.items() if v is not None}  # None: leave the key out
        config: dict[str, Any] = {
            "server": {"listen": f"127.0.0.1:{self.authz_port}", "shutdown_grace_seconds": 5, "log_level": "DEBUG"},
            "realm": "api",
            "headers_to_remove": ["x-user-id"],
            "admin_listen": f"127.0.0.1:{self.admin_port}",
            "metrics_listen": f"127.0.0.1:{self.metrics_port}",
            "authorization_servers": {"dev": as_entry},
            "policy": {"paths": [str(ROOT / "deploy" / "policies")], "watch_interval_seconds": 0,
                       "decision_log": "full"},
        }
        config.update(overrides)
        return config

    def start_authz(self, secret: str = GATEWAY_SECRET, env: dict[str, str] | None = None,
                    **overrides: Any) -> Process:
        self.authz_port = free_port()
        path = self.dir / "authz.yaml"
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.authz_config(**overrides)))
        self.authz = self._start(Process(
            "authz", [sys.executable, "-m", "authz", "serve", "--config", str(path)], self.authz_port, self.dir,
            env={"TEST_GATEWAY_SECRET": secret, **(env or {})}))
        return self.authz

    def start_envoy(self, mutate: Callable[[dict[str, Any]], None] | None = None) -> Process:
        """Real Envoy with ``envoy/envoy.yaml`` re-pointed at this stack; ``mutate`` edits the config dict."""
        self.envoy_port = free_port()
        admin = free_port()
        cfg = render_envoy_config(self.dir / "envoy.yaml", listen_port=self.envoy_port, admin_port=admin,
                                  clusters={"phantom_authz": self.authz_port, "echo": self.echo_port},
                                  mutate=mutate)
        return self._start(Process(
            "envoy", [envoy_binary(), "-c", str(cfg), "--log-level", "warn", "--concurrency", "1",
                      "--base-id", str(admin)], self.envoy_port, self.dir))

    def full(self, *as_args: str, **authz_overrides: Any) -> Stack:
        self.start_dev_as(*as_args)
        self.start_echo()
        self.start_authz(**authz_overrides)
        self.start_envoy()
        return self

    def token(self, scope: str = "read", client: tuple[str, str] = ("demo-client", "demo-secret"),
              subject: str | None = None) -> str:
        form = {"grant_type": "client_credentials", "scope": scope}
        if subject is not None:  # the dev AS lets demos act as a user
            form["subject"] = subject
        resp = http_request("POST", self.as_port, "/oauth/v2/oauth-token",
                            headers={"Authorization": basic(*client),
                                     "Content-Type": "application/x-www-form-urlencoded"},
                            body=urllib.parse.urlencode(form))
        assert resp.status == 200, resp
        return str(resp.json()["access_token"])

    def as_stats(self) -> dict[str, Any]:
        return http_request("GET", self.as_port, "/stats").json()  # type: ignore[no-any-return]

    def get(self, path: str, token: str | None = None, headers: dict[str, str] | None = None,
            method: str = "GET", body: str | None = None) -> Response:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return http_request(method, self.envoy_port, path, all_headers, body)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
