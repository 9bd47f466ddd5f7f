"""Malformed requests through the real pipeline (``Authorizer.check``) with the real embedded engine: a path not in
normal form, a query or a body the policy input cannot hold are a 400 ``invalid_request`` before scopes, policies or
a reused decision (issue 12 items 2, 14 and 20); and, for random requests and every policy shape the tests and the
quickstart ship, a reused decision always equals a fresh evaluation (a differential property test).

Requests are built as both transports build them: a gRPC CheckRequest
(``authz.transport.grpc_request.request_info``) and the HTTP transport's check call (``HttpCheckTranslator``).
Only the authorization server is a stand-in.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.config import load_config
from authz.errors import AuthzError
from authz.models import Allow, Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer
from authz.policy.embedded import EmbeddedEngine
from authz.policy.stage import PolicyStage
from authz.transport.grpc_request import request_info
from authz.transport.http_request import HttpCheckTranslator
from devtools.envoy_config import HTTP_PATH_PREFIX, http_path_prefix

ROOT = Path(__file__).resolve().parents[2]


def _identity(subject: str, scopes: str) -> Identity:
    claims = {"sub": subject, "scope": scopes, "client_id": "web", "exp": 4_000_000_000}
    return Identity(jwt=f"eyJhbGciOiJSUzI1NiJ9.{subject}.c2ln", claims=claims, scopes=frozenset(scopes.split()),
                    subject=subject, client_id="web", expires_at=4_000_000_000)


IDENTITIES = {"tok-alice": _identity("alice", "read approve"), "tok-bob": _identity("bob", "read"),
              "tok-carol": _identity("carol", "read approve")}


class Authority:
    """The stand-in AS: each token has one verified identity (cached answers hand back the same objects)."""

    def __init__(self) -> None:
        self.answers = {token: Answer(Introspection(active=True, jwt=i.jwt, claims=i.claims))
                        for token, i in IDENTITIES.items()}
        self.calls = 0

    async def answer(self, token: str) -> Answer:
        self.calls += 1
        return self.answers[token]

    def identity(self, answer: Answer) -> Identity:
        return next(i for i in IDENTITIES.values() if i.jwt == answer.introspection.jwt)


class Gateway:
    """The pipeline with the embedded engine over ``paths``; ``reuse=False`` turns the decision cache off."""

    def __init__(self, workdir: Path, paths: list[str], reuse: bool = True) -> None:
        doc = {
            "authorization_servers": {"plain": {"introspection_endpoint": "https://as.example/introspect",
                                                "client_id": "gw", "client_secret_env": "S", "dialect": "rfc7662"}},
            "routes": {"required_scopes": ["read"]},
            "policy": {"engine": "embedded", "paths": paths, "decision_log": "off",
                       "decision_cache_size": 10_000 if reuse else 0},
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "authz.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
        config = load_config(workdir / "authz.yaml", {"S": "secret"})
        self.engine = EmbeddedEngine(config.policy.paths, 5.0, decision_cache_size=config.policy.decision_cache_size)
        self.authority = Authority()
        self.authorizer = Authorizer(config, {"plain": self.authority}, PolicyStage(config.policy, self.engine))
        self.translator = HttpCheckTranslator(HTTP_PATH_PREFIX, 65536)

    def request(self, transport: str, method: str, path: str, settings: dict[str, str], token: str | None,
                headers: dict[str, str], body: str) -> RequestInfo:
        headers = {**headers, **({"authorization": f"Bearer {token}"} if token else {})}
        if body:
            headers["content-length"] = str(len(body.encode()))
        if transport == "http":
            raw = [(b"host", b"api.example"), *((k.encode(), v.encode()) for k, v in headers.items())]
            return self.translator.request_info(method, http_path_prefix(settings) + path, raw, body.encode())
        check = CheckRequest()
        http = check.attributes.request.http
        http.method, http.path, http.host, http.scheme, http.protocol = method, path, "api.example", "http", "HTTP/1.1"
        http.headers.update({":authority": "api.example", ":method": method, ":path": path, ":scheme": "http",
                             **headers})
        if body:
            http.body = body
            http.size = len(body.encode())
        check.attributes.context_extensions.update(settings)
        return request_info(check)

    def outcome(self, request: RequestInfo) -> tuple[Any, ...]:
        """What the client would get: an allow's headers and policy decision, or a denial's class and status."""
        try:
            allow: Allow = asyncio.run(self.authorizer.check(request))
        except AuthzError as exc:
            return ("deny", type(exc).__name__, exc.status, getattr(exc, "decision", None))
        return ("allow", allow.headers, allow.headers_to_remove, allow.policy)


def _policy_dir(tmp: Path, source: str) -> list[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "policy.rego").write_text(source, encoding="utf-8")
    return [str(tmp)]


# A policy that reads neither parsed_path nor parsed_query (item 14's shape), and a deny-list on the body (item 20's)
ANY_SUBJECT = 'package app\nimport rego.v1\ndefault allow := false\nallow if input.token.subject in {"alice", "bob"}\n'
DENY_LIST = "package app\nimport rego.v1\ndefault allow := true\nallow := false if input.parsed_body.admin == true\n"


# --- item 2: the path is checked first, for every route ------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize("path", ["/records/alice/../bob/profile", "/records/alice/%2e%2e/bob/profile",
                                  "/records/alice/%2E%2e/bob/profile", "/records//bob/profile",
                                  "/records/alice/..%2Fbob/profile", "/records/alice/..%5Cbob/profile",
                                  "/records/alice/%00/profile", "/records/alice/./profile", "/records/%zz/profile"])
@pytest.mark.parametrize("settings", [{}, {"policy": "records/decision"}, {"disabled": "true"}],
                         ids=["token-only", "policy", "disabled"])
def test_item02_path_not_in_normal_form_is_400_before_credential_scopes_or_policy(
        tmp_path: Path, transport: str, path: str, settings: dict[str, str]) -> None:
    gateway = Gateway(tmp_path, [str(ROOT / "deploy" / "policies")])
    outcome = gateway.outcome(gateway.request(transport, "GET", path, settings, "tok-alice", {}, ""))
    assert outcome[0] == "deny" and outcome[2] == 400, outcome
    assert gateway.authority.calls == 0  # refused before the token was even looked at


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_item02_allow_encoded_slashes_is_a_per_route_opt_in(tmp_path: Path, transport: str) -> None:
    policy = 'package app\nimport rego.v1\nallow if input.parsed_path == ["files", "a/b", "raw"]\n'
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", policy))

    def outcome(path: str, **extra: str) -> tuple[Any, ...]:
        settings = {"policy": "app/allow", **extra}
        return gateway.outcome(gateway.request(transport, "GET", path, settings, "tok-alice", {}, ""))

    assert outcome("/files/a%2Fb/raw")[:3] == ("deny", "MalformedRequest", 400)  # off by default
    assert outcome("/files/a%2Fb/raw", allow_encoded_slashes="true")[0] == "allow"  # one segment, as sent
    assert outcome("/files/a/b/raw", allow_encoded_slashes="true")[0] == "deny"  # three segments: not the same
    assert outcome("/files/a%2F..%2Fb/raw", allow_encoded_slashes="true")[:3] == ("deny", "MalformedRequest", 400)
    assert outcome("/files/a%2Fb/raw", allow_encoded_slashes="yes")[:3] == ("deny", "RouteMisconfigured", 500)


def test_item02_records_policy_is_not_fooled_by_paths_that_skip_the_service_check() -> None:
    """Defence in depth: deploy/policies/records.rego itself refuses dot, empty and slash-holding segments, should
    such a path ever reach it (a remote OPA fed by another gateway, a check turned off)."""
    engine = EmbeddedEngine((str(ROOT / "deploy" / "policies"),), 5.0, decision_cache_size=0)
    token = {"subject": "alice", "scopes": ["read"]}

    def allowed(parsed_path: list[str]) -> bool:
        policy_input = {"attributes": {"request": {"http": {"method": "GET"}}}, "parsed_path": parsed_path,
                        "token": token}
        return bool(asyncio.run(engine.evaluate("records/allow", policy_input)).result)

    assert allowed(["records", "alice", "profile"])
    for confused in (["records", "alice", "..", "bob", "profile"], ["records", "alice", ".", "profile"],
                     ["records", "alice", "", "..", "bob"], ["records", "alice", "../bob", "profile"],
                     ["records", "alice", "..\\bob", "profile"], ["records", "alice", "..;", "bob"]):
        assert not allowed(confused), confused


# --- item 14: never a reused decision for a malformed request --------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize("path", ["/%zz", "/orders/%4", "/orders?q=%zz", "/orders?tier=gold;x=1", "/orders/%2e%2e/x"])
def test_item14_malformed_request_never_gets_a_reused_decision(tmp_path: Path, transport: str, path: str) -> None:
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", ANY_SUBJECT))
    settings = {"policy": "app/allow"}
    first = gateway.outcome(gateway.request(transport, "GET", "/orders", settings, "tok-alice", {}, ""))
    assert first[0] == "allow"
    assert gateway.engine.cached_decisions >= 1  # the allow is there to be reused: the policy ignores the path
    outcome = gateway.outcome(gateway.request(transport, "GET", path, settings, "tok-alice", {}, ""))
    assert outcome[0] == "deny" and outcome[2] == 400, outcome


# --- item 20: a query or body the input cannot hold is a 400 before any policy ----------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", '{"admin": true,}'), ("application/json", "{'admin': true}"),
    ("application/json", '{"admin": true} x'), ("application/json; charset=utf-8", '{"admin": NaN}'),
    ("application/x-www-form-urlencoded", "admin=true;x=1"), ("application/x-www-form-urlencoded", "admin=%zz"),
])
def test_item20_unparsable_body_is_400_and_never_a_deny_list_allow(tmp_path: Path, transport: str,
                                                                   content_type: str, body: str) -> None:
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", DENY_LIST))
    settings = {"policy": "app/allow"}
    headers = {"content-type": content_type}
    json_body = "json" in content_type
    ok = gateway.outcome(gateway.request(transport, "POST", "/orders", settings, "tok-alice", headers,
                                         '{"a": 1}' if json_body else "a=1"))
    assert ok[0] == "allow"  # and cached: a later request may only reuse it when its body parses to the same
    if json_body:
        admin = gateway.outcome(gateway.request(transport, "POST", "/orders", settings, "tok-alice", headers,
                                                '{"admin": true}'))
        assert admin[:3] == ("deny", "PolicyDenied", 403)
    outcome = gateway.outcome(gateway.request(transport, "POST", "/orders", settings, "tok-alice", headers, body))
    assert outcome[0] == "deny" and outcome[2] == 400, outcome


MULTIPART_DENY_LIST = ('package app\nimport rego.v1\ndefault allow := true\n'
                       'allow := false if "admin" in input.parsed_body.role\n')


def _form(*fields: tuple[str, str], close: bool = True) -> str:
    parts = [f'--b\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n' for n, v in fields]
    return "".join(parts) + ("--b--\r\n" if close else "")


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_issue16_multipart_fields_reach_the_policy_and_a_malformed_body_is_400(tmp_path: Path, transport: str) -> None:
    """Issue 16 item 6: ``parsed_body`` of a multipart body is ``{name: [values]}`` (it was ``null``, which this
    deny-list policy read as "nothing to deny"); one that does not parse is a 400, never the deny-list's allow."""
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", MULTIPART_DENY_LIST))
    settings = {"policy": "app/allow"}
    headers = {"content-type": "multipart/form-data; boundary=b"}

    def outcome(body: str) -> tuple[Any, ...]:
        return gateway.outcome(gateway.request(transport, "POST", "/orders", settings, "tok-alice", headers, body))

    assert outcome(_form(("role", "user"), ("note", "hi")))[0] == "allow"
    assert outcome(_form(("role", "user"), ("role", "admin")))[:3] == ("deny", "PolicyDenied", 403)
    for malformed in (_form(("role", "admin"), close=False), "role=admin", _form(("role", "admin"))[:-9]):
        result = outcome(malformed)
        assert result[0] == "deny" and result[2] == 400, result


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_item20_unparsable_query_is_400_not_503(tmp_path: Path, transport: str) -> None:
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", "package app\nimport rego.v1\n"
                                            'allow if input.parsed_query.tier == ["gold"]\n'))
    settings = {"policy": "app/allow"}
    assert gateway.outcome(gateway.request(transport, "GET", "/orders?tier=gold", settings, "tok-alice", {}, ""))[
        0] == "allow"
    outcome = gateway.outcome(gateway.request(transport, "GET", "/orders?tier=gold;x=1", settings, "tok-alice", {},
                                              ""))
    assert outcome[0] == "deny" and outcome[2] == 400, outcome


