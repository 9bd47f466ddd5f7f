"""A sidecar's inbound listener as istiod writes it for an ``AuthorizationPolicy`` with ``action: CUSTOM``.

Written from the facts in ``../shared/mesh/generated/istio/`` (istiod's own test data), not copied from it:

- the policy's rules become an RBAC filter in **shadow** mode (``shadow_rules``, action DENY, stat prefix
  ``istio_ext_authz_``): it decides nothing, it only records the name of the rule that matched in the dynamic
  metadata key ``istio_ext_authz_shadow_effective_policy_id``; rule names are
  ``istio-ext-authz-<provider>-ns[<ns>]-policy[<name>]-rule[<i>]``;
- the provider (``meshConfig.extensionProviders[]``) becomes an ``ext_authz`` filter with
  ``filter_enabled_metadata``: it calls the service only when that key starts with ``istio-ext-authz-<provider>``,
  so a request no CUSTOM rule selects is never checked;
- **no** ``context_extensions`` and no per-route config of any kind: the service picks its settings from the
  request itself (host, path, method, and the mTLS principals Envoy fills from the certificates).

``authorization_policy`` and ``extension_provider`` take the YAML shapes users write (camelCase, as in a manifest and
in the ``istio`` ConfigMap) and refuse any field they do not translate, so a test never believes a setting applied
that was silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.mesh.envoy_parts import ROUTER, bootstrap, cluster, connection_manager, downstream_mtls, listener
from tests.mesh.pki import TRUST_DOMAIN, Workload

__all__ = ["authz_cluster_name", "ext_authz_filter", "rbac_shadow_filter", "sidecar_inbound"]

_METADATA_KEY = "istio_ext_authz_shadow_effective_policy_id"
_EXT_AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
_RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
_STATUS = {"403": "Forbidden", "500": "InternalServerError", "503": "ServiceUnavailable"}


def _refuse_unknown(where: str, given: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"{where}: not translated here: {', '.join(unknown)}")


def _string_match(pattern: str) -> dict[str, Any]:
    """Istio's path/host pattern: exact, ``prefix*`` or ``*suffix``."""
    if pattern == "*":
        return {"safe_regex": {"regex": ".+"}}
    if pattern.endswith("*"):
        return {"prefix": pattern[:-1]}
    if pattern.startswith("*"):
        return {"suffix": pattern[1:]}
    return {"exact": pattern}


def _any_of(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"or_rules": {"rules": rules}}


def _permission(operation: Mapping[str, Any]) -> dict[str, Any]:
    _refuse_unknown("to.operation", operation, {"paths", "methods", "hosts"})
    groups = []
    if operation.get("paths"):
        groups.append(_any_of([{"url_path": {"path": _string_match(p)}} for p in operation["paths"]]))
    if operation.get("methods"):
        groups.append(_any_of([{"header": {"name": ":method", "string_match": {"exact": m}}}
                               for m in operation["methods"]]))
    if operation.get("hosts"):
        groups.append(_any_of([{"header": {"name": ":authority", "string_match": {**_string_match(h),
                                                                                   "ignore_case": True}}}
                               for h in operation["hosts"]]))
    return {"and_rules": {"rules": groups}} if groups else {"any": True}


def _principal(source: Mapping[str, Any]) -> dict[str, Any]:
    _refuse_unknown("from.source", source, {"principals"})
    ids = [{"authenticated": {"principal_name": _string_match("spiffe://" + p)}} for p in source["principals"]]
    return {"or_ids": {"ids": ids}}


