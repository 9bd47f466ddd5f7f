"""Pieces of Envoy 1.40 bootstrap configs, as dicts: listeners, connection managers, clusters, mTLS sockets.

The Istio- and Envoy Gateway-shaped configs (``istio_shape``, ``gateway_shape``) and the loopback mesh are built
from these. Everything is static (no xDS): what a control plane would push is written out here instead, and
certificates come from files (``pki``) where a sidecar would get them over SDS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.mesh.pki import Workload

__all__ = ["ROUTER", "TLS_SOCKET", "bootstrap", "cluster", "connection_manager", "downstream_mtls", "listener",
           "upstream_mtls"]

TLS_SOCKET = "envoy.transport_sockets.tls"
_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
ROUTER: dict[str, Any] = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _certificate(workload: Workload, ca: Path) -> dict[str, Any]:
    return {"tls_certificates": [{"certificate_chain": {"filename": str(workload.cert)},
                                  "private_key": {"filename": str(workload.key)}}],
            "validation_context": {"trusted_ca": {"filename": str(ca)}}}


def downstream_mtls(workload: Workload, ca: Path, peers_prefix: str) -> dict[str, Any]:
    """A sidecar's inbound TLS: its workload certificate, a client certificate required, the peer's chain checked
    against the mesh CA and its URI SAN in the trust domain (istiod: ``spiffe://<trust domain>/`` prefix)."""
    common = _certificate(workload, ca)
    common["validation_context"]["match_typed_subject_alt_names"] = [
        {"san_type": "URI", "matcher": {"prefix": peers_prefix}}]
    common["alpn_protocols"] = ["h2", "http/1.1"]
    return {"name": TLS_SOCKET, "typed_config": {"@type": _TLS + "DownstreamTlsContext",
                                                 "require_client_certificate": True, "common_tls_context": common}}


def upstream_mtls(workload: Workload, ca: Path, peer: str) -> dict[str, Any]:
    """An outbound mTLS origination: present ``workload``'s certificate, accept only the peer whose SPIFFE id is
    ``peer`` (istiod writes the destination's service account here)."""
    common = _certificate(workload, ca)
    common["validation_context"]["match_typed_subject_alt_names"] = [{"san_type": "URI", "matcher": {"exact": peer}}]
    return {"name": TLS_SOCKET, "typed_config": {"@type": _TLS + "UpstreamTlsContext", "common_tls_context": common}}


def cluster(name: str, port: int, *, http2: bool = False, tls: dict[str, Any] | None = None) -> dict[str, Any]:
    """A STATIC cluster of one loopback endpoint (gRPC services need ``http2``)."""
    found: dict[str, Any] = {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": _address(port)}}]}]}}
    if http2:
        found["typed_extension_protocol_options"] = {_HTTP_OPTIONS: {
            "@type": "type.googleapis.com/" + _HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}}
    if tls is not None:
        found["transport_socket"] = tls
    return found


def connection_manager(stat_prefix: str, route_config: dict[str, Any], http_filters: list[dict[str, Any]],
                       **options: Any) -> dict[str, Any]:
    """The ``envoy.filters.network.http_connection_manager`` network filter."""
    return {"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": _HCM, "stat_prefix": stat_prefix, "codec_type": "AUTO",
                             "route_config": route_config, "http_filters": http_filters, **options}}


def listener(name: str, port: int, manager: dict[str, Any], tls: dict[str, Any] | None = None) -> dict[str, Any]:
    chain: dict[str, Any] = {"filters": [manager]}
    if tls is not None:
        chain["transport_socket"] = tls
    return {"name": name, "address": _address(port), "filter_chains": [chain]}


def bootstrap(admin_port: int, listeners: list[dict[str, Any]], clusters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"admin": {"address": _address(admin_port)},
            "static_resources": {"listeners": listeners, "clusters": clusters}}
