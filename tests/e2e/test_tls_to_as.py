"""TLS to the authorization server, through real Envoy in both modes: the dev AS over HTTPS requiring a client
certificate on every connection (introspection and JWKS alike) and checking it as an RFC 8705 AS does.

phantom-authz knows the AS four ways (routes pick one with ``as``): ``pki`` (``tls_client_auth``: a certificate of
the client CA with the registered subject), ``selfsigned`` (``self_signed_tls_client_auth``: the registered
thumbprint), ``wrongca`` (a ``ca_file`` that did not sign the AS's certificate) and ``stranger`` (a certificate the
AS's CA list accepts, with a subject the AS has not registered). The first two are answered; the others fail
closed: 503 when the AS cannot be verified, 502 (HTTP mode: Envoy's 503) when it refuses us; never an allow.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.auth_server import DEV_AS_KEY, DevASConfig, DevAuthServer, DevClient, build_app, default_clients
from devtools.mtls_clients import DevTls, MtlsRegistration, thumbprint
from devtools.processes import Process
from tests.harness import Stack, add_route, assert_authz_error
from tests.local_http import ThreadedServer
from tests.pki import Authority, self_signed

SUBJECT = "CN=phantom-authz gateway"
ROUTES = ("pki", "selfsigned", "wrongca", "stranger")


class TlsAS:
    """The dev AS on HTTPS in a thread of the test process, with the files phantom-authz reads."""

    def __init__(self, directory: Path) -> None:
        as_ca, client_ca = Authority("AS CA"), Authority("gateway client CA")
        gateway, own = client_ca.issue("phantom-authz gateway"), self_signed("phantom-authz gateway")
        self.files = {"as_ca": as_ca.write(directory / "as-ca.pem"),
                      "client_ca": client_ca.write(directory / "client-ca.pem")}
        for name, issued in (("gateway", gateway), ("own", own), ("stranger", client_ca.issue("someone else"))):
            self.files[f"{name}_cert"], self.files[f"{name}_key"] = issued.write(directory, name)
        trusted = directory / "as-client-trust.pem"  # the client CA, and the self-signed client's own certificate
        trusted.write_bytes(client_ca.pem + own.cert_pem)
        server_cert, server_key = as_ca.issue("as", ips=("127.0.0.1",)).write(directory, "as")
        tls = DevTls(str(server_cert), str(server_key), client_ca_file=str(trusted))
        clients = {**default_clients(),
                   "gateway-pki": DevClient(secrets.token_urlsafe(32), can_introspect=True,
                                            mtls=MtlsRegistration(subject_dn=SUBJECT)),
                   "gateway-own": DevClient(secrets.token_urlsafe(32), can_introspect=True,
                                            mtls=MtlsRegistration(thumbprint=thumbprint(own.certificate)))}
        app = build_app(DevASConfig(port=0, clients=clients, tls=tls))
        self.dev: DevAuthServer = app[DEV_AS_KEY]
        self._server = ThreadedServer()
        self.dev.port = self._server.start(app, ssl_context=tls.server_context())

    def server(self, client_id: str, client: str, method: str = "tls_client_auth", ca: str = "as_ca") -> dict[str, Any]:
        base = self.dev.base_url
        return {"dialect": "phantom", "introspection_endpoint": f"{base}/oauth/v2/oauth-introspect",
                "client_id": client_id, "client_auth_method": method, "ca_file": str(self.files[ca]),
                "client_cert_file": str(self.files[f"{client}_cert"]),
                "client_key_file": str(self.files[f"{client}_key"]), "issuer": self.dev.issuer,
                "jwks_uri": f"{base}/oauth/v2/oauth-anonymous/jwks", "audiences": ["api.example.com"],
                "timeout_seconds": 1.0, "retry_after_seconds": 5}

    def token(self) -> str:
        return self.dev.issue("demo-client", "alice", ("read",))

    def __enter__(self) -> TlsAS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()


def authz_log(stack: Stack) -> str:
    """What the phantom-authz process has logged so far."""
    assert isinstance(stack.authz, Process)
    return stack.authz.log_path.read_text()


@pytest.fixture(scope="module")
def tls_as(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsAS]:
    with TlsAS(tmp_path_factory.mktemp("tls-as")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mode: str, tls_as: TlsAS) -> Iterator[Stack]:
    servers = {"pki": tls_as.server("gateway-pki", "gateway"),
               "selfsigned": tls_as.server("gateway-own", "own", "self_signed_tls_client_auth"),
               "wrongca": tls_as.server("gateway-pki", "gateway", ca="client_ca"),
               "stranger": tls_as.server("gateway-pki", "stranger")}

    def mutate(config: dict[str, Any]) -> None:
        for name in ROUTES:
            add_route(f"/{name}/", {"as": name, "required_scopes": "read"})(config)

    s = Stack(tmp_path_factory.mktemp(f"tls-as-{mode}"), mode)
    try:
        with s.together():
            s.start_echo()
            s.start_authz(authorization_servers=servers)
            s.start_envoy(mutate)
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("route", ["pki", "selfsigned"])
def test_rfc8705_client_authentication_gets_the_jwt(stack: Stack, tls_as: TlsAS, route: str) -> None:
    before = tls_as.dev.introspections
    allowed = stack.get(f"/{route}/get", tls_as.token())
    assert allowed.status == 200, allowed
    assert allowed.json()["headers"]["Authorization"].startswith("Bearer ey")  # verified with the JWKS over mTLS
    assert tls_as.dev.introspections == before + 1
    inactive = stack.get(f"/{route}/get", "not-a-token-the-as-issued")
    assert inactive.status == 401 and 'error="invalid_token"' in inactive.headers["www-authenticate"], inactive


def test_an_as_certificate_from_another_ca_fails_closed(stack: Stack, tls_as: TlsAS) -> None:
    before = tls_as.dev.introspections
    refused = stack.get("/wrongca/get", tls_as.token())
    assert_authz_error(refused, stack.mode, 503, retry_after="5")
    assert tls_as.dev.introspections == before  # the token never reached a server we could not verify
    assert "CERTIFICATE_VERIFY_FAILED" in authz_log(stack)


def test_a_client_certificate_the_as_does_not_recognise_fails_closed(stack: Stack, tls_as: TlsAS) -> None:
    refused = stack.get("/stranger/get", tls_as.token())
    assert_authz_error(refused, stack.mode, 502)
    assert "rejected our client credentials (HTTP 401; client_id 'gateway-pki')" in authz_log(stack)
