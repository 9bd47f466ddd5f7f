"""A route whose effective settings say ``disabled`` needs no token, so a token setting its carrier names with it
(``context_extensions``, HTTP mode's ``;settings``) could never apply: that combination can only be a mistake, and
it fails the route closed (500) instead of letting every request through. Route rules refuse the same at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ConfigError, RouteRule, load_config
from authz.config.routes import TOKEN_SETTINGS
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


@pytest.mark.parametrize("setting", NEEDS_A_TOKEN, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_a_rule_both_disabled_and_asking_for_a_token_is_refused_at_load(tmp_path: Path,
                                                                        setting: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=rf"rules\[0\] \(x\)\.{next(iter(setting))}: a disabled rule needs no token"):
        _with_rules(tmp_path, [{"name": "x", "match": {"paths": ["/x"]}, "disabled": True, **setting}])


# What a route may set that asks nothing of a token: it still applies to a disabled route (or names the rule).
NOT_OF_A_TOKEN = {"name", "match", "disabled", "authorization_server", "policy", "keep_authorization",
                  "allow_encoded_slashes", "resource", "resource_documentation"}


def test_every_route_setting_is_known_to_ask_a_token_or_not() -> None:
    """A new route setting must be placed on one side: one that asks something of a token and is left out of
    ``TOKEN_SETTINGS`` would be silently dropped on a disabled route, which lets every request through."""
    assert set(RouteRule.model_fields) == NOT_OF_A_TOKEN | {key for key, _ in TOKEN_SETTINGS}
    assert {next(iter(setting)) for setting in NEEDS_A_TOKEN} == {key for key, _ in TOKEN_SETTINGS}
