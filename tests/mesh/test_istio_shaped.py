"""phantom-authz behind a real Envoy configured as istiod configures a sidecar for CUSTOM AuthorizationPolicies
(``istio_shape``): the RBAC shadow rules + ext_authz with ``filter_enabled_metadata``, no ``context_extensions``,
inbound mTLS with SPIFFE certificates made in the test. phantom-authz's own route rules choose scopes, AS and policy
from the host, path, method and the principals Envoy fills from the certificates. What a client (another workload,
presenting its certificate) sees, with both providers: ``envoyExtAuthzGrpc`` (``grpc``) and ``envoyExtAuthzHttp``
(``http``: ``packAsBytes`` bodies, ``authorization`` in the header lists). HTTP mode carries no principals, so
phantom-authz refuses principal rules with ``server.http`` at start: the ``http`` variant has host, path and
method rules only, and the principal tests are gRPC only.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.test_phantom_flow import upstream_jwt_claims
from tests.harness import Response
from tests.mesh.istio_shape import sidecar_inbound
from tests.mesh.mesh_stack import MeshStack, mtls_request
from tests.mesh.pki import MeshCA, Workload

RECORDS_HOST = "records.foo.svc.cluster.local"
PARTNER_HOST = "partner.example.com"
# CUSTOM policies (security.istio.io/v1 AuthorizationPolicy): which requests phantom-authz sees at all
POLICIES = [
    {"metadata": {"namespace": "foo", "name": "records"},
     "spec": {"action": "CUSTOM", "provider": {"name": "phantom-authz"},
              "rules": [{"to": [{"operation": {"paths": ["/records/*"]}}]}]}},
    {"metadata": {"namespace": "foo", "name": "apis"},
     "spec": {"action": "CUSTOM", "provider": {"name": "phantom-authz"},
              "rules": [{"to": [{"operation": {"paths": ["/api/*", "/reports/*", "/ledger/*", "/unruled/*"]}}]}]}},
]
# phantom-authz's route rules: host, path and method (both modes)
RULES: list[dict[str, Any]] = [
    {"name": "records-read", "match": {"hosts": [RECORDS_HOST], "paths": ["/records/{owner}/**"],
                                       "methods": ["GET"]},
     "required_scopes": ["read"], "policy": "route_params/owner"},
    {"name": "records-write", "match": {"hosts": [RECORDS_HOST], "paths": ["/records/{owner}/**"],
                                        "methods": ["POST"]},
     "required_scopes": ["write"], "policy": "route_params/body_names_owner"},
    {"name": "partner-api", "match": {"hosts": [PARTNER_HOST], "paths": ["/api/**"]}, "as": "partner",
     "required_scopes": ["read"]},
]
# ... and principals (gRPC only)
PRINCIPAL_RULES: list[dict[str, Any]] = [
    {"name": "reports-from-web", "match": {"paths": ["/reports/**"],
                                           "source_principals": ["spiffe://cluster.local/ns/frontend/sa/web"]},
     "required_scopes": ["read"]},
    {"name": "reports", "match": {"paths": ["/reports/**"]}, "required_scopes": ["admin"]},
    {"name": "ledger-at-billing", "match": {"paths": ["/ledger/**"],
                                            "destination_principals": ["spiffe://cluster.local/ns/foo/sa/billing"]},
     "required_scopes": ["write"]},
    {"name": "ledger-at-records", "match": {"paths": ["/ledger/**"],
                                            "destination_principals": ["spiffe://cluster.local/ns/*/sa/records"]},
     "required_scopes": ["read"]},
]


def provider(mode: str) -> dict[str, Any]:
    """The ``meshConfig.extensionProviders`` entry, as a user writes it in the ``istio`` ConfigMap."""
    common = {"service": "phantom-authz.foo.svc.cluster.local", "timeout": "5s", "statusOnError": "503",
              "includeRequestBodyInCheck": {"maxRequestBytes": 8192, "allowPartialMessage": True,
                                            "packAsBytes": True}}
    if mode == "grpc":
        return {"name": "phantom-authz", "envoyExtAuthzGrpc": {**common, "port": 9001}}
    return {"name": "phantom-authz", "envoyExtAuthzHttp": {
        **common, "port": 9192, "pathPrefix": "/phantom-authz",  # = phantom-authz's server.http.path_prefix
        "includeRequestHeadersInCheck": ["authorization", "content-type", "x-request-id"],
        "headersToUpstreamOnAllow": ["authorization", "x-route-rule"],
        "headersToDownstreamOnDeny": ["www-authenticate", "content-type", "cache-control", "retry-after"]}}


@dataclass
class Sidecar:
    """The stack (dev AS, echo app, phantom-authz, sidecar Envoy), the partner AS, and the mesh's identities."""

    stack: MeshStack
    partner: MeshStack
    ca: MeshCA
    records_port: int  # listener with the records workload's certificate (spiffe://cluster.local/ns/foo/sa/records)
    billing_port: int  # listener with the billing workload's certificate
    web: ssl.SSLContext  # client spiffe://cluster.local/ns/frontend/sa/web
    batch: ssl.SSLContext  # client spiffe://cluster.local/ns/jobs/sa/batch

    def get(self, path: str, token: str | None = None, host: str = RECORDS_HOST, client: str = "web",
            port: int = 0, method: str = "GET", body: str | None = None) -> Response:
        context = self.web if client == "web" else self.batch
        headers = {} if body is None else {"Content-Type": "application/json"}
        return mtls_request(port or self.records_port, context, path, host, token, method, headers, body=body)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Sidecar]:
    workdir = tmp_path_factory.mktemp(f"istio-{mode}")
    ca = MeshCA(workdir / "pki")
    records, billing = ca.issue("records", "foo", "records"), ca.issue("billing", "foo", "billing")
    clients: list[Workload] = [ca.issue("web", "frontend", "web"), ca.issue("batch", "jobs", "batch")]
    stack, partner = MeshStack(workdir / "stack", mode), MeshStack(workdir / "partner")
    try:
        with stack.together(), partner.together():
            stack.start_dev_as()
            partner.start_dev_as()
            stack.start_echo()
            rules = RULES + (PRINCIPAL_RULES if mode == "grpc" else [])
            stack.start_mesh_authz("route_params.rego", routes={"default": "deny", "rules": rules},
                                   authorization_servers={"dev": stack.as_entry(), "partner": partner.as_entry()})
            port, billing_port, admin = MeshStack.ports(3)
            config = sidecar_inbound(port=port, admin_port=admin, app_port=stack.echo_port,
                                     authz_port=stack.http_port or stack.authz_port, workload=records, ca=ca.cert,
                                     provider=provider(mode), policies=POLICIES,
                                     extra_listeners=((billing_port, billing),))
            stack.start_envoy_config("sidecar", config, port)
        yield Sidecar(stack, partner, ca, port, billing_port, *(c.client_context(ca.cert) for c in clients))
    finally:
        stack.stop()
        partner.stop()


