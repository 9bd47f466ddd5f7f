"""No path the recipes or the chart deploy reaches a workload unchecked unless it is an explicit, documented
exclusion: every rule of an HTTPRoute the chart renders has a SecurityPolicy (a rule without one is served by Envoy
Gateway with no extAuth at all), and every Istio CUSTOM policy selects every request but its listed notPaths."""

from __future__ import annotations

import copy
from typing import Any

import helm_python
import pytest

from tests.deploy.recipes import RECIPES, Manifest, recipe_values, render, render_recipe

GATEWAY = [name for name in RECIPES if name.startswith("envoy-gateway")]
BACKEND = [{"name": "records", "port": 8080}]
UNNAMED = {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}], "backendRefs": BACKEND}


def _covered(manifests: list[Manifest]) -> dict[str, set[str] | None]:
    """By HTTPRoute: the rule names SecurityPolicies target (None: a policy targets the whole route)."""
    found: dict[str, set[str] | None] = {}
    for m in (m for m in manifests if m.kind == "SecurityPolicy"):
        for ref in m.doc["spec"]["targetRefs"]:
            sections = found.setdefault(ref["name"], set())
            if "sectionName" not in ref:
                found[ref["name"]] = None
            elif sections is not None:
                sections.add(ref["sectionName"])
    return found


@pytest.mark.parametrize("name", GATEWAY)
def test_every_http_route_rule_a_recipe_renders_has_a_security_policy(name: str) -> None:
    manifests = render_recipe(name)
    covered = _covered(manifests)
    routes = [m for m in manifests if m.kind == "HTTPRoute"]
    assert routes
    for route in routes:
        sections = covered.get(route.name, set())
        for rule in route.doc["spec"]["rules"]:
            assert sections is None or rule.get("name") in sections, (route.name, rule)


def _with_second_rule(values: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    values = copy.deepcopy(values)
    values["envoyGateway"]["policies"][0]["route"]["rules"].append(rule)
    return values


@pytest.mark.parametrize("rule", [
    {"name": "delete", "matches": [{"path": {"type": "PathPrefix", "value": "/records"}, "method": "DELETE"}],
     "backendRefs": BACKEND},
    UNNAMED,
], ids=["named", "unnamed"])
@pytest.mark.parametrize("name", GATEWAY)
def test_the_chart_refuses_an_http_route_rule_no_security_policy_covers(name: str, rule: dict[str, Any]) -> None:
    values = _with_second_rule(recipe_values(name), rule)
    with pytest.raises(helm_python.HelmError, match="no SecurityPolicy"):
        render(values)


@pytest.mark.parametrize("name", GATEWAY)
def test_a_policy_for_the_whole_route_covers_every_rule(name: str) -> None:
    values = _with_second_rule(recipe_values(name), UNNAMED)
    values["envoyGateway"]["policies"].append({"name": "records-rest", "targetRef": {"name": "records"},
                                              "contextExtensions": {"required_scopes": "admin"}})
    assert _covered(render(values))["records"] is None


@pytest.mark.parametrize("name", [name for name in RECIPES if name.startswith("istio")])
def test_every_istio_custom_policy_checks_every_request_but_its_listed_exclusions(name: str) -> None:
    values = recipe_values(name)
    excluded = {p["namespace"]: p.get("notPaths", []) for p in values.get("istio", {}).get("protect", [])}
    custom = [m for m in render_recipe(name) if m.kind == "AuthorizationPolicy" and m.doc["spec"]["action"] == "CUSTOM"]
    assert custom
    for m in custom:
        (rule,) = m.doc["spec"]["rules"]
        listed = excluded.get(m.doc["metadata"].get("namespace"), [])
        assert rule == ({"to": [{"operation": {"notPaths": listed}}]} if listed else {}), (m.name, rule)
