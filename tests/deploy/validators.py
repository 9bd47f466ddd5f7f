"""Strict, offline validation of rendered manifests: every kind has a validator, and an unknown field fails it.

- Core Kubernetes kinds: ``kubernetes-validate --strict`` (its bundled Kubernetes 1.37 schemas). A kind it has no
  schema for raises ``SchemaNotFoundError`` there, which is a failure here, never a pass.
- Istio, Envoy Gateway and Gateway API kinds: ``jsonschema`` against the CRDs in ``../shared/mesh/crds/`` (read at
  test time), made strict: ``additionalProperties: false`` wherever a schema lists ``properties`` and neither sets
  ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields``; ``metadata`` against Kubernetes' strict
  ObjectMeta. CEL rules (``x-kubernetes-validations``) are not evaluated.
- ``EnvoyProxy``: its CRD is not in ``../shared/mesh/crds/``; until it is (then the CRD is used), the fields the
  chart writes are checked against the subset of Envoy Gateway's API (``api/v1alpha1/shared_types.go``:
  KubernetesDeploymentSpec, KubernetesPodSpec, KubernetesContainerSpec) written out below, strict, with the
  Kubernetes types inside it (containers, volumes, mounts, security contexts) from Kubernetes' strict schemas.
- Istio's ``meshConfig.extensionProviders`` (not a CRD): the ext_authz provider fields of istio/api
  ``mesh/v1alpha1/config.proto``, strict.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

__all__ = ["CRD_DIR", "KUBERNETES_VERSION", "ManifestError", "crd_kinds", "main", "strict", "validate_manifest",
           "validate_mesh_config", "walk"]

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT.parent / "shared" / "mesh" / "crds"
KUBERNETES_VERSION = "1.37"
_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
_PRESERVE = "x-kubernetes-preserve-unknown-fields"


class ManifestError(AssertionError):
    """A manifest that does not validate, or that nothing here can validate."""


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema in which unknown fields fail: ``additionalProperties: false`` on every
    object schema that lists ``properties`` and says nothing else about other fields. Properties a ``oneOf`` /
    ``anyOf`` / ``allOf`` branch lists are added to its parent's, so the branches still validate."""
    schema = copy.deepcopy(schema)
    _tighten(schema)
    return schema


