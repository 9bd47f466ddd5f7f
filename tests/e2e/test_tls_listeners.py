"""Envoy as the TLS client of phantom-authz (``server.tls``), in both ext_authz modes, with certificates made here.

phantom-authz serves a certificate for ``authz.test`` from a directory laid out as Kubernetes mounts a secret,
requires client certificates from its CA, and allows only SANs under ``spiffe://test/ns/edge/sa/``. Envoy's
ext_authz cluster has an UpstreamTlsContext (client certificate, the CA, the server's SAN); three more clusters
present what must be refused: a certificate of the right CA with a SAN not allowed, one of another CA, none at all.
Refused, Envoy answers its ``status_on_error`` (503 in the shipped configs): the client never gets an allow.
A rotation (the secret's symlink swap) reaches new connections without a restart; a broken one is logged and kept out.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from devtools.processes import Process
from tests.harness import Stack, check_settings, http_request, routes, wait_until
from tests.pki import Authority, Issued, MountedSecret

ALLOWED = "spiffe://test/ns/edge/sa/*"
TLS_SOCKET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
REFUSED = ("bad-san", "wrong-ca", "no-cert")  # the route prefixes whose cluster presents what must be refused


@dataclass
class Pki:
    ca: Authority
    secret: MountedSecret
    clients: dict[str, tuple[Path, Path] | None]  # per cluster: Envoy's client certificate and key
    directory: Path

    def server_certificate(self) -> Issued:
        return self.ca.issue("phantom-authz", dns=("authz.test",), ips=("127.0.0.1",))


def _pki(directory: Path) -> Pki:
    ca, other = Authority("authz test CA"), Authority("another CA")
    secret = MountedSecret(directory / "authz-tls")
    pki = Pki(ca, secret, {}, directory)
    secret.issue(pki.server_certificate(), ca)
    edge = "spiffe://test/ns/edge/sa/envoy"
    pki.clients = {"good": ca.issue(uris=(edge,)).write(directory, "envoy"),
                   "bad-san": ca.issue(uris=("spiffe://test/ns/other/sa/intruder",)).write(directory, "intruder"),
                   "wrong-ca": other.issue(uris=(edge,)).write(directory, "impostor"), "no-cert": None}
    ca.write(directory / "ca.pem")
    return pki


def _tls_socket(pki: Pki, client: tuple[Path, Path] | None, mode: str) -> dict[str, Any]:
    server_name = {"san_type": "DNS", "matcher": {"exact": "authz.test"}}  # what Envoy checks on our certificate
    common: dict[str, Any] = {
        "validation_context": {"trusted_ca": {"filename": str(pki.directory / "ca.pem")},
                               "match_typed_subject_alt_names": [server_name]}}
    if mode == "grpc":
        common["alpn_protocols"] = ["h2"]
    if client is not None:
        common["tls_certificates"] = [{"certificate_chain": {"filename": str(client[0])},
                                       "private_key": {"filename": str(client[1])}}]
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": TLS_SOCKET, "sni": "authz.test", "common_tls_context": common}}


def _envoy_tls(pki: Pki, mode: str) -> Any:
    """Envoy's ext_authz cluster over TLS with the good certificate; a clone per refused kind, each used by a route
    ``/<kind>/`` (the per-route check settings name the clone)."""
    name = "phantom_authz" if mode == "grpc" else "phantom_authz_http"

    def mutate(config: dict[str, Any]) -> None:
        clusters = config["static_resources"]["clusters"]
        authz = next(c for c in clusters if c["name"] == name)
        for kind in REFUSED:
            clone = copy.deepcopy(authz)
            clone["name"] = clone["load_assignment"]["cluster_name"] = f"authz_{kind}"
            clone["transport_socket"] = _tls_socket(pki, pki.clients[kind], mode)
            clusters.append(clone)
            settings = check_settings(config, {"required_scopes": "read"})
            if mode == "grpc":
                settings["grpc_service"] = {"envoy_grpc": {"cluster_name": f"authz_{kind}"}, "timeout": "5s"}
            else:
                settings["http_service"]["server_uri"]["cluster"] = f"authz_{kind}"
            routes(config).insert(0, {"match": {"prefix": f"/{kind}/"}, "route": {"cluster": "echo"},
                                      "typed_per_filter_config": {"envoy.filters.http.ext_authz": {
                                          "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3."
                                                   "ExtAuthzPerRoute", "check_settings": settings}}})
        authz["transport_socket"] = _tls_socket(pki, pki.clients["good"], mode)
    return mutate


def authz_log(stack: Stack) -> str:
    """What the phantom-authz process has logged so far."""
    assert isinstance(stack.authz, Process)
    return stack.authz.log_path.read_text()


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[tuple[Stack, Pki]]:
    directory = tmp_path_factory.mktemp(f"tls-listeners-{mode}")
    pki = _pki(directory / "pki")
    stack = Stack(directory, mode)
    tls = {"cert_file": str(pki.secret.path("tls.crt")), "key_file": str(pki.secret.path("tls.key")),
           "client_ca_file": str(pki.secret.path("ca.crt")), "allowed_client_sans": [ALLOWED],
           "reload_interval_seconds": 0.2}
    try:
        with stack.together():
            stack.start_dev_as()
            stack.start_echo()
            stack.start_authz(env={"AUTHZ__SERVER__TLS": json.dumps(tls)})  # a YAML flow mapping
            stack.start_envoy(_envoy_tls(pki, mode))
        yield stack, pki
    finally:
        stack.stop()


def _listener(stack: Stack) -> int:
    return stack.authz_port if stack.mode == "grpc" else stack.http_port


def _served_serial(port: int, pki: Pki) -> int:
    """The serial of the certificate a new connection to ``port`` is given (presenting Envoy's certificate)."""
    context = ssl.create_default_context(cafile=str(pki.directory / "ca.pem"))
    good = pki.clients["good"]
    assert good is not None
    context.load_cert_chain(*good)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="authz.test") as connection:
        der = connection.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)


