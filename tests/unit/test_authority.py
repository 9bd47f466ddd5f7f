"""Authority: one AS end to end (real aiohttp session, real local AS with a JWKS): introspect in the AS's dialect,
verify what comes back with the AS's keys, then check the claims. Who is at fault decides the status."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from authz.cache import IntrospectionCache
from authz.config import AuthorizationServerConfig, CacheConfig, Secret
from authz.errors import InvalidToken, UpstreamMisbehaved
from authz.introspection import Authority
from authz.metrics import Metrics
from authz.models import Identity
from tests.local_http import serve

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KID = "as-1"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FOREIGN = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OPAQUE = "opaque-token-xyz"


@dataclass
class FakeAS:
    base: str = ""
    handler: Handler | None = None
    tokens: list[str] = field(default_factory=list)
    jwks_hits: int = 0

    @property
    def issuer(self) -> str:
        return self.base


@pytest.fixture
async def fake_as() -> AsyncIterator[FakeAS]:
    state = FakeAS()

    async def introspect(request: web.Request) -> web.StreamResponse:
        state.tokens.append(str((await request.post())["token"]))
        assert state.handler is not None
        return await state.handler(request)

    async def jwks(request: web.Request) -> web.StreamResponse:
        state.jwks_hits += 1
        public = jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
        return web.json_response({"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]})

    async def metadata(request: web.Request) -> web.StreamResponse:
        return web.json_response({"issuer": state.issuer, "jwks_uri": f"{state.base}/jwks",
                                  "introspection_endpoint": f"{state.base}/introspect"})

    app = web.Application()
    app.router.add_post("/introspect", introspect)
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/.well-known/oauth-authorization-server", metadata)
    async with serve(app) as state.base:
        yield state


def _access_jwt(fake_as: FakeAS, key: Any = KEY, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": fake_as.issuer, "sub": "alice", "aud": "api", "client_id": "web", "scope": "read write",
            "iat": now, "exp": now + 600}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key, algorithm="RS256",
                      headers={"kid": KID})


def _respond(body: Any, content_type: str, status: int = 200) -> Handler:
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=data if status != 204 else b"", content_type=content_type)

    return handler


def _authority(fake_as: FakeAS, session: aiohttp.ClientSession, **overrides: Any) -> Authority:
    options: dict[str, Any] = {
        "name": "corp", "introspection_endpoint": f"{fake_as.base}/introspect", "client_id": "gw",
        "client_secret": Secret("s"), "dialect": "phantom", "issuer": fake_as.issuer,
        "jwks_uri": f"{fake_as.base}/jwks", "audiences": ("api",),
    }
    options.update(overrides)
    return Authority(AuthorizationServerConfig(**options), session)


async def _identity(fake_as: FakeAS, session: aiohttp.ClientSession, handler: Handler, **overrides: Any) -> Identity:
    fake_as.handler = handler
    authority = _authority(fake_as, session, **overrides)
    return authority.identity(await authority.answer(OPAQUE))


async def test_phantom_jwt_signed_by_the_as_gives_an_identity(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    token = _access_jwt(fake_as)
    identity = await _identity(fake_as, session, _respond(token, "application/jwt"))
    assert fake_as.tokens == [OPAQUE]
    assert identity.jwt == token
    assert identity.subject == "alice"
    assert identity.client_id == "web"
    assert identity.scopes == frozenset({"read", "write"})
    assert identity.claims["iss"] == fake_as.issuer


async def test_phantom_jwt_signed_by_a_foreign_key_is_502(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    forged = _access_jwt(fake_as, FOREIGN, scope="read write admin")
    with pytest.raises(UpstreamMisbehaved) as info:
        await _identity(fake_as, session, _respond(forged, "application/jwt"))
    assert info.value.status == 502
    assert "corp" in info.value.detail


async def test_phantom_jwt_with_alg_none_is_502(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    unsigned = jwt.encode({"iss": fake_as.issuer, "sub": "mallory", "aud": "api", "scope": "admin"}, None,
                          algorithm="none", headers={"kid": KID})
    with pytest.raises(UpstreamMisbehaved):
        await _identity(fake_as, session, _respond(unsigned, "application/jwt"))


async def test_phantom_jwt_expired_is_401(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    expired = _access_jwt(fake_as, exp=int(time.time()) - 3600)
    with pytest.raises(InvalidToken) as info:
        await _identity(fake_as, session, _respond(expired, "application/jwt"))
    assert info.value.status == 401


async def test_phantom_jwt_for_another_audience_is_401(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    with pytest.raises(InvalidToken):
        await _identity(fake_as, session, _respond(_access_jwt(fake_as, aud="other-api"), "application/jwt"))


async def test_phantom_jwt_without_audience_is_401_when_audiences_are_configured(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(InvalidToken):
        await _identity(fake_as, session, _respond(_access_jwt(fake_as, aud=None), "application/jwt"))


async def test_phantom_jwt_from_another_issuer_is_401(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    token = _access_jwt(fake_as, iss="https://other-as.example")
    with pytest.raises(InvalidToken):
        await _identity(fake_as, session, _respond(token, "application/jwt"))


async def test_phantom_inactive_is_401(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    with pytest.raises(InvalidToken):
        await _identity(fake_as, session, _respond("", "application/jwt", status=204))


async def test_keys_are_found_through_metadata_discovery(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    identity = await _identity(fake_as, session, _respond(_access_jwt(fake_as), "application/jwt"), jwks_uri=None,
                               allow_insecure_http=True)
    assert identity.subject == "alice"


async def test_keys_are_fetched_once_across_introspections(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    fake_as.handler = _respond(_access_jwt(fake_as), "application/jwt")
    authority = _authority(fake_as, session)
    for _ in range(3):
        authority.identity(await authority.answer(OPAQUE))
    assert fake_as.jwks_hits == 1


async def test_rfc7662_plain_gives_an_identity_without_jwt(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    body = {"active": True, "sub": "bob", "scope": "read", "client_id": "cli", "aud": "api",
            "exp": int(time.time()) + 600}
    identity = await _identity(fake_as, session, _respond(body, "application/json"), dialect="rfc7662", issuer=None)
    assert identity.jwt is None
    assert identity.subject == "bob"
    assert identity.scopes == frozenset({"read"})
    assert fake_as.jwks_hits == 0


async def test_rfc7662_plain_expired_is_401(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    body = {"active": True, "sub": "bob", "aud": "api", "exp": int(time.time()) - 3600}
    with pytest.raises(InvalidToken):
        await _identity(fake_as, session, _respond(body, "application/json"), dialect="rfc7662", issuer=None)


async def test_rfc7662_inactive_is_401(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    with pytest.raises(InvalidToken):
        await _identity(fake_as, session, _respond({"active": False}, "application/json"), dialect="rfc7662",
                        issuer=None)


async def test_rfc7662_jwt_field_is_verified_and_its_claims_win(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    token = _access_jwt(fake_as, scope="read")
    body = {"active": True, "sub": "alice", "scope": "read admin", "aud": "api", "jwt": token}
    identity = await _identity(fake_as, session, _respond(body, "application/json"), dialect="rfc7662",
                               jwt_field="jwt")
    assert identity.jwt == token
    assert identity.scopes == frozenset({"read"})  # what the signed JWT says, not the unsigned JSON


async def test_rfc7662_jwt_field_with_a_forged_jwt_is_502(fake_as: FakeAS, session: aiohttp.ClientSession) -> None:
    body = {"active": True, "sub": "alice", "jwt": _access_jwt(fake_as, FOREIGN)}
    with pytest.raises(UpstreamMisbehaved):
        await _identity(fake_as, session, _respond(body, "application/json"), dialect="rfc7662", jwt_field="jwt")


async def test_rfc9701_signed_answer_gives_an_identity_without_jwt(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    answer = {"active": True, "sub": "carol", "scope": "read", "aud": "api", "exp": int(time.time()) + 600}
    signed = jwt.encode({"iss": fake_as.issuer, "aud": "gw", "iat": int(time.time()), "token_introspection": answer},
                        KEY, algorithm="RS256", headers={"kid": KID, "typ": "token-introspection+jwt"})
    identity = await _identity(fake_as, session, _respond(signed, "application/token-introspection+jwt"),
                               dialect="rfc9701")
    assert identity.jwt is None
    assert identity.subject == "carol"
    assert identity.scopes == frozenset({"read"})


# --- time: the answer's own exp/nbf (h31) ------------------------------------------------------------------------


async def test_h31_rfc7662_jwt_field_outer_answer_already_expired_is_401(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    """The JSON answer's exp is the AS's word on the presented token: a JWT that lives longer does not revive it."""
    body = {"active": True, "sub": "alice", "aud": "api", "exp": int(time.time()) - 3600, "jwt": _access_jwt(fake_as)}
    with pytest.raises(InvalidToken):
        await _identity(fake_as, session, _respond(body, "application/json"), dialect="rfc7662", jwt_field="jwt")


async def test_h31_rfc7662_jwt_field_outer_answer_not_yet_valid_is_401(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    body = {"active": True, "sub": "alice", "aud": "api", "nbf": int(time.time()) + 3600, "jwt": _access_jwt(fake_as)}
    with pytest.raises(InvalidToken):
        await _identity(fake_as, session, _respond(body, "application/json"), dialect="rfc7662", jwt_field="jwt")


async def test_h31_rfc7662_jwt_field_outer_exp_ends_a_cached_answer(
    fake_as: FakeAS, session: aiohttp.ClientSession
) -> None:
    """Cached under the JWT's 10 minutes, the answer would be served (and its JWT forwarded) after the opaque token's
    own exp, 60 s away, had passed: the cache's TTL and the per-request time check take the earlier exp."""
    start = time.time()
    now = [start]
    body = {"active": True, "sub": "alice", "aud": "api", "exp": int(start) + 60, "jwt": _access_jwt(fake_as)}
    fake_as.handler = _respond(body, "application/json")
    config = _authority(fake_as, session, dialect="rfc7662", jwt_field="jwt", leeway_seconds=0.0).config
    cache = IntrospectionCache(CacheConfig(max_ttl_seconds=300.0, expiry_skew_seconds=5.0), Metrics(),
                               clock=lambda: now[0])
    authority = cache.wrap(Authority(config, session, clock=lambda: now[0]))
    assert authority.identity(await authority.answer(OPAQUE)).subject == "alice"
    entry = next(entry for _, entry in cache.positive.items())
    assert entry.fresh_until <= start + 55 and entry.stale_until <= start + 55
    now[0] = start + 120  # the JWT (exp start + 600) is still valid; the token the client holds is not
    with pytest.raises(InvalidToken):
        authority.identity(await authority.answer(OPAQUE))
