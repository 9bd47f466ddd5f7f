"""TLS to the AS, as a real HTTPS server on 127.0.0.1 that requires client certificates sees it: the CA bundle we
trust (``ca_file``), the client certificate we present (to introspection and to the JWKS alike), and RFC 8705's
``tls_client_auth`` / ``self_signed_tls_client_auth`` (``client_id`` in the body, no secret). A server we cannot
verify, or one that refuses our handshake, is unavailable (503): nothing it says is believed."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from authz.config import AuthorizationServerConfig, Secret
from authz.errors import UpstreamUnavailable
from authz.introspection.client import AuthorizationServerClient
from devtools.mtls_clients import peer_certificate
from tests.local_http import serve
from tests.pki import Authority, Issued, self_signed

AS_CA = Authority("AS server CA")
CLIENT_CA = Authority("gateway client CA")
OTHER_CA = Authority("someone else's CA")
GATEWAY = CLIENT_CA.issue("phantom-authz gateway")
SELF_SIGNED = self_signed("phantom-authz self-signed")


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    peer: x509.Certificate | None


@dataclass
class TlsAS:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("as-tls")
    server_cert, server_key = AS_CA.issue("as", ips=("127.0.0.1",)).write(directory, "as")
    trusted = directory / "client-trust.pem"  # what the AS lets through its handshake
    trusted.write_bytes(CLIENT_CA.pem + SELF_SIGNED.cert_pem)
    paths = {"as_ca": AS_CA.write(directory / "as-ca.pem"), "other_ca": OTHER_CA.write(directory / "other-ca.pem"),
             "server_cert": server_cert, "server_key": server_key, "client_trust": trusted}
    for name, issued in (("gateway", GATEWAY), ("self_signed", SELF_SIGNED), ("stranger", OTHER_CA.issue("x"))):
        paths[f"{name}_cert"], paths[f"{name}_key"] = issued.write(directory, name)
    return paths


@pytest.fixture
async def tls_as(pki: dict[str, Path]) -> AsyncIterator[TlsAS]:
    state = TlsAS()

    async def record(request: web.Request) -> web.StreamResponse:
        form = await request.post() if request.method == "POST" else {}
        state.seen.append(Seen(request.path, dict(request.headers), {k: str(v) for k, v in form.items()},
                               peer_certificate(request)))
        return web.Response(status=204) if request.method == "POST" else web.json_response({"keys": []})

    app = web.Application()
    app.router.add_post("/introspect", record)
    app.router.add_get("/jwks", record)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server_cert"], pki["server_key"])
    context.load_verify_locations(cafile=pki["client_trust"])
    context.verify_mode = ssl.CERT_REQUIRED
    async with serve(app, ssl_context=context) as base:
        state.url = base
        yield state


def _config(url: str, pki: dict[str, Path], client: str | None = "gateway", **overrides: Any
            ) -> AuthorizationServerConfig:
    options: dict[str, Any] = {"name": "corp", "introspection_endpoint": f"{url}/introspect", "client_id": "gw-1",
                               "ca_file": str(pki["as_ca"]), "issuer": "https://as.example",
                               "jwks_uri": f"{url}/jwks", "client_auth_method": "tls_client_auth"}
    if client is not None:
        options.update(client_cert_file=str(pki[f"{client}_cert"]), client_key_file=str(pki[f"{client}_key"]))
    options.update(overrides)
    return AuthorizationServerConfig(**options)


async def _introspect(config: AuthorizationServerConfig, session: aiohttp.ClientSession) -> int:
    client = AuthorizationServerClient(config, session)
    try:
        return (await client.introspect("opaque-token", "application/jwt")).status
    finally:
        await client.aclose()  # its TLS files' own session (authz.introspection.client_tls)


@pytest.mark.parametrize(("method", "client", "issued"), [
    ("tls_client_auth", "gateway", GATEWAY), ("self_signed_tls_client_auth", "self_signed", SELF_SIGNED)])
async def test_rfc8705_sends_the_client_id_and_presents_the_certificate(
    tls_as: TlsAS, pki: dict[str, Path], session: aiohttp.ClientSession, method: str, client: str, issued: Issued
) -> None:
    config = _config(tls_as.url, pki, client, client_auth_method=method)
    client_ = AuthorizationServerClient(config, session)
    try:
        assert (await client_.introspect("opaque-token", "application/jwt")).status == 204
        assert (await client_.get(config.jwks_uri or "", "JWKS")).status == 200
    finally:
        await client_.aclose()
    introspection, jwks = tls_as.seen
    assert introspection.form == {"token": "opaque-token", "client_id": "gw-1"}
    assert "Authorization" not in introspection.headers
    assert introspection.peer == jwks.peer == issued.certificate  # presented on both calls


async def test_a_client_certificate_goes_with_a_secret_method_too(
    tls_as: TlsAS, pki: dict[str, Path], session: aiohttp.ClientSession
) -> None:
    config = _config(tls_as.url, pki, client_auth_method="client_secret_basic", client_secret=Secret("s3cret"))
    assert await _introspect(config, session) == 204
    [seen] = tls_as.seen
    assert seen.headers["Authorization"].startswith("Basic ") and seen.peer == GATEWAY.certificate


@pytest.mark.parametrize(("why", "changes"), [
    ("the AS's certificate is not from ca_file's CA", {"ca_file": "other_ca"}),
    ("the system's CAs do not know the AS's CA", {"ca_file": None}),
    ("the AS requires a client certificate and gets none", {"client": None}),
    ("the AS does not trust our certificate's CA", {"client": "stranger"}),
])
async def test_a_tls_failure_is_unavailable_never_an_answer(
    tls_as: TlsAS, pki: dict[str, Path], session: aiohttp.ClientSession, why: str, changes: dict[str, Any]
) -> None:
    client = changes.pop("client", "gateway")
    overrides: dict[str, Any] = {k: (str(pki[v]) if v else None) for k, v in changes.items()}
    if client is None:
        overrides.update(client_auth_method="client_secret_basic", client_secret=Secret("s3cret"))
    with pytest.raises(UpstreamUnavailable) as info:
        await _introspect(_config(tls_as.url, pki, client, **overrides), session)
    assert "cannot connect" in str(info.value), why
    assert info.value.retry_after is not None
    assert tls_as.seen == []
