"""Route rules' principal conditions name one trust domain: a peer of another can never win a rule.

Envoy's ``source.principal`` is the peer certificate's first URI SAN (else a DNS SAN, else the subject) from any CA
the listener trusts, federated trust domains included. A condition whose ``*`` stands in the trust domain
(``*/ns/a/sa/b``, ``spiffe://*.local/...``, ``spiffe://cluster.local*``), or written without ``spiffe://`` (Istio's
``cluster.local/ns/a/sa/b`` spelling, which no SPIFFE id equals), is refused at load, as is a trust domain SPIFFE
does not allow (upper case: Envoy compares the id as the certificate spells it, in lower case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import Config, ConfigError, load_config
from authz.models import RequestInfo
from authz.routes import RouteResolver

SERVER = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
          "issuer": "https://as.example"}


def _config(tmp_path: Path, match: dict[str, Any]) -> Config:
    rules = [{"name": "batch", "match": {"paths": ["/invoices/**"], **match}, "disabled": True},
             {"name": "invoices", "match": {"paths": ["/invoices/**"]}, "required_scopes": "billing"}]
    doc = {"authorization_servers": {"main": SERVER}, "routes": {"rules": rules}}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "secret"})


@pytest.mark.parametrize("principal", [
    "*/ns/batch/sa/job",                       # any trust domain
    "spiffe://*/ns/batch/sa/job",
    "spiffe://*.local/ns/batch/sa/job",
    "spiffe://cluster.local*",                 # also spiffe://cluster.local.evil.example/...
    "spiffe://cluster.*/ns/batch/sa/job",
    "cluster.local/ns/batch/sa/job",           # Istio's spelling: no SPIFFE id equals it
    "spiffe://Cluster.Local/ns/batch/sa/job",  # SPIFFE trust domains are lower case
    "spiffe:///ns/batch/sa/job",               # no trust domain
    "spiffe://cluster.local",                  # no path: no workload's id
    "https://cluster.local/ns/batch/sa/job",
])
@pytest.mark.parametrize("key", ["source_principals", "destination_principals"])
def test_a_principal_condition_without_one_literal_trust_domain_is_refused(tmp_path: Path, key: str,
                                                                           principal: str) -> None:
    with pytest.raises(ConfigError, match=rf"routes\.rules\[0\] \(batch\)\.match\.{key}: .*trust domain"):
        _config(tmp_path, {key: [principal]})


@pytest.mark.parametrize("principal", ["spiffe://cluster.local/ns/batch/sa/*", "spiffe://cluster.local/*",
                                       "spiffe://cluster.local/ns/*/sa/job", "spiffe://td-1.example_x/job"])
def test_globs_after_the_trust_domain_load(tmp_path: Path, principal: str) -> None:
    _config(tmp_path, {"source_principals": [principal]})


@pytest.mark.parametrize(("caller", "rule"), [
    ("spiffe://cluster.local/ns/batch/sa/job", "batch"),
    ("spiffe://partner.example/ns/batch/sa/job", "invoices"),     # another trust domain: the stricter rule
    ("spiffe://cluster.local.partner.example/ns/batch/sa/job", "invoices"),
    ("", "invoices"),                                            # a plaintext peer
])
def test_only_the_named_trust_domain_wins_the_rule(tmp_path: Path, caller: str, rule: str) -> None:
    resolver = RouteResolver(_config(tmp_path, {"source_principals": ["spiffe://cluster.local/ns/batch/sa/*"]}))
    request = RequestInfo(method="POST", path="/invoices/1", host="api.example.com", headers={}, authorization=(),
                          context_extensions={}, source_principal=caller, destination_principal="")
    settings, _ = resolver.resolve(request)
    assert settings.rule == rule
