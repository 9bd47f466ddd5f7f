"""The deployment kit, checked without a Docker engine or a cluster: the sidecar manifest's Envoy config validates
with Envoy 1.40, its phantom-authz config validates with the product's own loader, secrets are not inline, and the
Dockerfile only copies what exists. ``authz health`` is checked against a live service."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import load_config
from devtools.processes import envoy_binary
from tests.harness import ROOT, Stack

DEPLOY = ROOT / "deploy"


def manifests() -> dict[tuple[str, str], Any]:
    docs = yaml.safe_load_all((DEPLOY / "k8s" / "sidecar.yaml").read_text())
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_sidecar_envoy_config_validates(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(manifests()[("ConfigMap", "envoy")]["data"]["envoy.yaml"])
    done = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_sidecar_authz_config_loads_with_the_secret_from_the_environment(tmp_path: Path) -> None:
    text = manifests()[("ConfigMap", "phantom-authz")]["data"]["authz.yaml"]
    path = tmp_path / "authz.yaml"
    path.write_text(text.replace("/etc/phantom-authz/policies", str(DEPLOY / "policies")))
    config = load_config(path, {"GATEWAY_CLIENT_SECRET": "from-a-k8s-secret"})
    assert config.server.listen.startswith("127.0.0.1:"), "a sidecar listens on loopback only"
    assert config.admin_listen is not None and config.admin_listen.startswith("127.0.0.1:")
    assert config.default_as.client_secret is not None
    assert config.default_as.client_secret.reveal() == "from-a-k8s-secret"
    assert "client_secret:" not in text


def test_sidecar_pod_wires_secret_probes_and_config() -> None:
    pod = manifests()[("Deployment", "api")]["spec"]["template"]["spec"]
    authz = next(c for c in pod["containers"] if c["name"] == "phantom-authz")
    assert authz["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "phantom-authz-client"
    assert authz["readinessProbe"]["exec"]["command"][:2] == ["authz", "health"]
    mounts = {m["mountPath"] for m in authz["volumeMounts"]}
    assert "/etc/phantom-authz/authz.yaml" in mounts


def test_dockerfile_copies_only_what_exists() -> None:
    sources = re.findall(r"^COPY (?!--from)(.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert sources
    for line in sources:
        for source in line.split():
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


@pytest.mark.grpc_only("`authz health` probes the gRPC health service; no Envoy and no check transport involved")
def test_health_probe_reports_serving_and_fails_when_down(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz()
    probe = [sys.executable, "-m", "authz", "health", "--target", f"127.0.0.1:{s.authz_port}"]
    up = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert up.returncode == 0 and "SERVING" in up.stdout
    assert s.authz is not None
    s.authz.stop()
    down = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1
