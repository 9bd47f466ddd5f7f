"""A route whose effective settings say ``disabled`` needs no token, so a token setting its carrier names with it
(``context_extensions``, HTTP mode's ``;settings``) could never apply: that combination can only be a mistake, and
it fails the route closed (500) instead of letting every request through. Route rules refuse the same at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ConfigError, load_config
from authz.errors import RouteMisconfigured
from authz.models import RequestInfo
from authz.routes import RouteResolver
from tests.unit.test_routes import config, resolver, settings_for

__all__ = ["config", "resolver"]  # the fixtures, shared with test_routes

NEEDS_A_TOKEN = [{"required_scopes": "admin"}, {"required_scopes": "-"}, {"mtls_bound": "required"},
                 {"mtls_bound": "allowed"}, {"dpop": "required"}, {"exchange_audience": "https://api.example"},
                 {"exchange_scope": "read"}]


def _with_rules(tmp_path: Path, rules: list[dict[str, Any]]) -> RouteResolver:
    server = {"introspection_endpoint": "https://as.example/introspect", "client_id": "gw", "client_secret_env": "S",
              "issuer": "https://as.example"}
    doc = {"authorization_servers": {"curity": server}, "default_authorization_server": "curity",
           "routes": {"rules": rules}}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return RouteResolver(load_config(path, {"S": "secret"}))


@pytest.mark.parametrize("setting", NEEDS_A_TOKEN, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_disabled_with_a_token_setting_in_one_carrier_fails_the_route_closed(resolver: RouteResolver,
                                                                            setting: dict[str, str]) -> None:
    with pytest.raises(RouteMisconfigured, match=next(iter(setting))):
        settings_for(resolver, {"disabled": "true", **setting})


def test_a_disabled_rule_under_a_carrier_asking_for_scopes_fails_closed(tmp_path: Path) -> None:
    """A disabled rule and a route (Envoy Gateway's contextExtensions) asking for scopes: not silently open."""
    rules = _with_rules(tmp_path, [{"name": "health", "match": {"paths": ["/health"]}, "disabled": True}])
    request = RequestInfo("GET", "/health", "api.example.com", {}, (), {"required_scopes": "admin"})
    with pytest.raises(RouteMisconfigured, match="required_scopes"):
        rules.resolve(request)
    assert rules.resolve(RequestInfo("GET", "/health", "api.example.com", {}, (), {}))[0].disabled


@pytest.mark.parametrize("setting", [{}, {"mtls_bound": "off"}, {"dpop": "off"}, {"keep_authorization": "true"},
                                     {"as": "other"}])
def test_disabled_alone_or_with_settings_that_still_apply_is_fine(resolver: RouteResolver,
                                                                  setting: dict[str, str]) -> None:
    assert settings_for(resolver, {"disabled": "true", **setting}).disabled


def test_enabled_by_the_carrier_over_defaults_keeps_the_scopes(resolver: RouteResolver) -> None:
    settings = settings_for(resolver, {"disabled": "false", "required_scopes": "admin"})
    assert not settings.disabled and settings.required_scopes == ("admin",)


def test_a_rule_both_disabled_and_scoped_is_still_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="required_scopes"):
        _with_rules(tmp_path, [{"name": "x", "match": {"paths": ["/x"]}, "disabled": True,
                                "required_scopes": ["admin"]}])
