"""The shipped configuration strips every client-sent header the upstream may take as ours.

envoy/envoy-http.yaml's ``allowed_upstream_headers`` names the headers phantom-authz may set upstream (the JWT, the
claims header, the header deploy/policies/records.rego sets). Any of them that the service does not set on every
allow (a route without the policy, a disabled route, a preflight, an AS that returns a JWT) would otherwise reach the
upstream as the client sent it: deploy/authz.yaml must list each in ``headers_to_remove`` (``authorization`` is
always handled: swapped for the JWT or removed).
"""

from __future__ import annotations

from typing import Any

import yaml

from authz.config.loader import load_config
from tests.harness import ROOT


def _allowed_upstream_headers(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "allowed_upstream_headers":
                found.update(p["exact"].lower() for p in value["patterns"])
            else:
                found |= _allowed_upstream_headers(value)
    elif isinstance(node, list):
        for item in node:
            found |= _allowed_upstream_headers(item)
    return found


def test_every_header_envoy_lets_us_set_upstream_is_stripped_from_the_client() -> None:
    envoy = yaml.safe_load((ROOT / "envoy" / "envoy-http.yaml").read_text())
    upstream = _allowed_upstream_headers(envoy)
    assert {"authorization", "x-authz-policy"} <= upstream, upstream
    config = load_config(ROOT / "deploy" / "authz.yaml", environ={"DEV_AS_GATEWAY_SECRET": "x"})
    missing = upstream - {"authorization"} - set(config.headers_to_remove)
    assert not missing, f"deploy/authz.yaml headers_to_remove lacks {sorted(missing)}"
