"""``MeshStack``: the harness's ``Stack`` plus Envoys from configs the mesh tests build themselves.

Every such config is written next to the logs, checked with ``envoy --mode validate`` (a config Envoy would refuse
fails the test there, with Envoy's message), and only then started. ``mtls_request`` is a client that presents a
workload certificate, as another pod's sidecar would.
"""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devtools.processes import Process, envoy_binary, free_port
from tests.harness import GATEWAY_SECRET, Response, Stack

__all__ = ["POLICIES", "MeshStack", "mtls_request", "validate_envoy_config"]

POLICIES = Path(__file__).resolve().parent / "policies"  # the mesh tests' Rego


def validate_envoy_config(path: Path) -> None:
    done = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "OK" in done.stdout, f"{path.name} does not validate:\n{done.stdout}{done.stderr}"


class MeshStack(Stack):
    """A ``Stack`` whose Envoys come from dicts (``start_envoy_config``), any number of them."""

    def __init__(self, workdir: Path, mode: str = "grpc") -> None:
        super().__init__(workdir, mode)
        self.envoy_admin: dict[str, int] = {}  # Envoy name -> its admin port

    def write_envoy_config(self, name: str, config: dict[str, Any]) -> Path:
        path = self.dir / f"{name}.yaml"
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        validate_envoy_config(path)
        return path

    def start_envoy_config(self, name: str, config: dict[str, Any], port: int) -> Process:
        """Validate ``config`` and run it as Envoy ``name``, ready once ``port`` (one of its listeners) accepts."""
        admin = int(config["admin"]["address"]["socket_address"]["port_value"])
        self.envoy_admin[name] = admin
        path = self.write_envoy_config(name, config)
        return self._start(Process(name, [envoy_binary(), "-c", str(path), "--log-level", "warn", "--concurrency",
                                          "1", "--base-id", str(admin)], port, self.dir))

    def as_entry(self) -> dict[str, Any]:
        """The ``authorization_servers`` entry for this stack's dev AS (known once it was started), to combine
        with another stack's in one phantom-authz."""
        entry: dict[str, Any] = self.authz_config()["authorization_servers"]["dev"]
        return entry

    def start_mesh_authz(self, policy_file: str, **overrides: Any) -> None:
        """phantom-authz with one of the mesh tests' policies (``POLICIES / policy_file``) and ``overrides``."""
        policy = {"paths": [str(POLICIES / policy_file)], "watch_interval_seconds": 0, "decision_log": "summary"}
        self.start_authz(policy=policy, **overrides)

    def written_authz_config(self) -> dict[str, Any]:
        """The phantom-authz config this stack started with (``authz.yaml``), to edit."""
        config: dict[str, Any] = yaml.safe_load((self.dir / "authz.yaml").read_text())
        return config

    def refused_at_start(self, name: str, config: dict[str, Any]) -> str:
        """Start ``authz serve`` with ``config`` (written as ``<name>.yaml``): it must refuse to start (exit 2).
        Returns what it said on stderr."""
        path = self.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        done = subprocess.run([sys.executable, "-m", "authz", "serve", "--config", str(path)], capture_output=True,
                              text=True, timeout=30, env={**os.environ, "TEST_GATEWAY_SECRET": GATEWAY_SECRET})
        assert done.returncode == 2, done
        return done.stderr

    @staticmethod
    def ports(count: int) -> list[int]:
        return [free_port() for _ in range(count)]


def mtls_request(port: int, context: ssl.SSLContext, path: str, host: str, token: str | None = None,
                 method: str = "GET", headers: dict[str, str] | None = None, body: str | None = None,
                 timeout: float = 15.0) -> Response:
    """One HTTPS/1.1 request to 127.0.0.1:``port`` over mTLS (``context`` holds the client certificate), with
    ``Host: host`` and the token as a bearer credential."""
    sent = {"Host": host, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=sent)
        answer = conn.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        conn.close()