def test_the_rules_scopes_apply_and_the_upstream_gets_a_jwt(sidecar: Sidecar) -> None:
    token = sidecar.stack.token("read", subject="alice")
    allowed = sidecar.get("/records/alice/profile", token)
    assert allowed.status == 200, allowed
    claims = upstream_jwt_claims(allowed.json(), sidecar.stack)
    assert claims["sub"] == "alice" and token not in allowed.body.decode()
    body = '{"owner": "alice", "name": "Alice"}'
    refused = sidecar.get("/records/alice/profile", token, method="POST", body=body)
    assert refused.status == 403, refused  # rule records-write
    assert 'scope="write"' in refused.headers["www-authenticate"]
    writer = sidecar.stack.token("write")
    written = sidecar.get("/records/alice/profile", writer, method="POST", body=body)
    assert written.status == 200, written
    assert written.json()["body"] == body
    # the rule's policy read the body (packAsBytes) and the template's owner
    assert sidecar.get("/records/bob/profile", writer, method="POST", body=body).status == 403


def test_a_policy_gets_the_rules_template_params(sidecar: Sidecar) -> None:
    """Rule records-read's policy route_params/owner compares input.route.params.owner with the token's subject."""
    token = sidecar.stack.token("read", subject="alice")
    own = sidecar.get("/records/alice/profile", token)
    assert own.status == 200, own
    assert own.json()["headers"]["x-route-rule"] == "records-read"  # input.route.name, added by the policy
    assert sidecar.get("/records/bob/profile", token).status == 403


