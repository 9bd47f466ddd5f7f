"""Adversarial review of route rules: inputs a client controls that could steer a request to a laxer rule.

``;`` path parameters: servlet containers (Tomcat, Jetty, Spring's UrlPathHelper) drop them from each segment before
mapping, so ``/api/admin;x/users`` reaches the handler of ``/api/admin/users``. A rule table that compares the
segment ``admin;x`` with ``admin`` would give that request the rule of ``/api/**`` (or the defaults) instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import Config, load_config
from authz.errors import InsufficientScope, MalformedRequest, NoRouteRule
from authz.models import Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer
from authz.route_rules.patterns import HostPattern, request_host
from authz.routes import RouteResolver

SERVER = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
          "issuer": "https://as.example"}
RULES = [
    {"name": "api", "match": {"paths": ["/api/**"]}, "required_scopes": "read"},
    {"name": "api-admin", "match": {"paths": ["/api/admin/**"]}, "required_scopes": "admin"},
    {"name": "health", "match": {"paths": ["/health"]}, "disabled": True},
    {"name": "record", "match": {"paths": ["/records/{owner}/**"]}, "required_scopes": "read"},
]


def _config(tmp_path: Path, **routes: Any) -> Config:
    doc = {"authorization_servers": {"main": SERVER},
           "routes": {"required_scopes": "openid", "rules": RULES, **routes}}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "secret"})


def _request(path: str, host: str = "api.example.com") -> RequestInfo:
    return RequestInfo("GET", path, host, {}, ("Bearer opaque-token-1234567890",), {})


class _Authority:
    """An AS whose every token is active with the scope ``read`` (and ``openid``)."""

    async def answer(self, token: str) -> Answer:
        claims = {"iss": "https://as.example", "sub": "alice", "scope": "openid read", "exp": time.time() + 600}
        return Answer(Introspection(active=True, jwt="a.b.c", claims=claims))

    def identity(self, answer: Answer) -> Identity:
        claims = answer.introspection.claims
        return Identity("a.b.c", claims, frozenset(claims["scope"].split()), "alice", None, claims["exp"])

    exchanger = None


def _authorizer(tmp_path: Path, **routes: Any) -> Authorizer:
    return Authorizer(_config(tmp_path, **routes), {"main": _Authority()})


@pytest.mark.parametrize("path", ["/api/admin;x/users", "/api/admin;jsessionid=1/users", "/api/admin;/users",
                                  "/api/admin%3Bx/users", "/api/admin;x"])
async def test_path_parameters_do_not_steer_a_request_off_the_stricter_rule(tmp_path: Path, path: str) -> None:
    """A read token must not reach /api/admin/** (admin) by hiding the segment behind a ; parameter."""
    authorizer = _authorizer(tmp_path)
    with pytest.raises((MalformedRequest, InsufficientScope)):
        await authorizer.check(_request(path))
    with pytest.raises(InsufficientScope):  # the plain path: the admin rule
        await authorizer.check(_request("/api/admin/users"))


@pytest.mark.parametrize("path", ["/admin;x/users", "/health;x"])
async def test_path_parameters_do_not_steer_a_request_to_the_defaults_or_a_disabled_rule(tmp_path: Path,
                                                                                          path: str) -> None:
    """With routes.default: defaults, a rule hidden behind ; must not fall back to the laxer defaults; and a
    disabled rule is not reached through a parameter either (the two readings disagree: refused)."""
    config_rules = [*RULES, {"name": "admin", "match": {"paths": ["/admin/**"]}, "required_scopes": "admin"}]
    resolver = RouteResolver(_config(tmp_path, default="defaults", rules=config_rules))
    with pytest.raises(MalformedRequest) as refused:
        resolver.resolve(_request(path))
    assert refused.value.status == 400


async def test_path_parameters_that_change_no_rule_are_kept(tmp_path: Path) -> None:
    """A ; parameter that leaves the same rule matching is no ambiguity: the request goes on, and a template's
    parameter is the segment as sent (a policy comparing it with the subject fails closed)."""
    resolver = RouteResolver(_config(tmp_path))
    settings, params = resolver.resolve(_request("/records/alice;v=1/notes"))
    assert (settings.rule, dict(params)) == ("record", {"owner": "alice;v=1"})
    settings, _ = resolver.resolve(_request("/api/items;page=2"))
    assert settings.rule == "api"
    with pytest.raises(NoRouteRule):  # no rule either way: the default deny, as before
        resolver.resolve(_request("/elsewhere;x"))


@pytest.mark.parametrize("method", ["delete", "Delete"])
async def test_method_case_does_not_steer_a_request_off_the_stricter_rule(tmp_path: Path, method: str) -> None:
    """Envoy passes an HTTP/2 client's lower-case ``:method`` on (its HTTP/1 codec refuses one), and some servers
    upper-case it (Werkzeug): ``delete`` must not get the rule of any method when ``DELETE`` has a stricter one."""
    rules = [{"name": "records", "match": {"paths": ["/records/**"]}, "required_scopes": "read"},
             {"name": "records-delete", "match": {"paths": ["/records/**"], "methods": ["DELETE"]},
              "required_scopes": "admin"}]
    authorizer = _authorizer(tmp_path, rules=rules)
    with pytest.raises(InsufficientScope):
        await authorizer.check(RequestInfo("DELETE", "/records/1", "api.example.com", {},
                                           ("Bearer opaque-token-1234567890",), {}))
    with pytest.raises(MalformedRequest):
        await authorizer.check(RequestInfo(method, "/records/1", "api.example.com", {},
                                           ("Bearer opaque-token-1234567890",), {}))
    with pytest.raises(MalformedRequest):  # stage 0 refuses every lower-case method, whatever rules there are
        await authorizer.check(RequestInfo("get", "/records/1", "api.example.com", {},
                                           ("Bearer opaque-token-1234567890",), {}))


def test_only_one_final_dot_of_a_host_is_dropped() -> None:
    """README: hosts compare without case and *a* final dot. ``api.example.com..`` is no DNS name for that host
    (Envoy's strip_trailing_host_dot drops one dot too), so it must not match the host's rule."""
    assert request_host("API.example.com.:8443") == ("api.example.com", "8443")
    assert not HostPattern.parse("api.example.com").match(*request_host("api.example.com.."))
    assert not HostPattern.parse("api.example.com").match(*request_host("api.example.com..:443"))


@pytest.mark.parametrize("host", ["\u212aiosk.example.com", "\u212aIOSK.example.com:443", "\u212aiosk.example.com."])
def test_a_host_is_lower_cased_as_ascii_only(host: str) -> None:
    """Python's str.lower() turns the Kelvin sign (U+212A) into an ASCII k: a host Envoy and every upstream read as
    another name must not win ``kiosk.example.com``'s rule (a gRPC client other than Envoy can send one; Envoy
    answers 400 to a non-ASCII authority itself)."""
    assert not HostPattern.parse("kiosk.example.com").match(*request_host(host))
    assert HostPattern.parse("kiosk.example.com").match(*request_host("KIOSK.example.com"))


def test_explain_says_such_a_path_is_refused(tmp_path: Path) -> None:
    from authz.route_rules.explain import explain

    status, lines = explain(_config(tmp_path), _request("/api/admin;x/users"))
    assert status == 1
    assert "400 invalid_request" in lines[-1] and "';' path parameters" in lines[-1]


@pytest.mark.parametrize("method", ["get", "delete", "Delete", "pOST", "m-search"])
async def test_a_method_with_a_lower_case_letter_is_refused_on_every_route(tmp_path: Path, method: str) -> None:
    """Stage 0 (``authz.request_form.check_method``): without rules too, so that a policy comparing the method (a
    deny of ``DELETE``, say) and the upstream cannot read two different methods either."""
    authorizer = _authorizer(tmp_path, rules=[])
    with pytest.raises(MalformedRequest) as refused:
        await authorizer.check(RequestInfo(method, "/api/x", "api.example.com", {},
                                           ("Bearer opaque-token-1234567890",), {}))
    assert refused.value.status == 400


@pytest.mark.parametrize("method", ["GET", "DELETE", "M-SEARCH", "PROPFIND", "OPTIONS"])
async def test_an_upper_case_method_passes_stage_0(tmp_path: Path, method: str) -> None:
    authorizer = _authorizer(tmp_path, rules=[])
    allow = await authorizer.check(RequestInfo(method, "/api/x", "api.example.com", {},
                                               ("Bearer opaque-token-1234567890",), {}))
    assert allow.identity is not None


def test_explain_says_a_lower_case_method_is_refused(tmp_path: Path) -> None:
    from authz.route_rules.explain import explain

    status, lines = explain(_config(tmp_path), RequestInfo("delete", "/api/x", "api.example.com", {}, (), {}))
    assert status == 1
    assert "400 invalid_request" in lines[-1] and "not upper case" in lines[-1]
