"""authz.tracing: the ``tracing:`` section, the package without the otel extra, and ``Tracing`` itself (parents,
sampling, propagation formats, the trace id for log lines) with the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from authz.config import ConfigError, TracingConfig, load_config
from authz.models import RequestInfo
from authz.tracing import build_tracing, current_trace_id
from authz.tracing.otel import Tracing

ROOT = Path(__file__).resolve().parents[2]
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
SERVER = {"introspection_endpoint": "https://as.example/introspect", "client_id": "gw", "client_secret_env": "S",
          "issuer": "https://as.example"}


def _load(tmp_path: Path, tracing: Any) -> Any:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"as": SERVER}, "tracing": tracing}))
    return load_config(path, {"S": "secret"})


def _error(tmp_path: Path, tracing: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, tracing)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_tracing_is_off_by_default_and_builds_nothing(tmp_path: Path) -> None:
    config = _load(tmp_path, None).tracing
    assert config.enabled is False and config.propagators == ("tracecontext", "b3")
    assert build_tracing(config) is None


def test_endpoint_defaults_to_the_local_collector_of_each_exporter(tmp_path: Path) -> None:
    assert _load(tmp_path, {"enabled": True}).tracing.target == "http://127.0.0.1:4317"
    assert _load(tmp_path, {"enabled": True, "exporter": "otlp_http"}).tracing.target == \
        "http://127.0.0.1:4318/v1/traces"


@pytest.mark.parametrize(("tracing", "message"), [
    ({"sample_ratio": 1.5}, "tracing.sample_ratio: must be between 0 and 1, got 1.5"),
    ({"sample_ratio": -0.1}, "tracing.sample_ratio: must be >= 0, got -0.1"),
    ({"exporter": "none", "endpoint": "http://collector:4317"}, "tracing.endpoint: is set but exporter is none"),
    ({"endpoint": "collector:4317"}, "tracing.endpoint: must be an http(s) URL"),
    ({"propagators": ["tracecontext", "tracecontext"]}, "tracing.propagators: names a propagator twice"),
    ({"propagators": []}, "tracing.propagators: must name at least one"),
    ({"propagators": ["jaeger"]}, "tracing.propagators.0"),
    ({"exporter": "zipkin"}, "tracing.exporter"),
    ({"service_name": "two words"}, "tracing.service_name: must be one word"),
    ({"enabled": "yes"}, "tracing.enabled"),
    ({"sampler": "always"}, "tracing.sampler: unknown key"),
])
def test_bad_settings_are_one_line_naming_the_key(tmp_path: Path, tracing: dict[str, Any], message: str) -> None:
    assert message in _error(tmp_path, tracing)


_WITHOUT_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import authz.app, authz.__main__, authz.pipeline, authz.transport.grpc_service, authz.transport.http_server
assert not [m for m in sys.modules if m.startswith("opentelemetry.")], "imported without tracing on"
sys.argv = ["authz", "validate-config", "--config", sys.argv[1]]
sys.exit(authz.__main__.main())
"""


