"""Render ``envoy/envoy.yaml`` with other ports (and optionally a unix socket for phantom-authz).

The checked-in file is a complete, valid Envoy config with the quickstart's fixed ports; tests and the benchmark
load it, point the listener, admin and clusters elsewhere, and write the result next to their logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["TEMPLATE", "render_envoy_config"]

TEMPLATE = Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def render_envoy_config(
    out: Path,
    *,
    listen_port: int,
    admin_port: int,
    clusters: dict[str, int | str],
    template: Path = TEMPLATE,
    mutate: Any = None,
) -> Path:
    """Write a copy of ``template`` with new ports. ``clusters`` maps a cluster name to a port or ``unix:PATH``."""
    config = yaml.safe_load(template.read_text())
    config["admin"]["address"] = _socket("127.0.0.1", admin_port)
    config["static_resources"]["listeners"][0]["address"] = _socket("127.0.0.1", listen_port)
    for cluster in config["static_resources"]["clusters"]:
        target = clusters.get(cluster["name"])
        if target is None:
            continue
        address = {"pipe": {"path": target[len("unix:"):]}} if isinstance(target, str) else _socket(
            "127.0.0.1", target)
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] = address
    if mutate is not None:
        mutate(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out
