"""README "Route rules in the service": ``authz routes explain`` run as the operator types it (a subprocess): what it
prints for a request (the request line, the winning rule, the template's params, the effective settings, and why
every other rule lost), and its exit status: 0 when the request gets settings, 1 when it would be refused (no rule
and ``default: deny``, a path not in normal form, a method with a lower-case letter, ``;`` parameters that change
the rule), 2 on a configuration error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

RULES: list[dict[str, Any]] = [
    {"name": "health", "match": {"paths": ["/health"], "methods": ["GET"]}, "disabled": True},
    {"name": "records-read", "required_scopes": ["records:read"],
     "match": {"paths": ["/records/{owner}/**"], "methods": ["GET", "HEAD"], "hosts": ["api.example.com"],
               "headers": [{"name": "x-tenant", "exact": "acme"}]}},
    {"name": "records-any", "match": {"paths": ["/records/{owner}/**"]}, "required_scopes": ["records:write"]},
    {"name": "admin", "match": {"paths": ["/api/admin/**"]}, "required_scopes": ["admin"]},
    {"name": "api", "match": {"paths": ["/api/**"]}},
]
REQUEST = ("--host", "api.example.com", "--path", "/records/alice/notes", "--method", "GET")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    server = {"introspection_endpoint": "https://as.example/introspect", "client_id": "gw",
              "client_secret_env": "EXPLAIN_SECRET", "issuer": "https://as.example"}
    doc = {"authorization_servers": {"main": server}, "default_authorization_server": "main",
           "routes": {"required_scopes": "openid", "default": "deny", "rules": RULES}}
    path = tmp_path_factory.mktemp("routes-explain") / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def explain(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "authz", "routes", "explain", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "EXPLAIN_SECRET": "s"})


def test_a_matched_request_prints_the_rule_its_params_settings_and_why_others_lost(config: Path) -> None:
    done = explain(config, *REQUEST, "--header", "x-tenant=acme")
    assert done.returncode == 0, done
    lines = done.stdout.splitlines()
    assert lines[:4] == ["request: GET api.example.com /records/alice/notes (source principal: -, destination "
                         "principal: -)", "match: rule 1 (records-read)", "params: owner=alice",
                         "effective settings:"], done.stdout
    assert "  required_scopes: records:read" in lines, done.stdout
    others = lines[lines.index("other rules:") + 1:]
    assert "  rule 0 (health): paths do not match (/health)" in others, done.stdout
    assert "  rule 2 (records-any): matches, but a more specific rule wins" in others, done.stdout


def test_principals_are_shown_on_the_request_line(config: Path) -> None:
    done = explain(config, *REQUEST, "--header", "x-tenant=acme", "--principal", "spiffe://cluster.local/ns/a/sa/b",
                   "--destination-principal", "spiffe://cluster.local/ns/r/sa/api")
    assert done.returncode == 0, done
    assert done.stdout.splitlines()[0].endswith("(source principal: spiffe://cluster.local/ns/a/sa/b, destination "
                                                "principal: spiffe://cluster.local/ns/r/sa/api)"), done.stdout


@pytest.mark.parametrize(("path", "method"), [
    ("/elsewhere", "GET"),           # no rule, routes.default: deny
    ("/records/a/../b", "GET"),      # not in normal form
    ("/health", "get"),              # a method with a lower-case letter
    ("/api/admin;x/users", "GET"),   # ';' parameters that change the rule (admin once a servlet drops them)
])
def test_a_request_that_would_be_refused_exits_1(config: Path, path: str, method: str) -> None:
    done = explain(config, "--host", "api.example.com", "--path", path, "--method", method)
    assert done.returncode == 1, done
    assert done.stdout.startswith(f"request: {method} api.example.com {path} "), done.stdout


def test_a_configuration_error_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "authz.yaml"
    bad.write_text(yaml.safe_dump({"routes": {"rules": [{"name": "x", "match": {"paths": ["//"]}}]}}),
                   encoding="utf-8")
    done = explain(bad, *REQUEST)
    assert done.returncode == 2, done
    assert "config error" in done.stderr, done