def test_envoy_with_an_allowed_certificate_gets_decisions(tls_stack: tuple[Stack, Pki]) -> None:
    stack, _ = tls_stack
    allowed = stack.get("/httpbin/get", stack.token())
    assert allowed.status == 200, allowed
    assert allowed.json()["headers"]["Authorization"].startswith("Bearer ey")
    denied = stack.get("/httpbin/get")
    assert denied.status == 401 and denied.headers["www-authenticate"] == 'Bearer realm="api"', denied


@pytest.mark.parametrize("kind", REFUSED)
def test_a_client_certificate_not_allowed_gets_no_decision(tls_stack: tuple[Stack, Pki], kind: str) -> None:
    """A valid token through a refused connection: Envoy's status_on_error (503), never the allow."""
    stack, _ = tls_stack
    token = stack.token()
    for _ in range(3):
        refused = stack.get(f"/{kind}/get", token)
        assert refused.status == 503, refused
        assert b"Bearer" not in refused.body
    if kind == "bad-san":  # the handshake passed (the CA signed it); phantom-authz itself refused the SAN
        assert "refused a client certificate: its SANs (spiffe://test/ns/other/sa/intruder)" in authz_log(stack)


def test_a_rotation_reaches_new_connections_and_a_broken_one_is_kept_out(tls_stack: tuple[Stack, Pki]) -> None:
    stack, pki = tls_stack
    port = _listener(stack)
    before = _served_serial(port, pki)
    rotated = pki.server_certificate()
    pki.secret.issue(rotated, pki.ca)
    wait_until(lambda: _served_serial(port, pki) == rotated.certificate.serial_number, "rotated certificate served")
    assert stack.get("/httpbin/get", stack.token()).status == 200
    assert before != rotated.certificate.serial_number

    broken = pki.server_certificate()  # a new certificate with another certificate's key: unusable
    pki.secret.issue(broken, pki.ca, key=pki.server_certificate().key_pem)
    line = "server.tls.key_file: does not match the certificate in server.tls.cert_file"
    wait_until(lambda: line in authz_log(stack), "the broken rotation logged")
    assert _served_serial(port, pki) == rotated.certificate.serial_number
    assert stack.get("/httpbin/get", stack.token()).status == 200
    assert authz_log(stack).count(line) == 1  # once, however often the files are read
    metrics = http_request("GET", stack.metrics_port, "/metrics").body.decode()
    assert 'phantom_authz_listener_tls_reloads_total{result="ok"} 1.0' in metrics
    assert 'phantom_authz_listener_tls_reloads_total{result="error"} 1.0' in metrics


@pytest.mark.grpc_only("authz health probes the gRPC listener, the same in both modes")
def test_the_health_probe_speaks_tls(tls_stack: tuple[Stack, Pki]) -> None:
    """Any certificate of the client CA may probe (health is exempt from allowed_client_sans); none may not."""
    stack, pki = tls_stack
    intruder = pki.clients["bad-san"]
    assert intruder is not None
    probe = [sys.executable, "-m", "authz", "health", "--target", f"127.0.0.1:{stack.authz_port}",
             "--ca-file", str(pki.directory / "ca.pem"), "--server-name", "authz.test"]
    served = subprocess.run([*probe, "--cert-file", str(intruder[0]), "--key-file", str(intruder[1])],
                            capture_output=True, text=True, timeout=30)
    assert served.returncode == 0 and "SERVING" in served.stdout, served
    refused = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr, refused
