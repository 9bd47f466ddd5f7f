"""Rfc9701Introspector against a real aiohttp server on 127.0.0.1 that serves signed introspection answers and its
JWKS: nothing in the answer is believed before its signature, typ, iss, aud and iat check out (else 502)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from authz.config import AuthorizationServerConfig, Secret
from authz.errors import UpstreamMisbehaved
from authz.introspection import AuthorizationServerClient, Rfc9701Introspector
from authz.introspection.jwks import KeySet
from authz.models import Introspection
from authz.token import JwtVerifier
from tests.local_http import serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NOW = 1_700_000_000
ISSUER = "https://as.example/oauth"
CLIENT_ID = "gateway"
KID = "as-key-1"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FOREIGN = rsa.generate_private_key(public_exponent=65537, key_size=2048)
MEDIA_TYPE = "application/token-introspection+jwt"
ACTIVE = {"active": True, "sub": "alice", "scope": "read", "client_id": "web", "exp": NOW + 600}


@dataclass
class FakeAS:
    base: str = ""
    handler: Handler | None = None
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def fake_as() -> AsyncIterator[FakeAS]:
    state = FakeAS()

    async def introspect(request: web.Request) -> web.StreamResponse:
        await request.post()
        state.seen.append(dict(request.headers))
        assert state.handler is not None
        return await state.handler(request)

    async def jwks(request: web.Request) -> web.StreamResponse:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
        return web.json_response({"keys": [{**public, "kid": KID, "use": "sig"}]})

    app = web.Application()
    app.router.add_post("/introspect", introspect)
    app.router.add_get("/jwks", jwks)
    async with serve(app) as state.base:
        yield state


def _signed(envelope: dict[str, Any] | None = None, key: Any = KEY, **headers: Any) -> str:
    claims = {"iss": ISSUER, "aud": CLIENT_ID, "iat": NOW, "token_introspection": ACTIVE}
    claims.update(envelope or {})
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"typ": "token-introspection+jwt", "kid": KID, **headers})


def _respond(body: str | bytes, content_type: str = MEDIA_TYPE, status: int = 200, **headers: str) -> Handler:
    data = body.encode() if isinstance(body, str) else body

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=data,
                            headers={"Content-Type": content_type, **{k.replace("_", "-"): v
                                                                      for k, v in headers.items()}})

    return handler


async def _introspect(fake_as: FakeAS, session: aiohttp.ClientSession, handler: Handler) -> Introspection:
    fake_as.handler = handler
    config = AuthorizationServerConfig(name="oidc", introspection_endpoint=f"{fake_as.base}/introspect",
                                       client_id=CLIENT_ID, client_secret=Secret("s"), dialect="rfc9701",
                                       issuer=ISSUER, jwks_uri=f"{fake_as.base}/jwks", leeway_seconds=30)
    client = AuthorizationServerClient(config, session)
    verifier = JwtVerifier(KeySet(config, client), config.algorithms)
    return await Rfc9701Introspector(client, verifier, config, clock=lambda: NOW).introspect("opaque-1")


async def _refused(fake_as: FakeAS, session: aiohttp.ClientSession, handler: Handler) -> UpstreamMisbehaved:
    with pytest.raises(UpstreamMisbehaved) as info:
        await _introspect(fake_as, session, handler)
    assert info.value.status == 502
    assert "oidc" in info.value.detail
    return info.value


async def test_signed_active_answer_gives_its_claims(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    answer = await _introspect(fake_as, session, _respond(_signed(), Cache_Control="max-age=20"))
    assert answer.active is True
    assert answer.jwt is None  # no access-token JWT to forward
    assert dict(answer.claims) == {k: v for k, v in ACTIVE.items() if k != "active"}
    assert answer.max_age == 20


async def test_signed_inactive_answer(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    answer = await _introspect(fake_as, session, _respond(_signed({"token_introspection": {"active": False}})))
    assert answer.active is False


async def test_sends_accept_token_introspection_jwt(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _introspect(fake_as, session, _respond(_signed()))
    [headers] = fake_as.seen
    assert headers["Accept"] == MEDIA_TYPE


@pytest.mark.parametrize("envelope", [{"aud": [CLIENT_ID, "other"]}, {"iat": NOW + 20}, {"iat": NOW - 86400}],
                         ids=["aud-list", "iat-within-leeway", "iat-old"])
async def test_acceptable_envelope_variants(
    fake_as: FakeAS, session: aiohttp.ClientSession, envelope: dict[str, Any]
) -> None:
    assert (await _introspect(fake_as, session, _respond(_signed(envelope)))).active is True


async def test_typ_with_application_prefix_is_accepted(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    token = _signed(typ="application/token-introspection+jwt")
    assert (await _introspect(fake_as, session, _respond(token))).active is True


@pytest.mark.parametrize(
    "envelope",
    [{"iss": "https://evil.example"}, {"iss": None}, {"aud": "someone-else"}, {"aud": ["a", "b"]}, {"aud": None},
     {"iat": None}, {"iat": "now"}, {"iat": NOW + 3600}, {"iat": 10**400}, {"token_introspection": None},
     {"token_introspection": "active"}, {"token_introspection": {"sub": "alice"}},
     {"token_introspection": {"active": "true"}}],
    ids=["wrong-iss", "no-iss", "wrong-aud", "aud-list-without-us", "no-aud", "no-iat", "iat-string",
         "iat-future", "iat-overflow", "no-token-introspection", "token-introspection-string", "no-active",
         "active-string"],
)
async def test_bad_envelope_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession,
                                       envelope: dict[str, Any]) -> None:
    await _refused(fake_as, session, _respond(_signed(envelope)))


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", None])
async def test_wrong_typ_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession, typ: str | None) -> None:
    await _refused(fake_as, session, _respond(_signed(typ=typ)))


async def test_signature_by_another_key_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    forged = _signed({"token_introspection": {**ACTIVE, "scope": "read admin"}}, key=FOREIGN)
    await _refused(fake_as, session, _respond(forged))


async def test_alg_none_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    claims = {"iss": ISSUER, "aud": CLIENT_ID, "iat": NOW, "token_introspection": ACTIVE}
    token = f"{b64({'alg': 'none', 'typ': 'token-introspection+jwt', 'kid': KID})}.{b64(claims)}."
    await _refused(fake_as, session, _respond(token))


@pytest.mark.parametrize("content_type", ["application/jwt", "application/json", "text/html"])
async def test_wrong_content_type_is_refused(
    fake_as: FakeAS, session: aiohttp.ClientSession, content_type: str
) -> None:
    await _refused(fake_as, session, _respond(_signed(), content_type=content_type))


async def test_plain_json_answer_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _refused(fake_as, session, _respond(json.dumps(ACTIVE), content_type="application/json"))


async def test_204_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _refused(fake_as, session, _respond(b"", status=204))


async def test_garbage_body_is_refused(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    await _refused(fake_as, session, _respond("not.a.jwt"))
