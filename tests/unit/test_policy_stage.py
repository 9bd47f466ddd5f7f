"""The policy stage in the pipeline: Authorizer.check with a route naming a decision path, a fake policy engine and
requests built from real CheckRequests (``request_info``), as the gRPC service builds them.

The engine is a fake (``name``, ``evaluate``, ``close``) so each test chooses the decision or the failure; the input
document it receives is the real one (``build_input``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.config import DEFAULT_MASK, Config, PolicyConfig, load_config
from authz.errors import InsufficientScope, MalformedRequest, PolicyDenied, PolicyFailed, RouteMisconfigured
from authz.models import Allow, Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer
from authz.policy.decision import HeaderMutation, PolicyDecision
from authz.policy.engine import Evaluation, PolicyEvaluationError
from authz.policy.stage import PolicyStage
from authz.transport.grpc_request import request_info
from tests.log_lines import json_lines, stream_text

OPAQUE = "opaque-7f3c9a1e5b-DO-NOT-LEAK"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
CLAIMS = {"iss": "https://as.example", "sub": "alice", "client_id": "web", "scope": "read write", "exp": 4_000_000_000}
IDENTITY = Identity(jwt=JWT, claims=CLAIMS, scopes=frozenset({"read", "write"}), subject="alice", client_id="web",
                    expires_at=4_000_000_000)
POLICY_ROUTE = {"policy": "app/allow"}
DECISION_ID = "decision-0001"


class FakeAuthority:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def answer(self, token: str) -> Answer:
        self.calls.append(token)
        return Answer(Introspection(active=True, jwt=JWT, claims=CLAIMS))

    def identity(self, answer: Answer) -> Identity:
        return IDENTITY


class FakeEngine:
    name = "fake"

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def evaluate(self, decision_path: str, policy_input: dict[str, Any]) -> Evaluation:
        self.calls.append((decision_path, policy_input))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return Evaluation(self.answer, DECISION_ID)

    async def close(self) -> None:
        return None


def _config(tmp_path: Path, with_policy: bool = True) -> Config:
    doc: dict[str, Any] = {
        "authorization_servers": {"plain": {"introspection_endpoint": "https://as.example/introspect",
                                            "client_id": "gw", "client_secret_env": "S", "dialect": "rfc7662"}},
        "routes": {"required_scopes": ["read"]},
        "headers_to_remove": ["x-user-id"],
    }
    if with_policy:
        rego = tmp_path / "policy.rego"
        rego.write_text("package app\nimport rego.v1\n\ndefault allow := false\n", encoding="utf-8")
        doc["policy"] = {"engine": "embedded", "paths": [str(rego)]}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "client-secret"})


def _check_request(extensions: dict[str, str] | None = None, authorization: str | None = f"Bearer {OPAQUE}",
                   path: str = "/orders/7?view=full") -> RequestInfo:
    req = CheckRequest()
    a = req.attributes
    a.source.address.socket_address.address = "10.0.0.7"
    a.source.address.socket_address.port_value = 51234
    h = a.request.http
    h.id = "1234"
    h.method = "GET"
    h.path = path
    h.host = "api.example"
    h.headers.update({":authority": "api.example", ":method": "GET", ":path": path, "accept": "*/*",
                      "cookie": "session=cookie-secret", "x-trace": "t-1"})
    if authorization is not None:
        h.headers["authorization"] = authorization
    a.context_extensions.update(POLICY_ROUTE if extensions is None else extensions)
    return request_info(req)


def _setup(tmp_path: Path, answer: Any, **policy: Any) -> tuple[Authorizer, FakeEngine, FakeAuthority]:
    config = _config(tmp_path)
    engine = FakeEngine(answer)
    authority = FakeAuthority()
    stage = PolicyStage(PolicyConfig(**{"engine": "embedded", "paths": ("x.rego",), **policy}), engine)
    return Authorizer(config, {"plain": authority}, stage), engine, authority


def _decision_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return json_lines(caplog.records, "authz.decisions")


# --- allow ------------------------------------------------------------------------------------------------------------


async def test_boolean_true_allows_with_the_decision_id(tmp_path: Path) -> None:
    authorizer, engine, authority = _setup(tmp_path, True)
    allow = await authorizer.check(_check_request())
    assert isinstance(allow, Allow)
    assert authority.calls == [OPAQUE]
    assert [path for path, _ in engine.calls] == ["app/allow"]
    assert allow.headers == (("authorization", f"Bearer {JWT}"),)
    assert dict(allow.dynamic_metadata) == {"sub": "alice", "client_id": "web", "scope": "read write",
                                            "decision_id": DECISION_ID}
    assert allow.policy == PolicyDecision(allowed=True)


async def test_object_result_with_headers_is_carried_on_the_allow(tmp_path: Path) -> None:
    result = {"allowed": True, "headers": {"X-User": "alice", "x-tier": ["gold", "beta"]},
              "request_headers_to_remove": ["x-debug"], "dynamic_metadata": {"tier": "gold"}}
    authorizer, _, _ = _setup(tmp_path, result)
    allow = await authorizer.check(_check_request())
    assert allow.policy is not None
    assert allow.policy.allowed is True
    assert allow.policy.headers == (HeaderMutation("x-user", "alice", False), HeaderMutation("x-tier", "gold", False),
                                    HeaderMutation("x-tier", "beta", True))
    assert allow.policy.request_headers_to_remove == ("x-debug",)
    assert dict(allow.policy.dynamic_metadata or {}) == {"tier": "gold"}
    assert allow.dynamic_metadata["decision_id"] == DECISION_ID
    assert allow.headers == (("authorization", f"Bearer {JWT}"),)  # ours stay; the policy's apply after


async def test_routes_without_a_policy_do_not_ask_the_engine(tmp_path: Path) -> None:
    authorizer, engine, _ = _setup(tmp_path, False)
    allow = await authorizer.check(_check_request(extensions={}))
    assert engine.calls == []
    assert allow.policy is None
    assert "decision_id" not in allow.dynamic_metadata


async def test_scopes_are_checked_before_the_policy(tmp_path: Path) -> None:
    authorizer, engine, _ = _setup(tmp_path, True)
    with pytest.raises(InsufficientScope):
        await authorizer.check(_check_request(extensions={"policy": "app/allow", "required_scopes": "admin"}))
    assert engine.calls == []


# --- deny -------------------------------------------------------------------------------------------------------------


async def test_boolean_false_denies_with_403(tmp_path: Path) -> None:
    authorizer, _, _ = _setup(tmp_path, False)
    with pytest.raises(PolicyDenied) as info:
        await authorizer.check(_check_request())
    assert info.value.status == 403
    assert info.value.decision == PolicyDecision(allowed=False)
    assert info.value.token_id is not None and OPAQUE not in str(info.value)


async def test_object_denial_carries_the_policy_status_and_body(tmp_path: Path) -> None:
    result = {"allowed": False, "http_status": 429, "body": "slow down", "headers": {"retry-after": "7"}}
    authorizer, _, _ = _setup(tmp_path, result)
    with pytest.raises(PolicyDenied) as info:
        await authorizer.check(_check_request())
    assert info.value.status == 429
    assert info.value.decision.body == "slow down"
    assert info.value.decision.headers == (HeaderMutation("retry-after", "7", False),)


async def test_object_denial_without_status_is_403(tmp_path: Path) -> None:
    authorizer, _, _ = _setup(tmp_path, {"allowed": False, "body": "no"})
    with pytest.raises(PolicyDenied) as info:
        await authorizer.check(_check_request())
    assert info.value.status == 403


# --- failures ---------------------------------------------------------------------------------------------------------

FAILURES = {
    "undefined": PolicyEvaluationError("embedded policy app/allow: decision is undefined"),
    "evaluation-error": PolicyEvaluationError("OPA app/allow: HTTP 500"),
    "allow-not-allowed": {"allow": True},
    "string": "true",
    "number": 1,
    "null": None,
    "array": [True],
    "allowed-string": {"allowed": "true"},
    "allowed-number": {"allowed": 1},
    "bad-header": {"allowed": True, "headers": {"x-a": "evil\r\nset-cookie: x"}},
    "bad-status": {"allowed": False, "http_status": 99},
}


@pytest.mark.parametrize("answer", list(FAILURES.values()), ids=list(FAILURES))
async def test_failures_are_503_by_default_and_never_allow(tmp_path: Path, answer: Any) -> None:
    authorizer, engine, _ = _setup(tmp_path, answer)
    with pytest.raises(PolicyFailed) as info:
        await authorizer.check(_check_request())
    assert info.value.status == 503
    assert info.value.reason == "policy_error"
    assert len(engine.calls) == 1


@pytest.mark.parametrize("status", [500, 403])
@pytest.mark.parametrize("answer", [FAILURES["undefined"], FAILURES["allow-not-allowed"], FAILURES["string"]],
                         ids=["undefined", "allow-not-allowed", "string"])
async def test_failure_status_is_configurable(tmp_path: Path, answer: Any, status: int) -> None:
    authorizer, _, _ = _setup(tmp_path, answer, failure_status=status)
    with pytest.raises(PolicyFailed) as info:
        await authorizer.check(_check_request())
    assert info.value.status == status


async def test_failure_status_from_the_config_file(tmp_path: Path) -> None:
    rego = tmp_path / "p.rego"
    rego.write_text("package app\n", encoding="utf-8")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "authorization_servers": {"plain": {"introspection_endpoint": "https://as.example/i", "client_id": "gw",
                                            "client_secret_env": "S", "dialect": "rfc7662"}},
        "policy": {"engine": "embedded", "paths": [str(rego)], "failure_status": 500}}), encoding="utf-8")
    config = load_config(path, {"S": "s"})
    stage = PolicyStage(config.policy, FakeEngine(FAILURES["undefined"]))
    authorizer = Authorizer(config, {"plain": FakeAuthority()}, stage)
    with pytest.raises(PolicyFailed) as info:
        await authorizer.check(_check_request())
    assert info.value.status == 500


@pytest.mark.parametrize("path", ["/orders?a=1;b=2", "/orders?q=%zz", "/orders?q=%4"])
async def test_item20_unparseable_query_is_a_400_before_the_policy(tmp_path: Path, path: str) -> None:
    """opa-envoy-plugin fails the check for a query Go cannot parse (request_parse_error): a 400 invalid_request
    before any policy runs, not the OPA-failure status (503, which clients retry)."""
    authorizer, engine, _ = _setup(tmp_path, True, failure_status=503)
    with pytest.raises(MalformedRequest) as info:
        await authorizer.check(_check_request(path=path))
    assert (info.value.status, info.value.oauth_error) == (400, "invalid_request")
    assert engine.calls == []


async def test_item20_dry_run_still_refuses_a_request_whose_input_cannot_be_built(tmp_path: Path) -> None:
    """Dry run allows whatever the policy decides; a request the policy input cannot hold is refused before it."""
    authorizer, engine, _ = _setup(tmp_path, True, dry_run=True)
    with pytest.raises(MalformedRequest):
        await authorizer.check(_check_request(path="/orders?q=%zz"))
    assert engine.calls == []


# --- dry run ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [False, {"allowed": False, "http_status": 401, "body": "no"},
                                    FAILURES["undefined"], FAILURES["allow-not-allowed"]],
                         ids=["false", "object-deny", "undefined", "wrong-shape"])
async def test_dry_run_always_allows_and_applies_nothing(tmp_path: Path, answer: Any) -> None:
    authorizer, engine, _ = _setup(tmp_path, answer, dry_run=True)
    allow = await authorizer.check(_check_request())
    assert len(engine.calls) == 1  # the decision is still made
    assert allow.policy is None
    assert allow.headers == (("authorization", f"Bearer {JWT}"),)
    assert allow.headers_to_remove == ("x-user-id",)


async def test_dry_run_does_not_apply_an_allowing_policy_either(tmp_path: Path) -> None:
    authorizer, _, _ = _setup(tmp_path, {"allowed": True, "headers": {"x-user": "alice"}}, dry_run=True)
    allow = await authorizer.check(_check_request())
    assert allow.policy is None
    assert allow.dynamic_metadata["decision_id"] == DECISION_ID


# --- the input --------------------------------------------------------------------------------------------------------


async def test_input_has_the_token_and_never_the_opaque_token(tmp_path: Path) -> None:
    authorizer, engine, _ = _setup(tmp_path, True)
    await authorizer.check(_check_request())
    (_, policy_input), = engine.calls
    assert policy_input["token"] == {"claims": CLAIMS, "scopes": ["read", "write"], "subject": "alice",
                                     "client_id": "web", "issuer": "https://as.example", "jwt": JWT}
    headers = policy_input["attributes"]["request"]["http"]["headers"]
    assert headers["authorization"] == f"Bearer {JWT}"
    assert headers["x-trace"] == "t-1"
    assert policy_input["parsed_path"] == ["orders", "7"]
    assert policy_input["parsed_query"] == {"view": ["full"]}
    assert OPAQUE not in json.dumps(policy_input)


async def test_disabled_route_with_a_policy_runs_it_without_a_token(tmp_path: Path) -> None:
    authorizer, engine, authority = _setup(tmp_path, True)
    allow = await authorizer.check(_check_request(extensions={"disabled": "true", "policy": "public/allow"},
                                                  authorization=None))
    assert authority.calls == []
    (path, policy_input), = engine.calls
    assert path == "public/allow"
    assert policy_input["token"] is None
    assert "authorization" not in policy_input["attributes"]["request"]["http"]["headers"]
    assert allow.dynamic_metadata["decision_id"] == DECISION_ID
    assert allow.policy == PolicyDecision(allowed=True)


async def test_disabled_route_with_a_client_token_never_shows_it_to_the_policy(tmp_path: Path) -> None:
    authorizer, engine, authority = _setup(tmp_path, True)
    await authorizer.check(_check_request(extensions={"disabled": "true", "policy": "public/allow"}))
    assert authority.calls == []
    (_, policy_input), = engine.calls
    assert policy_input["token"] is None
    assert OPAQUE not in json.dumps(policy_input)


async def test_disabled_route_policy_can_deny(tmp_path: Path) -> None:
    authorizer, _, _ = _setup(tmp_path, {"allowed": False, "http_status": 401})
    with pytest.raises(PolicyDenied) as info:
        await authorizer.check(_check_request(extensions={"disabled": "true", "policy": "public/allow"},
                                              authorization=None))
    assert info.value.status == 401


async def test_route_naming_a_policy_without_an_engine_is_misconfigured(tmp_path: Path) -> None:
    authority = FakeAuthority()
    authorizer = Authorizer(_config(tmp_path, with_policy=False), {"plain": authority})
    with pytest.raises(RouteMisconfigured) as info:
        await authorizer.check(_check_request())
    assert info.value.status == 500
    assert "policy" in info.value.detail
    assert authority.calls == []


# --- decision log -----------------------------------------------------------------------------------------------------


async def test_summary_decision_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    authorizer, _, _ = _setup(tmp_path, {"allowed": False, "http_status": 451}, decision_log="summary",
                              decision_log_mask=DEFAULT_MASK)
    with caplog.at_level(logging.INFO, logger="authz.decisions"), pytest.raises(PolicyDenied):
        await authorizer.check(_check_request())
    (line,) = _decision_lines(caplog)
    assert line["decision_id"] == DECISION_ID
    assert line["path"] == "app/allow"
    assert line["engine"] == "fake"
    assert line["subject"] == "alice"
    assert line["result"] == {"allowed": False, "http_status": 451}
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert line["dry_run"] is False
    assert "input" not in line
    text = stream_text(caplog.records)
    assert OPAQUE not in text and JWT not in text and "cookie-secret" not in text


async def test_summary_log_of_a_failure_names_the_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    authorizer, _, _ = _setup(tmp_path, FAILURES["undefined"], decision_log="summary")
    with caplog.at_level(logging.INFO, logger="authz.decisions"), pytest.raises(PolicyFailed):
        await authorizer.check(_check_request())
    (line,) = _decision_lines(caplog)
    assert line["result"] == {"allowed": None, "http_status": None}
    assert "undefined" in line["error"]
    assert line["path"] == "app/allow"


async def test_dry_run_is_marked_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    authorizer, _, _ = _setup(tmp_path, False, dry_run=True)
    with caplog.at_level(logging.INFO, logger="authz.decisions"):
        await authorizer.check(_check_request())
    (line,) = _decision_lines(caplog)
    assert line["dry_run"] is True
    assert line["result"] == {"allowed": False, "http_status": 403}


async def test_full_decision_log_has_the_masked_input(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mask = (*DEFAULT_MASK, "/input/attributes/request/http/headers/x-not-there")
    authorizer, _, _ = _setup(tmp_path, True, decision_log="full", decision_log_mask=mask)
    with caplog.at_level(logging.INFO, logger="authz.decisions"):
        await authorizer.check(_check_request())
    (line,) = _decision_lines(caplog)
    assert line["erased"] == list(DEFAULT_MASK)  # only what was there
    headers = line["input"]["attributes"]["request"]["http"]["headers"]
    assert "authorization" not in headers and "cookie" not in headers
    assert headers["x-trace"] == "t-1"
    assert "jwt" not in line["input"]["token"]
    assert line["input"]["token"]["subject"] == "alice"
    assert line["input"]["parsed_path"] == ["orders", "7"]
    text = stream_text(caplog.records)
    assert OPAQUE not in text and JWT not in text and "cookie-secret" not in text


async def test_full_log_masking_does_not_change_what_the_policy_saw(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    authorizer, engine, _ = _setup(tmp_path, True, decision_log="full", decision_log_mask=DEFAULT_MASK)
    with caplog.at_level(logging.INFO, logger="authz.decisions"):
        await authorizer.check(_check_request())
    (_, policy_input), = engine.calls
    assert policy_input["attributes"]["request"]["http"]["headers"]["authorization"] == f"Bearer {JWT}"
    assert policy_input["token"]["jwt"] == JWT


async def test_full_log_with_a_disabled_route_has_no_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    authorizer, _, _ = _setup(tmp_path, True, decision_log="full", decision_log_mask=DEFAULT_MASK)
    with caplog.at_level(logging.INFO, logger="authz.decisions"):
        await authorizer.check(_check_request(extensions={"disabled": "true", "policy": "public/allow"}))
    (line,) = _decision_lines(caplog)
    assert line["subject"] is None
    assert line["input"]["token"] is None
    assert line["erased"] == ["/input/attributes/request/http/headers/cookie"]
    assert OPAQUE not in stream_text(caplog.records)


async def test_decision_log_off_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    authorizer, _, _ = _setup(tmp_path, False, decision_log="off")
    with caplog.at_level(logging.DEBUG, logger="authz.decisions"), pytest.raises(PolicyDenied):
        await authorizer.check(_check_request())
    assert _decision_lines(caplog) == []
    assert not re.search(DECISION_ID, stream_text(caplog.records))
