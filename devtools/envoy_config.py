"""Render ``envoy/envoy.yaml`` (gRPC ext_authz) or ``envoy/envoy-http.yaml`` (HTTP ext_authz) with other ports.

The checked-in files are complete, valid Envoy configs with the quickstart's fixed ports; tests and the benchmark
load one, point the listener, admin and clusters elsewhere, and write the result next to their logs::

    render_envoy_config(out, listen_port=..., admin_port=..., clusters={"phantom_authz": 9001, "echo": 8080})
    render_envoy_config(out, listen_port=..., admin_port=..., template=HTTP_TEMPLATE,
                        clusters={"phantom_authz_http": 9192, "echo": 8080})

The rendered file is plain YAML: the anchors/aliases of envoy-http.yaml are expanded, so a ``mutate`` that edits one
route's ``http_service`` edits that route only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

__all__ = ["HTTP_PATH_PREFIX", "HTTP_TEMPLATE", "TEMPLATE", "TEMPLATES", "http_path_prefix", "render_envoy_config"]

TEMPLATE = Path(__file__).resolve().parents[1] / "envoy" / "envoy.yaml"
HTTP_TEMPLATE = TEMPLATE.with_name("envoy-http.yaml")
TEMPLATES = {"grpc": TEMPLATE, "http": HTTP_TEMPLATE}  # by ext_authz mode
HTTP_PATH_PREFIX = "/phantom-authz"  # HTTP mode: server.http.path_prefix, and Envoy's for the service's defaults


def http_path_prefix(settings: Mapping[str, str]) -> str:
    """The ``http_service.path_prefix`` that carries a route's settings in HTTP mode, where gRPC mode would send
    them as ``context_extensions``: ``{"required_scopes": "read"}`` -> ``/phantom-authz;required_scopes=read``,
    ``{}`` -> ``/phantom-authz``."""
    return HTTP_PATH_PREFIX + (";" + urlencode(dict(settings)) if settings else "")


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def render_envoy_config(
    out: Path,
    *,
    listen_port: int,
    admin_port: int,
    clusters: Mapping[str, int | str],
    template: Path = TEMPLATE,
    mutate: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write a copy of ``template`` with new ports. ``clusters`` maps a cluster name to a port or ``unix:PATH``;
    names the template does not define are ignored, so one map can serve both templates."""
    # JSON round trip: YAML aliases become independent copies (and nothing is dumped with &id001 anchors)
    config = json.loads(json.dumps(yaml.safe_load(template.read_text())))
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
