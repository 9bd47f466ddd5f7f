"""``make run`` and ``make run MODE=http``, checked without running them (the quickstart binds fixed ports): in each
mode Envoy's config validates and its authorization cluster points at the address phantom-authz listens on for that
mode, with the configuration phantom-authz will load (deploy/authz.yaml plus the mode's environment)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import load_config
from devtools.envoy_config import TEMPLATES
from devtools.processes import Process, envoy_binary
from devtools.quickstart import CONFIG, HTTP_LISTEN, MODES, main, processes
from tests.harness import ROOT, ext_authz_filter, routes


def cluster_address(config: dict[str, Any], name: str) -> str:
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == name)
    socket = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    return f"{socket['address']}:{socket['port_value']}"


def started(quickstart_mode: str, tmp_path: Path) -> dict[str, Process]:
    return {p.name: p for p in processes(quickstart_mode, tmp_path, {"DEV_AS_GATEWAY_SECRET": "s"})}


@pytest.mark.parametrize("quickstart_mode", MODES)
def test_quickstart_envoy_reaches_phantom_authz_in_each_mode(quickstart_mode: str, tmp_path: Path) -> None:
    procs = started(quickstart_mode, tmp_path)
    envoy = procs["envoy"]
    config_path = Path(envoy.argv[envoy.argv.index("-c") + 1])
    assert config_path == TEMPLATES[quickstart_mode]
    done = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(config_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    envoy_config = yaml.safe_load(config_path.read_text())
    authz = procs["phantom-authz"]
    assert authz.argv[-2:] == ["--config", str(CONFIG)]
    config = load_config(CONFIG, authz.env)
    assert config.server.listen == "127.0.0.1:9001" == f"127.0.0.1:{authz.port}"  # gRPC listens in both modes
    if quickstart_mode == "grpc":
        assert config.server.http.listen is None  # deploy/authz.yaml as it is: no HTTP transport
        assert cluster_address(envoy_config, "phantom_authz") == config.server.listen
    else:
        assert config.server.http.listen == HTTP_LISTEN
        assert cluster_address(envoy_config, "phantom_authz_http") == HTTP_LISTEN
        prefixes = [ext_authz_filter(envoy_config)["http_service"]["path_prefix"]] + [
            r["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["check_settings"]["http_service"][
                "path_prefix"] for r in routes(envoy_config)]
        assert prefixes[0] == config.server.http.path_prefix, prefixes  # the defaults: the very same string
        assert all(p.startswith(config.server.http.path_prefix + ";") for p in prefixes[1:]), prefixes


def test_make_run_passes_mode_to_the_quickstart() -> None:
    make = subprocess.run(["make", "-n", "-C", str(ROOT), "run", "MODE=http"], capture_output=True, text=True,
                          timeout=30)
    assert make.returncode == 0, make.stderr
    assert "-m devtools.quickstart --mode http" in make.stdout
    default = subprocess.run(["make", "-n", "-C", str(ROOT), "run"], capture_output=True, text=True, timeout=30)
    assert "-m devtools.quickstart --mode grpc" in default.stdout


def test_unknown_quickstart_mode_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--mode", "h2", "--workdir", str(tmp_path)])
    assert exited.value.code == 2
    assert "invalid choice: 'h2'" in capsys.readouterr().err
    with pytest.raises(ValueError):
        processes("h2", tmp_path, {})
