"""RouteResolver: service defaults overridden by Envoy context_extensions; bad settings fail closed (500)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from authz.config import Config, load_config
from authz.errors import RouteMisconfigured
from authz.models import RequestInfo, RouteSettings
from authz.routes import RouteResolver


def settings_for(resolver: RouteResolver, extensions: dict[str, str]) -> RouteSettings:
    request = RequestInfo("GET", "/", "api.example.com", {}, (), extensions)
    return resolver.resolve(request)[0]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    server = {"introspection_endpoint": "https://as.example/introspect", "client_id": "gw", "client_secret_env": "S",
              "issuer": "https://as.example"}
    doc = {
        "authorization_servers": {"curity": server, "other": dict(server)},
        "default_authorization_server": "curity",
        "routes": {"required_scopes": ["read"]},
    }
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "secret"})


@pytest.fixture
def resolver(config: Config) -> RouteResolver:
    return RouteResolver(config)


def test_empty_extensions_give_service_defaults(resolver: RouteResolver) -> None:
    expected = RouteSettings(required_scopes=("read",), disabled=False, authorization_server="curity")
    assert settings_for(resolver, {}) == expected


def test_required_scopes_replace_the_default_list(resolver: RouteResolver) -> None:
    settings = settings_for(resolver, {"required_scopes": "  write   admin "})
    assert settings.required_scopes == ("write", "admin")
    assert settings.disabled is False
    assert settings.authorization_server == "curity"


@pytest.mark.parametrize(("flag", "expected"), [("true", True), ("false", False), ("TRUE", True), (" False ", False)])
def test_disabled_flag_is_read_case_insensitively(resolver: RouteResolver, flag: str, expected: bool) -> None:
    settings = settings_for(resolver, {"disabled": flag})
    assert settings.disabled is expected
    assert settings.required_scopes == ("read",)


def test_as_selects_a_configured_server(resolver: RouteResolver) -> None:
    assert settings_for(resolver, {"as": "other"}).authorization_server == "other"


@pytest.mark.parametrize("flag", ["yes", "1", "", "on"])
def test_rejects_non_boolean_disabled_as_route_misconfigured(resolver: RouteResolver, flag: str) -> None:
    with pytest.raises(RouteMisconfigured) as info:
        settings_for(resolver, {"disabled": flag})
    assert info.value.status == 500
    assert info.value.reason == "route_misconfigured"


def test_rejects_unknown_key_and_logs_it_once(resolver: RouteResolver, caplog: pytest.LogCaptureFixture) -> None:
    bad = {"required_scope": "read", "disabled": "false"}
    caplog.set_level(logging.ERROR, logger="authz.routes")
    for _ in range(3):
        with pytest.raises(RouteMisconfigured) as info:
            settings_for(resolver, bad)
        assert info.value.status == 500
        assert "required_scope" in info.value.detail
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "'required_scope'" in errors[0].getMessage()


def test_logs_each_distinct_bad_setting(resolver: RouteResolver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="authz.routes")
    for bad in ({"scopes": "a"}, {"disabled": "maybe"}, {"scopes": "a"}):
        with pytest.raises(RouteMisconfigured):
            settings_for(resolver, bad)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_good_route_still_resolves_after_a_bad_one(resolver: RouteResolver) -> None:
    with pytest.raises(RouteMisconfigured):
        settings_for(resolver, {"bogus": "x"})
    assert settings_for(resolver, {"required_scopes": "admin"}).required_scopes == ("admin",)


def test_rejects_unknown_authorization_server(resolver: RouteResolver) -> None:
    with pytest.raises(RouteMisconfigured) as info:
        settings_for(resolver, {"as": "okta"})
    assert info.value.status == 500
    assert "okta" in info.value.detail


@pytest.mark.parametrize("scopes", ['read "admin"', "read\\write", "lesen ä", "read\x00"])
def test_rejects_invalid_scope_characters(resolver: RouteResolver, scopes: str) -> None:
    with pytest.raises(RouteMisconfigured) as info:
        settings_for(resolver, {"required_scopes": scopes})
    assert info.value.status == 500


def test_repeated_resolution_gives_equal_settings(resolver: RouteResolver) -> None:
    ext = {"required_scopes": "a b", "as": "other", "disabled": "false"}
    first = settings_for(resolver, ext)
    assert settings_for(resolver, dict(ext)) == first == RouteSettings(("a", "b"), False, "other")


# --- issue 12 item 1: required scopes follow the RFC 6749 §3.3 grammar (SP only) -----------------------------------

@pytest.mark.parametrize("sep", ["\u00a0", "\t", "\x0b", "\x1f", "\u2003", "\u2028", "\n"],
                         ids=["nbsp", "tab", "vt", "us", "emsp", "lsep", "lf"])
def test_item01_required_scopes_split_on_sp_only(resolver: RouteResolver, sep: str) -> None:
    with pytest.raises(RouteMisconfigured) as info:
        settings_for(resolver, {"required_scopes": f"read{sep}admin"})
    assert info.value.status == 500
    assert "required_scopes" in info.value.detail


def test_required_scopes_are_sp_separated_tokens(resolver: RouteResolver) -> None:
    assert settings_for(resolver, {"required_scopes": "read files:admin"}).required_scopes == ("read", "files:admin")


# --- issue 12 item 10: an empty setting is a misconfiguration, never "none" --------------------------------------

@pytest.mark.parametrize("key", ["required_scopes", "policy", "disabled", "as", "keep_authorization"])
@pytest.mark.parametrize("value", ["", " ", "\t"], ids=["empty", "space", "tab"])
def test_item10_empty_setting_is_route_misconfigured(resolver: RouteResolver, key: str, value: str) -> None:
    with pytest.raises(RouteMisconfigured) as info:
        settings_for(resolver, {key: value})
    assert info.value.status == 500
    assert key in info.value.detail


def test_item10_empty_policy_does_not_mean_no_policy(resolver: RouteResolver) -> None:
    with pytest.raises(RouteMisconfigured):
        settings_for(resolver, {"required_scopes": "read", "policy": ""})


def test_item10_dash_says_a_token_but_no_scope(resolver: RouteResolver) -> None:
    settings = settings_for(resolver, {"required_scopes": "-"})
    assert settings.required_scopes == ()
    assert settings.disabled is False


@pytest.mark.parametrize("value", ["- read", "read -"])
def test_item10_dash_cannot_be_combined_with_scopes(resolver: RouteResolver, value: str) -> None:
    with pytest.raises(RouteMisconfigured):
        settings_for(resolver, {"required_scopes": value})


# --- issue 12 item 6: keep_authorization, an explicit per-route opt-in ------------------------------------------

def test_item06_keep_authorization_is_off_by_default_and_parsed(resolver: RouteResolver) -> None:
    assert settings_for(resolver, {}).keep_authorization is False
    assert settings_for(resolver, {"disabled": "true"}).keep_authorization is False
    assert settings_for(resolver, {"keep_authorization": "true"}).keep_authorization is True
    assert settings_for(resolver, {"keep_authorization": "False"}).keep_authorization is False
    with pytest.raises(RouteMisconfigured):
        settings_for(resolver, {"keep_authorization": "yes"})
