"""A tiny OpenTelemetry collector on loopback for tests: OTLP over gRPC (``TraceService/Export``) and over HTTP
(``POST /v1/traces``, protobuf), written with the ``opentelemetry-proto`` types. It keeps every span it receives, from
Envoy and from phantom-authz alike, as a flat ``Span``."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.local_http import ThreadedServer

__all__ = ["Collector", "Span"]


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind is not None else None


class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._http = ThreadedServer()
        self.http_port = 0

    def start(self) -> Collector:
        self._grpc.start()
        app = web.Application()
        app.router.add_post("/v1/traces", self._http_export)
        self.http_port = self._http.start(app)
        return self

    def stop(self) -> None:
        self._grpc.stop(0)
        self._http.stop()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        self._keep(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    async def _http_export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf", request.content_type
        self._keep(trace_service_pb2.ExportTraceServiceRequest.FromString(await request.read()))
        body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    def _keep(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(Span(str(resource.get("service.name", "")), span.name, span.trace_id.hex(),
                                         span.span_id.hex(), span.parent_span_id.hex(),
                                         {a.key: _value(a.value) for a in span.attributes}))
        with self._lock:
            self.spans.extend(received)

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]
