"""Tracing in the running service (``tracing.enabled``): real gRPC and HTTP check calls to phantom-authz in process,
an AS on loopback that records what it receives, and the SDK's in-memory exporter added to the server's own
TracerProvider (the configured exporter is ``none``).

What a user of a tracing backend sees: the check span continues the trace of the ``traceparent``/B3 headers (or of
Envoy's span in the gRPC metadata), the introspection and JWKS fetch are its children and the AS receives their
context, the policy span carries the decision id, and no attribute holds the token, the JWT or a claim value.
"""

from __future__ import annotations

import http.client
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from authz.app import Server
from authz.pipeline import Authorizer
from tests.fake_as import FakeAS, good_jwt
from tests.harness import Stack
from tests.inprocess import InProcessAuthz
from tests.service.test_grpc_service import check_request

CLIENT_SPAN = "b7ad6b7169203331"


def traceparent(trace_id: str, span_id: str = CLIENT_SPAN) -> str:
    return f"00-{trace_id}-{span_id}-01"


def new_trace() -> str:
    return secrets.token_hex(16)


@dataclass
class Traced:
    stack: Stack
    fake: FakeAS
    spans: InMemorySpanExporter
    first_trace: str  # the fixture's first check: the one that fetched the AS's keys

    def trace(self, trace_id: str) -> dict[str, ReadableSpan]:
        """The finished spans of ``trace_id``, by name (one of each per check here)."""
        found = {}
        for span in self.spans.get_finished_spans():
            if format(span.context.trace_id, "032x") == trace_id:
                assert span.name not in found, f"two {span.name} spans in one check's trace"
                found[span.name] = span
        return found

    def grpc_check(self, request: CheckRequest, metadata: tuple[tuple[str, str], ...] = ()) -> CheckResponse:
        with grpc.insecure_channel(f"127.0.0.1:{self.stack.authz_port}") as channel:
            return external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10, metadata=metadata)

    def http_check(self, path: str, headers: dict[str, str], prefix: str = "/phantom-authz") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.http_port, timeout=10)
        try:
            conn.request("GET", prefix + path, headers={"host": "api.example", **headers})
            answer = conn.getresponse()
            answer.read()
            return answer.status
        finally:
            conn.close()


def server_of(stack: Stack) -> Server:
    assert isinstance(stack.authz, InProcessAuthz) and stack.authz.server is not None
    return stack.authz.server


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    fake = FakeAS().start()
    s = Stack(tmp_path_factory.mktemp("tracing"), mode="http")  # http: both transports listen
    server = {"dialect": "phantom", "introspection_endpoint": f"http://127.0.0.1:{fake.port}/introspect/ok",
              "client_id": "gateway-client", "client_secret_env": "TEST_GATEWAY_SECRET", "issuer": "http://fake-as",
              "jwks_uri": f"http://127.0.0.1:{fake.port}/jwks", "audiences": ["api"]}
    rules = [{"name": "records", "match": {"paths": ["/records/**"]}, "policy": "records/decision"}]
    try:
        s.start_authz(authorization_servers={"fake": server}, in_process=True,
                      routes={"required_scopes": "read", "default": "defaults", "rules": rules},
                      tracing={"enabled": True, "exporter": "none"})
        tracing = server_of(s).tracing
        assert tracing is not None
        spans = InMemorySpanExporter()
        tracing.provider.add_span_processor(SimpleSpanProcessor(spans))
        ready = Traced(s, fake, spans, new_trace())
        request = check_request("Bearer first-token")
        request.attributes.request.http.headers["traceparent"] = traceparent(ready.first_trace)
        assert ready.grpc_check(request).status.code == 0
        yield ready
    finally:
        s.stop()
        fake.stop()


def traced_request(trace_id: str, token: str | None = None, path: str = "/get") -> CheckRequest:
    request = check_request(f"Bearer {token or secrets.token_hex(8)}", path=path)
    request.attributes.request.http.headers["traceparent"] = traceparent(trace_id)
    return request


