"""The shipped Envoy configuration is valid for Envoy 1.40, as shipped and as the tests render it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from authz.dev.envoy_config import TEMPLATE, render_envoy_config
from authz.dev.processes import envoy_binary


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_shipped_envoy_yaml_validates() -> None:
    done = validate(TEMPLATE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_ext_authz_filter_is_fail_closed_v3_with_timeout() -> None:
    config = yaml.safe_load(TEMPLATE.read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    ext_authz = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_authz")["typed_config"]
    assert ext_authz["transport_api_version"] == "V3"
    assert ext_authz["failure_mode_allow"] is False
    assert ext_authz["grpc_service"]["timeout"]
    routes = {r["match"]["prefix"]: r for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}
    ext = {p: r["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["check_settings"]["context_extensions"]
           for p, r in routes.items()}
    assert ext == {"/httpbin/": {"required_scopes": "read"}, "/admin/": {"required_scopes": "admin"},
                   "/records/": {"required_scopes": "read", "policy": "records/decision"},
                   "/public/": {"disabled": "true"}}


def test_rendered_config_with_unix_socket_validates(tmp_path: Path) -> None:
    out = render_envoy_config(tmp_path / "envoy.yaml", listen_port=18000, admin_port=18001,
                              clusters={"phantom_authz": f"unix:{tmp_path}/authz.sock", "echo": 18080})
    done = validate(out)
    assert done.returncode == 0, done.stdout + done.stderr