def test_item20_a_route_without_policy_does_not_parse_the_body(tmp_path: Path) -> None:
    """The body and query are the policy input's: a route without a policy forwards them untouched (the path is
    still checked)."""
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", DENY_LIST))
    request = gateway.request("grpc", "POST", "/orders?a;b", {}, "tok-alice", {"content-type": "application/json"},
                              "{not json")
    assert gateway.outcome(request)[0] == "allow"


# --- differential: a reused decision always equals a fresh evaluation ------------------------------------------------

SHAPES: dict[str, tuple[str | None, str]] = {  # name: (inline Rego or None for the shipped directory, decision path)
    "records": (None, "records/decision"),
    "envoy-primer": (None, "envoy/primer/result"),
    "envoy-tutorial": (None, "envoy/authz/allow"),
    "any-subject": (ANY_SUBJECT, "app/allow"),
    "deny-list-body": (DENY_LIST, "app/allow"),
    "query": ("package app\nimport rego.v1\nallow if input.parsed_query.tier == [\"gold\"]\n", "app/allow"),
    "header": ('package app\nimport rego.v1\nallow if input.attributes.request.http.headers["x-role"] == "admin"\n',
               "app/allow"),
    "path-prefix": ("package app\nimport rego.v1\nallow if input.parsed_path[1] == input.token.subject\n",
                    "app/allow"),
    "raw-path": ('package app\nimport rego.v1\nallow if startswith(input.attributes.request.http.path, '
                 '"/records/alice")\n', "app/allow"),
}
SHIPPED = {"records": ROOT / "deploy" / "policies", "envoy-primer": ROOT / "tests" / "policies" / "envoy_style",
           "envoy-tutorial": ROOT / "tests" / "policies" / "envoy_style"}

