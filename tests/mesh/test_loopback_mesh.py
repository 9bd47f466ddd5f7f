"""Three pods on loopback, each a real Envoy sidecar with its own phantom-authz, one shared redis-server, east-west
over mTLS with SPIFFE certificates (``loopback_mesh``): what a client sees through the ingress, in both ext_authz
modes (the sidecars' Istio provider ``envoyExtAuthzGrpc`` or ``envoyExtAuthzHttp``).

HTTP mode carries no principals (phantom-authz refuses principal rules with the HTTP transport at start), so there
the pods' rule matches on host, path and method instead of the caller's SPIFFE id: another workload of the mesh
with a certificate and a valid token is then served like the ingress is. Use gRPC where callers must differ.

The tests share one mesh per mode and run in file order; the last stops a pod's phantom-authz."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis as redis_client

from tests.harness import Response, http_request, wait_until
from tests.mesh.loopback_mesh import NAMES, LoopbackMesh
from tests.mesh.mesh_stack import mtls_request
from tests.mesh.pki import spiffe_id
from tests.redis_server import cached_answers, redis_available

pytestmark = pytest.mark.skipif(not redis_available(), reason="redis-server (Debian package) is not installed")

EVICTIONS = "phantom-authz:evictions"
# every pod's one route rule, token with scope read; any other request: 403 (routes.default deny)
RULES = {
    # gRPC: callers presenting the ingress's SPIFFE id
    "grpc": {"name": "from-ingress", "match": {"source_principals": [spiffe_id("istio-system", "ingress")]},
             "required_scopes": ["read"]},
    # HTTP: reads of the orders at any pod of the namespace
    "http": {"name": "orders", "match": {"hosts": ["*.mesh.svc.cluster.local"], "paths": ["/orders/**"],
                                         "methods": ["GET", "HEAD"]}, "required_scopes": ["read"]},
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[LoopbackMesh]:
    built = LoopbackMesh(tmp_path_factory.mktemp(f"mesh-{mode}"), mode)
    try:
        built.start({"routes": {"default": "deny", "rules": [RULES[mode]]}})
        shared = redis_client.Redis.from_url(built.redis.url)
        try:
            wait_until(lambda: shared.pubsub_numsub(EVICTIONS)[0][1] >= len(NAMES),
                       "every pod's phantom-authz subscribed to evictions", timeout=20)
        finally:
            shared.close()
        yield built
    finally:
        built.stop()


def _introspections(mesh: LoopbackMesh) -> int:
    return int(mesh.control.as_stats()["introspections"])


def _shared_answers(mesh: LoopbackMesh) -> int:
    shared = redis_client.Redis.from_url(mesh.redis.url)
    try:
        return cached_answers(shared)
    finally:
        shared.close()


def _assert_no_rule(pod: str, resp: Response) -> None:
    assert resp.status == 403, (pod, resp)
    assert resp.json()["error"] == "forbidden"  # README: routes.default deny


def _revoke(mesh: LoopbackMesh, token: str) -> None:
    """RFC 7009 revocation at the dev AS; its hook calls pod a's ``EvictToken`` before the answer comes back."""
    answer = http_request("POST", mesh.control.as_port, "/oauth/v2/oauth-revoke",
                          {"Authorization": "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=",
                           "Content-Type": "application/x-www-form-urlencoded"}, f"token={token}")
    assert answer.status == 200, answer


def test_every_pod_swaps_the_opaque_token_for_a_jwt(mesh: LoopbackMesh) -> None:
    token = mesh.control.token("read")
    for pod in NAMES:
        resp = mesh.get(pod, "/orders/1", token)
        assert resp.status == 200, (pod, resp)
        echoed = resp.json()
        assert echoed["headers"]["Host"] == f"{pod}.mesh.svc.cluster.local"
        scheme, _, jwt = echoed["headers"]["Authorization"].partition(" ")
        assert scheme == "Bearer" and jwt.count(".") == 2 and token not in resp.body.decode()
        assert mesh.get(pod, "/orders/1").status == 401
        assert mesh.get(pod, "/orders/1", mesh.control.token("write")).status == 403  # the rule's scope: read