def test_check_continues_the_trace_of_the_checked_requests_traceparent(traced: Traced) -> None:
    trace_id = new_trace()
    assert traced.grpc_check(traced_request(trace_id)).status.code == 0
    spans = traced.trace(trace_id)
    check = spans["authz.check"]
    assert check.parent is not None and format(check.parent.span_id, "016x") == CLIENT_SPAN
    assert check.kind.name == "SERVER"
    assert dict(check.attributes or {}) == {
        "http.request.method": "GET", "url.path": "/get", "authz.authorization_server": "fake", "authz.cache": "miss",
        "authz.outcome": "allow", "http.response.status_code": 200, "authz.reason": "ok"}
    introspection = spans["authz.introspection"]
    assert introspection.parent is not None and introspection.parent.span_id == check.context.span_id
    assert dict(introspection.attributes or {}) == {"authz.authorization_server": "fake", "authz.dialect": "phantom",
                                                    "authz.introspection.active": True}


def test_the_as_receives_the_introspection_spans_context(traced: Traced) -> None:
    trace_id = new_trace()
    token = secrets.token_hex(8)
    assert traced.grpc_check(traced_request(trace_id, token)).status.code == 0
    introspection = traced.trace(trace_id)["authz.introspection"]
    sent = [headers for path, headers in traced.fake.received if trace_id in headers.get("traceparent", "")]
    assert len(sent) == 1, "one introspection call carried this trace"
    assert sent[0]["traceparent"] == traceparent(trace_id, format(introspection.context.span_id, "016x"))
    assert sent[0]["b3"].startswith(f"{trace_id}-{introspection.context.span_id:016x}-")  # the b3 propagator too


def test_first_check_fetches_the_keys_in_a_child_span_the_as_sees(traced: Traced) -> None:
    spans = traced.trace(traced.first_trace)
    fetch = spans["authz.jwks_fetch"]
    assert fetch.parent is not None and fetch.parent.span_id == spans["authz.introspection"].context.span_id
    assert dict(fetch.attributes or {}) == {"authz.authorization_server": "fake", "authz.jwks.keys": 1}
    jwks = [headers for path, headers in traced.fake.received if path == "/jwks"]
    assert jwks[0]["traceparent"] == traceparent(traced.first_trace, format(fetch.context.span_id, "016x"))


def test_a_cached_answer_has_no_introspection_span(traced: Traced) -> None:
    token = secrets.token_hex(8)
    assert traced.grpc_check(traced_request(new_trace(), token)).status.code == 0
    trace_id = new_trace()
    assert traced.grpc_check(traced_request(trace_id, token)).status.code == 0
    spans = traced.trace(trace_id)
    assert set(spans) == {"authz.check"}
    assert spans["authz.check"].attributes is not None and spans["authz.check"].attributes["authz.cache"] == "hit"


def test_envoys_span_in_the_grpc_metadata_is_the_parent_over_the_clients(traced: Traced) -> None:
    trace_id, envoy_span = new_trace(), secrets.token_hex(8)
    request = traced_request(new_trace())  # the client's traceparent, in the checked request's headers
    assert traced.grpc_check(request, metadata=(("traceparent", traceparent(trace_id, envoy_span)),
                                                ("tracestate", ""))).status.code == 0
    check = traced.trace(trace_id)["authz.check"]
    assert check.parent is not None and format(check.parent.span_id, "016x") == envoy_span


@pytest.mark.parametrize("headers", [
    lambda t, s: {"b3": f"{t}-{s}-1"},
    lambda t, s: {"x-b3-traceid": t, "x-b3-spanid": s, "x-b3-sampled": "1"},
], ids=["b3-single", "b3-multi"])
def test_b3_headers_are_continued_when_no_traceparent_is_sent(traced: Traced, headers: Any) -> None:
    trace_id, span_id = new_trace(), secrets.token_hex(8)
    request = check_request(f"Bearer {secrets.token_hex(8)}")
    request.attributes.request.http.headers.update(headers(trace_id, span_id))
    assert traced.grpc_check(request).status.code == 0
    check = traced.trace(trace_id)["authz.check"]
    assert check.parent is not None and format(check.parent.span_id, "016x") == span_id


