"""A Gateway listener as Envoy Gateway writes it for ``SecurityPolicy`` resources with gRPC ``extAuth``.

Written from the facts in ``../shared/mesh/generated/envoy-gateway/`` (Envoy Gateway's translator test data), not
copied from it:

- one ``ext_authz`` filter per SecurityPolicy, named ``envoy.filters.http.ext_authz/securitypolicy/<ns>/<name>``,
  **disabled at the listener**; its gRPC cluster is ``securitypolicy/<ns>/<name>/<backend ns>/<backend>``;
- every route the policy covers enables it with ``typed_per_filter_config`` under that name: an
  ``ExtAuthzPerRoute`` whose ``check_settings.context_extensions`` are the policy's ``extAuth.contextExtensions``
  (``check_settings: {}`` without them); a route no policy covers has no such entry, so the filter stays disabled
  there and nothing is checked;
- ``includeRouteMetadata: true`` adds ``route_metadata_context_namespaces: [envoy-gateway]``: the route's static
  metadata ``filter_metadata["envoy-gateway"].resources[0]`` (kind, namespace, name, sectionName and the
  ``gateway.envoyproxy.io/*`` annotations, prefix stripped) reaches the service in
  ``attributes.route_metadata_context``;
- routes match with ``path_separated_prefix``, are named ``httproute/<ns>/<route>/rule/<i>/match/0/<host>`` with
  ``ignore_port_in_host_matching``; the listener normalizes paths (``normalize_path``, ``merge_slashes``,
  ``UNESCAPE_AND_REDIRECT``) and the router suppresses Envoy's headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.mesh.envoy_parts import ROUTER, bootstrap, cluster, connection_manager, listener

__all__ = ["HttpRouteRule", "SecurityPolicy", "filter_name", "gateway"]

_EXT_AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
_NAMESPACE = "default"
_GATEWAY = f"{_NAMESPACE}/eg/http"


@dataclass(frozen=True)
class SecurityPolicy:
    """A SecurityPolicy with ``extAuth.grpc`` (backend ``phantom-authz`` in ``authz``) and route metadata on."""

    name: str
    context_extensions: Mapping[str, str] = field(default_factory=dict)

    @property
    def cluster(self) -> str:
        return f"securitypolicy/{_NAMESPACE}/{self.name}/authz/phantom-authz"


@dataclass(frozen=True)
class HttpRouteRule:
    """One rule of an HTTPRoute (``PathPrefix`` match), the SecurityPolicy covering it (None: none does), and the
    route's ``gateway.envoyproxy.io/`` annotations (prefix stripped)."""

    route: str
    section: str
    prefix: str
    policy: SecurityPolicy | None
    annotations: Mapping[str, str] = field(default_factory=dict)


def filter_name(policy: SecurityPolicy) -> str:
    return f"envoy.filters.http.ext_authz/securitypolicy/{_NAMESPACE}/{policy.name}"


def _ext_authz(policy: SecurityPolicy) -> dict[str, Any]:
    return {"name": filter_name(policy), "disabled": True, "typed_config": {
        "@type": _EXT_AUTHZ, "transport_api_version": "V3",
        "grpc_service": {"envoy_grpc": {"cluster_name": policy.cluster, "authority": "phantom-authz.authz:9001"},
                         "timeout": "10s"},  # extAuth's default timeout
        "route_metadata_context_namespaces": ["envoy-gateway"]}}


def _route(index: int, rule: HttpRouteRule, host: str) -> dict[str, Any]:
    resource: dict[str, Any] = {"kind": "HTTPRoute", "namespace": _NAMESPACE, "name": rule.route,
                                "sectionName": rule.section}
    if rule.annotations:
        resource["annotations"] = dict(rule.annotations)
    found: dict[str, Any] = {
        "name": f"httproute/{_NAMESPACE}/{rule.route}/rule/{index}/match/0/{host.replace('.', '_')}",
        "match": {"path_separated_prefix": rule.prefix},
        "route": {"cluster": f"httproute/{_NAMESPACE}/{rule.route}/rule/{index}"},
        "metadata": {"filter_metadata": {"envoy-gateway": {"resources": [resource]}}}}
    if rule.policy is not None:
        check = {"context_extensions": dict(rule.policy.context_extensions)} if rule.policy.context_extensions else {}
        found["typed_per_filter_config"] = {filter_name(rule.policy): {"@type": _PER_ROUTE, "check_settings": check}}
    return found


def gateway(*, port: int, admin_port: int, host: str, rules: list[HttpRouteRule], authz_port: int,
            app_port: int) -> dict[str, Any]:
    """The Gateway's Envoy: one HTTP listener, one virtual host ``host``, ``rules`` in order, each to the app."""
    policies = list({rule.policy.name: rule.policy for rule in rules if rule.policy is not None}.values())
    indices = [[r.route for r in rules[:i]].count(rule.route) for i, rule in enumerate(rules)]  # within its route
    routes = {"name": _GATEWAY, "ignore_port_in_host_matching": True, "virtual_hosts": [{
        "name": f"{_GATEWAY}/{host.replace('.', '_')}", "domains": [host],
        "routes": [_route(i, rule, host) for i, rule in zip(indices, rules, strict=True)]}]}
    router = {**ROUTER, "typed_config": {**ROUTER["typed_config"], "suppress_envoy_headers": True}}
    manager = connection_manager(f"http-{port}", routes, [*map(_ext_authz, policies), router], use_remote_address=True,
                                 normalize_path=True, merge_slashes=True,
                                 path_with_escaped_slashes_action="UNESCAPE_AND_REDIRECT")
    clusters = [cluster(policy.cluster, authz_port, http2=True) for policy in policies]
    clusters += [cluster(f"httproute/{_NAMESPACE}/{rule.route}/rule/{i}", app_port)
                 for i, rule in zip(indices, rules, strict=True)]
    return bootstrap(admin_port, [listener(_GATEWAY, port, manager)], clusters)