@pytest.mark.grpc_only("HTTP mode carries no principals")
def test_a_pod_serves_only_what_the_ingress_forwards(mesh: LoopbackMesh) -> None:
    """East-west mTLS carries the caller's SPIFFE id to each pod's phantom-authz: another workload of the mesh
    calling a pod directly, with a valid token, matches no rule and is denied."""
    stranger = mesh.ca.issue("stranger", "mesh", "stranger").client_context(mesh.ca.cert)
    token = mesh.control.token("read")
    for pod in mesh.pods:
        direct = mtls_request(pod.port, stranger, "/orders/1", f"{pod.name}.mesh.svc.cluster.local", token)
        _assert_no_rule(pod.name, direct)


@pytest.mark.http_only("the HTTP variant's rule")
def test_a_pod_serves_only_what_its_rule_names(mesh: LoopbackMesh) -> None:
    """Host, path and method: another path, or a write, matches no rule and is denied in every pod."""
    token = mesh.control.token("read write admin")
    for pod in NAMES:
        _assert_no_rule(pod, mesh.get(pod, "/billing/1", token))
        _assert_no_rule(pod, mesh.get(pod, "/orders/1", token, method="DELETE"))


def test_one_fresh_token_in_every_pod_is_introspected_once(mesh: LoopbackMesh) -> None:
    """Pod a asks the AS and shares the sealed answer in Redis; b and c read it there (L2) instead of asking."""
    token = mesh.control.token("read")
    before, stored = _introspections(mesh), _shared_answers(mesh)
    assert mesh.get("a", "/orders/1", token).status == 200
    wait_until(lambda: _shared_answers(mesh) > stored, "pod a's answer written to Redis")  # written after answering
    for pod in ("b", "c", "a", "b", "c"):
        assert mesh.get(pod, "/orders/1", token).status == 200, pod
    assert _introspections(mesh) - before == 1


def test_no_pod_allows_a_token_once_its_revocation_returned(mesh: LoopbackMesh) -> None:
    """The AS's revocation hook evicts in pod a (before the revocation call returns), pod a broadcasts the eviction
    through Redis, and its EvictToken answers OK only once b and c acknowledged they dropped the token from their L1
    (docs/security.md, "The shared Redis tier and revocation"): no pod allows after the call returned. The time until
    this test has seen every pod refuse (its own polling through the ingress) is printed."""
    token = mesh.control.token("read")
    for pod in NAMES:
        assert mesh.get(pod, "/orders/1", token).status == 200, pod
    _revoke(mesh, token)
    returned = time.perf_counter()
    refused: dict[str, float] = {}
    for pod in NAMES:
        status = mesh.get(pod, "/orders/1", token).status
        after = time.perf_counter() - returned
        assert status == 401, f"pod {pod} answered {status} {after * 1000:.1f} ms after the revocation returned"
        refused[pod] = after
    slowest = max(refused.values())
    print(f"\nrevocation through the mesh: every pod refuses {slowest * 1000:.1f} ms after the revocation returned "
          f"({', '.join(f'{p} {t * 1000:.1f} ms' for p, t in sorted(refused.items()))})")


def test_a_pod_without_its_phantom_authz_fails_closed_and_only_that_pod(mesh: LoopbackMesh) -> None:
    token = mesh.control.token("read")
    pod_b = mesh.pods[1].stack
    assert pod_b.authz is not None
    pod_b.authz.stop()
    resp = mesh.get("b", "/orders/1", token)
    assert resp.status == 503, resp  # the sidecar's status_on_error (statusOnError: "503"), failOpen false (both modes)
    assert b"Authorization" not in resp.body
    for pod in ("a", "c"):
        assert mesh.get(pod, "/orders/1", token).status == 200, pod
