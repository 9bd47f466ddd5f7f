"""The ``tracing:`` section: OpenTelemetry spans for each check (``authz.tracing``), off unless ``enabled``.

Tracing needs the optional extra (``pip install 'phantom-authz[otel]'``: the OpenTelemetry SDK, the OTLP exporters and
the B3 propagator). Without it the service runs as before; ``enabled: true`` is then refused at start with one line
naming the missing part.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Annotated, Literal, Self

from pydantic import StrictBool, model_validator

from authz.config.types import ConfigError, HttpUrl, Number, Section, Text

__all__ = ["DEFAULT_ENDPOINTS", "TracingConfig"]

Propagator = Literal["tracecontext", "b3", "b3multi"]
# where each exporter sends when no endpoint is given: a collector (or agent) on the same host
DEFAULT_ENDPOINTS = {"otlp_grpc": "http://127.0.0.1:4317", "otlp_http": "http://127.0.0.1:4318/v1/traces"}
# the module each setting needs, and the distribution that ships it (all in the ``otel`` extra)
_NEEDS = {
    "enabled": ("opentelemetry.sdk.trace", "opentelemetry-sdk"),
    "otlp_grpc": ("opentelemetry.exporter.otlp.proto.grpc", "opentelemetry-exporter-otlp-proto-grpc"),
    "otlp_http": ("opentelemetry.exporter.otlp.proto.http", "opentelemetry-exporter-otlp-proto-http"),
    "b3": ("opentelemetry.propagators.b3", "opentelemetry-propagator-b3"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


class TracingConfig(Section):
    enabled: StrictBool = False
    # otlp_grpc / otlp_http: to an OpenTelemetry collector; none: spans are made (trace ids for the logs, context for
    # the AS) but not sent anywhere
    exporter: Literal["otlp_grpc", "otlp_http", "none"] = "otlp_grpc"
    # otlp_grpc: http://HOST:PORT (plaintext) or https://HOST:PORT; otlp_http: the full URL, .../v1/traces.
    # None: the exporter's local default (DEFAULT_ENDPOINTS). Collector headers and CA: OTEL_EXPORTER_OTLP_* variables
    endpoint: Annotated[str, HttpUrl] | None = None
    service_name: Annotated[str, Text(re.compile(r"^\S+\Z"), "must be one word (no spaces)")] = "phantom-authz"
    # the share of traces started here that are recorded; a request carrying a parent follows the parent's choice
    sample_ratio: Annotated[float, Number(ge=0)] = 1.0
    # the headers a parent is read from (the first in this order that holds one wins) and the AS calls carry:
    # tracecontext = W3C traceparent/tracestate; b3 and b3multi read either B3 form and send the single b3 header (b3)
    # or x-b3-traceid, x-b3-spanid and x-b3-sampled (b3multi, what Envoy's Zipkin tracer sends)
    propagators: tuple[Propagator, ...] = ("tracecontext", "b3")
    export_timeout_seconds: Annotated[float, Number(gt=0)] = 5.0  # one export call to the collector, at most

    @property
    def target(self) -> str:
        """Where spans go (``endpoint`` or the exporter's default)."""
        return self.endpoint or DEFAULT_ENDPOINTS.get(self.exporter, "")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.sample_ratio > 1:
            raise ConfigError("sample_ratio", f"must be between 0 and 1, got {self.sample_ratio}")
        if not self.propagators:
            raise ConfigError("propagators", "must name at least one of tracecontext, b3, b3multi")
        if len(set(self.propagators)) != len(self.propagators):
            raise ConfigError("propagators", "names a propagator twice")
        if self.exporter == "none" and self.endpoint is not None:
            raise ConfigError("endpoint", "is set but exporter is none (spans are sent nowhere)")
        if self.enabled:
            self._installed()
        return self

    def _installed(self) -> None:
        """Tracing on needs the ``otel`` extra: refused here, at start, when a part it uses is missing."""
        needed = [("enabled", "enabled")]
        if self.exporter != "none":
            needed.append(("exporter", self.exporter))
        if {"b3", "b3multi"} & set(self.propagators):
            needed.append(("propagators", "b3"))
        for key, part in needed:
            module, distribution = _NEEDS[part]
            if not _installed(module):
                raise ConfigError(key, f"tracing needs {distribution}, which is not installed (pip install "
                                       f"'phantom-authz[otel]'), or set tracing.enabled: false")
        if self.exporter != "none" and not _otlp_protos_current():
            raise ConfigError("exporter", "opentelemetry-proto's files were overwritten by xds-protos' older copy "
                                          "(install order): pip install --force-reinstall --no-deps "
                                          "opentelemetry-proto")


def _otlp_protos_current() -> bool:
    """xds-protos (Envoy's API) ships an older copy of OpenTelemetry's protos over opentelemetry-proto's own files;
    when it was installed last, the OTLP exporters cannot import (``InstrumentationScope`` is missing)."""
    from opentelemetry.proto.common.v1 import common_pb2

    return hasattr(common_pb2, "InstrumentationScope")
