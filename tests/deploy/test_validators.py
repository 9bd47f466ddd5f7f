"""The recipe checks cannot pass vacuously: one typo'd field, in each kind of thing they check, makes its validator
fail (Kubernetes schemas, the CRDs, the EnvoyProxy subset, the mesh config fields, Envoy, phantom-authz's loader,
and the chart's own values schema)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from authz.config import ConfigError
from tests.deploy.embedded import authz_text, envoy_texts, envoy_validate, load_authz
from tests.deploy.recipes import RECIPES, Manifest, recipe_values, render, render_recipe
from tests.deploy.validators import CRD_DIR, ManifestError, strict, validate_manifest, validate_mesh_config


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """One rendered object of every kind the recipes use, by kind."""
    found: dict[str, dict[str, Any]] = {}
    for name in ("envoy-sidecar", "istio-central", "istio-native-scopes", "envoy-gateway-sidecar"):
        for m in render_recipe(name, mesh_snippet=True):
            found.setdefault(m.kind, m.doc)
    return found


def typo(doc: dict[str, Any], path: str, wrong: str) -> dict[str, Any]:
    """A copy of ``doc`` whose field at dotted ``path`` is renamed to ``wrong`` (an unknown field)."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[wrong] = node.pop(last)
    return doc


CORE = [("Deployment", "spec.template.spec.containers.0.image", "imagee"), ("ConfigMap", "data", "dta"),
        ("Service", "spec.ports", "port"), ("HorizontalPodAutoscaler", "spec.minReplicas", "minReplica"),
        ("PodDisruptionBudget", "spec.minAvailable", "minAvaliable"), ("NetworkPolicy", "spec.podSelector",
                                                                        "podselector")]
CUSTOM = [("AuthorizationPolicy", "spec.action", "acton"), ("ServiceEntry", "spec.resolution", "resolve"),
          ("PeerAuthentication", "spec.mtls.mode", "mod"), ("RequestAuthentication", "spec.jwtRules.0.jwksUri",
                                                            "jwksUrl"),
          ("SecurityPolicy", "spec.extAuth.contextExtensions", "contextExtension"), ("Backend", "spec.endpoints.0.unix",
                                                                                   "uds"),
          ("HTTPRoute", "spec.rules.0.matches", "match"), ("Gateway", "metadata.labels", "label"),
          ("EnvoyProxy", "spec.provider.kubernetes.envoyDeployment.initContainers.0.restartPolicy", "restart")]


@pytest.mark.parametrize(("kind", "path", "wrong"), CORE, ids=[c[0] for c in CORE])
def test_a_typo_fails_kubernetes_validate(manifests: dict[str, dict[str, Any]], kind: str, path: str,
                                          wrong: str) -> None:
    assert validate_manifest(manifests[kind]) == "kubernetes"
    with pytest.raises(ManifestError, match=wrong):
        validate_manifest(typo(manifests[kind], path, wrong))


@pytest.mark.parametrize(("kind", "path", "wrong"), CUSTOM, ids=[c[0] for c in CUSTOM])
def test_a_typo_fails_the_crd_schema(manifests: dict[str, dict[str, Any]], kind: str, path: str, wrong: str) -> None:
    if not CRD_DIR.is_dir():
        pytest.skip(f"{CRD_DIR} is absent: the CRD-backed kinds cannot be validated here")
    validate_manifest(manifests[kind])
    with pytest.raises(ManifestError, match=wrong):
        validate_manifest(typo(manifests[kind], path, wrong))