PATHS = ["/records/alice/profile", "/records/bob/profile", "/records/alice/transactions/t1/approve",
         "/records/bob/transactions/t1/approve", "/api/v1/products", "/api/v1/orders", "/people/alice", "/orders",
         "/records/alice/../bob/profile", "/records/alice/%2e%2e/bob/profile", "/%zz", "/records//bob/profile",
         "/records/alice%2Fbob", "/records/al%69ce/profile", "/records/caf%C3%A9/x", "/records/alice/"]
QUERIES = ["", "?channel=web", "?channel=app", "?tier=gold", "?tier=gold;x=1", "?q=%zz", "?tier=gold&tier=x", "?"]
BODIES = [("", ""), ("application/json", '{"created_by": "alice"}'), ("application/json", '{"created_by": "bob"}'),
          ("application/json", '{"admin": true}'), ("application/json", '{"admin": true,}'),
          ("application/json", '{"quantity": 5}'), ("application/json", '{"quantity": 50}'),
          ("application/json", "null"), ("application/x-www-form-urlencoded", "admin=true"),
          ("application/x-www-form-urlencoded", "a=1;b=2"), ("text/plain", "{bad"), ("multipart/form-data", "--x--"),
          ("multipart/form-data; boundary=b", _form(("admin", "true"))),
          ("multipart/form-data; boundary=b", _form(("admin", "true"), close=False))]