def _tighten(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _tighten(value)
    if "properties" in node and "additionalProperties" not in node and not node.get(_PRESERVE):
        for branch_key in ("oneOf", "anyOf", "allOf"):
            for branch in node.get(branch_key, []):
                for name in branch.get("properties", {}):
                    node["properties"].setdefault(name, {})
        node["additionalProperties"] = False


def _object_meta() -> dict[str, Any]:
    return {"$ref": f"{_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}


def _k8s(type_name: str) -> dict[str, Any]:
    return {"$ref": f"{_DEFINITIONS}#/$defs/io.k8s.api.core.v1.{type_name}"}


@functools.cache
def _registry() -> Registry[Any]:
    version = f"v{KUBERNETES_VERSION}.0-local-strict"
    definitions = schema_contents(f"kubernetes-json-schema/{version}/_definitions.json", KUBERNETES_VERSION)
    return Resource.from_contents(definitions) @ Registry()


def _envelope(api_version: str, kind: str, spec: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata"],
            "properties": {"apiVersion": {"const": api_version}, "kind": {"const": kind},
                           "metadata": _object_meta(), "spec": spec}}


@functools.cache
def _crd_schemas(crd_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → a strict schema for the whole object, for every served version of every CRD."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    spec = version["schema"]["openAPIV3Schema"].get("properties", {}).get("spec", {})
                    found[(f"{group}/{version['name']}", kind)] = _envelope(f"{group}/{version['name']}", kind,
                                                                           strict(spec))
    return found


def crd_kinds(crd_dir: Path = CRD_DIR) -> set[tuple[str, str]]:
    return set(_crd_schemas(crd_dir))


def _envoy_proxy_schema() -> dict[str, Any]:
    """The EnvoyProxy fields the chart writes (Envoy Gateway's API, v1alpha1), strict."""

    def closed(**properties: Any) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "properties": properties}

    def items(schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": schema}

    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    deployment = closed(
        replicas={"type": "integer"}, initContainers=items(_k8s("Container")),
        pod=closed(annotations=strings, labels=strings, securityContext=_k8s("PodSecurityContext"),
                   volumes=items(_k8s("Volume"))),
        container=closed(env=items(_k8s("EnvVar")), image={"type": "string"},
                         volumeMounts=items(_k8s("VolumeMount")), securityContext=_k8s("SecurityContext"),
                         resources=_k8s("ResourceRequirements")))
    provider = closed(type={"enum": ["Kubernetes"]}, kubernetes=closed(envoyDeployment=deployment))
    provider["required"] = ["type"]
    return _envelope("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy", closed(provider=provider))


def _check(schema: dict[str, Any], doc: Any, what: str) -> None:
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ManifestError(f"{what}: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors[:5]))


def validate_manifest(doc: dict[str, Any], crd_dir: Path = CRD_DIR) -> str:
    """Validate one object strictly; returns what validated it. Raises ``ManifestError``."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    what = f"{kind} {doc.get('metadata', {}).get('name')} ({api_version})"
    crds = _crd_schemas(crd_dir) if crd_dir.is_dir() else {}
    if (api_version, kind) in crds:
        _check(crds[(api_version, kind)], doc, what)
        return "crd"
    if (api_version, kind) == ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"):
        _check(_envoy_proxy_schema(), doc, what)
        return "envoyproxy-subset"
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise ManifestError(f"{what}: {'.'.join(map(str, exc.path))}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise ManifestError(f"{what}: no CRD in {crd_dir} and {exc.message}: not validated") from None
    return "kubernetes"


_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_BODY = {"type": "object", "additionalProperties": False,
         "properties": {"maxRequestBytes": {"type": "integer", "minimum": 1},
                        "allowPartialMessage": {"type": "boolean"}, "packAsBytes": {"type": "boolean"}}}
_GRPC_FIELDS = {"service": {"type": "string", "minLength": 1}, "port": {"type": "integer", "minimum": 1,
                                                                         "maximum": 65535},
                "timeout": _DURATION, "failOpen": {"type": "boolean"},
                "statusOnError": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
                "includeRequestBodyInCheck": _BODY}
_HTTP_FIELDS = {**_GRPC_FIELDS, "pathPrefix": {"type": "string", "pattern": "^/"},
                "includeRequestHeadersInCheck": _STRINGS,
                "includeAdditionalHeadersInCheck": {"type": "object", "additionalProperties": {"type": "string"}},
                "headersToUpstreamOnAllow": _STRINGS, "headersToDownstreamOnDeny": _STRINGS,
                "headersToDownstreamOnAllow": _STRINGS}
# What our providers must say, beyond the field list: a timeout (Istio's default is 600 s), never failOpen.
_PROVIDER = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "envoyExtAuthzGrpc": {"type": "object", "additionalProperties": False, "properties": _GRPC_FIELDS,
                              "required": ["service", "port", "timeout"]},
        "envoyExtAuthzHttp": {"type": "object", "additionalProperties": False, "properties": _HTTP_FIELDS,
                              "required": ["service", "port", "timeout", "includeRequestHeadersInCheck",
                                           "headersToUpstreamOnAllow"]}},
    "oneOf": [{"required": ["envoyExtAuthzGrpc"]}, {"required": ["envoyExtAuthzHttp"]}]}
_MESH_CONFIG = {"type": "object", "additionalProperties": False, "required": ["extensionProviders"],
                "properties": {"extensionProviders": {"type": "array", "minItems": 1, "items": _PROVIDER}}}


def validate_mesh_config(mesh: dict[str, Any]) -> list[dict[str, Any]]:
    """Check a meshConfig snippet's extension providers; returns them. Raises ``ManifestError``."""
    _check(_MESH_CONFIG, mesh, "meshConfig")
    providers: list[dict[str, Any]] = mesh["extensionProviders"]
    for provider in providers:
        grpc: dict[str, Any] = provider.get("envoyExtAuthzGrpc") or {}
        http: dict[str, Any] = provider.get("envoyExtAuthzHttp") or {}
        for key in ("includeRequestHeadersInCheck", "headersToUpstreamOnAllow") if http else ():
            if "authorization" not in {h.lower() for h in http[key]}:
                raise ManifestError(f"meshConfig {provider['name']}: {key} must list authorization")
        if grpc.get("failOpen") or http.get("failOpen"):
            raise ManifestError(f"meshConfig {provider['name']}: failOpen lets requests through when we are down")
    return providers


def walk(node: Any) -> Iterator[Any]:
    """Every dict and list inside ``node`` (for checks that look for a key anywhere)."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.deploy.validators FILE...``: validate every object in rendered manifests (``helm template``
    output, deploy/recipes/*/rendered.yaml); one line per object, exit 1 when any fails."""
    failed = 0
    for name in argv if argv is not None else sys.argv[1:]:
        for doc in yaml.safe_load_all(Path(name).read_text(encoding="utf-8")):
            if not doc:
                continue
            try:
                how = validate_manifest(doc)
                if doc["kind"] == "ConfigMap" and doc["metadata"].get("namespace") == "istio-system":
                    validate_mesh_config(yaml.safe_load(doc["data"]["mesh"]))
                    how += " + meshConfig extensionProviders"
                print(f"ok   {name}: {doc['kind']} {doc['metadata']['name']} ({how})")
            except ManifestError as exc:
                failed += 1
                print(f"FAIL {name}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
