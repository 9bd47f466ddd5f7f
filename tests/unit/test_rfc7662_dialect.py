"""Rfc7662Introspector + AuthorizationServerClient against a real aiohttp server on 127.0.0.1: JSON answers with a
boolean ``active``, optionally carrying a JWT in a configured field. Anything outside the dialect is a 502."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from authz.config import AuthorizationServerConfig, Secret
from authz.errors import InvalidToken, UpstreamMisbehaved
from authz.introspection import AuthorizationServerClient, Rfc7662Introspector
from authz.models import Introspection
from tests.local_http import serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN = "opaque-token-abc"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
ACTIVE = {"active": True, "sub": "alice", "scope": "read write", "client_id": "web", "exp": 2_000_000_000,
          "iss": "https://as.example"}


@dataclass
class FakeAS:
    url: str = ""
    handler: Handler | None = None
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def fake_as() -> AsyncIterator[FakeAS]:
    state = FakeAS()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        await request.post()
        state.seen.append(dict(request.headers))
        assert state.handler is not None
        return await state.handler(request)

    app = web.Application()
    app.router.add_post("/introspect", dispatch)
    async with serve(app) as base:
        state.url = f"{base}/introspect"
        yield state


def _respond(body: Any, status: int = 200, content_type: str = "application/json", **headers: str) -> Handler:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=data,
                            headers={"Content-Type": content_type, **{k.replace("_", "-"): v
                                                                      for k, v in headers.items()}})

    return handler


async def _introspect(fake_as: FakeAS, session: aiohttp.ClientSession, handler: Handler,
                      jwt_field: str | None = None) -> Introspection:
    fake_as.handler = handler
    config = AuthorizationServerConfig(name="keycloak", introspection_endpoint=fake_as.url, client_id="gw",
                                       client_secret=Secret("s"), dialect="rfc7662", jwt_field=jwt_field,
                                       issuer="https://as.example" if jwt_field else None, max_response_bytes=4096)
    return await Rfc7662Introspector(AuthorizationServerClient(config, session), jwt_field).introspect(TOKEN)


async def _refused(fake_as: FakeAS, session: aiohttp.ClientSession, handler: Handler,
                   jwt_field: str | None = None) -> UpstreamMisbehaved:
    with pytest.raises(UpstreamMisbehaved) as info:
        await _introspect(fake_as, session, handler, jwt_field)
    assert info.value.status == 502
    assert "keycloak" in info.value.detail
    return info.value


async def test_active_answer_gives_its_claims(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    answer = await _introspect(fake_as, session, _respond(ACTIVE, Cache_Control="max-age=30"))
    assert answer.active is True
    assert answer.jwt is None
    assert dict(answer.claims) == {k: v for k, v in ACTIVE.items() if k != "active"}
    assert answer.max_age == 30


async def test_json_with_charset_and_plus_json_types_are_accepted(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    for content_type in ("application/json; charset=utf-8", "application/token-introspection+json"):
        answer = await _introspect(fake_as, session, _respond(ACTIVE, content_type=content_type))
        assert answer.claims["sub"] == "alice"


async def test_inactive_answer(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    answer = await _introspect(fake_as, session, _respond({"active": False}))
    assert answer.active is False
    assert dict(answer.claims) == {}


async def test_inactive_answer_carries_no_claims(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    answer = await _introspect(fake_as, session, _respond({"active": False, "sub": "alice", "scope": "admin"}))
    assert answer.active is False
    assert dict(answer.claims) == {}


async def test_sends_accept_json_and_the_token(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _introspect(fake_as, session, _respond({"active": False}))
    [headers] = fake_as.seen
    assert headers["Accept"] == "application/json"
    assert headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize("body", [{"sub": "alice"}, {"active": "true"}, {"active": 1}, {"active": None}, [True],
                                  "active"],
                         ids=["missing", "string", "int", "null", "array", "string-doc"])
async def test_missing_or_non_boolean_active_is_refused(
    fake_as: FakeAS, session: aiohttp.ClientSession, body: Any
) -> None:
    await _refused(fake_as, session, _respond(body))


async def test_html_page_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _refused(fake_as, session, _respond(b"<html><body>Sign in</body></html>", content_type="text/html"))


async def test_json_body_with_another_content_type_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _refused(fake_as, session, _respond(ACTIVE, content_type="text/plain"))


async def test_syntactically_truncated_json_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _refused(fake_as, session, _respond(b'{"active": true, "scope": "re'))


async def test_body_cut_short_of_its_content_length_is_refused(session: aiohttp.ClientSession) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
                     b'{"active": true, "sub": "al')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = AuthorizationServerConfig(name="keycloak", introspection_endpoint=f"http://127.0.0.1:{port}/i",
                                       client_id="gw", client_secret=Secret("s"), dialect="rfc7662")
    try:
        with pytest.raises(UpstreamMisbehaved):
            await Rfc7662Introspector(AuthorizationServerClient(config, session)).introspect(TOKEN)
    finally:
        server.close()
        await server.wait_closed()


async def test_204_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    error = await _refused(fake_as, session, _respond(b"", status=204))
    assert "204" in error.detail


async def test_oversized_answer_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _refused(fake_as, session, _respond({**ACTIVE, "padding": "x" * 5000}))


async def test_jwt_field_is_extracted_and_removed_from_the_claims(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    answer = await _introspect(fake_as, session, _respond({**ACTIVE, "jwt": JWT}), jwt_field="jwt")
    assert answer.active is True
    assert answer.jwt == JWT
    assert "jwt" not in answer.claims
    assert answer.claims["sub"] == "alice"


async def test_other_jwt_field_name(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    body = {**ACTIVE, "phantom_token": JWT, "jwt": "not-this-one"}
    answer = await _introspect(fake_as, session, _respond(body), jwt_field="phantom_token")
    assert answer.jwt == JWT
    assert answer.claims["jwt"] == "not-this-one"


@pytest.mark.parametrize("value", [None, "", "not-a-jwt", 42, {"a": 1}],
                         ids=["missing", "empty", "no-dots", "number", "object"])
async def test_active_answer_without_a_jwt_in_the_field_is_refused(
    fake_as: FakeAS, session: aiohttp.ClientSession, value: Any
) -> None:
    body = dict(ACTIVE) if value is None else {**ACTIVE, "jwt": value}
    error = await _refused(fake_as, session, _respond(body), jwt_field="jwt")
    assert "jwt" in error.detail


async def test_inactive_answer_needs_no_jwt_field(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    answer = await _introspect(fake_as, session, _respond({"active": False}), jwt_field="jwt")
    assert (answer.active, answer.jwt) == (False, None)


@pytest.mark.parametrize("extra", [{"token_type": "refresh_token"}, {"token_type": "id_token"},
                                   {"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}],
                         ids=["refresh", "id", "dpop-bound"])
async def test_item08_answer_about_a_non_access_or_bound_token_is_refused_before_its_jwt_replaces_it(
    fake_as: FakeAS, session: aiohttp.ClientSession, extra: dict[str, Any]
) -> None:
    """With jwt_field the JWT's claims replace the answer's: what the answer says of the token is checked first."""
    with pytest.raises(InvalidToken) as info:
        await _introspect(fake_as, session, _respond({**ACTIVE, **extra, "jwt": JWT}), jwt_field="jwt")
    assert info.value.status == 401
