"""Issue 12 item 9: the largest check request Envoy may send is answered with a decision, never a transport error.

A CheckRequest over the service's gRPC receive limit fails with RESOURCE_EXHAUSTED; Envoy then answers
``status_on_error`` itself, and with ``failure_mode_allow: true`` lets the request through. So the limit
(``server.max_receive_bytes``) must exceed what the shipped Envoy configs can produce: their body limit
(``with_request_body.max_request_bytes``) plus their header limit (``max_request_headers_kb``, 60 KiB by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import DEFAULT_MAX_RECEIVE_BYTES, HttpTransportConfig
from tests.harness import ROOT, Stack, ext_authz_filter, hcm

ENVOY_DEFAULT_HEADERS_KB = 60  # max_request_headers_kb when a config does not set it
ENVOY_DEFAULT_HEADER_COUNT = 100  # common_http_protocol_options.max_headers_count when not set
FRAMING = 64 * 1024  # CheckRequest attributes beyond headers and body: addresses, context extensions, metadata


def _shipped_envoy_configs() -> dict[str, dict[str, Any]]:
    sidecar = next(doc for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "sidecar.yaml").read_text())
                   if doc and doc.get("kind") == "ConfigMap" and "envoy.yaml" in doc.get("data", {}))
    return {"envoy/envoy.yaml": yaml.safe_load((ROOT / "envoy" / "envoy.yaml").read_text()),
            "envoy/envoy-http.yaml": yaml.safe_load((ROOT / "envoy" / "envoy-http.yaml").read_text()),
            "deploy/k8s/sidecar.yaml": yaml.safe_load(sidecar["data"]["envoy.yaml"])}


def _limits(config: dict[str, Any]) -> tuple[int, int, int]:
    """(body bytes Envoy sends, header bytes it accepts from a client, header count it accepts)."""
    body = ext_authz_filter(config).get("with_request_body", {}).get("max_request_bytes", 0)
    manager = hcm(config)
    headers_kb = manager.get("max_request_headers_kb", ENVOY_DEFAULT_HEADERS_KB)
    count = manager.get("common_http_protocol_options", {}).get("max_headers_count", ENVOY_DEFAULT_HEADER_COUNT)
    return int(body), int(headers_kb) * 1024, int(count)


@pytest.mark.grpc_only("a static check of the shipped files; runs once")
@pytest.mark.parametrize("name", sorted(_shipped_envoy_configs()))
def test_item09_shipped_envoy_configs_fit_the_default_receive_limit(name: str, mode: str) -> None:
    config = _shipped_envoy_configs()[name]
    body, header_bytes, _ = _limits(config)
    assert body + header_bytes + FRAMING < DEFAULT_MAX_RECEIVE_BYTES
    request_body = ext_authz_filter(config).get("with_request_body")
    if request_body is not None:  # bodies are sent: bounded, and a longer one is sent partial, not refused
        assert request_body.get("allow_partial_message") is True, name
        assert 0 < body <= HttpTransportConfig().max_body_bytes, name


def _largest_request(config_path: Path) -> tuple[dict[str, str], bytes]:
    """Headers and body at the limits of the Envoy config Stack rendered: a body past max_request_bytes (sent
    partial) and client headers filling max_request_headers_kb up to a little room for Host, Authorization and
    Content-Length."""
    body_limit, header_bytes, header_count = _limits(yaml.safe_load(config_path.read_text()))
    room = header_bytes - 2048
    count = min(header_count - 10, 40)
    size = room // count
    headers = {f"x-fill-{i:02d}": "v" * (size - len(f"x-fill-{i:02d}")) for i in range(count)}
    assert sum(len(k) + len(v) for k, v in headers.items()) > header_bytes - 3072
    return headers, b"b" * (2 * body_limit)


def _stack(stack_factory: type[Stack], mutate: Any = None) -> Stack:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_echo()
        s.start_authz()
        s.start_envoy(mutate=mutate)
    return s


def _assert_answered(s: Stack, headers: dict[str, str], body: bytes, upstream_takes_body: bool = True) -> None:
    """phantom-authz decides each request (Envoy counts ext_authz ok/denied, never error): an allow, a 403 for a
    missing scope, a 401 without a token, none of them Envoy's status_on_error (503)."""
    token = s.token("read")
    before = s.envoy_stats()
    resp = s.get("/httpbin/post", token, headers=headers, method="POST", body=body)  # type: ignore[arg-type]
    if upstream_takes_body:
        assert resp.status == 200, resp
        echoed = {k.lower(): v for k, v in resp.json()["headers"].items()}
        assert str(echoed["authorization"]).startswith("Bearer ey")
    else:  # the echo upstream (aiohttp) refuses bodies over 1 MiB itself: it was reached, so the check allowed.
        # Its 413 says so in aiohttp's words; Envoy adds x-envoy-upstream-service-time only when the upstream
        # answered after the whole request, which depends on timing.
        assert resp.status == 413 and b"Maximum request body size" in resp.body, resp
    forbidden = s.get("/admin/post", token, headers=headers, method="POST", body=body)  # type: ignore[arg-type]
    assert forbidden.status == 403 and 'error="insufficient_scope"' in forbidden.headers["www-authenticate"], forbidden
    denied = s.get("/httpbin/post", None, headers=headers, method="POST", body=body)  # type: ignore[arg-type]
    assert denied.status == 401 and denied.headers["www-authenticate"] == 'Bearer realm="api"', denied
    after = s.envoy_stats()
    counted = {name: after.get(f"http.ingress.ext_authz.{name}", 0) - before.get(f"http.ingress.ext_authz.{name}", 0)
               for name in ("ok", "denied", "error", "failure_mode_allowed")}
    assert counted == {"ok": 1, "denied": 2, "error": 0, "failure_mode_allowed": 0}, counted


def test_item09_largest_request_the_shipped_envoy_config_sends_is_answered(stack_factory: type[Stack]) -> None:
    s = _stack(stack_factory)
    headers, body = _largest_request(s.dir / "envoy.yaml")
    _assert_answered(s, headers, body)


@pytest.mark.grpc_only("the gRPC receive limit; HTTP mode has its own max_body_bytes (413)")
def test_item09_a_body_limit_past_grpcs_old_4_mib_default_is_answered(stack_factory: type[Stack]) -> None:
    """The shipped config with its body limit raised to 5 MiB: the CheckRequest is over gRPC's default 4 MiB."""
    def raise_body_limit(config: dict[str, Any]) -> None:
        ext_authz_filter(config)["with_request_body"]["max_request_bytes"] = 5 * 1024 * 1024
        config["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = 8 * 1024 * 1024

    s = _stack(stack_factory, raise_body_limit)
    headers, body = _largest_request(s.dir / "envoy.yaml")
    assert len(body) // 2 > 4 * 1024 * 1024
    _assert_answered(s, headers, body, upstream_takes_body=False)
