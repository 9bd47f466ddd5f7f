"""Edits of a rendered ``envoy/envoy.yaml`` shared by the Envoy benchmarks (``render_envoy_config(mutate=...)``).

- ``without_ext_authz``: the ext_authz HTTP filter and its per-route settings removed (the ceiling, envoy_bench a);
- ``with_http_ext_authz(port)``: the gRPC ext_authz filter replaced by an HTTP one (``http_service``) calling a plain
  HTTP/1.1 cluster ``ext_authz_http`` (bench/http_stack_bench.py, envoy_bench h);
- ``with_jwt_authn(...)``: no ext_authz, Envoy's own ``jwt_authn`` filter verifying an RS256 JWT against an inline
  JWKS on the routes given (envoy_bench j).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["EXT_AUTHZ", "HTTP_CLUSTER", "JWT_AUTHN", "http_ext_authz", "jwt_authn", "with_http_ext_authz",
           "with_jwt_authn", "without_ext_authz"]

EXT_AUTHZ = "envoy.filters.http.ext_authz"
JWT_AUTHN = "envoy.filters.http.jwt_authn"
HTTP_CLUSTER = "ext_authz_http"  # the no-op HTTP ext_authz's cluster (with_http_ext_authz)

Mutation = Callable[[dict[str, Any]], None]


def _connection_managers(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                yield network_filter.setdefault("typed_config", {})


def without_ext_authz(config: dict[str, Any]) -> None:
    """The ext_authz filter and its per-route settings removed, everything else unchanged."""
    for hcm in _connection_managers(config):
        hcm["http_filters"] = [f for f in hcm.get("http_filters", []) if f["name"] != EXT_AUTHZ]
        for host in hcm.get("route_config", {}).get("virtual_hosts", []):
            for route in host.get("routes", []):
                per_filter = route.get("typed_per_filter_config", {})
                per_filter.pop(EXT_AUTHZ, None)
                if not per_filter:
                    route.pop("typed_per_filter_config", None)


def http_ext_authz(port: int) -> dict[str, Any]:
    """An HTTP ext_authz filter calling 127.0.0.1:``port`` (cluster ``ext_authz_http``); the answer's
    ``authorization`` header replaces the client's upstream."""
    return {"name": EXT_AUTHZ, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "failure_mode_allow": False,
        "http_service": {
            "server_uri": {"uri": f"127.0.0.1:{port}", "cluster": HTTP_CLUSTER, "timeout": "5s"},
            "authorization_response": {"allowed_upstream_headers": {"patterns": [{"exact": "authorization"}]}},
        },
    }}


def with_http_ext_authz(port: int) -> Mutation:
    """The gRPC ext_authz filter becomes the HTTP one, the per-route gRPC settings (context_extensions) go, and the
    ``phantom_authz`` cluster becomes a plain HTTP/1.1 one named ``ext_authz_http``."""

    def mutate(config: dict[str, Any]) -> None:
        without_ext_authz(config)  # filter and per-route settings removed; the HTTP filter goes first
        for hcm in _connection_managers(config):
            hcm["http_filters"].insert(0, http_ext_authz(port))
        for cluster in config["static_resources"]["clusters"]:
            if cluster["name"] == "phantom_authz":
                cluster["name"] = cluster["load_assignment"]["cluster_name"] = HTTP_CLUSTER
                cluster["typed_extension_protocol_options"] = {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http_protocol_options": {}}}}  # HTTP/1.1, pooled keep-alive

    return mutate


def jwt_authn(issuer: str, audiences: list[str], jwks: dict[str, Any], prefixes: list[str],
              provider: str = "bench") -> dict[str, Any]:
    """Envoy's ``jwt_authn`` filter: one provider (issuer, audiences, the JWKS inline, the JWT taken from
    ``Authorization: Bearer`` and forwarded upstream), required on every route whose path starts with one of
    ``prefixes``. No ``jwt_cache_config``: every request's signature is verified."""
    return {"name": JWT_AUTHN, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {provider: {
            "issuer": issuer,
            "audiences": list(audiences),
            "local_jwks": {"inline_string": json.dumps(jwks, separators=(",", ":"))},
            "forward": True,
        }},
        "rules": [{"match": {"prefix": prefix}, "requires": {"provider_name": provider}} for prefix in prefixes],
    }}


def with_jwt_authn(issuer: str, audiences: list[str], jwks: dict[str, Any], prefixes: list[str]) -> Mutation:
    """No ext_authz (``without_ext_authz``); ``jwt_authn`` first in the filter chain instead."""

    def mutate(config: dict[str, Any]) -> None:
        without_ext_authz(config)
        for hcm in _connection_managers(config):
            hcm["http_filters"].insert(0, jwt_authn(issuer, audiences, jwks, prefixes))

    return mutate
