"""``Tracing``: the OpenTelemetry SDK behind ``authz.tracing`` (imported only when ``tracing.enabled``: the package
runs without the ``otel`` extra).

One ``TracerProvider`` per server, not OpenTelemetry's global one: its sampler (parent-based, ``sample_ratio`` for
traces that start here), its resource (``service.name``) and its exporter (OTLP over gRPC or HTTP, batched in the
SDK's own thread; or none). The span context travels the usual way, in OpenTelemetry's context variable, so a span
started while another is current is its child: the AS call of a single-flight load is a child of the check that
started the load.

What never goes into an attribute: the token, the JWT, claim values (not even ``sub``), header values, the query
string, error details (an AS answer or a policy error may quote what it was given). Errors are named by their stable
``reason`` (``error.type``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from types import SimpleNamespace
from typing import Any

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from authz.config import TracingConfig
from authz.errors import AuthzError
from authz.models import RequestInfo, RouteSettings

__all__ = ["Tracing"]

SCOPE = "phantom-authz"
_B3 = ("b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags", "x-b3-parentspanid")
# each format's headers, the one that must be there for a parent first (either B3 format is read by both)
_HEADERS = {"tracecontext": ("traceparent", "tracestate"), "b3": _B3, "b3multi": _B3}
_MAX_PATH = 200


class Tracing:
    """Spans for checks and what they wait on, and the trace context on the AS calls.

    ``processor`` replaces the exporter the configuration names (tests pass the SDK's in-memory exporter)."""

    def __init__(self, config: TracingConfig, processor: SpanProcessor | None = None) -> None:
        self.config = config
        self.provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}),
                                       sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)))
        processor = processor if processor is not None else _processor(config)
        if processor is not None:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(SCOPE)
        self._propagators = tuple(_propagator(name) for name in config.propagators)
        # the headers of the configured formats, and those without which none holds a parent (not parsed then)
        self._headers = frozenset(name for p in config.propagators for name in _HEADERS[p])
        self._parent_headers = frozenset(_HEADERS[p][0] for p in config.propagators) | (
            {"x-b3-traceid"} if {"b3", "b3multi"} & set(config.propagators) else set())

    # --- where a check's trace comes from -----------------------------------------------------------------------

    def parent_from(self, carrier: Mapping[str, str]) -> Context | None:
        """The remote parent ``carrier`` (lower-case header names) holds: the first propagator that finds a valid
        one wins; None when none does."""
        if not any(name in carrier for name in self._parent_headers):
            return None
        for propagator in self._propagators:
            found = propagator.extract(carrier)
            if trace.get_current_span(found).get_span_context().is_valid:
                return found
        return None

    def attach_parent(self, metadata: Iterable[tuple[str, Any]] | None) -> object | None:
        """Make the parent in gRPC ``metadata`` current (Envoy puts its ext_authz call's span there when Envoy itself
        traces); returns the token for ``authz.tracing.detach``, or None when the metadata holds no parent."""
        carrier = {key: value for key, value in metadata or () if key in self._headers and isinstance(value, str)}
        parent = self.parent_from(carrier)
        return None if parent is None else otel_context.attach(parent)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Put the current span's context into outgoing ``headers``, in every configured format."""
        for propagator in self._propagators:
            propagator.inject(headers)

    def trace_config(self) -> aiohttp.TraceConfig:
        """An aiohttp hook that puts the current span's context on every request of the session (the AS calls:
        introspection, metadata, JWKS; a remote OPA's), so the AS can continue the trace."""
        hook = aiohttp.TraceConfig()

        async def on_request_start(session: aiohttp.ClientSession, context: SimpleNamespace,
                                   params: aiohttp.TraceRequestStartParams) -> None:
            self.inject(params.headers)

        hook.on_request_start.append(on_request_start)
        return hook

    # --- spans --------------------------------------------------------------------------------------------------

    def check_span(self, request: RequestInfo | None) -> contextlib.AbstractContextManager[Span]:
        """The check's span, current while the check is decided and answered (its log lines carry its trace id): a
        child of the parent already current (the gRPC transport's, from Envoy's metadata), else of the one in the
        checked request's headers, else a root. ``request``: None when the check call could not be translated."""
        current = trace.get_current_span().get_span_context().is_valid
        parent = None if current or request is None else self.parent_from(request.headers)
        attributes = {} if request is None else {"http.request.method": request.method,
                                                 "url.path": request.path.partition("?")[0][:_MAX_PATH]}
        return self.tracer.start_as_current_span("authz.check", context=parent, kind=SpanKind.SERVER,
                                                 attributes=attributes, record_exception=False,
                                                 set_status_on_exception=False)

    @staticmethod
    def checked(decision_id: str | None) -> None:
        """The current check allowed the request."""
        span = trace.get_current_span()
        _outcome(span, 200, "ok")
        if decision_id:
            span.set_attribute("authz.decision_id", decision_id)

    @staticmethod
    def refused(error: BaseException) -> None:
        """The current check ends in ``error``: its status and reason (a 500 for anything but an ``AuthzError``)."""
        if isinstance(error, AuthzError):
            _outcome(trace.get_current_span(), error.status, error.reason)
        else:
            _outcome(trace.get_current_span(), 500, "internal_error")

    @staticmethod
    def note_route(route: RouteSettings) -> None:
        """The current check's route: its rule and the AS it asks (what an operator filters traces by)."""
        span = trace.get_current_span()
        if route.rule is not None:
            span.set_attribute("authz.route.rule", route.rule)
        if route.disabled:
            span.set_attribute("authz.route.disabled", True)
        else:
            span.set_attribute("authz.authorization_server", route.authorization_server)

    @staticmethod
    def note_cache(result: str) -> None:
        """Where the current check's AS answer came from (``IntrospectionCache.on_lookup``): hit, negative_hit, miss,
        joined (another check's AS call), l2_hit, stale (AS unavailable, a stale answer served)."""
        trace.get_current_span().set_attribute("authz.cache", result)

    @contextlib.contextmanager
    def client_span(self, name: str, attributes: Mapping[str, str]) -> Iterator[Span]:
        """A call out (introspection, JWKS fetch), child of the current span; a failure is named by its reason."""
        with self.tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes,
                                               record_exception=False, set_status_on_exception=False) as span:
            try:
                yield span
            except AuthzError as exc:
                span.set_attribute("error.type", exc.reason)
                span.set_status(Status(StatusCode.ERROR, exc.reason))
                raise
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR))
                raise

    def policy_evaluated(self, *, path: str, engine: str, decision_id: str, started: float, allowed: bool | None,
                         status: int | None, failed: bool, dry_run: bool) -> None:
        """The policy stage's span, recorded once the decision is made (``started``: its ``perf_counter`` start), as
        a child of the current check; the decision id goes on the check too."""
        now = time.time_ns()
        start = now - int((time.perf_counter() - started) * 1e9)
        attributes: dict[str, str | bool | int] = {"authz.policy.path": path, "authz.policy.engine": engine,
                                                   "authz.policy.dry_run": dry_run}
        if decision_id and decision_id != "-":
            attributes["authz.decision_id"] = decision_id
            trace.get_current_span().set_attribute("authz.decision_id", decision_id)
        if allowed is not None:
            attributes["authz.policy.allowed"] = allowed
        if status is not None:
            attributes["http.response.status_code"] = status
        span = self.tracer.start_span("authz.policy", kind=SpanKind.INTERNAL, start_time=start,
                                      attributes=attributes)
        if failed:
            span.set_attribute("error.type", "policy_failed")
            span.set_status(Status(StatusCode.ERROR, "policy_failed"))
        span.end(end_time=now)

    # --- logs and lifecycle --------------------------------------------------------------------------------------

    @staticmethod
    def current_trace_id() -> str | None:
        """The trace id of the span current here, 32 lower-case hex digits (for log lines), or None."""
        found = trace.get_current_span().get_span_context()
        return trace.format_trace_id(found.trace_id) if found.is_valid else None

    def shutdown(self) -> None:
        """Export what is buffered (bounded by ``export_timeout_seconds``) and stop the exporter."""
        self.provider.shutdown()


def _outcome(span: Span, status: int, reason: str) -> None:
    span.set_attributes({"authz.outcome": "allow" if status == 200 else "deny", "http.response.status_code": status,
                         "authz.reason": reason})
    if status >= 500:  # ours or the AS's failure; a 4xx denial is the check doing its job
        span.set_status(Status(StatusCode.ERROR, reason))


def _propagator(name: str) -> TextMapPropagator:
    if name == "tracecontext":
        return TraceContextTextMapPropagator()
    from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat

    return B3SingleFormat() if name == "b3" else B3MultiFormat()


def _processor(config: TracingConfig) -> SpanProcessor | None:
    exporter: SpanExporter
    if config.exporter == "none":
        return None
    if config.exporter == "otlp_grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter(endpoint=config.target, insecure=config.target.startswith("http://"),
                                timeout=config.export_timeout_seconds)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(endpoint=config.target, timeout=config.export_timeout_seconds)
    return BatchSpanProcessor(exporter, export_timeout_millis=config.export_timeout_seconds * 1000)