def test_a_kind_nothing_knows_is_a_failure() -> None:
    with pytest.raises(ManifestError, match="not validated"):
        validate_manifest({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_strict_closes_object_schemas_but_keeps_what_allows_unknown_fields() -> None:
    schema = strict({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {}}},
                                                      "free": {"type": "object", "x-kubernetes-preserve-unknown-fields":
                                                               True, "properties": {"c": {}}},
                                                      "map": {"type": "object", "additionalProperties": {}}},
                     "oneOf": [{"properties": {"d": {}}, "required": ["d"]}]})
    assert schema["additionalProperties"] is False and schema["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["free"]
    assert schema["properties"]["map"]["additionalProperties"] == {} and "d" in schema["properties"]


@pytest.mark.parametrize("change", ["typo", "no-timeout", "fail-open", "http-without-authorization"])
def test_mesh_config_providers_must_be_strict_timed_closed_and_forward_authorization(change: str) -> None:
    grpc: dict[str, Any] = {"service": "phantom-authz.local", "port": 9001, "timeout": "2s", "failOpen": False}
    validate_mesh_config({"extensionProviders": [{"name": "p", "envoyExtAuthzGrpc": dict(grpc)}]})
    http = {**grpc, "includeRequestHeadersInCheck": ["authorization"], "headersToUpstreamOnAllow": ["authorization"]}
    validate_mesh_config({"extensionProviders": [{"name": "p", "envoyExtAuthzHttp": dict(http)}]})
    provider: dict[str, Any] = {
        "typo": {"envoyExtAuthzGrpc": {**grpc, "timout": "1s"}},
        "no-timeout": {"envoyExtAuthzGrpc": {k: v for k, v in grpc.items() if k != "timeout"}},
        "fail-open": {"envoyExtAuthzGrpc": {**grpc, "failOpen": True}},
        "http-without-authorization": {"envoyExtAuthzHttp": {**http, "headersToUpstreamOnAllow": ["x-user"]}},
    }[change]
    with pytest.raises(ManifestError):
        validate_mesh_config({"extensionProviders": [{"name": "p", **provider}]})


def test_a_typo_fails_envoy_validate(tmp_path: Path) -> None:
    (text,) = envoy_texts(render_recipe("envoy-sidecar")).values()
    assert envoy_validate(text, tmp_path).returncode == 0
    done = envoy_validate(text.replace("merge_slashes: true", "merge_slashess: true"), tmp_path)
    assert done.returncode != 0 and "merge_slashess" in done.stdout + done.stderr


@pytest.mark.parametrize(("path", "wrong"), [("routes.default", "defualt"), ("routes.rules.0.match.methods", "method"),
                                           ("routes.rules.1.required_scopes", "required_scope")],
                         ids=["routes-key", "rule-match-key", "rule-key"])
def test_a_typo_fails_phantom_authz_s_own_loader(path: str, wrong: str, tmp_path: Path) -> None:
    manifests = render_recipe("istio-sidecar")
    config = yaml.safe_load(authz_text(manifests))
    with pytest.raises(ConfigError, match=wrong):
        load_authz(manifests, tmp_path, yaml.safe_dump(typo(config, path, wrong)))


def test_a_secret_the_pod_does_not_map_from_a_secret_fails_to_load(tmp_path: Path) -> None:
    values = recipe_values("istio-sidecar")
    values["authz"]["secretEnv"] = []
    with pytest.raises(ConfigError, match="GATEWAY_CLIENT_SECRET"):
        load_authz(render(values), tmp_path)


@pytest.mark.parametrize("change", ["unknown-key", "envoy-central", "central-without-targets", "bad-mode"])
def test_the_chart_refuses_values_its_schema_does_not_allow(change: str) -> None:
    values = recipe_values("istio-central")
    if change == "unknown-key":
        values["istio"]["timout"] = "1s"
    elif change == "envoy-central":
        values["proxy"] = "envoy"
    elif change == "central-without-targets":
        values["istio"]["protect"] = []
    else:
        values["mode"] = "daemonset"
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


def _kinds(found: list[Manifest]) -> set[str]:
    return {m.kind for m in found}


def test_the_fixture_covers_every_kind_the_recipes_render(manifests: dict[str, dict[str, Any]]) -> None:
    rendered = set().union(*(_kinds(render_recipe(name, mesh_snippet=True)) for name in RECIPES))
    checked = {kind for kind, _, _ in CORE + CUSTOM}
    assert rendered - checked <= {"ServiceAccount"}, rendered - checked


def test_the_command_line_validator_fails_on_a_typo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.deploy.validators import main

    if not CRD_DIR.is_dir():
        pytest.skip(f"{CRD_DIR} is absent: the recipe's Istio kinds cannot be validated here")
    docs = [m.doc for m in render_recipe("istio-central", mesh_snippet=True)]
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    bad.write_text(yaml.safe_dump_all([*docs, typo(docs[0], "metadata.name", "nmae")]), encoding="utf-8")
    assert main([str(good)]) == 0
    assert main([str(bad)]) == 1 and "nmae" in capsys.readouterr().out
