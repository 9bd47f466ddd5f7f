"""An authorization server's TLS files rotated under a running phantom-authz (in process, ``tests/inprocess.py``),
as cert-manager rotates a mounted secret (``tests/pki.py``'s ``MountedSecret``: a ``..data`` symlink swap): the
client certificate (RFC 8705 ``tls_client_auth``), and the CA bundle that verifies the AS. The AS is the dev AS on
HTTPS, recognising the gateway's certificate by subject when one of the CAs in its trust file issued it; the test
rewrites that file, and can re-issue the AS's own certificate. Each answer closes its connection, so every call
shakes hands with the TLS phantom-authz has in use at that moment.

A rotation is taken without a restart or reload, with the cache kept; a bad one keeps the TLS in use, logs one line
naming the key and counts in ``phantom_authz_as_tls_reloads_total``."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from devtools.auth_server import DEV_AS_KEY, DevASConfig, DevAuthServer, DevClient, build_app, default_clients
from devtools.mtls_clients import DevTls, MtlsRegistration
from tests.harness import Stack, wait_until
from tests.local_http import ThreadedServer
from tests.pki import Authority, Issued, MountedSecret
from tests.service.test_grpc_service import call, check_request, denied_status, target
from tests.service.test_metrics_service import scrape

GATEWAY = "phantom-authz gateway"
CLIENT_CA_1, CLIENT_CA_2 = Authority("gateway client CA 1"), Authority("gateway client CA 2")


@web.middleware
async def _close_each_connection(request: web.Request,
                                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    response = await handler(request)
    response.force_close()
    return response


class RotatingAS:
    """The dev AS on HTTPS in a thread of the test process; ``trust`` and ``reissue`` change what it accepts and
    presents, for the connections that follow."""

    def __init__(self, directory: Path) -> None:
        self.ca = Authority("AS CA 1")
        directory.mkdir(parents=True)
        self._trust_file = directory / "as-client-trust.pem"
        self._trust_file.write_bytes(CLIENT_CA_1.pem + CLIENT_CA_2.pem)
        cert, key = self.ca.issue("as", ips=("127.0.0.1",)).write(directory, "as")
        self._tls = DevTls(str(cert), str(key), client_ca_file=str(self._trust_file))
        self._current = self._tls.server_context()
        listening = self._tls.server_context()
        listening.sni_callback = self._choose  # called on every handshake: the context in use now
        clients = {**default_clients(), "gateway-pki": DevClient(
            secrets.token_urlsafe(32), can_introspect=True, mtls=MtlsRegistration(subject_dn=f"CN={GATEWAY}"))}
        app = build_app(DevASConfig(port=0, clients=clients, tls=self._tls))
        app.middlewares.append(_close_each_connection)
        self.dev: DevAuthServer = app[DEV_AS_KEY]
        self._server = ThreadedServer()
        self.dev.port = self._server.start(app, ssl_context=listening)

    def _choose(self, connection: object, server_name: str | None, listening: object) -> None:
        connection.context = self._current  # type: ignore[attr-defined]

    def trust(self, *authorities: Authority) -> None:
        """Only certificates these CAs issued are let in (the handshake) and recognised (the client check)."""
        self._trust_file.write_bytes(b"".join(a.pem for a in authorities))
        self._current = self._tls.server_context()

    def reissue(self, ca: Authority) -> None:
        """The AS's own certificate, now from ``ca``."""
        ca.issue("as", ips=("127.0.0.1",)).install(Path(self._tls.cert_file), Path(self._tls.key_file))
        self._current = self._tls.server_context()

    def server(self, secret: MountedSecret) -> dict[str, object]:
        """phantom-authz's entry for the AS: its TLS files in ``secret``, read every 50 ms."""
        base = self.dev.base_url
        return {"dialect": "phantom", "introspection_endpoint": f"{base}/oauth/v2/oauth-introspect",
                "client_id": "gateway-pki", "client_auth_method": "tls_client_auth",
                "ca_file": str(secret.path("ca.crt")), "client_cert_file": str(secret.path("tls.crt")),
                "client_key_file": str(secret.path("tls.key")), "issuer": self.dev.issuer,
                "jwks_uri": f"{base}/oauth/v2/oauth-anonymous/jwks", "audiences": ["api.example.com"],
                "timeout_seconds": 2.0, "retry_after_seconds": 5, "tls_reload_interval_seconds": 0.05}

    def token(self) -> str:
        return self.dev.issue("demo-client", "alice", ("read",))

    def stop(self) -> None:
        self._server.stop()


