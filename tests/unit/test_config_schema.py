"""The configuration's published JSON Schema (``authz config-schema``): every config in the repository validates
against it, and it refuses what the loader refuses for its shape (unknown keys, wrong choices, inline secrets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from authz.__main__ import main
from authz.config import config_schema, load_config
from tests.harness import ROOT, Stack

DEPLOY = ROOT / "deploy"


def _validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _sidecar_config() -> Any:
    for doc in yaml.safe_load_all((DEPLOY / "k8s" / "sidecar.yaml").read_text(encoding="utf-8")):
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "phantom-authz":
            return yaml.safe_load(doc["data"]["authz.yaml"])
    raise AssertionError("deploy/k8s/sidecar.yaml has no phantom-authz ConfigMap")


def _harness_configs(tmp_path: Path) -> dict[str, Any]:
    stack = Stack(tmp_path)
    http = stack.authz_config()
    http["server"]["http"] = {"listen": "127.0.0.1:9192"}  # what start_authz adds in http mode
    workers = stack.authz_config(server={"listen": "127.0.0.1:9001", "workers": 2})
    workers["metrics_listen"] = None  # as start_workers writes it
    return {"harness-default": stack.authz_config(), "harness-http": http, "harness-workers": workers}


def _repository_configs(tmp_path: Path) -> dict[str, Any]:
    return {"deploy/authz.yaml": yaml.safe_load((DEPLOY / "authz.yaml").read_text(encoding="utf-8")),
            "deploy/k8s/sidecar.yaml": _sidecar_config(), **_harness_configs(tmp_path)}


def test_every_config_in_the_repository_validates_against_the_schema(tmp_path: Path) -> None:
    validator = _validator()
    configs = _repository_configs(tmp_path)
    for name, config in configs.items():
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]
        assert not errors, (name, errors)
    # and the loader agrees: the same documents load (their secrets from the environment)
    path = tmp_path / "authz.yaml"
    for name, config in configs.items():
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        environ = {"DEV_AS_GATEWAY_SECRET": "x", "GATEWAY_CLIENT_SECRET": "x", "TEST_GATEWAY_SECRET": "x"}
        if name.startswith("deploy/k8s"):
            path.write_text(yaml.safe_dump(config).replace("/etc/phantom-authz/policies", str(DEPLOY / "policies")))
        assert load_config(path, environ).authorization_servers, name


@pytest.mark.parametrize(("change", "where"), [
    ({"relm": "api"}, ""),
    ({"server": {"listn": "127.0.0.1:1"}}, "server"),
    ({"cors_preflight": "yes"}, "cors_preflight"),
    ({"cache": {"max_entries": -1}}, "cache.max_entries"),
    ({"policy": {"failure_status": 404}}, "policy.failure_status"),
    ({"clock_skew_seconds": 3600}, "clock_skew_seconds"),
], ids=["unknown-top", "unknown-nested", "choice", "bound", "status", "upper-bound"])
def test_the_schema_refuses_what_the_loader_refuses(tmp_path: Path, change: dict[str, Any], where: str) -> None:
    config = {**yaml.safe_load((DEPLOY / "authz.yaml").read_text(encoding="utf-8")), **change}
    errors = list(_validator().iter_errors(config))
    assert errors and ".".join(map(str, errors[0].absolute_path)) == where, errors


def test_an_inline_client_secret_is_not_in_the_schema() -> None:
    config = yaml.safe_load((DEPLOY / "authz.yaml").read_text(encoding="utf-8"))
    config["authorization_servers"]["dev"]["client_secret"] = "s3cret"
    errors = list(_validator().iter_errors(config))
    assert errors and list(errors[0].absolute_path) == ["authorization_servers", "dev"]
    assert "s3cret" not in json.dumps(config_schema())


def test_config_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config_schema()
