"""phantom-authz behind a real Envoy configured as Envoy Gateway configures it for SecurityPolicies with gRPC
``extAuth`` (``gateway_shape``): the named ext_authz filter disabled at the listener, enabled per route with
``context_extensions``, and the HTTPRoute's metadata in ``route_metadata_context``; phantom-authz has route rules
of its own as well. What a client sees:

- per key, the route's ``context_extensions`` win over the matched rule, and the rule fills the keys they leave
  out (here the extensions set ``required_scopes``, the rule ``policy``);
- a policy reads the HTTPRoute's name, rule and annotations from the route metadata;
- a covered route that no rule matches gets ``routes.default`` (deny);
- **a route no SecurityPolicy covers is never checked**: Envoy Gateway enables its filter only on covered routes,
  so Envoy does not call phantom-authz there and its route rules (or ``routes.default: deny``) cannot protect it.
  Cover every route that needs protection with a SecurityPolicy (one targeting the Gateway covers them all).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_phantom_flow import upstream_jwt_claims
from tests.harness import Response, http_request
from tests.mesh.gateway_shape import HttpRouteRule, SecurityPolicy, gateway
from tests.mesh.mesh_stack import MeshStack

HOST = "api.example.com"
RECORDS = SecurityPolicy("records", {"required_scopes": "admin"})  # extAuth.contextExtensions
REPORTS = SecurityPolicy("reports")  # extAuth without contextExtensions: check_settings {}
RULES = [
    HttpRouteRule("records", "read", "/records", RECORDS, {"tier": "gold"}),
    HttpRouteRule("records", "archive", "/archive", RECORDS, {"tier": "bronze"}),
    HttpRouteRule("reports", "all", "/reports", REPORTS),
    HttpRouteRule("status", "all", "/status", None),  # no SecurityPolicy targets this HTTPRoute
]
ROUTES = {"default": "deny", "rules": [
    {"name": "records", "match": {"paths": ["/records/**", "/archive/**"]}, "required_scopes": ["read"],
     "policy": "gateway_route/gold_tier"},
    {"name": "status", "match": {"paths": ["/status/**"]}, "required_scopes": ["admin"]},  # never consulted
]}


@pytest.fixture(scope="module")
def eg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshStack]:
    stack = MeshStack(tmp_path_factory.mktemp("envoy-gateway"))
    try:
        with stack.together():
            stack.start_dev_as()
            stack.start_echo()
            stack.start_mesh_authz("gateway_route.rego", routes=ROUTES)
            stack.envoy_port, stack.envoy_admin_port = MeshStack.ports(2)
            stack.start_envoy_config("gateway", gateway(port=stack.envoy_port, admin_port=stack.envoy_admin_port,
                                                        host=HOST,
                                                        rules=RULES, authz_port=stack.authz_port,
                                                        app_port=stack.echo_port), stack.envoy_port)
        yield stack
    finally:
        stack.stop()


def _get(eg: MeshStack, path: str, token: str | None = None) -> Response:
    headers = {"Host": HOST} if token is None else {"Host": HOST, "Authorization": f"Bearer {token}"}
    return http_request("GET", eg.envoy_port, path, headers)


def _checks(eg: MeshStack) -> int:
    """How many requests Envoy's ext_authz filters have decided (allowed, denied or failed) so far (the listener's
    stat prefix is Envoy Gateway's ``http-<port>``)."""
    stats = eg.envoy_stats()
    return sum(stats.get(f"http.http-{eg.envoy_port}.ext_authz.{outcome}", 0) for outcome in ("ok", "denied", "error"))


def test_context_extensions_win_over_the_matched_rule_per_key(eg: MeshStack) -> None:
    """Rule ``records`` says read + policy gateway_route/gold_tier; the SecurityPolicy's extensions say admin."""
    refused = _get(eg, "/records/42", eg.token("read"))
    assert refused.status == 403, refused
    assert 'scope="admin"' in refused.headers["www-authenticate"]
    allowed = _get(eg, "/records/42", eg.token("read admin"))
    assert allowed.status == 200, allowed
    assert allowed.json()["headers"]["x-http-route"] == "records/read"  # the rule's policy ran
    assert "admin" in str(upstream_jwt_claims(allowed.json(), eg)["scope"]).split()


def test_a_policy_reads_the_http_route_from_route_metadata(eg: MeshStack) -> None:
    """The same rule and policy on two rules of one HTTPRoute: only the annotation differs."""
    token = eg.token("read admin")
    assert _get(eg, "/records/42", token).status == 200
    denied = _get(eg, "/archive/42", token)
    assert denied.status == 403, denied


def test_a_covered_route_no_rule_matches_gets_the_default_deny(eg: MeshStack) -> None:
    denied = _get(eg, "/reports/q1", eg.token("read write admin approve"))
    assert denied.status == 403, denied
    assert denied.json()["error"] == "forbidden"  # README: routes.default deny


def test_a_route_without_a_security_policy_is_not_checked(eg: MeshStack) -> None:
    """What Envoy Gateway does: the filter stays disabled on /status, so Envoy never asks phantom-authz; its rule
    ``status`` (admin scope) and ``routes.default: deny`` never apply. No token, yet 200, and no JWT upstream."""
    assert _get(eg, "/records/42").status == 401  # a covered route: checked
    checks = _checks(eg)
    answer = _get(eg, "/status/health")
    assert answer.status == 200, answer
    assert "Authorization" not in answer.json()["headers"]
    assert _checks(eg) == checks
