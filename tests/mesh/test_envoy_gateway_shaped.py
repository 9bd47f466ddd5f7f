"""phantom-authz behind a real Envoy configured as Envoy Gateway configures it for SecurityPolicies with ``extAuth``
(``gateway_shape``), in both ext_authz modes: the named ext_authz filter disabled at the listener and enabled per
route; phantom-authz has route rules of its own as well.

- ``grpc`` (``extAuth.grpc``): per-route settings in ``contextExtensions``, the HTTPRoute's metadata in
  ``route_metadata_context`` (``includeRouteMetadata``).
- ``http`` (``extAuth.http``): Envoy Gateway has no per-route carrier for HTTP, so the settings ride in the policy's
  ``path`` (Envoy's ``path_prefix``: phantom-authz's ``/phantom-authz;<settings>``), one SecurityPolicy per settings
  variant; ``headersToBackend`` must list ``authorization`` or the JWT never reaches the upstream (and every header
  a policy adds). Envoy's HTTP mode sends no route metadata: a policy reading it is refused at start, so this
  variant's policy reads only what HTTP mode sends (the method, the matched rule).

What a client sees:

- per key, the route's settings (``context_extensions``, or the path's) win over the matched rule, and the rule
  fills the keys they leave out (here the settings say ``required_scopes``, the rule ``policy``);
- a covered route that no rule matches gets ``routes.default`` (deny);
- **a route no SecurityPolicy covers is never checked**: Envoy Gateway enables its filter only on covered routes,
  so Envoy does not call phantom-authz there and its route rules (or ``routes.default: deny``) cannot protect it.
  Cover every route that needs protection with a SecurityPolicy (one targeting the Gateway covers them all).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_phantom_flow import upstream_jwt_claims
from tests.harness import Response, http_request
from tests.mesh.gateway_shape import HttpRouteRule, SecurityPolicy, gateway
from tests.mesh.mesh_stack import POLICIES, MeshStack

HOST = "api.example.com"
# extAuth.grpc: the settings in contextExtensions; one policy for both rules of HTTPRoute records
RECORDS = SecurityPolicy("records", {"required_scopes": "admin"})
REPORTS = SecurityPolicy("reports")  # extAuth without contextExtensions: check_settings {}
# extAuth.http: the settings in the path, one SecurityPolicy per variant (each targets one rule by sectionName)
TO_BACKEND = ("authorization", "x-route-rule")  # headersToBackend: the JWT and the policy's header
HTTP_POLICIES = {
    "records": SecurityPolicy("records-read", http_path="/phantom-authz;required_scopes=admin",
                              headers_to_backend=TO_BACKEND),
    "archive": SecurityPolicy("records-archive", http_path="/phantom-authz;required_scopes=approve",
                              headers_to_backend=TO_BACKEND),
    "reports": SecurityPolicy("reports", http_path="/phantom-authz", headers_to_backend=TO_BACKEND),
}
GRPC_POLICIES = {"records": RECORDS, "archive": RECORDS, "reports": REPORTS}
# the rule's policy per mode, and the header it adds upstream when it allows /records/42
RULE_POLICY = {"grpc": ("gateway_route.rego", "gateway_route/gold_tier", "x-http-route", "records/read"),
               "http": ("gateway_request.rego", "gateway_request/read_only", "x-route-rule", "records")}


def http_route_rules(mode: str) -> list[HttpRouteRule]:
    covering = GRPC_POLICIES if mode == "grpc" else HTTP_POLICIES
    return [
        HttpRouteRule("records", "read", "/records", covering["records"], {"tier": "gold"}),
        HttpRouteRule("records", "archive", "/archive", covering["archive"], {"tier": "bronze"}),
        HttpRouteRule("reports", "all", "/reports", covering["reports"]),
        HttpRouteRule("status", "all", "/status", None),  # no SecurityPolicy targets this HTTPRoute
    ]


def route_rules(policy: str) -> dict[str, Any]:
    """phantom-authz's ``routes``: rule ``records`` (read + ``policy``) covers /records and /archive."""
    return {"default": "deny", "rules": [
        {"name": "records", "match": {"paths": ["/records/**", "/archive/**"]}, "required_scopes": ["read"],
         "policy": policy},
        {"name": "status", "match": {"paths": ["/status/**"]}, "required_scopes": ["admin"]},  # never consulted
    ]}


