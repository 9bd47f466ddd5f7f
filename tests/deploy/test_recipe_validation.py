"""Every recipe in deploy/recipes, rendered by the chart with Helm v4 (offline) and validated strictly: each object
against its kind's schema (Kubernetes' for core kinds, the CRDs in ../shared/mesh/crds for Istio, Envoy Gateway and
Gateway API kinds), Istio's mesh config snippet against the ext_authz provider fields, every embedded phantom-authz
config with phantom-authz's own loader and every embedded Envoy config with ``envoy --mode validate``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import helm_python
import pytest
import yaml

from tests.deploy.embedded import authz_container, envoy_texts, envoy_validate, load_authz
from tests.deploy.recipes import (
    CHART,
    RECIPES,
    RECIPES_DIR,
    ROOT,
    Manifest,
    recipe_values,
    render_recipe,
    rendered_text,
)
from tests.deploy.validators import CRD_DIR, ManifestError, validate_manifest, validate_mesh_config, walk

CORE_GROUPS = {"v1", "apps/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1"}
ISTIO = [name for name in RECIPES if name.startswith("istio")]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {name: render_recipe(name, mesh_snippet=True) for name in RECIPES}


def _needs_crds() -> None:
    if not CRD_DIR.is_dir():
        pytest.skip(f"{CRD_DIR} is absent: the Istio, Envoy Gateway and Gateway API kinds cannot be validated here")


@pytest.mark.parametrize("name", RECIPES)
def test_committed_rendering_is_what_the_chart_renders(name: str) -> None:
    committed = (RECIPES_DIR / name / "rendered.yaml").read_text(encoding="utf-8")
    assert committed == rendered_text(name), f"deploy/recipes/{name}/rendered.yaml is out of date: run make recipes"


@pytest.mark.parametrize("name", RECIPES)
def test_chart_lints_clean_with_the_recipe_s_values(name: str) -> None:
    report = helm_python.lint(CHART, recipe_values(name), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error (helm lint --strict)
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("name", RECIPES)
def test_core_kinds_validate_strictly(rendered: dict[str, list[Manifest]], name: str) -> None:
    core = [m for m in rendered[name] if m.doc["apiVersion"] in CORE_GROUPS]
    assert core, name
    for m in core:
        assert validate_manifest(m.doc) == "kubernetes", m


@pytest.mark.parametrize("name", RECIPES)
def test_every_object_validates_strictly(rendered: dict[str, list[Manifest]], name: str) -> None:
    _needs_crds()
    how = {m.kind: validate_manifest(m.doc) for m in rendered[name]}
    for kind, validator in how.items():
        if kind not in {"ConfigMap", "Secret", "Service", "ServiceAccount", "Deployment", "HorizontalPodAutoscaler",
                        "PodDisruptionBudget", "NetworkPolicy"}:
            assert validator in {"crd", "envoyproxy-subset"}, (kind, validator)


@pytest.mark.parametrize("name", RECIPES)
def test_no_two_objects_share_kind_namespace_and_name(rendered: dict[str, list[Manifest]],
                                                                name: str) -> None:
    keys = [m.key for m in rendered[name]]
    assert len(keys) == len(set(keys)), sorted(keys)


@pytest.mark.parametrize("name", ISTIO)
def test_mesh_config_snippet_names_the_provider_the_policies_use(rendered: dict[str, list[Manifest]],
                                                                 name: str) -> None:
    snippet = next(m for m in rendered[name] if m.kind == "ConfigMap" and m.name == "istio")
    assert snippet.doc["metadata"]["namespace"] == "istio-system"
    (provider,) = validate_mesh_config(yaml.safe_load(snippet.doc["data"]["mesh"]))
    grpc = provider["envoyExtAuthzGrpc"]
    assert grpc["timeout"] == "2s" and grpc["failOpen"] is False
    custom = [m for m in rendered[name] if m.kind == "AuthorizationPolicy" and m.doc["spec"]["action"] == "CUSTOM"]
    assert custom and {m.doc["spec"]["provider"]["name"] for m in custom} == {provider["name"]}
    hosts = {f"apps/{h}" for m in rendered[name] if m.kind == "ServiceEntry" for h in m.doc["spec"]["hosts"]}
    services = {f"{m.name}.apps.svc.cluster.local" for m in rendered[name] if m.kind == "Service"}
    assert grpc["service"] in hosts | services
    assert grpc["port"] == 9001


@pytest.mark.parametrize("name", RECIPES)
def test_embedded_authz_config_loads_with_its_secrets_from_the_environment(rendered: dict[str, list[Manifest]],
                                                                           name: str, tmp_path: Path) -> None:
    manifests = rendered[name]
    config = load_authz(manifests, tmp_path)
    secrets = [s for s in config.authorization_servers.values() if s.client_secret is not None]
    assert secrets and all(s.client_secret.reveal() == "from-a-secret" for s in secrets if s.client_secret)
    assert config.admin_listen is not None and config.admin_listen.startswith("127.0.0.1:"), "admin API: loopback"
    if name.startswith("istio"):  # Istio sends no context_extensions: the rules choose, the rest is denied
        assert config.routes.rules and config.routes.default == "deny"
    _no_secret_in_config_maps(manifests)


def _no_secret_in_config_maps(manifests: Sequence[Manifest]) -> None:
    for m in manifests:
        if m.kind == "ConfigMap":
            for node in walk({k: yaml.safe_load(v) for k, v in m.doc.get("data", {}).items()}):
                assert not (isinstance(node, dict) and {"client_secret", "password"} & set(node)), m
            assert "from-a-secret" not in str(m.doc)


@pytest.mark.parametrize("name", RECIPES)
def test_listen_address_fits_the_topology(rendered: dict[str, list[Manifest]], name: str, tmp_path: Path) -> None:
    values = yaml.safe_load((RECIPES_DIR / name / "values.yaml").read_text(encoding="utf-8"))
    listen = load_authz(rendered[name], tmp_path).server.listen
    if values["mode"] == "central":
        assert listen == "0.0.0.0:9001"
    elif values["proxy"] == "envoy-gateway":
        assert listen == "unix:/var/run/phantom-authz/authz.sock"
    else:
        assert listen == "127.0.0.1:9001", "a sidecar must not let the rest of the cluster trade tokens"
    probe = authz_container(rendered[name])["readinessProbe"]["exec"]["command"]
    assert probe[:3] == ["authz", "health", "--target"] and probe[3] in {listen, "127.0.0.1:9001"}


def test_embedded_envoy_configs_validate(rendered: dict[str, list[Manifest]], tmp_path: Path) -> None:
    configs = {f"{name}: {key}": text for name in RECIPES for key, text in envoy_texts(rendered[name]).items()}
    assert configs, "the plain Envoy recipe embeds an Envoy config"
    for where, text in configs.items():
        done = envoy_validate(text, tmp_path)
        assert done.returncode == 0, (where, done.stdout + done.stderr)


def test_envoy_sidecar_recipe_is_deploy_k8s_sidecar(rendered: dict[str, list[Manifest]]) -> None:
    """deploy/k8s/sidecar.yaml (read by other tests and the docs) is the plain Envoy recipe written by hand: the same
    Envoy config, the same phantom-authz config, the same Secret wiring."""
    by_hand = {(d["kind"], d["metadata"]["name"]): d
               for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "sidecar.yaml").read_text(encoding="utf-8"))}
    chart = {(m.kind, m.name): m.doc for m in rendered["envoy-sidecar"]}
    assert yaml.safe_load(chart[("ConfigMap", "phantom-authz-envoy")]["data"]["envoy.yaml"]) == yaml.safe_load(
        by_hand[("ConfigMap", "envoy")]["data"]["envoy.yaml"])
    assert yaml.safe_load(chart[("ConfigMap", "phantom-authz")]["data"]["authz.yaml"]) == yaml.safe_load(
        by_hand[("ConfigMap", "phantom-authz")]["data"]["authz.yaml"])
    hand_pod, chart_pod = (docs[("Deployment", "api")]["spec"]["template"]["spec"] for docs in (by_hand, chart))
    assert [c["name"] for c in hand_pod["containers"]] == [c["name"] for c in chart_pod["containers"]]
    hand_authz, chart_authz = (next(c for c in pod["containers"] if c["name"] == "phantom-authz")
                               for pod in (hand_pod, chart_pod))
    assert hand_authz["env"] == chart_authz["env"] and hand_authz["args"] == chart_authz["args"]


def test_deploy_k8s_sidecar_validates_strictly() -> None:
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "sidecar.yaml").read_text(encoding="utf-8")):
        assert validate_manifest(doc) == "kubernetes", doc["kind"]


def test_a_missing_crd_folder_is_a_failure_not_a_pass(rendered: dict[str, list[Manifest]], tmp_path: Path) -> None:
    policy = next(m for m in rendered["istio-sidecar"] if m.kind == "AuthorizationPolicy")
    with pytest.raises(ManifestError, match="not validated"):
        validate_manifest(policy.doc, tmp_path / "no-crds")
