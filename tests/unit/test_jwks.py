"""KeySet: the AS's JWKS fetched from a real aiohttp server on 127.0.0.1, cached, refreshed at a bounded rate."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from authz.config import AuthorizationServerConfig, ConfigError, Secret, load_config
from authz.errors import UpstreamMisbehaved, UpstreamUnavailable
from authz.introspection.client import AuthorizationServerClient
from authz.introspection.jwks import KeySet, metadata_urls
from tests.local_http import serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RSA1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC1 = ec.generate_private_key(ec.SECP256R1())
MIN_REFRESH = 5.0
CACHE = 300.0


def _jwk(key: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    public = key.public_key()
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    doc: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        doc["kid"] = kid
    doc.update(extra)
    return doc


def _reply(body: Any, status: int = 200, content_type: str = "application/json", delay: float = 0.0) -> Handler:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, body=data, content_type=content_type)

    return handler


@dataclass
class Server:
    base: str = ""
    handlers: dict[str, Handler] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)

    def jwks(self, *keys: dict[str, Any], path: str = "/jwks") -> None:
        self.handlers[path] = _reply({"keys": list(keys)})


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        state.hits[request.path] += 1
        handler = state.handlers.get(request.path)
        if handler is None:
            return web.Response(status=404, text="not found")
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    async with serve(app) as state.base:
        yield state


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _keyset(server: Server, session: aiohttp.ClientSession, clock: Callable[[], float], **overrides: Any) -> KeySet:
    options: dict[str, Any] = {
        "name": "corp-as",
        "introspection_endpoint": f"{server.base}/introspect",
        "client_id": "gw",
        "client_secret": Secret("s"),
        "issuer": server.base,
        "jwks_uri": f"{server.base}/jwks",
        "jwks_cache_seconds": CACHE,
        "jwks_min_refresh_seconds": MIN_REFRESH,
        "timeout_seconds": 2.0,
    }
    options.update(overrides)
    # as given, unvalidated: a test may hand the key set what the loader refuses (the defence behind it)
    config = AuthorizationServerConfig.model_construct(**options)
    return KeySet(config, AuthorizationServerClient(config, session), clock=clock)


def _is(found: jwt.PyJWK, key: Any) -> bool:
    return bool(found.key.public_numbers() == key.public_key().public_numbers())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_keys_are_fetched_once_and_cached(server: Server, session: aiohttp.ClientSession, clock: Clock) -> None:
    server.jwks(_jwk(RSA1, "k1"), _jwk(EC1, "e1"))
    keys = _keyset(server, session, clock)
    assert _is(await keys.key("k1", "RS256"), RSA1)
    clock.now += CACHE - 1
    assert _is(await keys.key("e1", "ES256"), EC1)
    assert _is(await keys.key("k1", "RS256"), RSA1)
    assert server.hits["/jwks"] == 1


async def test_keys_are_refetched_after_the_cache_time(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(server, session, clock)
    await keys.key("k1", "RS256")
    clock.now += CACHE + 1
    server.jwks(_jwk(RSA2, "k1"))  # the AS replaced the key under the same kid
    assert _is(await keys.key("k1", "RS256"), RSA2)
    assert server.hits["/jwks"] == 2


async def test_token_without_kid_uses_the_only_key(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, None))
    assert _is(await _keyset(server, session, clock).key(None, "RS256"), RSA1)


async def test_unknown_kid_refreshes_once_and_finds_a_rotated_in_key(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(server, session, clock)
    await keys.key("k1", "RS256")
    clock.now += 60
    server.jwks(_jwk(RSA1, "k1"), _jwk(RSA2, "k2"))
    assert _is(await keys.key("k2", "RS256"), RSA2)
    assert _is(await keys.key("k1", "RS256"), RSA1)
    assert server.hits["/jwks"] == 2


async def test_unknown_kid_is_upstream_misbehaved(server: Server, session: aiohttp.ClientSession, clock: Clock) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    with pytest.raises(UpstreamMisbehaved) as info:
        await _keyset(server, session, clock).key("nope", "RS256")
    assert info.value.status == 502
    assert "corp-as" in info.value.detail


async def test_burst_of_junk_kids_causes_at_most_one_extra_fetch(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(server, session, clock)
    await keys.key("k1", "RS256")
    clock.now += MIN_REFRESH + 1
    for i in range(50):
        with pytest.raises(UpstreamMisbehaved):
            await keys.key(f"junk-{i}", "RS256")
        clock.now += (MIN_REFRESH - 0.5) / 50  # the whole burst stays within the refresh interval
    assert server.hits["/jwks"] == 2
    # the good key still works without another fetch
    assert _is(await keys.key("k1", "RS256"), RSA1)
    assert server.hits["/jwks"] == 2


async def test_concurrent_burst_of_junk_kids_causes_one_fetch(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    server.handlers["/jwks"] = _reply({"keys": [_jwk(RSA1, "k1")]}, delay=0.05)
    keys = _keyset(server, session, clock)
    await keys.key("k1", "RS256")
    clock.now += MIN_REFRESH + 1
    results = await asyncio.gather(*(keys.key(f"junk-{i}", "RS256") for i in range(50)), return_exceptions=True)
    assert all(isinstance(r, UpstreamMisbehaved) for r in results)
    assert server.hits["/jwks"] == 2


async def test_refresh_is_allowed_again_after_the_interval(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(server, session, clock)
    await keys.key("k1", "RS256")
    clock.now += MIN_REFRESH + 1
    with pytest.raises(UpstreamMisbehaved):
        await keys.key("junk", "RS256")
    server.jwks(_jwk(RSA1, "k1"), _jwk(RSA2, "k2"))
    clock.now += MIN_REFRESH - 1
    with pytest.raises(UpstreamMisbehaved):  # rotated in, but too soon after the last refresh to look again
        await keys.key("k2", "RS256")
    assert server.hits["/jwks"] == 2
    clock.now += 1
    assert _is(await keys.key("k2", "RS256"), RSA2)
    assert server.hits["/jwks"] == 3


async def test_concurrent_first_calls_share_one_fetch(server: Server, session: aiohttp.ClientSession) -> None:
    server.handlers["/jwks"] = _reply({"keys": [_jwk(RSA1, "k1")]}, delay=0.1)
    keys = _keyset(server, session, time.monotonic)
    found = await asyncio.gather(*(keys.key("k1", "RS256") for _ in range(20)))
    assert all(_is(k, RSA1) for k in found)
    assert server.hits["/jwks"] == 1


async def test_concurrent_first_calls_make_at_most_two_fetches(server: Server, session: aiohttp.ClientSession) -> None:
    server.handlers["/jwks"] = _reply({"keys": [_jwk(RSA1, "k1")]}, delay=0.1)
    keys = _keyset(server, session, time.monotonic)
    found = await asyncio.gather(*(keys.key("k1", "RS256") for _ in range(20)))
    assert all(_is(k, RSA1) for k in found)
    assert 1 <= server.hits["/jwks"] <= 2


def test_metadata_urls_insert_the_well_known_path_before_the_issuer_path() -> None:
    assert metadata_urls("https://as.example/tenants/a") == [
        "https://as.example/.well-known/oauth-authorization-server/tenants/a",
        "https://as.example/tenants/a/.well-known/openid-configuration",
    ]
    assert metadata_urls("https://as.example/") == [
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    ]


async def test_discovers_jwks_uri_from_rfc8414_metadata(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    issuer = f"{server.base}/tenants/a"
    server.handlers["/.well-known/oauth-authorization-server/tenants/a"] = _reply(
        {"issuer": issuer, "jwks_uri": f"{server.base}/keys/a"})
    server.jwks(_jwk(RSA1, "k1"), path="/keys/a")
    keys = _keyset(server, session, clock, issuer=issuer, jwks_uri=None, allow_insecure_http=True)
    assert _is(await keys.key("k1", "RS256"), RSA1)
    assert server.hits["/tenants/a/.well-known/openid-configuration"] == 0
    # later refreshes go straight to the JWKS
    clock.now += CACHE + 1
    await keys.key("k1", "RS256")
    assert server.hits["/.well-known/oauth-authorization-server/tenants/a"] == 1
    assert server.hits["/keys/a"] == 2


async def test_falls_back_to_oidc_discovery_when_rfc8414_is_404(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    issuer = f"{server.base}/realms/demo"
    server.handlers["/realms/demo/.well-known/openid-configuration"] = _reply(
        {"issuer": issuer, "jwks_uri": f"{server.base}/realms/demo/certs"})
    server.jwks(_jwk(EC1, "e1"), path="/realms/demo/certs")
    keys = _keyset(server, session, clock, issuer=issuer, jwks_uri=None, allow_insecure_http=True)
    assert _is(await keys.key("e1", "ES256"), EC1)
    assert server.hits["/.well-known/oauth-authorization-server/realms/demo"] == 1
    assert server.hits["/realms/demo/.well-known/openid-configuration"] == 1


async def test_uses_the_configured_metadata_url(server: Server, session: aiohttp.ClientSession, clock: Clock) -> None:
    server.handlers["/custom/meta"] = _reply({"issuer": server.base, "jwks_uri": f"{server.base}/jwks"})
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(server, session, clock, jwks_uri=None, allow_insecure_http=True,
                   metadata_url=f"{server.base}/custom/meta")
    assert _is(await keys.key("k1", "RS256"), RSA1)
    assert server.hits["/custom/meta"] == 1
    assert server.hits["/.well-known/oauth-authorization-server"] == 0
    assert server.hits["/.well-known/openid-configuration"] == 0


async def test_metadata_naming_another_issuer_is_upstream_misbehaved(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.handlers["/.well-known/oauth-authorization-server"] = _reply(
        {"issuer": "https://evil.example", "jwks_uri": f"{server.base}/jwks"})
    server.jwks(_jwk(RSA1, "k1"))
    with pytest.raises(UpstreamMisbehaved) as info:
        await _keyset(server, session, clock, jwks_uri=None, allow_insecure_http=True).key("k1", "RS256")
    assert info.value.status == 502
    assert server.hits["/jwks"] == 0


async def test_a_discovered_jwks_uri_with_credentials_is_refused_and_never_fetched(
    server: Server, session: aiohttp.ClientSession, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Configured URLs with ``user:password@`` are refused at load; a discovered one the same way, at use: the
    password would reach the JWKS log lines and spans (and aiohttp would send it as Basic credentials)."""
    host = server.base.removeprefix("http://")
    server.handlers["/.well-known/oauth-authorization-server"] = _reply(
        {"issuer": server.base, "jwks_uri": f"http://user:s3cret-pw@{host}/jwks"})
    server.jwks(_jwk(RSA1, "k1"))
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamMisbehaved) as info:
        await _keyset(server, session, clock, jwks_uri=None, allow_insecure_http=True).key("k1", "RS256")
    assert "carries credentials" in info.value.detail and "s3cret-pw" not in info.value.detail
    assert server.hits["/jwks"] == 0
    assert "s3cret-pw" not in caplog.text