@dataclass
class Rotation:
    tls_as: RotatingAS
    secret: MountedSecret  # the AS entry's ca.crt, tls.crt and tls.key
    client: Issued  # the client certificate phantom-authz started with
    stack: Stack

    def status(self, token: str) -> int:
        response = call(target(self.stack), check_request(f"Bearer {token}"))
        return 200 if response.status.code == 0 else denied_status(response)

    def reloads(self) -> dict[str, float]:
        return {dict(labels)["result"]: value for (name, labels), value in scrape(self.stack).items()
                if name == "phantom_authz_as_tls_reloads_total" and dict(labels)["authorization_server"] == "dev"}


@contextlib.contextmanager
def rotation(directory: Path) -> Iterator[Rotation]:
    tls_as = RotatingAS(directory / "as")
    secret = MountedSecret(directory / "secret")
    client = CLIENT_CA_1.issue(GATEWAY)
    secret.issue(client, tls_as.ca)
    stack = Stack(directory / "stack")
    try:
        stack.start_authz(in_process=True, authorization_servers={"dev": tls_as.server(secret)})
        yield Rotation(tls_as, secret, client, stack)
    finally:
        stack.stop()
        tls_as.stop()


def test_a_rotated_client_certificate_is_used_without_a_restart_and_the_cache_kept(tmp_path: Path) -> None:
    with rotation(tmp_path) as r:
        cached = r.tls_as.token()
        assert r.status(cached) == 200
        r.tls_as.trust(CLIENT_CA_2)  # the AS moves to the new client CA: the certificate in use is refused
        assert r.status(r.tls_as.token()) in (502, 503)  # fail closed
        r.secret.issue(CLIENT_CA_2.issue(GATEWAY), r.tls_as.ca)  # cert-manager renews from the new CA
        fresh = r.tls_as.token()
        wait_until(lambda: r.status(fresh) == 200, "a fresh token introspected with the rotated certificate")
        introspections = r.tls_as.dev.introspections
        assert r.status(cached) == 200
        assert r.tls_as.dev.introspections == introspections  # the answer cached before the rotation, served
        assert r.reloads() == {"ok": 1}


@pytest.mark.parametrize(("broken", "line"), [
    ({"tls.key": CLIENT_CA_2.issue("someone else").key_pem},
     "authorization_servers.dev.client_key_file: does not match the certificate in "
     "authorization_servers.dev.client_cert_file"),
    ({"tls.crt": b"-----BEGIN CERTIFICATE-----\nMIIB"},  # caught half-written
     "authorization_servers.dev.client_cert_file: "),
])
def test_a_bad_rotation_keeps_the_certificate_in_use_and_a_later_good_one_is_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: dict[str, bytes], line: str
) -> None:
    with rotation(tmp_path) as r, caplog.at_level(logging.WARNING, "authz.introspection.tls"):
        r.tls_as.trust(CLIENT_CA_1)  # only the certificate in use gets in
        renewed = CLIENT_CA_2.issue(GATEWAY)
        r.secret.publish({"tls.crt": renewed.cert_pem, "tls.key": renewed.key_pem, "ca.crt": r.tls_as.ca.pem,
                          **broken})
        wait_until(lambda: r.reloads() == {"error": 1}, "the bad rotation refused")
        assert r.status(r.tls_as.token()) == 200  # still the old certificate
        [record] = [rec for rec in caplog.records if rec.name == "authz.introspection.tls"]
        message = record.getMessage()
        assert message.startswith(line), message
        assert f"keeping the TLS in use (client certificate serial {r.client.certificate.serial_number:x}" in message
        assert "BEGIN" not in message and "MIIB" not in message  # never the files' contents
        r.tls_as.trust(CLIENT_CA_2)
        r.secret.issue(renewed, r.tls_as.ca)  # the rotation completed
        fresh = r.tls_as.token()
        wait_until(lambda: r.status(fresh) == 200, "the good rotation taken")
        assert r.reloads() == {"error": 1, "ok": 1}


def test_a_rotated_ca_bundle_verifies_the_re_issued_as_certificate(tmp_path: Path) -> None:
    with rotation(tmp_path) as r:
        assert r.status(r.tls_as.token()) == 200
        new_ca = Authority("AS CA 2")
        r.tls_as.reissue(new_ca)  # the AS's certificate now comes from a CA ca_file does not hold
        assert r.status(r.tls_as.token()) == 503  # unverifiable: unavailable, never believed
        r.secret.issue(r.client, new_ca)  # ca.crt rotated; the client certificate as it was
        fresh = r.tls_as.token()
        wait_until(lambda: r.status(fresh) == 200, "the AS verified with the rotated CA bundle")
        assert r.reloads() == {"ok": 1}
