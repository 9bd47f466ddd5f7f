"""The shipped Envoy configurations are valid for Envoy 1.40, as shipped and as the tests render them: envoy.yaml
(gRPC ext_authz) and envoy-http.yaml (HTTP ext_authz), which must keep the same routes and route settings."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import HttpTransportConfig
from devtools.envoy_config import HTTP_TEMPLATE, TEMPLATE, TEMPLATES, http_path_prefix, render_envoy_config
from devtools.processes import envoy_binary
from tests.harness import EXT_AUTHZ, ext_authz_filter, hcm, route_settings, routes

ROUTE_SETTINGS = {"/httpbin/": {"required_scopes": "read"}, "/admin/": {"required_scopes": "admin"},
                  "/records/": {"required_scopes": "read", "policy": "records/decision"},
                  "/public/": {"disabled": "true"}}


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


def settings_by_prefix(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {r["match"]["prefix"]: route_settings(config, i) for i, r in enumerate(routes(config))}


@pytest.mark.parametrize("template", [TEMPLATE, HTTP_TEMPLATE], ids=["grpc", "http"])
def test_shipped_envoy_yaml_validates(template: Path) -> None:
    done = validate(template)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_ext_authz_filter_is_fail_closed_v3_with_timeout() -> None:
    config = load(TEMPLATE)
    ext_authz = ext_authz_filter(config)
    assert ext_authz["transport_api_version"] == "V3"
    assert ext_authz["failure_mode_allow"] is False
    assert ext_authz["grpc_service"]["timeout"]
    assert settings_by_prefix(config) == ROUTE_SETTINGS


def test_http_mode_filter_is_fail_closed_with_503_on_error() -> None:
    """Envoy reads any 5xx from an HTTP authz service as an error: failure_mode_allow must be false (else those
    requests go through) and status_on_error 503."""
    ext_authz = ext_authz_filter(load(HTTP_TEMPLATE))
    assert ext_authz["transport_api_version"] == "V3"
    assert ext_authz["failure_mode_allow"] is False
    assert ext_authz["status_on_error"] == {"code": "ServiceUnavailable"}
    assert "grpc_service" not in ext_authz
    service = ext_authz["http_service"]
    assert service["server_uri"]["cluster"] == "phantom_authz_http" and service["server_uri"]["timeout"] == "5s"
    assert service["path_prefix"] == "/phantom-authz"  # = server.http.path_prefix: the defaults


def test_http_mode_sends_and_accepts_the_headers_our_features_need() -> None:
    ext_authz = ext_authz_filter(load(HTTP_TEMPLATE))
    allowed = {p.get("exact") or p["prefix"] + "*" for p in ext_authz["allowed_headers"]["patterns"]}
    assert allowed == {"authorization", "dpop", "content-type", "x-request-id", "x-forwarded-proto", "origin",
                       "access-control-request-method", "x-transaction-creator", "x-envoy-auth-partial-body",
                       "traceparent", "tracestate", "b3", "x-b3-*"}  # the trace a client started (tracing)
    response = ext_authz["http_service"]["authorization_response"]
    assert {p["exact"] for p in response["allowed_upstream_headers"]["patterns"]} == {
        "authorization", "x-token-claims", "x-authz-policy"}
    assert "allowed_client_headers" not in response  # unset: every denial header reaches the client


def test_http_mode_has_the_same_routes_and_settings_as_grpc_mode() -> None:
    grpc, http = load(TEMPLATE), load(HTTP_TEMPLATE)
    assert settings_by_prefix(http) == settings_by_prefix(grpc) == ROUTE_SETTINGS
    for g, h in zip(routes(grpc), routes(http), strict=True):
        assert (h["match"], h["route"]) == (g["match"], g["route"])
    assert ext_authz_filter(http)["with_request_body"] == ext_authz_filter(grpc)["with_request_body"]
    grpc_hcm = {k: v for k, v in hcm(grpc).items() if k not in ("route_config", "http_filters")}
    assert {k: v for k, v in hcm(http).items() if k not in ("route_config", "http_filters")} == grpc_hcm
    assert http["admin"] == grpc["admin"]
    assert http["static_resources"]["listeners"][0]["address"] == grpc["static_resources"]["listeners"][0]["address"]
    echo = [[c for c in config["static_resources"]["clusters"] if c["name"] == "echo"] for config in (grpc, http)]
    assert echo[0] == echo[1] and len(echo[0]) == 1


def test_http_mode_routes_repeat_the_whole_http_service() -> None:
    """A route's check_settings.http_service replaces the filter's: each must carry the same server and answer
    handling, only its own path_prefix (spelled as http_path_prefix would)."""
    config = load(HTTP_TEMPLATE)
    default = ext_authz_filter(config)["http_service"]
    for route in routes(config):
        service = route["typed_per_filter_config"][EXT_AUTHZ]["check_settings"]["http_service"]
        assert {k: v for k, v in service.items() if k != "path_prefix"} == {
            k: v for k, v in default.items() if k != "path_prefix"}
        assert service["path_prefix"] == http_path_prefix(ROUTE_SETTINGS[route["match"]["prefix"]])


def test_http_mode_cluster_closes_idle_connections_before_phantom_authz_does() -> None:
    """Kept-alive HTTP/1.1 to phantom-authz; Envoy's idle timeout is the shorter, so Envoy never reuses a
    connection phantom-authz is closing."""
    cluster = next(c for c in load(HTTP_TEMPLATE)["static_resources"]["clusters"] if c["name"] == "phantom_authz_http")
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["explicit_http_config"] == {"http_protocol_options": {}}
    idle = options["common_http_protocol_options"]["idle_timeout"]
    assert idle.endswith("s") and float(idle[:-1]) < HttpTransportConfig().keepalive_timeout_seconds


@pytest.mark.parametrize("envoy_mode", ["grpc", "http"])
def test_rendered_config_with_unix_socket_validates(tmp_path: Path, envoy_mode: str) -> None:
    out = render_envoy_config(tmp_path / "envoy.yaml", listen_port=18000, admin_port=18001,
                              template=TEMPLATES[envoy_mode],
                              clusters={"phantom_authz": f"unix:{tmp_path}/authz.sock",
                                        "phantom_authz_http": f"unix:{tmp_path}/authz-http.sock", "echo": 18080})
    done = validate(out)
    assert done.returncode == 0, done.stdout + done.stderr
    cluster = "phantom_authz" if envoy_mode == "grpc" else "phantom_authz_http"
    rendered = next(c for c in load(out)["static_resources"]["clusters"] if c["name"] == cluster)
    assert rendered["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]["path"] \
        .startswith(str(tmp_path))


def test_rendered_http_config_has_independent_routes(tmp_path: Path) -> None:
    """envoy-http.yaml shares server_uri/authorization_response through YAML aliases; the rendered copy is plain
    YAML, so a test that edits one route's http_service edits that route only."""
    def mutate(config: dict[str, Any]) -> None:
        routes(config)[0]["typed_per_filter_config"][EXT_AUTHZ]["check_settings"]["http_service"][
            "authorization_response"]["allowed_upstream_headers"]["patterns"].append({"exact": "x-only-here"})

    out = render_envoy_config(tmp_path / "envoy.yaml", listen_port=18000, admin_port=18001, template=HTTP_TEMPLATE,
                              clusters={"phantom_authz_http": 18002, "echo": 18080}, mutate=mutate)
    text = out.read_text()
    assert "&id0" not in text and "*id0" not in text  # PyYAML would dump shared objects as anchors/aliases
    assert text.count("x-only-here") == 1
    assert validate(out).returncode == 0
