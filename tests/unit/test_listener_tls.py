"""``ServerTls`` on real loopback listeners (an asyncio TLS server with the HTTP listener's context, a grpc.aio server
with its credentials): the certificate served, a rotation taken by new connections, a bad rotation kept out with one
log line naming the key, and the client SAN allow-list. Through real Envoy: tests/e2e/test_tls_listeners.py."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from authz.config import ListenerTlsConfig
from authz.transport.tls import ServerTls
from authz.transport.tls_clients import ClientSanInterceptor, ClientSans, certificate_sans
from tests.pki import Authority, MountedSecret

CA = Authority("listener test CA")
ENVOY = CA.issue("envoy", uris=("spiffe://test/ns/edge/sa/envoy",))
STRANGER = CA.issue("stranger", dns=("stranger.test",))


def _client() -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=CA.pem.decode())
    context.set_alpn_protocols(["h2"])  # grpc's port wants it; the plain TLS one ignores it
    return context


def _served(port: int, client: ssl.SSLContext) -> x509.Certificate:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            client.wrap_socket(raw, server_hostname="authz.test") as connection:
        der = connection.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


async def served(port: int, client: ssl.SSLContext) -> int:
    """The serial number of the certificate a new connection to ``port`` is given."""
    return (await asyncio.to_thread(_served, port, client)).serial_number


@dataclass
class Listeners:
    tls: ServerTls
    secret: MountedSecret
    http_port: int
    grpc_port: int
    counted: list[str]  # the results counted in phantom_authz_listener_tls_reloads_total


@pytest.fixture
async def listeners(tmp_path: Path) -> AsyncIterator[Listeners]:
    secret = MountedSecret(tmp_path / "secret")
    secret.issue(CA.issue("authz", dns=("authz.test",)), CA)
    config = ListenerTlsConfig(cert_file=str(secret.root / "tls.crt"), key_file=str(secret.root / "tls.key"),
                               reload_interval_seconds=0.05)
    counted: list[str] = []  # what phantom_authz_listener_tls_reloads_total counts (authz.app wires it)
    tls = ServerTls(config, counted=lambda result: counted.append(result))
    http = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=tls.http_context())
    server = grpc.aio.server()
    grpc_port = server.add_secure_port("127.0.0.1:0", tls.grpc_credentials())
    await server.start()
    try:
        yield Listeners(tls, secret, http.sockets[0].getsockname()[1], grpc_port, counted)
    finally:
        tls.stop()
        http.close()
        await server.stop(0)


async def _both(listeners: Listeners) -> set[int]:
    client = _client()
    return {await served(listeners.http_port, client), await served(listeners.grpc_port, client)}


async def test_a_rotation_is_served_to_new_connections(listeners: Listeners) -> None:
    first = await _both(listeners)
    rotated = CA.issue("authz", dns=("authz.test",))
    listeners.secret.issue(rotated, CA)  # the symlink swap a secret update makes
    assert listeners.tls.reload() is True
    assert await _both(listeners) == {rotated.certificate.serial_number} != first
    assert listeners.tls.reload() is False  # nothing new
    assert listeners.counted == ["ok"]


async def test_the_watch_takes_a_rotation_without_being_asked(listeners: Listeners) -> None:
    listeners.tls.start()
    rotated = CA.issue("authz", dns=("authz.test",))
    listeners.secret.issue(rotated, CA)
    deadline = asyncio.get_running_loop().time() + 10
    while await _both(listeners) != {rotated.certificate.serial_number}:
        assert asyncio.get_running_loop().time() < deadline, "the rotated certificate was never served"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("files", "line"), [
    ({"tls.key": CA.issue("other").key_pem}, "server.tls.key_file: does not match the certificate in "
                                             "server.tls.cert_file"),
    ({"tls.crt": b"-----BEGIN CERTIFICATE-----\nhalf"}, "server.tls.cert_file: "),
    ({"tls.crt": b""}, "server.tls.cert_file: "),
])
async def test_a_bad_rotation_keeps_the_certificate_and_logs_one_line(
    listeners: Listeners, caplog: pytest.LogCaptureFixture, files: dict[str, bytes], line: str
) -> None:
    before = await _both(listeners)
    good = CA.issue("authz", dns=("authz.test",))
    listeners.secret.publish({"tls.crt": good.cert_pem, "tls.key": good.key_pem, **files})
    with caplog.at_level(logging.WARNING, "authz.tls"):
        assert listeners.tls.reload() is False
        assert listeners.tls.reload() is False  # the same bad files: no second line
    [record] = caplog.records
    assert record.getMessage().startswith(line), record.getMessage()
    assert "keeping the certificate in use (serial" in record.getMessage()
    assert await _both(listeners) == before
    listeners.secret.issue(good, CA)  # the rotation completes
    assert listeners.tls.reload() is True
    assert await _both(listeners) == {good.certificate.serial_number}
    assert listeners.counted == ["error", "ok"]  # the same bad files are counted once


async def test_a_missing_file_keeps_the_certificate(listeners: Listeners, caplog: pytest.LogCaptureFixture) -> None:
    before = await _both(listeners)
    (listeners.secret.root / "tls.key").unlink()
    with caplog.at_level(logging.WARNING, "authz.tls"):
        assert listeners.tls.reload() is False
        assert listeners.tls.reload() is False
    [record] = caplog.records
    assert record.getMessage().startswith("server.tls.key_file: cannot read ")
    assert await _both(listeners) == before


def test_certificate_sans_reads_every_kind() -> None:
    cert = CA.issue("x", dns=("a.test",), ips=("127.0.0.1", "::1"), uris=("spiffe://test/ns/a/sa/b",)).certificate
    assert certificate_sans(cert) == ("a.test", "spiffe://test/ns/a/sa/b", "127.0.0.1", "::1")
    assert certificate_sans(CA.certificate) == ()


def test_client_sans_match_exactly_or_by_glob_and_log_a_refusal_once(caplog: pytest.LogCaptureFixture) -> None:
    sans = ClientSans(("spiffe://test/ns/edge/sa/*", "gateway.test"))
    assert sans.allows_pem(ENVOY.cert_pem)
    assert sans.allows_pem(CA.issue("g", dns=("gateway.test",)).cert_pem)
    with caplog.at_level(logging.WARNING, "authz.tls"):
        assert not sans.allows_pem(STRANGER.cert_pem)
        assert not sans.allows_pem(STRANGER.cert_pem)
        assert not sans.allows_pem(None) and not sans.allows_der(None) and not sans.allows_pem(b"junk")
    stranger, junk = (r.getMessage() for r in caplog.records)  # the stranger once, the junk once
    assert stranger == (
        "refused a client certificate: its SANs (stranger.test) match none of server.tls.allowed_client_sans")
    assert junk.endswith("SANs (none) match none of server.tls.allowed_client_sans")


async def test_mutual_tls_refuses_a_client_without_an_allowed_certificate(tmp_path: Path) -> None:
    """gRPC: a handshake without a certificate fails; a certificate of the CA without an allowed SAN gets
    PERMISSION_DENIED; an allowed one is answered. (HTTP, and both through Envoy: test_tls_listeners.py.)"""
    secret = MountedSecret(tmp_path / "secret")
    secret.issue(CA.issue("authz", dns=("authz.test",)), CA)
    tls = ServerTls(ListenerTlsConfig(cert_file=str(secret.root / "tls.crt"), key_file=str(secret.root / "tls.key"),
                                      client_ca_file=str(secret.root / "ca.crt"),
                                      allowed_client_sans=("spiffe://test/ns/edge/sa/*",)))
    assert tls.client_sans is not None
    server = grpc.aio.server(interceptors=[ClientSanInterceptor(tls.client_sans)])

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(echo)})])
    port = server.add_secure_port("127.0.0.1:0", tls.grpc_credentials())
    await server.start()
    try:
        answers = {}
        for name, cert in (("envoy", ENVOY), ("stranger", STRANGER), ("none", None)):
            key, chain = (cert.key_pem, cert.cert_pem) if cert is not None else (None, None)
            credentials = grpc.ssl_channel_credentials(CA.pem, key, chain)
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials,
                                               options=[("grpc.ssl_target_name_override", "authz.test")]) as channel:
                try:
                    answers[name] = await channel.unary_unary("/test.Echo/Say")(b"hi", timeout=5)
                except grpc.aio.AioRpcError as exc:
                    answers[name] = exc.code()
        assert answers == {"envoy": b"hi", "stranger": grpc.StatusCode.PERMISSION_DENIED,
                           "none": grpc.StatusCode.UNAVAILABLE}
    finally:
        await server.stop(0)
