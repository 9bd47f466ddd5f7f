"""Micro-benchmark: µs per ``build_input`` for a typical Envoy CheckRequest, against ``MessageToDict`` of the same
request (what a straightforward protojson translation would pay for ``attributes`` alone), and what the quickstart
policy's projection costs per request (the reuse key alone: a reused decision; key and pruned input: a fresh one).
Prints; asserts nothing."""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from pathlib import Path

from envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from google.protobuf.json_format import MessageToDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authz.models import Identity
from authz.policy import protojson as policy_input
from authz.policy.input_needs import input_needs
from authz.policy.projection import Projection, build_input
from authz.policy.view import RequestView


def typical_request() -> CheckRequest:
    req = CheckRequest()
    a = req.attributes
    a.source.address.socket_address.address = "10.0.0.7"
    a.source.address.socket_address.port_value = 51234
    a.destination.address.socket_address.address = "10.0.0.1"
    a.destination.address.socket_address.port_value = 8000
    a.request.time.FromSeconds(1_700_000_000)
    h = a.request.http
    h.id = "13359530607844510314"
    h.method = "GET"
    h.path = "/api/v1/orders/42?expand=items&page=2"
    h.host = "api.example"
    h.scheme = "https"
    h.protocol = "HTTP/1.1"
    h.headers.update({
        ":authority": "api.example", ":method": "GET", ":path": h.path, ":scheme": "https", "accept": "*/*",
        "accept-encoding": "gzip, deflate", "authorization": "Bearer 2YotnFZFEjr1zCsicMWpAA", "user-agent": "curl/8.5",
        "x-forwarded-proto": "https", "x-request-id": "5b1f0c7e-1c1d-4a59-9a0e-2f5f4c1d7e3a",
        "x-envoy-expected-rq-timeout-ms": "15000",
    })
    a.context_extensions.update({"required_scopes": "read", "as": "dev"})
    a.metadata_context.SetInParent()
    a.route_metadata_context.SetInParent()
    return req


def main() -> None:
    request = typical_request()
    identity = Identity(jwt="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
                        claims={"iss": "https://as.example", "sub": "alice", "scope": "read", "exp": 2_000_000_000},
                        scopes=frozenset({"read"}), subject="alice", client_id="demo-client", expires_at=2.0e9)
    runs = 20_000

    def measure(label: str, fn: Callable[[], object]) -> None:
        best = min(timeit.repeat(fn, number=runs, repeat=5)) / runs
        print(f"{label:44s} {best * 1e6:7.2f} µs")

    measure("build_input, hand-built attributes", lambda: build_input(request, identity))
    records = Projection(input_needs([(Path(__file__).resolve().parents[1] / "deploy/policies/records.rego")
                                      .read_text()]))

    def key_only() -> object:
        return records.key("records/decision", records.values(RequestView.of_check(request), identity))

    def key_and_input() -> object:
        values = records.values(RequestView.of_check(request), identity)
        return records.key("records/decision", values), records.document(values)

    measure("records.rego: view + reuse key", key_only)
    measure("records.rego: view + reuse key + pruned input", key_and_input)
    measure("attributes alone, hand-built", lambda: policy_input._attributes(request.attributes))
    measure("MessageToDict(request)", lambda: MessageToDict(request))
    policy_input._FAST_PATH = False  # what the document costs on the MessageToDict fallback
    measure("build_input, MessageToDict attributes", lambda: build_input(request, identity))


if __name__ == "__main__":
    main()
