"""A Gateway listener as Envoy Gateway writes it for ``SecurityPolicy`` resources with ``extAuth`` (gRPC or HTTP).

Written from the facts in ``../shared/mesh/generated/envoy-gateway/`` (Envoy Gateway's translator test data; its
``policy-for-gateway-1`` is the ``extAuth.http`` case) and its translator's ``httpService``, not copied from them:

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
- ``extAuth.http`` (a filter with ``http_service``, cluster without HTTP/2): the policy's ``path`` becomes
  ``path_prefix`` and the path of ``server_uri``'s ``http://<backend authority><path>``, ``headersToBackend``
  becomes ``authorization_response.allowed_upstream_headers`` (exact, ignoring case; without them no header of the
  answer reaches the upstream, the JWT in ``authorization`` included); the route's entry is ``check_settings: {}``:
  Envoy Gateway writes no per-route ``http_service`` and Envoy's HTTP mode sends no ``context_extensions``, so
  the only per-route carrier left is the policy's ``path`` (phantom-authz's ``<path_prefix>;<settings>``), one
  SecurityPolicy per settings variant; route metadata is not sent either (not requested here);
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
_TIMEOUT = "10s"  # extAuth's default timeout


@dataclass(frozen=True)
class SecurityPolicy:
    """A SecurityPolicy whose ``extAuth`` calls backend ``phantom-authz`` in ``authz``: ``extAuth.grpc`` with
    ``contextExtensions`` and route metadata on, or, given ``http_path``, ``extAuth.http`` with that ``path`` and
    ``headersToBackend``."""

    name: str
    context_extensions: Mapping[str, str] = field(default_factory=dict)
    http_path: str | None = None  # extAuth.http.path; None: extAuth.grpc
    headers_to_backend: tuple[str, ...] = ()  # extAuth.http.headersToBackend

    def __post_init__(self) -> None:
        if self.http_path is None and self.headers_to_backend:
            raise ValueError(f"{self.name}: headersToBackend belongs to extAuth.http")
        if self.http_path is not None and self.context_extensions:
            raise ValueError(f"{self.name}: Envoy's HTTP ext_authz sends no context_extensions; put the settings in "
                             "the path")

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
    typed: dict[str, Any] = {"@type": _EXT_AUTHZ, "transport_api_version": "V3"}
    if policy.http_path is None:
        typed["grpc_service"] = {"envoy_grpc": {"cluster_name": policy.cluster,
                                                "authority": "phantom-authz.authz:9001"},
                                 "timeout": _TIMEOUT}
        typed["route_metadata_context_namespaces"] = ["envoy-gateway"]
    else:
        service: dict[str, Any] = {
            "server_uri": {"uri": f"http://phantom-authz.authz:9192{policy.http_path}", "cluster": policy.cluster,
                           "timeout": _TIMEOUT},
            "path_prefix": policy.http_path}
        if policy.headers_to_backend:
            service["authorization_response"] = {"allowed_upstream_headers": {"patterns": [
                {"exact": name, "ignore_case": True} for name in policy.headers_to_backend]}}
        typed["http_service"] = service
    return {"name": filter_name(policy), "disabled": True, "typed_config": typed}


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
    if rule.policy is not None:  # HTTP policies: never context_extensions (refused above)
        check = {"context_extensions": dict(rule.policy.context_extensions)} if rule.policy.context_extensions else {}
        found["typed_per_filter_config"] = {filter_name(rule.policy): {"@type": _PER_ROUTE, "check_settings": check}}
    return found


def gateway(*, port: int, admin_port: int, host: str, rules: list[HttpRouteRule], authz_port: int,
            app_port: int) -> dict[str, Any]:
    """The Gateway's Envoy: one HTTP listener, one virtual host ``host``, ``rules`` in order, each to the app;
    ``authz_port``: phantom-authz's port of the policies' transport (gRPC, or its HTTP listener)."""
    policies = list({rule.policy.name: rule.policy for rule in rules if rule.policy is not None}.values())
    indices = [[r.route for r in rules[:i]].count(rule.route) for i, rule in enumerate(rules)]  # within its route
    routes = {"name": _GATEWAY, "ignore_port_in_host_matching": True, "virtual_hosts": [{
        "name": f"{_GATEWAY}/{host.replace('.', '_')}", "domains": [host],
        "routes": [_route(i, rule, host) for i, rule in zip(indices, rules, strict=True)]}]}
    router = {**ROUTER, "typed_config": {**ROUTER["typed_config"], "suppress_envoy_headers": True}}
    manager = connection_manager(f"http-{port}", routes, [*map(_ext_authz, policies), router], use_remote_address=True,
                                 normalize_path=True, merge_slashes=True,
                                 path_with_escaped_slashes_action="UNESCAPE_AND_REDIRECT")
    clusters = [cluster(policy.cluster, authz_port, http2=policy.http_path is None) for policy in policies]
    clusters += [cluster(f"httproute/{_NAMESPACE}/{rule.route}/rule/{i}", app_port)
                 for i, rule in zip(indices, rules, strict=True)]
    return bootstrap(admin_port, [listener(_GATEWAY, port, manager)], clusters)