def test_the_rule_for_the_host_picks_the_authorization_server(sidecar: Sidecar) -> None:
    partner_token, dev_token = sidecar.partner.token("read"), sidecar.stack.token("read")
    assert sidecar.get("/api/orders", partner_token, host=PARTNER_HOST).status == 200
    assert sidecar.get("/api/orders", dev_token, host=PARTNER_HOST).status == 401  # unknown at the partner AS
    assert sidecar.get("/records/demo-client/x", partner_token).status == 401  # unknown at the dev AS


def test_a_request_no_rule_matches_is_denied(sidecar: Sidecar) -> None:
    denied = sidecar.get("/unruled/x", sidecar.stack.token("read write admin approve"))
    assert denied.status == 403, denied
    assert denied.json()["error"] == "forbidden"  # README: routes.default deny


def test_a_request_no_custom_rule_selects_is_never_checked(sidecar: Sidecar) -> None:
    """filter_enabled_metadata: the shadow rules did not match /healthz, so Envoy did not call phantom-authz."""
    answer = sidecar.get("/healthz")
    assert answer.status == 200, answer
    assert "Authorization" not in answer.json()["headers"]
    assert sidecar.get("/records/alice/profile").status == 401  # a selected path without a token


def test_a_client_without_a_mesh_certificate_is_refused(sidecar: Sidecar) -> None:
    anonymous = ssl.create_default_context(cafile=str(sidecar.ca.cert))
    anonymous.check_hostname = False
    with pytest.raises((ssl.SSLError, ConnectionError)):
        mtls_request(sidecar.records_port, anonymous, "/healthz", RECORDS_HOST)


@pytest.mark.grpc_only("HTTP mode carries no principals")
def test_the_source_principal_picks_the_rule(sidecar: Sidecar) -> None:
    token = sidecar.stack.token("read")
    assert sidecar.get("/reports/q1", token, client="web").status == 200  # reports-from-web: read
    other = sidecar.get("/reports/q1", token, client="batch")  # reports: admin
    assert other.status == 403, other
    assert 'scope="admin"' in other.headers["www-authenticate"]
    assert sidecar.get("/reports/q1", sidecar.stack.token("admin"), client="batch").status == 200


@pytest.mark.grpc_only("HTTP mode carries no principals")
def test_the_destination_principal_picks_the_rule(sidecar: Sidecar) -> None:
    token = sidecar.stack.token("read")
    assert sidecar.get("/ledger/2026", token).status == 200  # ledger-at-records: read
    billing = sidecar.get("/ledger/2026", token, port=sidecar.billing_port)  # ledger-at-billing: write
    assert billing.status == 403, billing
    assert 'scope="write"' in billing.headers["www-authenticate"]


@pytest.mark.http_only("the refusal concerns the HTTP transport")
def test_principal_rules_with_the_http_transport_are_refused_at_start(sidecar: Sidecar) -> None:
    """The HTTP variant's phantom-authz config plus one principal rule: it would never match, so it does not start."""
    config = sidecar.stack.written_authz_config()
    config["routes"]["rules"].append(PRINCIPAL_RULES[0])
    refusal = sidecar.stack.refused_at_start("principals-over-http", config)
    assert "reports-from-web" in refusal, refusal
