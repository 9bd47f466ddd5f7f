"""The quickstart's ports: their defaults, ``--ports NAME=PORT,...`` to move some, the check that every one is free
before anything starts, and what moving them changes: phantom-authz's environment overrides (``deploy/authz.yaml``
itself is never edited) and a copy of the Envoy config with the new ports."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

from devtools.envoy_config import TEMPLATES, render_envoy_config

__all__ = ["DEFAULT_PORTS", "PORTS", "authz_overrides", "envoy_config", "mode_ports", "parse_ports", "taken"]

PORTS = {  # name: (default port, what listens there)
    "envoy": (8000, "Envoy's listener"),
    "envoy-admin": (9901, "Envoy's admin interface"),
    "dev-as": (8443, "the dev AS"),
    "echo": (8080, "the echo upstream"),
    "authz": (9001, "phantom-authz's gRPC ext_authz listener"),
    "authz-http": (9192, "phantom-authz's HTTP ext_authz listener"),
    "authz-admin": (9002, "phantom-authz's cache admin API"),
    "authz-metrics": (9102, "phantom-authz's /metrics"),
}
DEFAULT_PORTS = {name: port for name, (port, _) in PORTS.items()}
_DEV_AS = "AUTHZ__AUTHORIZATION_SERVERS__DEV__"


def parse_ports(text: str) -> dict[str, int]:
    """``envoy=18000,dev-as=18443`` -> ``{"envoy": 18000, "dev-as": 18443}`` (``ValueError`` naming what is wrong)."""
    moved: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in PORTS:
            raise ValueError(f"{item!r}: expected NAME=PORT, NAME one of {', '.join(PORTS)}")
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise ValueError(f"{item!r}: the port must be a number from 1 to 65535")
        moved[name] = int(value)
    return moved


def mode_ports(mode: str, ports: Mapping[str, int]) -> dict[str, int]:
    """The ports the quickstart listens on in ``mode`` (the HTTP ext_authz listener only in http mode)."""
    chosen = {name: ports.get(name, default) for name, default in DEFAULT_PORTS.items()}
    if mode != "http":
        del chosen["authz-http"]
    seen: dict[int, str] = {}
    for name, port in chosen.items():
        if port in seen:
            raise ValueError(f"{name} and {seen[port]} cannot share port {port}")
        seen[port] = name
    return chosen


def taken(ports: Mapping[str, int]) -> list[str]:
    """One line per port of ``ports`` that cannot be listened on now (another process holds it), naming it."""
    lines = []
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # as the servers bind: a port left in TIME_WAIT by an earlier run is free to them
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                lines.append(f"port {port} ({PORTS[name][1]}): {exc.strerror}; `ss -ltnp 'sport = :{port}'` "
                             f"shows who holds it, or move it: --ports {name}=PORT")
    return lines


def authz_overrides(ports: Mapping[str, int]) -> dict[str, str]:
    """phantom-authz's environment overrides for the ports that are not the defaults ``deploy/authz.yaml`` names."""
    env: dict[str, str] = {}
    for name, key in (("authz", "AUTHZ__SERVER__LISTEN"), ("authz-admin", "AUTHZ__ADMIN_LISTEN"),
                      ("authz-metrics", "AUTHZ__METRICS_LISTEN")):
        if ports[name] != DEFAULT_PORTS[name]:
            env[key] = f"127.0.0.1:{ports[name]}"
    if ports["dev-as"] != DEFAULT_PORTS["dev-as"]:
        base = f"http://127.0.0.1:{ports['dev-as']}/oauth/v2"
        env |= {_DEV_AS + "INTROSPECTION_ENDPOINT": f"{base}/oauth-introspect",
                _DEV_AS + "ISSUER": f"{base}/oauth-anonymous", _DEV_AS + "JWKS_URI": f"{base}/oauth-anonymous/jwks"}
    return env


def envoy_config(mode: str, ports: Mapping[str, int], out: Path) -> Path:
    """The Envoy config of ``mode``: the checked-in file with the default ports, else a copy at ``out`` with these."""
    envoy_names = ("envoy", "envoy-admin", "authz", "authz-http", "echo")
    if all(ports.get(name, DEFAULT_PORTS[name]) == DEFAULT_PORTS[name] for name in envoy_names):
        return TEMPLATES[mode]
    return render_envoy_config(out, listen_port=ports["envoy"], admin_port=ports["envoy-admin"],
                               clusters={"phantom_authz": ports["authz"],
                                         "phantom_authz_http": ports.get("authz-http", DEFAULT_PORTS["authz-http"]),
                                         "echo": ports["echo"]},
                               template=TEMPLATES[mode])
