"""A small mesh on loopback: an ingress Envoy and three "pods", each an Istio-shaped sidecar Envoy with its own
phantom-authz, all sharing one redis-server (the L2 tier and its eviction channel) and one dev AS. The sidecars call
their phantom-authz as Istio's ``envoyExtAuthzGrpc`` provider does (mode ``grpc``) or as its ``envoyExtAuthzHttp``
provider does (mode ``http``: phantom-authz's HTTP listener, its path prefix, ``authorization`` in the header lists).

::

    client --HTTP--> ingress Envoy --mTLS (SPIFFE: ns/istio-system/sa/ingress)--> pod-a Envoy --> app (echo)
                     /a/ /b/ /c/                                                   | ext_authz gRPC or HTTP
                                                                                   v
                                                                   phantom-authz a --- redis --- b, c
                                                                                   |
                                                                                 dev AS

The ingress originates mTLS with its own workload certificate and accepts each pod only by that pod's SPIFFE id;
each pod requires a client certificate of the trust domain. The dev AS's revocation hook calls pod a's admin API
(``EvictToken``), which broadcasts the eviction to b and c through Redis.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.envoy_config import HTTP_PATH_PREFIX
from tests.harness import Response, http_request
from tests.mesh.envoy_parts import ROUTER, bootstrap, cluster, connection_manager, listener, upstream_mtls
from tests.mesh.istio_shape import sidecar_inbound
from tests.mesh.mesh_stack import MeshStack
from tests.mesh.pki import MeshCA, Workload
from tests.redis_server import RedisServer

__all__ = ["NAMES", "LoopbackMesh", "Pod", "provider"]

NAMES = ("a", "b", "c")


def provider(mode: str) -> dict[str, Any]:
    """The pods' ``meshConfig.extensionProviders`` entry: fail closed with 503 (``failOpen`` false)."""
    common = {"service": "phantom-authz.mesh.svc.cluster.local", "timeout": "5s", "statusOnError": "503"}
    if mode == "grpc":
        return {"name": "phantom-authz", "envoyExtAuthzGrpc": {**common, "port": 9001}}
    return {"name": "phantom-authz", "envoyExtAuthzHttp": {
        **common, "port": 9192, "pathPrefix": HTTP_PATH_PREFIX, "includeRequestHeadersInCheck": ["authorization"],
        "headersToUpstreamOnAllow": ["authorization"],
        "headersToDownstreamOnDeny": ["www-authenticate", "content-type"]}}


# action CUSTOM with one empty rule: every request to the pod is checked
CHECK_EVERYTHING = {"metadata": {"namespace": "mesh", "name": "phantom-authz"},
                    "spec": {"action": "CUSTOM", "provider": {"name": "phantom-authz"}, "rules": [{}]}}


@dataclass
class Pod:
    name: str
    stack: MeshStack  # its phantom-authz (``stack.authz``) and its sidecar Envoy
    workload: Workload
    port: int = 0  # the sidecar's inbound mTLS port


class LoopbackMesh:
    def __init__(self, workdir: Path, mode: str = "grpc") -> None:
        self.dir = workdir
        self.mode = mode
        self.ca = MeshCA(workdir / "pki")
        self.ingress_workload = self.ca.issue("ingress", "istio-system", "ingress")
        self.pods = [Pod(name, MeshStack(workdir / f"pod-{name}", mode), self.ca.issue(name, "mesh", f"app-{name}"))
                     for name in NAMES]
        self.redis = RedisServer(workdir)
        self.ingress_port = 0

    @property
    def control(self) -> MeshStack:
        """Pod a's stack, which also runs the dev AS, the app (echo) and the ingress Envoy."""
        return self.pods[0].stack

    def start(self, authz_overrides: dict[str, Any]) -> LoopbackMesh:
        """Everything, side by side; ``authz_overrides`` go into every pod's phantom-authz config."""
        self.redis.start()
        control = self.control
        cache = {"redis": {"url": self.redis.url}}
        with contextlib.ExitStack() as together:
            for pod in self.pods:
                together.enter_context(pod.stack.together())
            control.start_dev_as()
            control.start_echo()
            for pod in self.pods:
                pod.stack.as_port, pod.stack.echo_port = control.as_port, control.echo_port
                pod.stack.start_authz(cache=cache, **authz_overrides)
                pod.port, admin = MeshStack.ports(2)
                config = sidecar_inbound(port=pod.port, admin_port=admin, app_port=control.echo_port,
                                         authz_port=pod.stack.http_port or pod.stack.authz_port,
                                         workload=pod.workload, ca=self.ca.cert, provider=provider(self.mode),
                                         policies=[CHECK_EVERYTHING])
                pod.stack.start_envoy_config(f"sidecar-{pod.name}", config, pod.port)
            self.ingress_port, admin = MeshStack.ports(2)
            control.start_envoy_config("ingress", self.ingress_config(admin), self.ingress_port)
        return self

    def ingress_config(self, admin_port: int) -> dict[str, Any]:
        """The ingress: ``/<pod>/...`` to that pod (prefix stripped, ``Host: <pod>.mesh.svc.cluster.local``) over
        mTLS with the ingress's certificate; no ext_authz here: each pod checks for itself."""
        routes, clusters = [], []
        for pod in self.pods:
            name = f"outbound|8080||{pod.name}.mesh.svc.cluster.local"
            routes.append({"match": {"prefix": f"/{pod.name}/"},
                           "route": {"cluster": name, "prefix_rewrite": "/",
                                     "host_rewrite_literal": f"{pod.name}.mesh.svc.cluster.local"}})
            clusters.append(cluster(name, pod.port, tls=upstream_mtls(self.ingress_workload, self.ca.cert,
                                                                       pod.workload.spiffe)))
        manager = connection_manager("ingress", {"name": "ingress", "virtual_hosts": [
            {"name": "ingress", "domains": ["*"], "routes": routes}]}, [ROUTER], normalize_path=True,
            merge_slashes=True, path_with_escaped_slashes_action="REJECT_REQUEST")
        return bootstrap(admin_port, [listener("ingress", self.ingress_port, manager)], clusters)

    def get(self, pod: str, path: str, token: str | None = None, method: str = "GET") -> Response:
        """A client's request through the ingress to ``pod``."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return http_request(method, self.ingress_port, f"/{pod}{path}", headers)

    def stop(self) -> None:
        for pod in self.pods:
            pod.stack.stop()
        self.redis.stop()