async def test_no_metadata_anywhere_is_upstream_misbehaved(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    with pytest.raises(UpstreamMisbehaved):
        await _keyset(server, session, clock, jwks_uri=None, allow_insecure_http=True).key("k1", "RS256")
    assert server.hits["/.well-known/oauth-authorization-server"] == 1
    assert server.hits["/.well-known/openid-configuration"] == 1


@pytest.mark.parametrize(
    "handler",
    [
        _reply(b"<html>maintenance</html>", content_type="text/html"),
        _reply(b'{"keys": [', content_type="application/json"),
        _reply([]),
        _reply({"nokeys": []}),
        _reply({"keys": {}}),
        _reply({"keys": []}),
        _reply({"keys": [_jwk(RSA1, "k1", use="enc")]}),
        _reply({"keys": [{"kty": "RSA", "kid": "k1", "n": "!!", "e": "AQAB"}, "junk"]}),
        _reply(b"", status=204),
    ],
    ids=["html", "truncated", "array", "no-keys", "keys-object", "empty", "only-enc", "unusable", "204"],
)
async def test_unusable_jwks_is_upstream_misbehaved(
    server: Server, session: aiohttp.ClientSession, clock: Clock, handler: Handler
) -> None:
    server.handlers["/jwks"] = handler
    with pytest.raises(UpstreamMisbehaved) as info:
        await _keyset(server, session, clock).key("k1", "RS256")
    assert info.value.status == 502


async def test_enc_keys_are_skipped_but_sig_keys_kept(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA2, "k1", use="enc"), _jwk(RSA1, "k2", use="sig"))
    keys = _keyset(server, session, clock)
    assert _is(await keys.key("k2", "RS256"), RSA1)
    with pytest.raises(UpstreamMisbehaved):
        await keys.key("k1", "RS256")