def test_http_transport_continues_the_trace_too(traced: Traced) -> None:
    trace_id = new_trace()
    assert traced.http_check("/get", {"authorization": f"Bearer {secrets.token_hex(8)}",
                                      "traceparent": traceparent(trace_id)}) == 200
    check = traced.trace(trace_id)["authz.check"]
    assert check.parent is not None and format(check.parent.span_id, "016x") == CLIENT_SPAN
    assert check.attributes is not None and check.attributes["authz.outcome"] == "allow"


def test_denials_carry_status_and_reason(traced: Traced) -> None:
    trace_id = new_trace()
    request = check_request()  # no token
    request.attributes.request.http.headers["traceparent"] = traceparent(trace_id)
    assert traced.grpc_check(request).denied_response.status.code == 401
    check = traced.trace(trace_id)["authz.check"]
    assert check.attributes is not None
    assert (check.attributes["authz.outcome"], check.attributes["http.response.status_code"],
            check.attributes["authz.reason"]) == ("deny", 401, "missing_credential")
    assert check.status.status_code.name == "UNSET", "a denial is not an error of ours"


def test_a_check_call_that_cannot_be_translated_has_a_root_span_with_its_failure(traced: Traced) -> None:
    before = {span.context.span_id for span in traced.spans.get_finished_spans()}
    assert traced.http_check("/get", {"traceparent": traceparent(new_trace())}, prefix="/elsewhere") == 500
    (span,) = [s for s in traced.spans.get_finished_spans() if s.context.span_id not in before]
    assert span.name == "authz.check" and span.parent is None  # the headers were never read
    assert dict(span.attributes or {}) == {"authz.outcome": "deny", "http.response.status_code": 500,
                                           "authz.reason": "route_misconfigured"}
    assert span.status.status_code.name == "ERROR"


def test_policy_span_and_route_rule_on_an_allow_and_a_denial(traced: Traced) -> None:
    for owner, status, allowed in (("alice", 200, True), ("bob", 403, False)):
        trace_id = new_trace()
        response = traced.grpc_check(traced_request(trace_id, path=f"/records/{owner}/profile"))
        assert (response.denied_response.status.code or 200) == status
        spans = traced.trace(trace_id)
        check, policy = spans["authz.check"], spans["authz.policy"]
        assert check.attributes is not None and policy.attributes is not None
        assert check.attributes["authz.route.rule"] == "records"
        assert policy.parent is not None and policy.parent.span_id == check.context.span_id
        assert policy.attributes["authz.policy.path"] == "records/decision"
        assert policy.attributes["authz.policy.allowed"] is allowed
        decision_id = policy.attributes["authz.decision_id"]
        assert decision_id and check.attributes["authz.decision_id"] == decision_id
        assert policy.start_time is not None and check.start_time is not None and policy.end_time is not None
        assert check.start_time <= policy.start_time <= policy.end_time <= (check.end_time or 0)


def test_no_attribute_holds_the_token_the_jwt_or_a_claim_value(traced: Traced) -> None:
    token = "opaque-" + secrets.token_hex(16)
    traces = [new_trace() for _ in range(4)]
    for index, path in enumerate(("/get", "/records/bob/profile")):
        traced.grpc_check(traced_request(traces[2 * index], token, path=path))
        traced.http_check(path, {"authorization": f"Bearer {token}", "traceparent": traceparent(traces[2 * index + 1])})
    jwt = good_jwt()
    secrets_seen = [token, *jwt.split("."), "alice", "http://fake-as"]  # the token, each JWT part, sub and iss
    spans = [span for trace_id in traces for span in traced.trace(trace_id).values()]
    assert len(spans) == 7, "4 checks, 1 introspection, 2 policy decisions"
    for span in spans:
        texts = [span.name, str(span.status.description or "")]
        texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        texts += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
        for text in texts:
            for secret in secrets_seen:
                assert secret not in text, f"{span.name}: {text}"


def test_tracing_off_is_the_untraced_pipeline(tmp_path_factory: pytest.TempPathFactory) -> None:
    s = Stack(tmp_path_factory.mktemp("untraced"))
    try:
        s.start_dev_as()
        s.start_authz(in_process=True)
        server = server_of(s)
        assert server.tracing is None and type(server.authorizer) is Authorizer
        assert server.authorizer.tracing is None
        assert server.cache is not None and server.cache.on_lookup is None
    finally:
        s.stop()
