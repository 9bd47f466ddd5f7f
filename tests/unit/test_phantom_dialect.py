"""PhantomIntrospector + AuthorizationServerClient against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import jwt
import pytest
from aiohttp import web

from authz.config import AuthorizationServerConfig, Secret
from authz.errors import UpstreamMisbehaved, UpstreamUnavailable
from authz.introspection import AuthorizationServerClient, PhantomIntrospector
from tests.local_http import serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_ID = "gate:way"
CLIENT_SECRET = "p@ss/w+rd%="
TOKEN = "abc+def/ghi=="
JWT = jwt.encode({"sub": "alice", "scope": "read"}, "k" * 32, algorithm="HS256")


@dataclass
class Seen:
    method: str
    headers: dict[str, str]
    raw_body: bytes
    form: dict[str, str]


@dataclass
class FakeAS:
    url: str
    handler: Handler | None = None
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def fake_as() -> AsyncIterator[FakeAS]:
    state = FakeAS(url="")

    async def dispatch(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        form = {k: str(v) for k, v in (await request.post()).items()}
        state.seen.append(Seen(request.method, dict(request.headers), raw, form))
        assert state.handler is not None
        return await state.handler(request)

    app = web.Application()
    app.router.add_route("*", "/introspect", dispatch)
    async with serve(app) as base:
        state.url = f"{base}/introspect"
        try:
            yield state
        finally:
            state.release.set()


def _introspector(url: str, session: aiohttp.ClientSession, **overrides: Any) -> PhantomIntrospector:
    options: dict[str, Any] = {
        "name": "curity",
        "introspection_endpoint": url,
        "client_id": CLIENT_ID,
        "client_secret": Secret(CLIENT_SECRET),
        "issuer": "https://as.example",
        "jwks_uri": "https://as.example/jwks",
        "timeout_seconds": 2.0,
        "max_response_bytes": 1024,
        "retry_after_seconds": 5,
    }
    options.update(overrides)
    return PhantomIntrospector(AuthorizationServerClient(AuthorizationServerConfig(**options), session))


def _respond(status: int = 200, body: bytes = b"", **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})

    return handler


async def _introspect(fake_as: FakeAS, session: aiohttp.ClientSession, handler: Handler, **overrides: Any) -> Any:
    fake_as.handler = handler
    return await _introspector(fake_as.url, session, **overrides).introspect(TOKEN)


async def test_204_means_inactive(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    answer = await _introspect(fake_as, session, _respond(204))
    assert answer.active is False
    assert answer.jwt is None


async def test_200_jwt_is_active_with_max_age(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    handler = _respond(200, JWT.encode(), Content_Type="application/jwt", Cache_Control="public, max-age=42")
    answer = await _introspect(fake_as, session, handler)
    assert answer.active is True
    assert answer.jwt == JWT
    assert answer.max_age == 42


async def test_200_jwt_with_charset_and_newline_is_accepted(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    handler = _respond(200, JWT.encode() + b"\n", Content_Type="Application/JWT; charset=utf-8")
    answer = await _introspect(fake_as, session, handler)
    assert answer.jwt == JWT
    assert answer.max_age is None


async def test_no_store_alone_does_not_bound_the_gateway_cache(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    # no-store is aimed at HTTP intermediaries; only max-age bounds our own introspection cache (README)
    handler = _respond(200, JWT.encode(), Content_Type="application/jwt", Cache_Control="no-store")
    assert (await _introspect(fake_as, session, handler)).max_age is None


async def test_max_age_next_to_no_store_is_read(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    handler = _respond(200, JWT.encode(), Content_Type="application/jwt", Cache_Control="no-store, max-age=7")
    assert (await _introspect(fake_as, session, handler)).max_age == 7


async def test_200_json_active_false_means_inactive(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    handler = _respond(200, b'{"active": false}', Content_Type="application/json")
    answer = await _introspect(fake_as, session, handler)
    assert answer.active is False


@pytest.mark.parametrize("body", [b'{"active": true, "sub": "alice"}', b"{not json", b"[]"])
async def test_200_other_json_is_upstream_misbehaved(
    fake_as: FakeAS, session: aiohttp.ClientSession, body: bytes
) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        await _introspect(fake_as, session, _respond(200, body, Content_Type="application/json"))
    assert info.value.status == 502


async def test_200_html_is_upstream_misbehaved(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        await _introspect(fake_as, session, _respond(200, b"<html>login</html>", Content_Type="text/html"))
    assert info.value.status == 502


@pytest.mark.parametrize("body", [b"not-a-jwt", b"a.b", "ä.b.c".encode(), b"a b.c.d", b""])
async def test_200_jwt_type_with_non_jwt_body_is_upstream_misbehaved(
    fake_as: FakeAS, session: aiohttp.ClientSession, body: bytes
) -> None:
    with pytest.raises(UpstreamMisbehaved):
        await _introspect(fake_as, session, _respond(200, body, Content_Type="application/jwt"))


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_client_credentials_are_upstream_misbehaved(
    fake_as: FakeAS, session: aiohttp.ClientSession, status: int
) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        await _introspect(fake_as, session, _respond(status))
    assert info.value.status == 502


@pytest.mark.parametrize("status", [400, 404])
async def test_other_client_errors_are_upstream_misbehaved(
    fake_as: FakeAS, session: aiohttp.ClientSession, status: int
) -> None:
    with pytest.raises(UpstreamMisbehaved):
        await _introspect(fake_as, session, _respond(status))


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_upstream_unavailable_with_default_retry_after(
    fake_as: FakeAS, session: aiohttp.ClientSession, status: int
) -> None:
    with pytest.raises(UpstreamUnavailable) as info:
        await _introspect(fake_as, session, _respond(status), retry_after_seconds=11)
    assert info.value.status == 503
    assert info.value.retry_after == 11


async def test_429_is_upstream_unavailable_with_its_retry_after(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(UpstreamUnavailable) as info:
        await _introspect(fake_as, session, _respond(429, Retry_After="9"))
    assert info.value.retry_after == 9


async def test_redirect_is_not_followed(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    handler = _respond(302, Location="/introspect")
    with pytest.raises(UpstreamMisbehaved) as info:
        await _introspect(fake_as, session, handler)
    assert info.value.status == 502
    assert len(fake_as.seen) == 1


BIG_JWT = b"a." + b"b" * 4000 + b".c"


def _chunked(parts: list[bytes]) -> Handler:
    async def streaming(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/jwt"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
        await resp.write_eof()
        return resp

    return streaming


async def test_oversized_body_with_content_length_is_upstream_misbehaved(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    handler = _respond(200, BIG_JWT, Content_Type="application/jwt")
    with pytest.raises(UpstreamMisbehaved):
        await _introspect(fake_as, session, handler, max_response_bytes=1024)
    # the same answer is fine under a larger limit: the size is what was refused
    assert (await _introspect(fake_as, session, handler, max_response_bytes=8192)).jwt == BIG_JWT.decode()


async def test_oversized_chunked_body_is_upstream_misbehaved(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    handler = _chunked([BIG_JWT[i : i + 200] for i in range(0, len(BIG_JWT), 200)])
    with pytest.raises(UpstreamMisbehaved):
        await _introspect(fake_as, session, handler, max_response_bytes=1024)
    assert (await _introspect(fake_as, session, handler, max_response_bytes=8192)).jwt == BIG_JWT.decode()


async def test_chunked_jwt_within_limit_is_accepted(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    raw = JWT.encode()
    handler = _chunked([raw[:10], raw[10:40], raw[40:]])
    assert (await _introspect(fake_as, session, handler)).jwt == JWT


async def test_slow_answer_is_upstream_unavailable(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(fake_as.release.wait(), 5)
        return web.Response(status=204)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamUnavailable) as info:
        await _introspect(fake_as, session, slow, timeout_seconds=0.2, retry_after_seconds=4)
    assert loop.time() - started < 1.5
    assert info.value.retry_after == 4


async def test_stalled_body_is_upstream_unavailable(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/jwt"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"a.")
        await asyncio.wait_for(fake_as.release.wait(), 5)
        return resp

    with pytest.raises(UpstreamUnavailable):
        await _introspect(fake_as, session, stall, timeout_seconds=0.2)


async def test_connection_refused_is_upstream_unavailable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    introspector = _introspector(f"http://127.0.0.1:{port}/introspect", session, retry_after_seconds=6)
    with pytest.raises(UpstreamUnavailable) as info:
        await introspector.introspect(TOKEN)
    assert info.value.retry_after == 6


async def test_truncated_body_is_upstream_misbehaved(session: aiohttp.ClientSession) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/jwt\r\nContent-Length: 500\r\n\r\na.b")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(truncated, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UpstreamMisbehaved):
            await _introspector(f"http://127.0.0.1:{port}/introspect", session).introspect(TOKEN)
    finally:
        server.close()
        await server.wait_closed()


async def test_request_is_form_post_with_basic_auth_and_accept_jwt(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    await _introspect(fake_as, session, _respond(204))
    [seen] = fake_as.seen
    assert seen.method == "POST"
    assert seen.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert seen.form == {"token": TOKEN}
    assert seen.raw_body == b"token=" + quote(TOKEN, safe="").encode()
    assert seen.headers["Accept"] == "application/jwt"
    scheme, _, encoded = seen.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert user == quote(CLIENT_ID, safe="")
    assert password == quote(CLIENT_SECRET, safe="")
    assert (unquote(user), unquote(password)) == (CLIENT_ID, CLIENT_SECRET)


async def test_errors_do_not_reveal_the_client_secret(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    with pytest.raises(UpstreamMisbehaved) as info:
        await _introspect(fake_as, session, _respond(401))
    assert CLIENT_SECRET not in info.value.detail
    assert quote(CLIENT_SECRET, safe="") not in info.value.detail