async def test_as_unreachable_on_first_fetch_is_upstream_unavailable(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    keys = _keyset(server, session, clock, jwks_uri=f"http://127.0.0.1:{_closed_port()}/jwks", retry_after_seconds=7)
    with pytest.raises(UpstreamUnavailable) as info:
        await keys.key("k1", "RS256")
    assert info.value.status == 503
    assert info.value.retry_after == 7


async def test_as_5xx_on_first_fetch_is_upstream_unavailable(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.handlers["/jwks"] = _reply(b"oops", status=503, content_type="text/plain")
    with pytest.raises(UpstreamUnavailable):
        await _keyset(server, session, clock).key("k1", "RS256")


async def test_as_recovering_after_a_failed_first_fetch_is_used(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.handlers["/jwks"] = _reply(b"oops", status=503, content_type="text/plain")
    keys = _keyset(server, session, clock)
    with pytest.raises(UpstreamUnavailable):
        await keys.key("k1", "RS256")
    clock.now += MIN_REFRESH + 1
    server.jwks(_jwk(RSA1, "k1"))
    assert _is(await keys.key("k1", "RS256"), RSA1)


async def test_concurrent_first_calls_while_as_down_are_all_upstream_unavailable(
    server: Server, session: aiohttp.ClientSession
) -> None:
    server.handlers["/jwks"] = _reply(b"oops", status=503, content_type="text/plain", delay=0.05)
    keys = _keyset(server, session, time.monotonic)
    results = await asyncio.gather(*(keys.key("k1", "RS256") for _ in range(5)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["UpstreamUnavailable"] * 5


async def test_as_down_on_a_later_refresh_keeps_the_cached_keys(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(server, session, clock)
    await keys.key("k1", "RS256")
    server.handlers["/jwks"] = _reply(b"oops", status=503, content_type="text/plain")
    clock.now += CACHE + 1
    assert _is(await keys.key("k1", "RS256"), RSA1)
    assert server.hits["/jwks"] == 2  # the refresh was attempted
    clock.now += MIN_REFRESH + 1
    with pytest.raises(UpstreamMisbehaved):  # unknown kid: refresh fails, still no such key
        await keys.key("k2", "RS256")
    assert _is(await keys.key("k1", "RS256"), RSA1)


async def test_as_unreachable_on_a_later_refresh_keeps_the_cached_keys(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(server, session, clock)
    await keys.key("k1", "RS256")

    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    server.handlers["/jwks"] = hang_up
    clock.now += CACHE + 1
    assert _is(await keys.key("k1", "RS256"), RSA1)


async def test_failed_refresh_after_expiry_is_not_retried_on_every_call(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(server, session, clock)
    await keys.key("k1", "RS256")
    server.handlers["/jwks"] = _reply(b"oops", status=503, content_type="text/plain")
    clock.now += CACHE + 1
    for _ in range(10):
        assert _is(await keys.key("k1", "RS256"), RSA1)
        clock.now += 0.1
    assert server.hits["/jwks"] <= 2


async def test_jwks_larger_than_max_response_bytes_is_upstream_misbehaved(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    big = {"keys": [_jwk(RSA1, f"k{i}") for i in range(10)]}  # ~4 KiB
    server.handlers["/jwks"] = _reply(big)
    with pytest.raises(UpstreamMisbehaved) as info:
        await _keyset(server, session, clock, max_response_bytes=1024).key("k1", "RS256")
    assert "max_response_bytes" in info.value.detail
    # the same document is fine under a larger limit: the size is what was refused
    assert _is(await _keyset(server, session, clock, max_response_bytes=64 * 1024).key("k1", "RS256"), RSA1)


# --- issue 12 item 12: keys found by discovery come over https only (opt-out: allow_insecure_http) ------------------

def _self_signed_tls(directory: Path) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 with a fresh self-signed certificate (clients here use verify_tls: false:
    what is under test is the scheme the AS's metadata names, not certificate validation)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[Server]:
    """The same dispatching server as ``server``, over https on 127.0.0.1."""
    state = Server()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        state.hits[request.path] += 1
        handler = state.handlers.get(request.path)
        return web.Response(status=404, text="not found") if handler is None else await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_self_signed_tls(tmp_path)).start()
        state.base = f"https://127.0.0.1:{runner.addresses[0][1]}"
        yield state
    finally:
        await runner.cleanup()


def _https_issuer_naming(tls_server: Server, jwks_uri: str) -> None:
    tls_server.handlers["/.well-known/oauth-authorization-server"] = _reply(
        {"issuer": tls_server.base, "jwks_uri": jwks_uri})


async def test_item12_https_issuer_naming_an_http_jwks_uri_is_refused(
    tls_server: Server, server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    _https_issuer_naming(tls_server, f"{server.base}/jwks")  # plain http, on another host:port
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(tls_server, session, clock, issuer=tls_server.base, jwks_uri=None, verify_tls=False)
    with pytest.raises(UpstreamMisbehaved) as info:
        await keys.key("k1", "RS256")
    assert info.value.status == 502
    assert "not https" in info.value.detail and "allow_insecure_http" in info.value.detail
    assert tls_server.hits["/.well-known/oauth-authorization-server"] == 1
    assert server.hits["/jwks"] == 0  # the keys were never fetched


async def test_item12_http_jwks_uri_is_used_with_the_opt_out_and_its_host_is_logged(
    tls_server: Server, server: Server, session: aiohttp.ClientSession, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    _https_issuer_naming(tls_server, f"{server.base}/jwks")
    server.jwks(_jwk(RSA1, "k1"))
    keys = _keyset(tls_server, session, clock, issuer=tls_server.base, jwks_uri=None, verify_tls=False,
                   allow_insecure_http=True)
    with caplog.at_level("INFO", logger="authz.jwks"):
        assert _is(await keys.key("k1", "RS256"), RSA1)
    host = server.base.removeprefix("http://")
    assert any(r.levelname == "INFO" and f"host {host}" in r.getMessage() for r in caplog.records), caplog.text


async def test_item12_https_jwks_uri_is_used_and_its_host_is_logged(
    tls_server: Server, session: aiohttp.ClientSession, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    _https_issuer_naming(tls_server, f"{tls_server.base}/keys")
    tls_server.jwks(_jwk(RSA1, "k1"), path="/keys")
    keys = _keyset(tls_server, session, clock, issuer=tls_server.base, jwks_uri=None, verify_tls=False)
    with caplog.at_level("INFO", logger="authz.jwks"):
        assert _is(await keys.key("k1", "RS256"), RSA1)
    host = tls_server.base.removeprefix("https://")
    assert any(r.levelname == "INFO" and f"host {host}" in r.getMessage() for r in caplog.records), caplog.text


async def test_item12_http_metadata_is_not_fetched_without_the_opt_out(
    server: Server, session: aiohttp.ClientSession, clock: Clock
) -> None:
    server.handlers["/.well-known/oauth-authorization-server"] = _reply(
        {"issuer": server.base, "jwks_uri": f"{server.base}/jwks"})
    server.jwks(_jwk(RSA1, "k1"))
    for options in ({}, {"metadata_url": f"{server.base}/.well-known/oauth-authorization-server"}):
        with pytest.raises(UpstreamMisbehaved) as info:
            await _keyset(server, session, clock, jwks_uri=None, **options).key("k1", "RS256")
        assert "not https" in info.value.detail
    assert sum(server.hits.values()) == 0


def _config_file(tmp_path: Path, **entry: Any) -> Path:
    as_entry = {"introspection_endpoint": "https://as.example/introspect", "client_id": "gw",
                "client_secret_env": "SECRET", "issuer": "https://as.example", **entry}
    path = tmp_path / "authz.yaml"
    path.write_text(json.dumps({"authorization_servers": {"corp": as_entry}}))
    return path


@pytest.mark.parametrize(("entry", "key"), [
    ({"metadata_url": "http://as.example/.well-known/oauth-authorization-server"}, "metadata_url"),
    ({"issuer": "http://as.example"}, "issuer"),
], ids=["http-metadata-url-for-https-issuer", "http-issuer-discovery"])
def test_item12_config_refuses_key_discovery_over_http_without_the_opt_out(
    tmp_path: Path, entry: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config_file(tmp_path, **entry), {"SECRET": "s"})
    assert f"authorization_servers.corp.{key}" in str(info.value) and "allow_insecure_http" in str(info.value)
    config = load_config(_config_file(tmp_path, allow_insecure_http=True, **entry), {"SECRET": "s"})
    assert config.authorization_servers["corp"].allow_insecure_http is True


def test_configured_http_jwks_uri_is_the_operators_choice(tmp_path: Path) -> None:
    config = load_config(_config_file(tmp_path, issuer="http://127.0.0.1:8443", jwks_uri="http://127.0.0.1:8443/jwks"),
                         {"SECRET": "s"})
    assert config.authorization_servers["corp"].allow_insecure_http is False
