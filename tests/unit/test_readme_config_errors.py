"""The configuration errors README.md quotes ("Configuration", "Live reload") are the lines the service prints: a
bad value exits 2 with one line naming the key, from ``validate-config`` and ``serve`` alike, and the reload that
meets the same value names it the same way."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from authz.config import load_config
from authz.metrics import Metrics
from authz.reload import ConfigReloader

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV = {"DEV_AS_GATEWAY_SECRET": "gateway-secret-for-tests"}


def _bad_timeout(tmp_path: Path) -> Path:
    """deploy/authz.yaml with the dev AS's timeout_seconds at -1 (its policy paths made absolute)."""
    config = yaml.safe_load((ROOT / "deploy" / "authz.yaml").read_text(encoding="utf-8"))
    config["authorization_servers"]["dev"]["timeout_seconds"] = -1
    config["policy"]["paths"] = [str(ROOT / "deploy" / p) for p in config["policy"]["paths"]]
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["validate-config", "serve"])
def test_a_bad_value_exits_2_with_the_line_the_readme_quotes(tmp_path: Path, command: str) -> None:
    done = subprocess.run([sys.executable, "-m", "authz", command, "--config", str(_bad_timeout(tmp_path))],
                          env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    line = "authz: config error: authorization_servers.dev.timeout_seconds: must be > 0, got -1"
    assert done.stderr.strip() == line and f"`{line}`" in README, done.stderr


def test_a_reload_refused_for_a_bad_value_logs_the_line_the_readme_quotes(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(_bad_timeout(tmp_path).read_text(encoding="utf-8").replace("timeout_seconds: -1",
                                                                                "timeout_seconds: 2"))
    config = load_config(good, ENV)
    applied: list[object] = []
    reloader = ConfigReloader(good, config, applied.append, Metrics(), environ=ENV)
    good.write_text(good.read_text(encoding="utf-8").replace("timeout_seconds: 2", "timeout_seconds: -1"))
    with caplog.at_level(logging.ERROR, logger="authz.reload"):
        reloader.reload("SIGHUP")
    assert applied == []
    quoted = ("config reload (SIGHUP) refused, the running configuration is kept: "
              "authorization_servers.dev.timeout_seconds: must be > 0, got -1")
    assert [r.getMessage() for r in caplog.records] == [quoted]
    assert f"`{quoted}`" in README.replace("\n  ", " ")