@pytest.fixture(scope="module")
def eg(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[MeshStack]:
    stack = MeshStack(tmp_path_factory.mktemp(f"envoy-gateway-{mode}"), mode)
    policy_file, policy = RULE_POLICY[mode][:2]
    try:
        with stack.together():
            stack.start_dev_as()
            stack.start_echo()
            stack.start_mesh_authz(policy_file, routes=route_rules(policy))
            stack.envoy_port, stack.envoy_admin_port = MeshStack.ports(2)
            stack.start_envoy_config("gateway", gateway(port=stack.envoy_port, admin_port=stack.envoy_admin_port,
                                                        host=HOST, rules=http_route_rules(mode),
                                                        authz_port=stack.http_port or stack.authz_port,
                                                        app_port=stack.echo_port), stack.envoy_port)
        yield stack
    finally:
        stack.stop()


def _get(eg: MeshStack, path: str, token: str | None = None, method: str = "GET") -> Response:
    headers = {"Host": HOST} if token is None else {"Host": HOST, "Authorization": f"Bearer {token}"}
    return http_request(method, eg.envoy_port, path, headers)


def _checks(eg: MeshStack) -> int:
    """How many requests Envoy's ext_authz filters have decided (allowed, denied or failed) so far (the listener's
    stat prefix is Envoy Gateway's ``http-<port>``)."""
    stats = eg.envoy_stats()
    return sum(stats.get(f"http.http-{eg.envoy_port}.ext_authz.{outcome}", 0) for outcome in ("ok", "denied", "error"))


def test_the_routes_settings_win_over_the_matched_rule_per_key(eg: MeshStack) -> None:
    """Rule ``records`` says read + its policy; the SecurityPolicy's settings (gRPC: its extensions; HTTP: its path
    ``/phantom-authz;required_scopes=admin``) say admin."""
    refused = _get(eg, "/records/42", eg.token("read"))
    assert refused.status == 403, refused
    assert 'scope="admin"' in refused.headers["www-authenticate"]
    allowed = _get(eg, "/records/42", eg.token("read admin"))
    assert allowed.status == 200, allowed
    header, value = RULE_POLICY[eg.mode][2:]
    assert allowed.json()["headers"][header] == value  # the rule's policy ran
    assert "admin" in str(upstream_jwt_claims(allowed.json(), eg)["scope"]).split()  # the JWT reached the upstream


@pytest.mark.grpc_only("Envoy's HTTP ext_authz sends no route metadata")
def test_a_policy_reads_the_http_route_from_route_metadata(eg: MeshStack) -> None:
    """The same rule and policy on two rules of one HTTPRoute: only the annotation differs."""
    token = eg.token("read admin")
    assert _get(eg, "/records/42", token).status == 200
    denied = _get(eg, "/archive/42", token)
    assert denied.status == 403, denied


@pytest.mark.http_only("extAuth.http's path is the HTTP mode's carrier")
def test_each_settings_variant_is_a_security_policy_of_its_own(eg: MeshStack) -> None:
    """Two rules of one HTTPRoute, two SecurityPolicies: their paths ask for admin and approve, while phantom-authz's
    rule ``records`` (read + policy) applies to both."""
    token = eg.token("read admin")
    assert _get(eg, "/records/42", token).status == 200
    refused = _get(eg, "/archive/42", token)
    assert refused.status == 403, refused
    assert 'scope="approve"' in refused.headers["www-authenticate"]
    allowed = _get(eg, "/archive/42", eg.token("read approve"))
    assert allowed.status == 200, allowed
    assert allowed.json()["headers"]["x-route-rule"] == "records"


@pytest.mark.http_only("a policy for HTTP mode")
def test_the_rules_policy_decides_on_what_http_mode_sends(eg: MeshStack) -> None:
    """gateway_request/read_only reads the method: the records are read-only through the Gateway."""
    token = eg.token("read admin")
    assert _get(eg, "/records/42", token, method="HEAD").status == 200
    denied = _get(eg, "/records/42", token, method="POST")
    assert denied.status == 403, denied
    assert "www-authenticate" not in denied.headers  # the policy refused, not the scopes


@pytest.mark.http_only("the refusal concerns the HTTP transport")
def test_a_policy_reading_route_metadata_is_refused_with_the_http_transport(eg: MeshStack) -> None:
    """The gRPC variant's policy (it reads the HTTPRoute from route_metadata_context) in the HTTP variant's config:
    Envoy would send it nothing to read, so phantom-authz does not start."""
    config = eg.written_authz_config()
    config["policy"]["paths"] = [str(POLICIES / RULE_POLICY["grpc"][0])]
    config["routes"] = route_rules(RULE_POLICY["grpc"][1])
    refusal = eg.refused_at_start("route-metadata-over-http", config)
    assert "routeMetadataContext" in refusal, refusal


def test_a_covered_route_no_rule_matches_gets_the_default_deny(eg: MeshStack) -> None:
    denied = _get(eg, "/reports/q1", eg.token("read write admin approve"))
    assert denied.status == 403, denied
    assert denied.json()["error"] == "forbidden"  # README: routes.default deny


def test_a_route_without_a_security_policy_is_not_checked(eg: MeshStack) -> None:
    """What Envoy Gateway does: the filter stays disabled on /status, so Envoy never asks phantom-authz; its rule
    ``status`` (admin scope) and ``routes.default: deny`` never apply. No token, yet 200, and no JWT upstream."""
    assert _get(eg, "/records/42").status == 401  # a covered route: checked
    checks = _checks(eg)
    assert checks > 0, "the counter of checks counts nothing"
    answer = _get(eg, "/status/health")
    assert answer.status == 200, answer
    assert "Authorization" not in answer.json()["headers"]
    assert _checks(eg) == checks
