"""Route rules (``routes.rules``): what each condition matches, which rule wins, what is refused at load, how the
carriers combine per key, and what a policy sees of the matched rule (``input.route``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.config import Config, ConfigError, load_config
from authz.errors import InsufficientScope, MalformedRequest, NoRouteRule, PolicyDenied
from authz.models import Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer
from authz.policy.embedded import EmbeddedEngine
from authz.policy.stage import PolicyStage
from authz.route_rules.explain import explain
from authz.route_rules.patterns import HostPattern, PathPattern, PatternError, PrincipalGlob, split_path
from authz.route_rules.table import Facts, RuleSpec, RuleTable
from authz.routes import RouteResolver

SERVER = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
          "issuer": "https://as.example"}


def _config(tmp_path: Path, rules: list[dict[str, Any]], **top: Any) -> Config:
    routes = {"required_scopes": "openid", "rules": rules, **top.pop("routes", {})}
    doc = {"authorization_servers": {"main": SERVER, "partner": SERVER}, "routes": routes, **top}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "secret"})


def _request(path: str = "/", host: str = "api.example.com", method: str = "GET", *,
             headers: dict[str, str] | None = None, source: str | None = "", destination: str | None = "",
             extensions: dict[str, str] | None = None) -> RequestInfo:
    return RequestInfo(method, path, host, headers or {}, ("Bearer opaque-token-1234567890",), extensions or {},
                       source_principal=source, destination_principal=destination)


def _winner(table: RuleTable, path: str = "/", host: str = "api.example.com", method: str = "GET",
            **facts: Any) -> str | None:
    found = table.match(Facts(method, host, path, **facts))
    return None if found is None else table.specs[found.rule].name


def _spec(name: str, *, paths: tuple[str, ...] = (), hosts: tuple[str, ...] = (), methods: tuple[str, ...] = (),
          destination: tuple[str, ...] = (), source: tuple[str, ...] = (),
          headers: tuple[tuple[str, str | None], ...] = ()) -> RuleSpec:
    return RuleSpec(name, tuple(map(PathPattern.parse, paths)), tuple(map(HostPattern.parse, hosts)),
                    frozenset(methods), tuple(map(PrincipalGlob.parse, destination)),
                    tuple(map(PrincipalGlob.parse, source)), headers)


# --- conditions -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "path", "params"), [
    ("/health", "/health", {}),
    ("/health", "/health/", None),
    ("/health", "/healthz", None),
    ("/api/", "/api/", {}),
    ("/", "/", {}),
    ("/api/**", "/api", {}),
    ("/api/**", "/api/", {}),
    ("/api/**", "/api/v1/x", {}),
    ("/api/**", "/apix", None),
    ("/api/**", "/apix/y", None),
    ("/**", "/anything/at/all", {}),
    ("/records/{owner}", "/records/alice", {"owner": "alice"}),
    ("/records/{owner}", "/records/", None),  # a parameter is never an empty segment
    ("/records/{owner}", "/records/alice/notes", None),
    ("/records/{owner}/**", "/records/alice/notes/1", {"owner": "alice"}),
    ("/records/{owner}/**", "/records/alice", {"owner": "alice"}),
    ("/records/{owner}/notes/{note}", "/records/al%20ice/notes/n%2Fx", {"owner": "al ice", "note": "n/x"}),
    ("/records/*/notes", "/records/bob/notes", {}),
    ("/caf%C3%A9", "/caf%C3%A9", {}),
])
def test_path_patterns(pattern: str, path: str, params: dict[str, str] | None) -> None:
    assert PathPattern.parse(pattern).match(split_path(path)) == params


@pytest.mark.parametrize("pattern", ["records", "/a//b", "/a/../b", "/a/./b", "/a/{x", "/a/b*", "/**/a", "/a/{x}/{x}",
                                     "/a/%2e", "/a b", "/a/%zz", "/a/{1x}", "/a//**"])
def test_paths_no_normal_form_path_can_match_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        PathPattern.parse(pattern)


@pytest.mark.parametrize(("pattern", "host", "matches"), [
    ("api.example.com", "api.example.com", True),
    ("api.example.com", "API.Example.com:8443", True),  # no port in the rule: any port
    ("api.example.com", "api.example.com.", True),  # the same DNS name
    ("api.example.com:8443", "api.example.com:8443", True),
    ("api.example.com:8443", "api.example.com", False),
    ("api.example.com:8443", "api.example.com:443", False),
    ("*.example.com", "a.b.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "badexample.com", False),
    ("[::1]:8000", "[::1]:8000", True),
    ("10.0.0.1", "10.0.0.1:80", True),
])
def test_host_patterns(pattern: str, host: str, matches: bool) -> None:
    from authz.route_rules.patterns import request_host
    assert HostPattern.parse(pattern).match(*request_host(host)) is matches


@pytest.mark.parametrize("pattern", ["", "*", "a..b", "-a.com", "api.example.com:0", "api.example.com:x", "a_b.com",
                                     "*.*.com"])
def test_bad_hosts_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        HostPattern.parse(pattern)


@pytest.mark.parametrize(("glob", "value", "matches"), [
    ("spiffe://cluster.local/ns/web/sa/frontend", "spiffe://cluster.local/ns/web/sa/frontend", True),
    ("spiffe://cluster.local/ns/web/sa/frontend", "spiffe://cluster.local/ns/web/sa/frontend2", False),
    ("spiffe://cluster.local/ns/*/sa/ingress", "spiffe://cluster.local/ns/gw/sa/ingress", True),
    ("spiffe://cluster.local/ns/*/sa/ingress", "spiffe://cluster.local/ns/gw/sa/other", False),
    ("spiffe://cluster.local/ns/web/*", "spiffe://cluster.local/ns/web/sa/x", True),
    ("*/sa/ingress", "spiffe://other.domain/ns/a/sa/ingress", True),
    ("spiffe://a/*/b/*/c", "spiffe://a/x/b/c", False),
])
def test_principal_globs(glob: str, value: str, matches: bool) -> None:
    assert PrincipalGlob.parse(glob).match(value) is matches


# --- precedence -------------------------------------------------------------------------------------------------------

def test_exact_beats_template_beats_longer_prefix_beats_shorter_prefix() -> None:
    table = RuleTable([_spec("any", paths=("/**",)), _spec("records", paths=("/records/**",)),
                       _spec("owner", paths=("/records/{owner}/**",)), _spec("me", paths=("/records/me",)),
                       _spec("deep", paths=("/records/a/b/**",))])
    assert _winner(table, "/records/me") == "me"
    assert _winner(table, "/records/alice") == "owner"
    assert _winner(table, "/records/a/b/c") == "owner"  # a template beats any prefix
    assert _winner(table, "/records") == "records"
    assert _winner(table, "/other") == "any"


def test_more_literal_template_segments_win() -> None:
    table = RuleTable([_spec("owner", paths=("/records/{owner}/**",)),
                       _spec("notes", paths=("/records/{owner}/notes/**",))])
    assert _winner(table, "/records/alice/notes/1") == "notes"
    assert _winner(table, "/records/alice/photos") == "owner"


def test_host_principal_method_and_headers_narrow_a_path() -> None:
    table = RuleTable([
        _spec("plain", paths=("/api/**",)),
        _spec("host", paths=("/api/**",), hosts=("*.example.com",)),
        _spec("exact-host", paths=("/api/**",), hosts=("api.example.com",)),
        _spec("exact-host-port", paths=("/api/**",), hosts=("api.example.com:8443",)),
        _spec("principal", paths=("/api/**",), hosts=("api.example.com",), source=("spiffe://c/ns/a/sa/*",)),
        _spec("method", paths=("/api/**",), hosts=("api.example.com",), source=("spiffe://c/ns/a/sa/*",),
              methods=("POST",)),
        _spec("header", paths=("/api/**",), hosts=("api.example.com",), source=("spiffe://c/ns/a/sa/*",),
              methods=("POST",), headers=(("x-tenant", "acme"),)),
    ])
    assert _winner(table, "/api/x", "other.org") == "plain"
    assert _winner(table, "/api/x", "www.example.com") == "host"
    assert _winner(table, "/api/x", "api.example.com") == "exact-host"
    assert _winner(table, "/api/x", "api.example.com:8443") == "exact-host-port"
    caller = "spiffe://c/ns/a/sa/web"
    assert _winner(table, "/api/x", "api.example.com", source_principal=caller) == "principal"
    assert _winner(table, "/api/x", "api.example.com", "POST", source_principal=caller) == "method"
    assert _winner(table, "/api/x", "api.example.com", "POST", source_principal=caller,
                   headers={"x-tenant": "acme"}) == "header"
    assert _winner(table, "/api/x", "api.example.com", "POST", source_principal=caller,
                   headers={"x-tenant": "other"}) == "method"


def test_a_principal_the_transport_did_not_send_never_matches() -> None:
    table = RuleTable([_spec("workload", destination=("spiffe://c/ns/a/sa/api",))])
    assert _winner(table, destination_principal="spiffe://c/ns/a/sa/api") == "workload"
    assert _winner(table, destination_principal="") is None
    assert _winner(table, destination_principal=None) is None


def test_equal_specificity_that_can_overlap_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"overlaps rule 0 \(a\)"):
        RuleTable([_spec("a", paths=("/records/{owner}",)), _spec("b", paths=("/records/{id}",))])
    with pytest.raises(ValueError, match="overlaps rule 0"):
        RuleTable([_spec("a", hosts=("*.example.com",)), _spec("b", hosts=("*.example.com:443", "*.example.com"))])
    with pytest.raises(ValueError, match="overlaps rule 0"):
        RuleTable([_spec("a", source=("spiffe://c/ns/*/sa/x",)), _spec("b", source=("spiffe://c/ns/abcd/*",))])


def test_equal_specificity_that_cannot_overlap_is_kept() -> None:
    table = RuleTable([_spec("get", paths=("/x/{id}",), methods=("GET",)),
                       _spec("post", paths=("/x/{id}",), methods=("POST",)),
                       _spec("acme", paths=("/y",), headers=(("x-tenant", "acme"),)),
                       _spec("other", paths=("/y",), headers=(("x-tenant", "other"),)),
                       _spec("a-host", hosts=("a.example.com",)), _spec("b-host", hosts=("b.example.com",))])
    assert _winner(table, "/x/1", method="POST") == "post"
    assert _winner(table, "/y", headers={"x-tenant": "other"}) == "other"
    assert _winner(table, "/z", "b.example.com") == "b-host"


_SEGMENTS = st.sampled_from(["a", "b", "{p}", "*"])
_PATTERNS = st.builds(lambda segs, rest: "/" + "/".join([*(s.replace("p", f"p{i}") for i, s in enumerate(segs)),
                                                         *(["**"] if rest else [])]) if segs or rest else "/",
                      st.lists(_SEGMENTS, max_size=3), st.booleans())
_RULES = st.lists(st.tuples(st.one_of(st.none(), _PATTERNS), st.sampled_from([None, "a.example.com", "*.example.com"]),
                            st.sampled_from([(), ("GET",), ("POST",)])), min_size=1, max_size=6)
_PATHS = st.builds(lambda segs: "/" + "/".join(segs), st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=4))


@settings(max_examples=300, deadline=None)
@given(_RULES, _PATHS, st.sampled_from(["a.example.com", "x.example.com", "other.org"]),
       st.sampled_from(["GET", "POST", "PUT"]))
def test_the_index_finds_what_a_scan_of_every_rule_finds(rules: list[Any], path: str, host: str, method: str) -> None:
    """Reference: every rule that matches, the one with the greatest specificity, then the first in the file."""
    specs = [_spec(f"r{i}", paths=(p,) if p else (), hosts=(h,) if h else (), methods=m)
             for i, (p, h, m) in enumerate(rules)]
    try:
        table = RuleTable(specs)
    except ValueError:
        return  # overlapping rules: refused, nothing to match
    if path != "/" and "" in path[1:].split("/")[:-1]:
        return  # not a normal-form path (//): refused before matching
    facts = Facts(method, host, path)
    from authz.route_rules.table import _alternatives
    matching = [(tuple(tuple(-n for n in part) for part in alt.rank), alt.rule)
                for i, spec in enumerate(specs) for alt in _alternatives(i, spec) if alt.mismatch(facts) is None]
    expected = specs[min(matching)[1]].name if matching else None
    assert _winner(table, path, host, method) == expected


# --- configuration ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rules", "top", "message"), [
    ([{"name": "a", "match": {"paths": ["/a"]}}, {"name": "a", "match": {"paths": ["/b"]}}], {},
     r"routes\.rules\[1\] \(a\)\.name: rule 0 has the same name"),
    ([{"name": "a", "match": {"pathz": ["/a"]}}], {}, r"routes\.rules\[0\] \(a\)\.match\.pathz: unknown key"),
    ([{"name": "a", "match": {"paths": ["/a/../b"]}}], {}, r"routes\.rules\[0\] \(a\)\.match\.paths: .*normal-form"),
    ([{"name": "a", "match": {"paths": ["/a/{x"]}}], {}, r"routes\.rules\[0\] \(a\)\.match\.paths: .*not a literal"),
    ([{"name": "a", "match": {"hosts": ["*"]}}], {}, r"routes\.rules\[0\] \(a\)\.match\.hosts"),
    ([{"name": "a", "match": {"methods": ["get"]}}], {}, r"match\.methods: method 'get' must be upper-case"),
    ([{"name": "a", "as": "nope"}], {}, r"routes\.rules\[0\] \(a\)\.as: no authorization server named 'nope'"),
    ([{"name": "a", "policy": "app/allow"}], {}, r"routes\.rules\[0\] \(a\)\.policy: .*no policy engine"),
    ([{"name": "a", "disabled": True, "required_scopes": "x"}], {},
     r"routes\.rules\[0\] \(a\)\.required_scopes: a disabled rule needs no token"),
    ([{"name": "a", "match": {"source_principals": ["spiffe://c/ns/a/sa/b"]}}],
     {"server": {"http": {"listen": "127.0.0.1:0"}}}, r"routes\.rules\[0\] \(a\)\.match: matches on principals"),
    ([{"name": "a", "match": {"headers": [{"name": "x-a", "exact": "1", "present": True}]}}], {},
     r"exactly one of exact"),
    ([{"name": "a", "match": {"paths": ["/x/{a}"]}}, {"name": "b", "match": {"paths": ["/x/{b}"]}}], {},
     r"routes\.rules\[1\] \(b\): overlaps rule 0 \(a\)"),
    ([{"name": "bad name!"}], {}, r"routes\.rules\[0\] \(bad name!\)\.name: must be 1-128 letters"),
])
def test_bad_rules_are_refused_naming_the_rule(tmp_path: Path, rules: list[dict[str, Any]], top: dict[str, Any],
                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, rules, **top)


# --- carriers and the default -----------------------------------------------------------------------------------------

def test_context_extensions_override_the_rule_per_key_and_the_rule_overrides_the_defaults(tmp_path: Path) -> None:
    config = _config(tmp_path, [{"name": "records", "match": {"paths": ["/records/**"]}, "required_scopes": "read",
                                 "as": "partner", "keep_authorization": True}])
    resolver = RouteResolver(config)
    settings, _ = resolver.resolve(_request("/records/1"))
    assert (settings.required_scopes, settings.authorization_server, settings.keep_authorization, settings.rule) == (
        ("read",), "partner", True, "records")
    settings, _ = resolver.resolve(_request("/records/1", extensions={"required_scopes": "admin"}))
    assert (settings.required_scopes, settings.authorization_server, settings.keep_authorization) == (
        ("admin",), "partner", True)  # only the key the route sets changes
    settings, _ = resolver.resolve(_request("/records/1", extensions={"as": "main"}))
    assert (settings.required_scopes, settings.authorization_server) == (("read",), "main")


def test_a_request_no_rule_matches_is_denied_unless_the_default_is_the_defaults(tmp_path: Path) -> None:
    rules = [{"name": "records", "match": {"paths": ["/records/**"]}, "required_scopes": "read"}]
    with pytest.raises(NoRouteRule) as denied:
        RouteResolver(_config(tmp_path, rules)).resolve(_request("/admin"))
    assert denied.value.status == 403
    with pytest.raises(NoRouteRule):  # context_extensions do not stand in for a rule
        RouteResolver(_config(tmp_path, rules)).resolve(_request("/admin", extensions={"required_scopes": "x"}))
    settings, _ = RouteResolver(_config(tmp_path, rules, routes={"default": "defaults"})).resolve(_request("/admin"))
    assert (settings.required_scopes, settings.rule) == (("openid",), None)


def test_without_rules_every_request_gets_the_defaults(tmp_path: Path) -> None:
    settings, params = RouteResolver(_config(tmp_path, [])).resolve(_request("/anything"))
    assert (settings.required_scopes, settings.rule, dict(params)) == (("openid",), None, {})


# --- through the pipeline -------------------------------------------------------------------------------------------

class _Authority:
    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def answer(self, token: str) -> Answer:
        claims = {"iss": "https://as.example", "sub": "alice", "scope": self.scope, "exp": time.time() + 600}
        return Answer(Introspection(active=True, jwt="a.b.c", claims=claims))

    def identity(self, answer: Answer) -> Identity:
        claims = answer.introspection.claims
        return Identity("a.b.c", claims, frozenset(claims["scope"].split()), "alice", None, claims["exp"])


POLICY = """package records