def test_without_the_otel_extra_the_service_runs_and_tracing_on_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "authz.yaml"
    env = {"PATH": "/usr/bin:/bin", "S": "secret"}
    for enabled, code in ((False, 0), (True, 2)):
        path.write_text(yaml.safe_dump({"authorization_servers": {"as": SERVER}, "tracing": {"enabled": enabled}}))
        done = subprocess.run([sys.executable, "-c", _WITHOUT_OTEL, str(path)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "tracing.enabled: tracing needs opentelemetry-sdk, which is not installed (pip install " \
           "'phantom-authz[otel]')" in lines[0]


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _tracing(exported: InMemorySpanExporter, **settings: Any) -> Tracing:
    tracing = build_tracing(TracingConfig(enabled=True, exporter="none", **settings), SimpleSpanProcessor(exported))
    assert tracing is not None
    return tracing


def _request(**headers: str) -> RequestInfo:
    return RequestInfo("GET", "/get?access_token=x", "api.example", headers, (), {})


def _checked(tracing: Tracing, request: RequestInfo) -> str | None:
    with tracing.check_span(request):
        tracing.checked(None)
        return current_trace_id()


@pytest.fixture(autouse=True)
def _no_trace_left() -> Iterator[None]:
    yield
    assert current_trace_id() is None, "a span was left current"


def test_sampling_follows_the_parent_and_the_ratio_for_new_traces(exported: InMemorySpanExporter) -> None:
    tracing = _tracing(exported, sample_ratio=0)
    assert _checked(tracing, _request()) is not None  # a trace id for the logs even when not recorded
    assert _checked(tracing, _request(traceparent=f"00-{TRACE}-{PARENT}-00")) == TRACE
    assert exported.get_finished_spans() == ()
    assert _checked(tracing, _request(traceparent=f"00-{TRACE}-{PARENT}-01")) == TRACE
    (span,) = exported.get_finished_spans()
    assert span.parent is not None and span.parent.is_remote and format(span.parent.span_id, "016x") == PARENT
    assert span.attributes is not None and span.attributes["url.path"] == "/get"  # never the query
    assert span.resource.attributes["service.name"] == "phantom-authz"


@pytest.mark.parametrize(("order", "winner"), [(("tracecontext", "b3"), TRACE), (("b3", "tracecontext"), "1" * 32)])
def test_the_first_configured_propagator_with_a_parent_wins(exported: InMemorySpanExporter, order: tuple[str, ...],
                                                            winner: str) -> None:
    tracing = _tracing(exported, propagators=order)
    request = _request(traceparent=f"00-{TRACE}-{PARENT}-01", b3=f"{'1' * 32}-{'2' * 16}-1")
    assert _checked(tracing, request) == winner


def test_invalid_parents_start_a_new_trace(exported: InMemorySpanExporter) -> None:
    tracing = _tracing(exported)
    for bad in ("00-" + "0" * 32 + f"-{PARENT}-01", f"ff-{TRACE}-{PARENT}-01", "garbage"):
        found = _checked(tracing, _request(traceparent=bad))
        assert found is not None and found != TRACE
    assert all(span.parent is None for span in exported.get_finished_spans())


@pytest.mark.parametrize(("propagators", "sent"), [
    (("tracecontext",), {"traceparent"}),
    (("b3",), {"b3"}),
    (("b3multi",), {"x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}),
])
def test_outgoing_calls_carry_each_configured_format(exported: InMemorySpanExporter, propagators: tuple[str, ...],
                                                     sent: set[str]) -> None:
    tracing = _tracing(exported, propagators=propagators)
    headers: dict[str, str] = {}
    with tracing.check_span(_request(traceparent=f"00-{TRACE}-{PARENT}-01", b3=f"{TRACE}-{PARENT}-1")):
        tracing.inject(headers)
    assert set(headers) == sent
    assert TRACE in "".join(headers.values())


def test_a_failure_of_ours_is_an_error_status_and_a_denial_is_not(exported: InMemorySpanExporter) -> None:
    from authz.errors import InvalidToken, UpstreamUnavailable

    tracing = _tracing(exported)
    for error in (InvalidToken("inactive"), UpstreamUnavailable("down", retry_after=5), RuntimeError("bug")):
        with tracing.check_span(_request()):
            tracing.refused(error)
    statuses = [(s.attributes["authz.reason"], s.attributes["http.response.status_code"], s.status.status_code.name)
                for s in exported.get_finished_spans() if s.attributes is not None]
    assert statuses == [("invalid_token", 401, "UNSET"), ("authorization_server_unavailable", 503, "ERROR"),
                        ("internal_error", 500, "ERROR")]


def test_an_otlp_exporter_with_xds_protos_older_copy_of_its_protos_is_refused_naming_the_fix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """xds-protos installs an older copy of OpenTelemetry's protos over opentelemetry-proto's files when it is
    installed last; the OTLP exporters then fail to import at the first span. Refused at load instead."""
    from authz.config import tracing

    assert tracing._otlp_protos_current()  # this environment: opentelemetry-proto's own files (the Makefile's step)
    monkeypatch.setattr(tracing, "_otlp_protos_current", lambda: False)
    with pytest.raises(ValueError, match="exporter: opentelemetry-proto's files were overwritten"):
        TracingConfig(enabled=True, exporter="otlp_http", endpoint="http://127.0.0.1:4318/v1/traces")
    TracingConfig(enabled=True, exporter="none")  # no exporter, no protos needed
