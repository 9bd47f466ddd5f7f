"""The configurations embedded in rendered manifests, checked by the programs that will read them: phantom-authz's
config file by its own loader (``authz.config.load_config``), with the secrets the pod maps from Kubernetes Secrets
given as environment variables; Envoy's by ``envoy --mode validate``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from authz.config import Config, load_config
from devtools.processes import envoy_binary
from tests.deploy.recipes import ROOT, Manifest

__all__ = ["POLICY_DIR", "authz_container", "authz_text", "envoy_texts", "envoy_validate", "load_authz",
           "pod_specs", "secret_env"]

POLICY_DIR = "/etc/phantom-authz/policies"  # where the image keeps the policies; the tests read deploy/policies


def authz_text(manifests: Sequence[Manifest]) -> str:
    """phantom-authz's config file: the ``authz.yaml`` of the ConfigMap the phantom-authz container mounts."""
    mounted = {v["configMap"]["name"] for spec in pod_specs(manifests) for v in spec.get("volumes", [])
               if v["name"] == "phantom-authz-config"}
    texts = [m.doc["data"]["authz.yaml"] for m in manifests if m.kind == "ConfigMap" and m.name in mounted]
    assert len(texts) == 1, f"one phantom-authz config expected, got {len(texts)} (mounted: {mounted})"
    return str(texts[0])


def pod_specs(manifests: Sequence[Manifest]) -> Iterator[dict[str, Any]]:
    """Every pod spec: Deployments' templates, and the pod an EnvoyProxy has Envoy Gateway make."""
    for m in manifests:
        if m.kind == "Deployment":
            yield m.doc["spec"]["template"]["spec"]
        elif m.kind == "EnvoyProxy":
            deployment = m.doc["spec"]["provider"]["kubernetes"]["envoyDeployment"]
            yield {"initContainers": deployment.get("initContainers", []),
                   "volumes": deployment.get("pod", {}).get("volumes", [])}


def authz_container(manifests: Sequence[Manifest]) -> dict[str, Any]:
    found = [c for spec in pod_specs(manifests) for c in [*spec.get("containers", []), *spec.get("initContainers", [])]
             if c["name"] == "phantom-authz"]
    assert len(found) == 1, f"one phantom-authz container expected, got {len(found)}"
    container: dict[str, Any] = found[0]
    return container


def secret_env(manifests: Sequence[Manifest]) -> dict[str, str]:
    """The phantom-authz container's variables that come from Secrets, each with a made-up value. Only these: a
    config that needs a variable the pod does not map from a Secret fails to load."""
    values = {}
    for var in authz_container(manifests).get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        assert ref is not None, f"{var['name']}: phantom-authz's variables come from Secrets only"
        values[var["name"]] = "from-a-secret"
    return values


def load_authz(manifests: Sequence[Manifest], tmp_path: Path, text: str | None = None) -> Config:
    """Load the embedded config (or ``text``) as the pod would, its policies read from ``deploy/policies``."""
    path = tmp_path / "authz.yaml"
    body = authz_text(manifests) if text is None else text
    path.write_text(body.replace(POLICY_DIR, str(ROOT / "deploy" / "policies")), encoding="utf-8")
    return load_config(path, secret_env(manifests))


def envoy_texts(manifests: Sequence[Manifest]) -> dict[str, str]:
    return {f"{m.kind}/{m.name}": str(m.doc["data"]["envoy.yaml"]) for m in manifests
            if m.kind == "ConfigMap" and "envoy.yaml" in m.doc.get("data", {})}


def envoy_validate(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "envoy.yaml"
    path.write_text(text, encoding="utf-8")
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "error"],
                          capture_output=True, text=True, timeout=60)