default allow := false

allow if {
    input.route.name == "records"
    input.route.params.owner == input.token.subject
}
"""


def _authorizer(tmp_path: Path, scope: str = "read") -> Authorizer:
    (tmp_path / "records.rego").write_text(POLICY, encoding="utf-8")
    config = _config(tmp_path, [
        {"name": "records", "match": {"paths": ["/records/{owner}/**"]}, "required_scopes": "read",
         "policy": "records/allow"},
        {"name": "health", "match": {"paths": ["/health"], "methods": ["GET"]}, "disabled": True},
        {"name": "admin", "match": {"paths": ["/admin/**"]}, "required_scopes": "admin"},
    ], policy={"paths": [str(tmp_path / "records.rego")], "decision_log": "off"})
    engine = EmbeddedEngine(config.policy.paths, 5.0)
    authority = _Authority(scope)
    return Authorizer(config, {"main": authority, "partner": authority}, PolicyStage(config.policy, engine))


async def test_the_policy_reads_the_rule_and_its_named_segments(tmp_path: Path) -> None:
    authorizer = _authorizer(tmp_path)
    allow = await authorizer.check(_request("/records/alice/notes"))
    assert allow.headers == (("authorization", "Bearer a.b.c"),)
    with pytest.raises(PolicyDenied):
        await authorizer.check(_request("/records/bob/notes"))


async def test_rules_choose_scopes_and_unmatched_requests_are_denied(tmp_path: Path) -> None:
    authorizer = _authorizer(tmp_path)
    with pytest.raises(InsufficientScope):
        await authorizer.check(_request("/admin/users"))
    assert (await authorizer.check(_request("/health", headers={}))).identity is None  # disabled: no token read
    with pytest.raises(NoRouteRule):
        await authorizer.check(_request("/health", method="POST"))
    with pytest.raises(NoRouteRule):
        await authorizer.check(_request("/elsewhere"))


@pytest.mark.parametrize("path", ["/records/x/../bob/notes", "/admin/./users", "/health//", "/records/%2e%2e/bob",
                                  "/records/a%2Fb/notes"])
async def test_matching_sees_only_normal_form_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(MalformedRequest):
        await _authorizer(tmp_path).check(_request(path))


def test_explain_names_the_winner_and_why_the_others_lost(tmp_path: Path) -> None:
    config = _config(tmp_path, [{"name": "any", "match": {"paths": ["/records/**"]}},
                                {"name": "owner", "match": {"paths": ["/records/{owner}"]}, "required_scopes": "r"},
                                {"name": "web", "match": {"hosts": ["web.example.com"]}}])
    status, lines = explain(config, _request("/records/alice"))
    text = "\n".join(lines)
    assert status == 0
    assert "match: rule 1 (owner)" in text and "params: owner=alice" in text and "required_scopes: r" in text
    assert "rule 0 (any): matches, but a more specific rule wins" in text
    assert "rule 2 (web): hosts do not match (web.example.com)" in text
    status, lines = explain(config, _request("/other"))
    assert status == 1 and "403 no_route_rule" in "\n".join(lines)
