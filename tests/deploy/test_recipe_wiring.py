"""Each topology's recipe is wired the way its control plane needs: the names one object gives another match, and the
embedded phantom-authz config gives the settings the recipe's comments promise to the requests a proxy would send
(``RouteResolver``, the service's own route matching: rules for Istio, context_extensions for Envoy Gateway)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from authz.errors import AuthzError
from authz.models import RequestInfo, RouteSettings
from authz.routes import RouteResolver
from tests.deploy.embedded import authz_container, load_authz, pod_specs
from tests.deploy.recipes import Manifest, recipe_values, render_recipe

RECORDS = "spiffe://cluster.local/ns/records/sa/records"
BILLING = "spiffe://cluster.local/ns/billing/sa/billing"


def one(manifests: Sequence[Manifest], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [m.doc for m in manifests if m.kind == kind and (name is None or m.name == name)]
    assert len(found) == 1, (kind, name, found)
    return found[0]


def settings(resolver: RouteResolver, method: str, path: str, *, host: str = "records.apps.svc.cluster.local",
             source: str | None = "", destination: str | None = "",
             extensions: dict[str, str] | None = None) -> RouteSettings:
    request = RequestInfo(method, path, host, {}, (), extensions or {}, source_principal=source,
                          destination_principal=destination)
    return resolver.resolve(request)[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_istio_sidecar_reaches_phantom_authz_on_loopback_and_rules_choose_the_settings(tmp_path: Path) -> None:
    manifests = render_recipe("istio-sidecar")
    entry = one(manifests, "ServiceEntry")["spec"]
    assert entry["resolution"] == "STATIC" and entry["endpoints"] == [{"address": "127.0.0.1"}]
    assert entry["ports"][0]["number"] == 9001 and entry["exportTo"] == ["."]
    pod = one(manifests, "Deployment")["spec"]["template"]
    assert {c["name"] for c in pod["spec"]["containers"]} == {"phantom-authz", "api"}  # Istio injects its proxy
    policy = one(manifests, "AuthorizationPolicy")["spec"]
    assert policy["action"] == "CUSTOM" and selects(policy["selector"]["matchLabels"], pod["metadata"]["labels"])

    resolver = RouteResolver(load_authz(manifests, tmp_path))
    read = settings(resolver, "GET", "/records/alice/profile")
    assert (read.rule, read.required_scopes, read.policy) == ("records-read", ("read",), "records/decision")
    approve = settings(resolver, "POST", "/records/bob/transactions/t1/approve")
    assert approve.rule == "records-approve" and set(approve.required_scopes) == {"read", "approve"}
    assert settings(resolver, "GET", "/status").disabled
    with pytest.raises(AuthzError):  # no rule: routes.default deny
        settings(resolver, "DELETE", "/records/alice/profile")


def test_istio_central_scales_stays_available_and_tells_workloads_apart(tmp_path: Path) -> None:
    manifests = render_recipe("istio-central")
    deployment = one(manifests, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["sidecar.istio.io/inject"] == "true", "mTLS STRICT needs phantom-authz's own sidecar"
    hpa = one(manifests, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    assert hpa["minReplicas"] >= 2 and one(manifests, "PodDisruptionBudget")["spec"]["minAvailable"] >= 1
    for kind in ("PodDisruptionBudget", "PeerAuthentication", "NetworkPolicy"):
        spec = one(manifests, kind)["spec"]
        assert selects((spec.get("selector") or spec["podSelector"])["matchLabels"], labels), kind
    assert one(manifests, "PeerAuthentication")["spec"]["mtls"] == {"mode": "STRICT"}
    callers = one(manifests, "AuthorizationPolicy", "phantom-authz-callers")["spec"]
    protected = {m.doc["metadata"]["namespace"] for m in manifests
                 if m.kind == "AuthorizationPolicy" and m.doc["spec"]["action"] == "CUSTOM"}
    assert protected == {"records", "billing"}
    assert set(callers["rules"][0]["from"][0]["source"]["namespaces"]) == protected
    service = one(manifests, "Service")["spec"]["ports"][0]
    assert service["appProtocol"] == "grpc" and service["port"] == 9001

    resolver = RouteResolver(load_authz(manifests, tmp_path))
    read = settings(resolver, "GET", "/records/alice/x", destination=RECORDS, source="")
    assert read.rule == "records-read" and read.authorization_server == "curity"
    billing = settings(resolver, "GET", "/invoices/7", destination=BILLING)
    assert (billing.rule, billing.authorization_server) == ("billing", "partners")
    batch = settings(resolver, "POST", "/invoices/7", destination=BILLING,
                     source="spiffe://cluster.local/ns/batch/sa/nightly")
    assert batch.rule == "billing-batch" and "billing:batch" in batch.required_scopes
    with pytest.raises(AuthzError):  # the records paths mean nothing on the billing workload
        settings(resolver, "GET", "/records/alice/x", destination=BILLING)
    assert load_authz(manifests, tmp_path).cache.redis.url is not None, "the replicas share answers via Redis"


def test_istio_native_scope_check_verifies_the_jwt_phantom_authz_swapped_in(tmp_path: Path) -> None:
    manifests = render_recipe("istio-native-scopes")
    config = load_authz(manifests, tmp_path)
    server = config.authorization_servers[config.default_authorization_server]
    (rule,) = one(manifests, "RequestAuthentication")["spec"]["jwtRules"]
    assert (rule["issuer"], rule["jwksUri"]) == (server.issuer, server.jwks_uri)
    assert rule["audiences"] == list(server.audiences) and rule["forwardOriginalToken"] is True
    allow = one(manifests, "AuthorizationPolicy", "phantom-authz-scopes")["spec"]
    assert allow["action"] == "ALLOW"
    scoped = [r for r in allow["rules"] if "when" in r]
    assert scoped and all(r["from"] == [{"source": {"requestPrincipals": ["*"]}}] for r in scoped)
    assert {c["key"] for r in scoped for c in r["when"]} == {"request.auth.claims[scope]"}
    approve = next(r for r in scoped if r["to"][0]["operation"]["methods"] == ["POST"])
    assert [c["values"] for c in approve["when"]] == [["read"], ["approve"]], "all of the scopes: one condition each"

    resolver = RouteResolver(config)
    swap = settings(resolver, "GET", "/records/alice/profile")
    assert swap.rule == "swap" and swap.required_scopes == () and not swap.disabled


@pytest.mark.parametrize("name", ["envoy-gateway", "envoy-gateway-sidecar"])
def test_envoy_gateway_policies_carry_each_routes_settings(name: str, tmp_path: Path) -> None:
    manifests = render_recipe(name)
    route = one(manifests, "HTTPRoute")
    sections = {rule["name"] for rule in route["spec"]["rules"]}
    resolver = RouteResolver(load_authz(manifests, tmp_path))
    wanted = {p["name"]: p["contextExtensions"] for p in recipe_values(name)["envoyGateway"]["policies"]}
    policies = [m for m in manifests if m.kind == "SecurityPolicy"]
    assert len(policies) == len(wanted)
    for policy in policies:
        spec = policy.doc["spec"]
        (target,) = spec["targetRefs"]
        assert target["name"] == route["metadata"]["name"] and target["sectionName"] in sections
        extensions = {e["name"]: e["value"] for e in spec["extAuth"]["contextExtensions"]}
        assert extensions == wanted[policy.name.removeprefix("phantom-authz-")]
        assert spec["extAuth"]["failOpen"] is False and spec["extAuth"]["timeout"] == "2s"
        got = settings(resolver, "GET", "/records/alice", extensions=extensions)
        assert got.required_scopes == tuple(extensions["required_scopes"].split())
        assert got.policy == extensions["policy"]


def test_envoy_gateway_central_is_a_service_only_the_proxies_reach() -> None:
    manifests = render_recipe("envoy-gateway")
    service = one(manifests, "Service")
    for policy in (m for m in manifests if m.kind == "SecurityPolicy"):
        (ref,) = policy.doc["spec"]["extAuth"]["grpc"]["backendRefs"]
        assert ref == {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    (ingress,) = one(manifests, "NetworkPolicy")["spec"]["ingress"]
    assert ingress["from"] and all("namespaceSelector" in peer for peer in ingress["from"])


def test_envoy_gateway_sidecar_shares_a_unix_socket_with_envoy(tmp_path: Path) -> None:
    manifests = render_recipe("envoy-gateway-sidecar")
    backend = one(manifests, "Backend")
    socket = backend["spec"]["endpoints"][0]["unix"]["path"]
    assert load_authz(manifests, tmp_path).server.listen == f"unix:{socket}"
    for policy in (m for m in manifests if m.kind == "SecurityPolicy"):
        (ref,) = policy.doc["spec"]["extAuth"]["grpc"]["backendRefs"]
        assert ref == {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": backend["metadata"]["name"]}
    authz = authz_container(manifests)
    assert authz["restartPolicy"] == "Always", "a native sidecar: it runs as long as Envoy does"
    deployment = one(manifests, "EnvoyProxy")["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    (volume,) = [v for spec in pod_specs(manifests) for v in spec["volumes"] if "emptyDir" in v]
    envoy_mounts = {m["name"]: m["mountPath"] for m in deployment["container"]["volumeMounts"]}
    authz_mounts = {m["name"]: m["mountPath"] for m in authz["volumeMounts"]}
    assert envoy_mounts[volume["name"]] == authz_mounts[volume["name"]] == str(Path(socket).parent)
    same_user = {authz["securityContext"]["runAsUser"], deployment["container"]["securityContext"]["runAsUser"]}
    assert len(same_user) == 1, "Envoy must be allowed to connect to the socket phantom-authz creates"
    gateway = one(manifests, "Gateway")["spec"]
    assert gateway["infrastructure"]["parametersRef"]["name"] == one(manifests, "EnvoyProxy")["metadata"]["name"]
