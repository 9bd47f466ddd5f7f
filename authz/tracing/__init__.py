"""Tracing: OpenTelemetry spans for each check, continued from the trace Envoy or the client started.

- ``build_tracing(config)``: the ``Tracing`` of a ``tracing:`` section (``authz.tracing.otel``, the OpenTelemetry SDK,
  imported only then), or None when tracing is off. Off, nothing of it runs: no span objects, no context lookups; the
  check path is the untraced one (``authz.pipeline.Authorizer``), and the stages that could trace hold None.
- ``authz.tracing.check.TracedAuthorizer``: the pipeline with the check span around each check.
- ``current_trace_id()``: the trace id of the span current where it is called (for log lines), or None.

The spans, each a child of the one before: ``authz.check`` (the check; child of Envoy's ext_authz call span from the
gRPC metadata, else of the ``traceparent``/B3 headers of the checked request), ``authz.introspection`` (on a cache
miss only), ``authz.jwks_fetch`` (when keys are fetched), ``authz.policy`` (when a route names a policy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from authz.config import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from authz.tracing.otel import Tracing

__all__ = ["build_tracing", "current_trace_id", "detach"]

_trace_id: Callable[[], str | None] | None = None  # set once a Tracing exists in this process


def build_tracing(config: TracingConfig, processor: SpanProcessor | None = None) -> Tracing | None:
    """The ``Tracing`` for ``config`` (``processor``: instead of the configured exporter), or None when off."""
    if not config.enabled:
        return None
    from authz.tracing.otel import Tracing

    global _trace_id
    tracing = Tracing(config, processor)
    _trace_id = tracing.current_trace_id
    return tracing


def current_trace_id() -> str | None:
    """The trace id (32 lower-case hex digits) of the span current here; None when tracing is off or no span is."""
    return None if _trace_id is None else _trace_id()


def detach(token: object) -> None:
    """Undo ``Tracing.attach_parent`` (a token exists only while tracing is on)."""
    from opentelemetry import context

    context.detach(token)  # type: ignore[arg-type]
