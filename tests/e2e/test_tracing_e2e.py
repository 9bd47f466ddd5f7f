"""Tracing through real Envoy, both ext_authz modes: a client request with a ``traceparent`` -> Envoy -> phantom-authz
(``authz serve``, ``tracing.enabled``) -> its spans at an OTLP collector on loopback (``tests/otlp_collector.py``):
over gRPC in gRPC mode, over HTTP in HTTP mode, so both exporters are tested.

Two Envoys front the same phantom-authz: one that traces itself (its OpenTelemetry tracer sends its spans to the same
collector), where phantom-authz's check span is the child of Envoy's span for the ext_authz call; and one that does
not, where the check span is the child of the client's span.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.harness import Stack, hcm, http_request, wait_until
from tests.log_lines import parse_json_lines
from tests.otlp_collector import Collector, Span

EGRESS = {"grpc": "async envoy.service.auth.v3.Authorization.Check egress", "http": "async phantom_authz_http egress"}


def envoy_traces_to(port: int) -> Any:
    """A ``mutate``: Envoy's OpenTelemetry tracer on the listener, exporting to the collector at ``port`` at once."""
    def mutate(config: dict[str, Any]) -> None:
        hcm(config)["tracing"] = {"provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": "otel_collector"}, "timeout": "1s"},
            "service_name": "envoy"}}}
        h2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
        address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
        config["static_resources"]["clusters"].append({
            "name": "otel_collector", "type": "STATIC", "connect_timeout": "1s", "typed_extension_protocol_options": h2,
            "load_assignment": {"cluster_name": "otel_collector",
                                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}]}})
        config["layered_runtime"] = {"layers": [{"name": "flush-now", "static_layer": {
            "tracing.opentelemetry.flush_interval_ms": 100, "tracing.opentelemetry.min_flush_spans": 1}}]}
    return mutate


@dataclass
class Traced:
    stack: Stack
    collector: Collector
    traced_envoy: int  # the Envoy that traces
    plain_envoy: int  # the one that does not

    def request(self, port: int, trace_id: str, client_span: str) -> dict[str, Any]:
        """A request with a fresh token through the Envoy on ``port``; the headers the upstream received."""
        resp = http_request("GET", port, "/httpbin/get", {"Authorization": f"Bearer {self.stack.token()}",
                                                          "traceparent": f"00-{trace_id}-{client_span}-01"})
        assert resp.status == 200, resp
        headers: dict[str, str] = resp.json()["headers"]
        return {k.lower(): v for k, v in headers.items()}

    def spans(self, trace_id: str, *names: str) -> dict[str, Span]:
        """The spans of ``trace_id`` by name, once the collector has every one of ``names``."""
        def found() -> dict[str, Span]:
            return {span.name: span for span in self.collector.trace(trace_id)}
        wait_until(lambda: set(names) <= set(found()), f"spans {names} of trace {trace_id} at the collector")
        return found()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Traced]:
    collector = Collector().start()
    s = Stack(tmp_path_factory.mktemp(f"tracing-{mode}"), mode)
    exporter = {"grpc": {"exporter": "otlp_grpc", "endpoint": f"http://127.0.0.1:{collector.grpc_port}"},
                "http": {"exporter": "otlp_http", "endpoint": f"http://127.0.0.1:{collector.http_port}/v1/traces"}}
    try:
        with s.together():
            s.start_dev_as()
            s.start_echo()
            s.start_authz(env={"OTEL_BSP_SCHEDULE_DELAY": "100"},  # the SDK's batch: sent every 100 ms
                          tracing={"enabled": True, **exporter[mode]})
            s.start_envoy(envoy_traces_to(collector.grpc_port))
        traced_envoy = s.envoy_port
        s.start_envoy()
        yield Traced(s, collector, traced_envoy, s.envoy_port)
    finally:
        s.stop()
        collector.stop()


def test_check_span_is_the_child_of_envoys_ext_authz_span(traced: Traced, mode: str) -> None:
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    upstream = traced.request(traced.traced_envoy, trace_id, client_span)
    assert upstream["traceparent"].startswith(f"00-{trace_id}-")  # the upstream continues the same trace
    spans = traced.spans(trace_id, "ingress", EGRESS[mode], "authz.check", "authz.introspection")
    ingress, egress, check = spans["ingress"], spans[EGRESS[mode]], spans["authz.check"]
    assert (ingress.service, egress.service, check.service) == ("envoy", "envoy", "phantom-authz")
    assert ingress.parent_id == client_span
    assert egress.parent_id == ingress.span_id
    assert check.parent_id == egress.span_id
    assert spans["authz.introspection"].parent_id == check.span_id
    assert check.attributes["authz.outcome"] == "allow" and check.attributes["authz.cache"] == "miss"
    assert check.attributes["authz.authorization_server"] == "dev"


def test_without_envoy_tracing_the_check_span_is_the_child_of_the_clients(traced: Traced) -> None:
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    upstream = traced.request(traced.plain_envoy, trace_id, client_span)
    assert upstream["traceparent"] == f"00-{trace_id}-{client_span}-01"  # passed on untouched
    check = traced.spans(trace_id, "authz.check", "authz.introspection")["authz.check"]
    assert check.parent_id == client_span
    assert not [span for span in traced.collector.trace(trace_id) if span.service == "envoy"]


def test_a_denials_log_line_carries_the_trace_id_of_its_span(traced: Traced) -> None:
    """No traceparent and no tracing Envoy: the trace starts at phantom-authz, and only its span can name it."""
    path = f"/httpbin/{secrets.token_hex(6)}"
    resp = http_request("GET", traced.plain_envoy, path, {"Authorization": "Bearer not-a-known-token"})
    assert resp.status == 401, resp
    authz = next(p for p in traced.stack.procs if p.name == "authz")
    lines: list[dict[str, Any]] = []

    def logged() -> bool:
        lines[:] = [line for line in parse_json_lines(authz.log_path.read_text(errors="replace"))
                    if line.get("reason") == "invalid_token" and path in str(line.get("message"))]
        return bool(lines)

    wait_until(logged, "phantom-authz's deny line")
    trace_id = lines[0]["trace_id"]
    check = traced.spans(trace_id, "authz.check")["authz.check"]
    assert check.parent_id == "" and check.attributes["url.path"] == path
    assert check.attributes["authz.reason"] == "invalid_token"