requests = st.lists(st.tuples(
    st.sampled_from(["grpc", "http"]), st.sampled_from(["GET", "POST"]), st.sampled_from(PATHS),
    st.sampled_from(QUERIES), st.sampled_from(BODIES), st.sampled_from([*IDENTITIES, None]),
    st.sampled_from([{}, {"x-role": "admin"}, {"x-role": "user"}, {"x-transaction-creator": "alice"},
                     {"x-request-id": "r1"}, {"x-request-id": "r2"}]),
    st.sampled_from([{}, {"disabled": "true"}, {"required_scopes": "approve"}])), min_size=1, max_size=8)

_gateways: dict[str, tuple[Gateway, Gateway]] = {}


def _pair(name: str, workdir: Path) -> tuple[Gateway, Gateway]:
    """One reusing and one fresh gateway per shape, kept across examples so decisions pile up to be reused."""
    if name not in _gateways:
        source = SHAPES[name][0]
        paths = [str(SHIPPED[name])] if source is None else _policy_dir(workdir / name / "p", source)
        _gateways[name] = (Gateway(workdir / name / "reuse", paths), Gateway(workdir / name / "fresh", paths, False))
    return _gateways[name]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")


@pytest.mark.parametrize("name", sorted(SHAPES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=requests)
def test_reused_decision_always_equals_a_fresh_evaluation(shapes_dir: Path, name: str,
                                                          batch: list[tuple[Any, ...]]) -> None:
    reusing, fresh = _pair(name, shapes_dir)
    decision_path = SHAPES[name][1]
    for transport, method, path, query, (content_type, body), token, headers, extra in batch:
        all_headers = {**headers, **({"content-type": content_type} if content_type else {})}
        settings = {"policy": decision_path, **extra}
        args = (transport, method, path + query, settings, token, all_headers, body)
        assert reusing.outcome(reusing.request(*args)) == fresh.outcome(fresh.request(*args)), (name, args)


def test_the_differential_exercises_reuse(shapes_dir: Path) -> None:
    """The shapes above that can be reused are: a property that never reuses anything would prove nothing."""
    reusing, _ = _pair("any-subject", shapes_dir)
    for _ in range(2):
        reusing.outcome(reusing.request("grpc", "GET", "/orders", {"policy": "app/allow"}, "tok-alice", {}, ""))
    assert reusing.engine.cached_decisions >= 1


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize(("path", "content_type", "body"), [
    ("/orders?access_token=tok-alice", "", ""),
    ("/orders?a=1&access_token=tok-alice", "", ""),
    ("/orders?access%5Ftoken=tok-alice", "", ""),
    ("/orders", "application/x-www-form-urlencoded", "a=1&access_token=tok-alice"),
], ids=["query", "query-second", "query-encoded-name", "form-body"])
def test_a_second_credential_in_the_query_or_a_form_body_is_400_on_policy_routes(
        tmp_path: Path, transport: str, path: str, content_type: str, body: str) -> None:
    """RFC 6750 §2: one method per request. On a policy route the query and body are the policy input, which a full
    decision log writes out: a token there besides the Authorization header is refused before any policy runs."""
    gateway = Gateway(tmp_path, _policy_dir(tmp_path / "p", ANY_SUBJECT))
    settings = {"policy": "app/allow"}
    headers = {"content-type": content_type} if content_type else {}
    plain = gateway.outcome(gateway.request(transport, "POST", "/orders?a=1", settings, "tok-alice", headers,
                                            "a=1" if body else ""))
    assert plain[0] == "allow", plain
    outcome = gateway.outcome(gateway.request(transport, "POST", path, settings, "tok-alice", headers, body))
    assert outcome[:3] == ("deny", "MalformedRequest", 400), outcome
