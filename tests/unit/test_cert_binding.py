"""RFC 8705 certificate-bound tokens (``authz.cert_binding``): the thumbprint of the certificate Envoy sends, the
check per route mode, the setting in each carrier, and what the configuration refuses (HTTP mode)."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.cert_binding import certificate_thumbprint, check_binding
from authz.claims import check_access_token
from authz.config import Config, ConfigError, load_config
from authz.errors import InvalidToken, RouteMisconfigured, UpstreamMisbehaved
from authz.models import RequestInfo
from authz.routes import RouteResolver
from tests.mesh.pki import MeshCA

SERVER = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
          "issuer": "https://as.example"}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two client certificates' PEM, by name."""
    ca = MeshCA(tmp_path_factory.mktemp("pki"))
    return {name: ca.issue(name, "apps", name).cert.read_text() for name in ("app", "other")}


def _envoy(pem: str) -> str:
    """``source.certificate`` as Envoy sends it: the PEM, URL-encoded."""
    return urllib.parse.quote(pem, safe="")


def _x5t(pem: str) -> str:
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return base64.urlsafe_b64encode(hashlib.sha256(base64.b64decode(body)).digest()).rstrip(b"=").decode()


def _bound(pem: str) -> dict[str, Any]:
    return {"sub": "app", "cnf": {"x5t#S256": _x5t(pem)}}


# --- the thumbprint of the certificate Envoy sends -------------------------------------------------------------------

def test_thumbprint_is_base64url_sha256_of_the_der(certificates: dict[str, str]) -> None:
    pem = certificates["app"]
    assert certificate_thumbprint(_envoy(pem)) == _x5t(pem)
    assert certificate_thumbprint(pem) == _x5t(pem)  # unencoded PEM reads the same


@pytest.mark.parametrize("certificate", [
    "", "not a certificate", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",  # decodes, but to no DER sequence
    "-----BEGIN CERTIFICATE-----%FF%FE-----END CERTIFICATE-----", "%ZZ", "-----BEGIN CERTIFICATE-----" * 2,
], ids=["empty", "text", "bad-base64", "not-der", "not-utf8", "bad-escape", "no-end"])
def test_thumbprint_of_something_else_is_none(certificate: str) -> None:
    assert certificate_thumbprint(certificate) is None


def test_thumbprint_of_two_certificates_or_an_oversized_value_is_none(certificates: dict[str, str]) -> None:
    assert certificate_thumbprint(_envoy(certificates["app"] + certificates["other"])) is None
    assert certificate_thumbprint("A" * 70_000) is None


# --- the check, per route mode --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["allowed", "required"])
def test_bound_token_passes_with_its_certificate(certificates: dict[str, str], mode: str) -> None:
    check_binding(_bound(certificates["app"]), mode, _envoy(certificates["app"]))


@pytest.mark.parametrize("mode", ["allowed", "required"])
@pytest.mark.parametrize("presented", ["other", "none", "garbage"])
def test_bound_token_without_its_certificate_is_invalid_token(certificates: dict[str, str], mode: str,
                                                              presented: str) -> None:
    certificate = {"other": _envoy(certificates["other"]), "none": "", "garbage": "x"}[presented]
    with pytest.raises(InvalidToken):
        check_binding(_bound(certificates["app"]), mode, certificate)


def test_bound_token_on_a_route_that_is_off_is_invalid_token_even_with_its_certificate(
        certificates: dict[str, str]) -> None:
    with pytest.raises(InvalidToken):
        check_binding(_bound(certificates["app"]), "off", _envoy(certificates["app"]))


def test_unbound_token_passes_unless_binding_is_required(certificates: dict[str, str]) -> None:
    for mode in ("off", "allowed"):
        for certificate in ("", _envoy(certificates["app"]), None if mode == "off" else ""):
            check_binding({"sub": "app"}, mode, certificate)
    check_binding({"sub": "app", "cnf": {"jkt": "x" * 43}}, "off", None)  # another binding is another stage's
    with pytest.raises(InvalidToken):
        check_binding({"sub": "app"}, "required", _envoy(certificates["app"]))


@pytest.mark.parametrize("mode", ["allowed", "required"])
def test_route_needing_a_certificate_on_a_transport_without_one_fails_closed(certificates: dict[str, str],
                                                                             mode: str) -> None:
    for claims in ({"sub": "app"}, _bound(certificates["app"])):
        with pytest.raises(RouteMisconfigured):
            check_binding(claims, mode, None)


# --- what the claims check lets through to the binding check ----------------------------------------------------

def test_identity_claims_may_carry_a_thumbprint_and_nothing_unchecked() -> None:
    thumbprint = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"
    check_access_token({"cnf": {"x5t#S256": thumbprint}}, frozenset({"x5t#S256"}))
    with pytest.raises(InvalidToken):  # an outer RFC 7662 answer (jwt_field): its cnf would be lost, so refused
        check_access_token({"cnf": {"x5t#S256": thumbprint}})
    for bad in ("short", 5, thumbprint + "=", thumbprint[:-1] + "+"):
        with pytest.raises(UpstreamMisbehaved):
            check_access_token({"cnf": {"x5t#S256": bad}}, frozenset({"x5t#S256"}))


# --- the setting in each carrier, and what the configuration refuses ----------------------------------------------

def _config(tmp_path: Path, **routes: Any) -> Config:
    server = routes.pop("server", {})
    doc = {"authorization_servers": {"main": SERVER}, "routes": routes, "server": server}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "secret"})


def _request(path: str = "/", extensions: dict[str, str] | None = None) -> RequestInfo:
    return RequestInfo("GET", path, "api.example.com", {}, (), extensions or {})


def test_mtls_bound_comes_from_defaults_rules_and_context_extensions(tmp_path: Path) -> None:
    rules = [{"name": "bound", "match": {"paths": ["/bound/**"]}, "mtls_bound": "required"},
             {"name": "other", "match": {"paths": ["/other/**"]}}]
    resolver = RouteResolver(_config(tmp_path, mtls_bound="allowed", rules=rules))
    assert resolver.resolve(_request("/bound/x"))[0].mtls_bound == "required"
    assert resolver.resolve(_request("/other/x"))[0].mtls_bound == "allowed"
    assert resolver.resolve(_request("/bound/x", {"mtls_bound": "off"}))[0].mtls_bound == "off"
    with pytest.raises(RouteMisconfigured):
        resolver.resolve(_request("/other/x", {"mtls_bound": "yes"}))


@pytest.mark.parametrize("routes", [{"mtls_bound": "required"},
                                    {"rules": [{"name": "r", "match": {"paths": ["/r"]}, "mtls_bound": "allowed"}]}],
                         ids=["defaults", "rule"])
def test_http_transport_refuses_routes_that_check_certificates(tmp_path: Path, routes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, server={"http": {"listen": "127.0.0.1:0"}}, **routes)
    assert "mtls_bound" in str(info.value) and "HTTP ext_authz" in str(info.value)
    _config(tmp_path, **routes)  # the gRPC transport alone: fine


def test_a_disabled_rule_cannot_ask_for_bound_tokens(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, rules=[{"name": "r", "disabled": True, "mtls_bound": "required"}])
    assert "mtls_bound" in str(info.value)