def rbac_shadow_filter(provider: str, policies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The RBAC filter in shadow mode for every CUSTOM ``AuthorizationPolicy`` naming ``provider``."""
    shadow: dict[str, Any] = {}
    for policy in policies:
        meta, spec = policy["metadata"], policy["spec"]
        _refuse_unknown("spec", spec, {"action", "provider", "rules", "selector"})
        if spec["action"] != "CUSTOM" or spec["provider"]["name"] != provider:
            continue
        for index, rule in enumerate(spec.get("rules", [{}])):
            _refuse_unknown("rules[]", rule, {"from", "to"})
            operations = [to.get("operation", {}) for to in rule.get("to", [{}])]
            sources = [src["source"] for src in rule.get("from", [])]
            shadow[f"istio-ext-authz-{provider}-ns[{meta['namespace']}]-policy[{meta['name']}]-rule[{index}]"] = {
                "permissions": [_permission(op) for op in operations],
                "principals": [_principal(src) for src in sources] or [{"and_ids": {"ids": [{"any": True}]}}],
            }
    return {"name": "envoy.filters.http.rbac",
            "typed_config": {"@type": _RBAC, "shadow_rules": {"action": "DENY", "policies": shadow},
                             "shadow_rules_stat_prefix": "istio_ext_authz_"}}


def authz_cluster_name(provider: Mapping[str, Any]) -> str:
    """istiod's name for the provider's cluster: ``outbound|<port>||<service>``."""
    settings = provider.get("envoyExtAuthzGrpc") or provider["envoyExtAuthzHttp"]
    return f"outbound|{settings['port']}||{settings['service']}"


def _patterns(names: list[str]) -> dict[str, Any]:
    return {"patterns": [{"exact": name, "ignore_case": True} for name in names]}


def ext_authz_filter(provider: Mapping[str, Any]) -> dict[str, Any]:
    """The ext_authz filter for one ``meshConfig.extensionProviders[]`` entry (``envoyExtAuthzGrpc`` or
    ``envoyExtAuthzHttp``), enabled only where a CUSTOM rule of this provider matched."""
    name = provider["name"]
    grpc, http = provider.get("envoyExtAuthzGrpc"), provider.get("envoyExtAuthzHttp")
    settings = grpc or http
    assert settings is not None and (grpc is None) != (http is None), "one of envoyExtAuthzGrpc/envoyExtAuthzHttp"
    common = {"service", "port", "timeout", "failOpen", "statusOnError", "includeRequestBodyInCheck"}
    _refuse_unknown(name, settings, common | (set() if grpc else {
        "pathPrefix", "includeRequestHeadersInCheck", "headersToUpstreamOnAllow", "headersToDownstreamOnDeny"}))
    typed: dict[str, Any] = {
        "@type": _EXT_AUTHZ, "transport_api_version": "V3",
        "failure_mode_allow": bool(settings.get("failOpen", False)),
        "status_on_error": {"code": _STATUS[str(settings.get("statusOnError", "403"))]},
        "filter_enabled_metadata": {"filter": "envoy.filters.http.rbac", "path": [{"key": _METADATA_KEY}],
                                    "value": {"string_match": {"prefix": f"istio-ext-authz-{name}"}}},
    }
    body = settings.get("includeRequestBodyInCheck")
    if body is not None:
        _refuse_unknown("includeRequestBodyInCheck", body, {"maxRequestBytes", "allowPartialMessage", "packAsBytes"})
        typed["with_request_body"] = {"max_request_bytes": body["maxRequestBytes"],
                                      "allow_partial_message": body.get("allowPartialMessage", False),
                                      "pack_as_bytes": body.get("packAsBytes", False)}
    timeout = settings.get("timeout", "600s")  # istiod's default is 600 s: recipes must set one
    if grpc is not None:
        typed["grpc_service"] = {"envoy_grpc": {"cluster_name": authz_cluster_name(provider),
                                                "authority": grpc["service"]}, "timeout": timeout}
    else:
        assert http is not None
        response: dict[str, Any] = {"allowed_upstream_headers": _patterns(http["headersToUpstreamOnAllow"])}
        if "headersToDownstreamOnDeny" in http:
            response["allowed_client_headers"] = _patterns(http["headersToDownstreamOnDeny"])
        typed["allowed_headers"] = _patterns(http["includeRequestHeadersInCheck"])
        typed["http_service"] = {
            "server_uri": {"uri": f"http://{http['service']}", "cluster": authz_cluster_name(provider),
                           "timeout": timeout},
            "path_prefix": http.get("pathPrefix", ""), "authorization_response": response}
    return {"name": "envoy.filters.http.ext_authz", "typed_config": typed}


def sidecar_inbound(*, port: int, admin_port: int, app_port: int, authz_port: int, workload: Workload, ca: Path,
                    provider: Mapping[str, Any], policies: Sequence[Mapping[str, Any]],
                    extra_listeners: tuple[tuple[int, Workload], ...] = ()) -> dict[str, Any]:
    """A sidecar's Envoy: inbound mTLS on ``port`` (the workload's certificate; a client certificate from the trust
    domain required), the CUSTOM filter pair, every request to the app on ``app_port``; ``authz_port`` is the
    provider's service (gRPC: HTTP/2). ``extra_listeners`` adds (port, workload) listeners with the same filters:
    more workloads behind one Envoy, so destination principals differ per listener."""
    filters = [rbac_shadow_filter(provider["name"], policies), ext_authz_filter(provider), ROUTER]
    routes = {"name": "inbound", "virtual_hosts": [{"name": "inbound|http", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "inbound|app"}}]}]}
    listeners = [
        listener(f"inbound|{listen}", listen,
                 # istiod's default pathNormalization (BASE) is Envoy's normalize_path
                 connection_manager(f"inbound_{listen}", routes, filters, normalize_path=True),
                 downstream_mtls(owner, ca, f"spiffe://{TRUST_DOMAIN}/"))
        for listen, owner in ((port, workload), *extra_listeners)]
    grpc = "envoyExtAuthzGrpc" in provider
    return bootstrap(admin_port, listeners, [cluster("inbound|app", app_port),
                                             cluster(authz_cluster_name(provider), authz_port, http2=grpc)])
