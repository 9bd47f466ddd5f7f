"""Every shipped Envoy config, Kubernetes manifest and chart recipe fails closed when phantom-authz cannot answer
(drained, restarting, overloaded): an ext_authz error is never an allow (``failure_mode_allow`` / ``failOpen``
false) and the status the client then gets is an error (``status_on_error`` / ``statusOnError`` 4xx or 5xx), never a
2xx or 3xx that reads as success. And the chart refuses values that would make it otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.deploy.recipes import RECIPES_DIR, ROOT, recipe_values, render

# Envoy's HttpStatus code names (type/v3/http_status.proto) that are errors
_ERROR_CODES = {"BadRequest", "Unauthorized", "Forbidden", "NotFound", "TooManyRequests", "InternalServerError",
                "BadGateway", "ServiceUnavailable", "GatewayTimeout"}


def _shipped() -> list[Path]:
    return sorted([*(ROOT / "envoy").glob("*.yaml"), ROOT / "deploy" / "k8s" / "sidecar.yaml",
                   *RECIPES_DIR.glob("*/rendered.yaml")])


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a YAML tree, YAML held in strings (a ConfigMap's envoy.yaml, Istio's mesh) included."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)
    elif isinstance(value, str) and "\n" in value:
        try:
            inner = list(yaml.safe_load_all(value))
        except yaml.YAMLError:
            return
        yield from _nodes(inner)


def _is_error_status(status: Any) -> bool:
    return str(status).isdigit() and 400 <= int(status) <= 599


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: str(p.relative_to(ROOT)))
def test_h31_every_ext_authz_in_every_shipped_config_fails_closed(path: Path) -> None:
    nodes = list(_nodes(list(yaml.safe_load_all(path.read_text(encoding="utf-8")))))
    filters = [n for n in nodes if str(n.get("@type", "")).endswith("ext_authz.v3.ExtAuthz")]
    providers = [n for n in nodes if "failOpen" in n]
    assert filters or providers, f"{path}: no ext_authz filter or provider found"
    for found in filters:
        assert found.get("failure_mode_allow", False) is False, path
        status = found.get("status_on_error", {"code": "Forbidden"})  # Envoy's default: 403
        assert status.get("code") in _ERROR_CODES, (path, status)
    for found in providers:
        assert found["failOpen"] is False, path
        assert _is_error_status(found.get("statusOnError", 403)), (path, found.get("statusOnError"))


@pytest.mark.parametrize(("recipe", "section", "status"),
                         [("istio-central", "istio", "200"), ("istio-sidecar", "istio", "302"),
                          ("istio-central", "istio", "100"), ("envoy-gateway", "envoyGateway", 204)])
def test_h31_the_chart_refuses_a_status_on_error_that_reads_as_success(recipe: str, section: str,
                                                                       status: Any) -> None:
    values = recipe_values(recipe)
    values.setdefault(section, {})["statusOnError"] = status
    with pytest.raises(helm_python.HelmValuesError):
        render(values)
