"""RFC 8693 at one AS (``authz.token_exchange.exchanger``), against a real token endpoint on loopback whose answer
each test sets: the request the gateway sends, and every answer it must refuse to forward (a 502, never the
client's token or JWT instead), an AS it cannot reach (503), and the token endpoint found in the AS metadata."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from authz.config import AuthorizationServerConfig, Secret
from authz.config.token_exchange import TokenExchangeConfig
from authz.errors import TokenExchangeFailed, TokenExchangeUnavailable
from authz.introspection.authority import Authority
from authz.token_exchange import GRANT_TYPE, TokenExchanger
from tests.hostile_as import ISSUER, KEY, KID, OTHER_KEY, sign
from tests.local_http import serve

CLIENT_TOKEN = "client-opaque-token-0123456789"
AUDIENCE = "orders.example.com"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def exchanged_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "scope": "read", "iat": now, "exp": now + 120,
            "act": {"sub": "gw"}, **overrides}


def good_answer(token: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {"access_token": token or sign(exchanged_claims()), "issued_token_type": JWT_TYPE, "token_type": "N_A",
            "expires_in": 120, "scope": "read", **overrides}


@dataclass
class TokenEndpoint:
    """The AS: ``/token`` answers ``status`` with ``body`` (JSON unless ``content_type`` says otherwise) and records
    each request; ``/jwks`` publishes hostile_as's key; ``/meta`` is its RFC 8414 metadata."""

    base: str = ""
    status: int = 200
    body: Any = field(default_factory=good_answer)
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)

    def answer(self, status: int = 200, body: Any = None, **headers: str) -> None:
        self.status, self.body, self.headers = status, good_answer() if body is None else body, headers


@pytest.fixture
async def endpoint() -> AsyncIterator[TokenEndpoint]:
    state = TokenEndpoint()

    async def token(request: web.Request) -> web.Response:
        form = dict(urllib.parse.parse_qsl((await request.read()).decode()))
        state.seen.append((form, dict(request.headers)))
        text = state.body if isinstance(state.body, str) else web.json_response(state.body).text
        return web.Response(status=state.status, text=text, content_type=state.content_type, headers=state.headers)

    async def jwks(request: web.Request) -> web.Response:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
        return web.json_response({"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]})

    async def meta(request: web.Request) -> web.Response:
        return web.json_response({"issuer": ISSUER, "token_endpoint": f"{state.base}/token"})

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/meta", meta)
    async with serve(app) as base:
        state.base = base
        yield state


def _config(endpoint: TokenEndpoint, **exchange: Any) -> AuthorizationServerConfig:
    settings = {"token_endpoint": f"{endpoint.base}/token", **exchange}
    return AuthorizationServerConfig(
        name="corp", introspection_endpoint=f"{endpoint.base}/introspect", client_id="gw",
        client_secret=Secret("gw-secret"), issuer=ISSUER, jwks_uri=f"{endpoint.base}/jwks",
        metadata_url=f"{endpoint.base}/meta", allow_insecure_http=True,
        token_exchange=TokenExchangeConfig(**{k: v for k, v in settings.items() if v is not None}))


@pytest.fixture
async def exchanger(endpoint: TokenEndpoint, session: aiohttp.ClientSession) -> TokenExchanger:
    found = Authority(_config(endpoint), session).exchanger
    assert found is not None
    return found


async def _exchange(exchanger: TokenExchanger, scope: tuple[str, ...] | None = ("read",)) -> str:
    return (await exchanger.exchange(CLIENT_TOKEN, "the.introspected.jwt", AUDIENCE, scope, "alice")).token


async def test_sends_the_client_token_as_an_access_token_with_the_gateway_credentials(
        endpoint: TokenEndpoint, exchanger: TokenExchanger) -> None:
    exchanged = await exchanger.exchange(CLIENT_TOKEN, "the.introspected.jwt", AUDIENCE, ("read", "write"), "alice")
    form, headers = endpoint.seen[0]
    assert form == {"grant_type": GRANT_TYPE, "subject_token": CLIENT_TOKEN, "subject_token_type": ACCESS_TOKEN_TYPE,
                    "requested_token_type": JWT_TYPE, "audience": AUDIENCE, "scope": "read write"}
    assert headers["Authorization"].startswith("Basic ") and headers["Accept"] == "application/json"
    assert exchanged.token == endpoint.body["access_token"]
    exp = exchanged_claims()["exp"]
    assert exchanged.expires_at is not None and exp - 2 <= exchanged.expires_at <= exp  # min(exp, expires_in)


async def test_sends_the_introspected_jwt_when_configured_and_no_scope_unless_the_route_names_one(
        endpoint: TokenEndpoint, session: aiohttp.ClientSession) -> None:
    exchanger = Authority(_config(endpoint, subject_token="jwt"), session).exchanger
    assert exchanger is not None
    await _exchange(exchanger, scope=None)
    form, _ = endpoint.seen[0]
    assert form["subject_token"] == "the.introspected.jwt" and form["subject_token_type"] == JWT_TYPE
    assert "scope" not in form
    with pytest.raises(TokenExchangeFailed, match="no JWT to exchange"):  # a claims-only answer has none
        await exchanger.exchange(CLIENT_TOKEN, None, AUDIENCE, None, "alice")


async def test_finds_the_token_endpoint_in_the_as_metadata(endpoint: TokenEndpoint,
                                                           session: aiohttp.ClientSession) -> None:
    exchanger = Authority(_config(endpoint, token_endpoint=None), session).exchanger
    assert exchanger is not None
    await _exchange(exchanger)
    await _exchange(exchanger)
    assert len(endpoint.seen) == 2


async def test_an_access_token_is_forwarded_as_issued_without_verification(
        endpoint: TokenEndpoint, session: aiohttp.ClientSession) -> None:
    exchanger = Authority(_config(endpoint, requested_token_type="access_token"), session).exchanger
    assert exchanger is not None
    endpoint.answer(body={"access_token": "opaque-for-orders", "issued_token_type": ACCESS_TOKEN_TYPE,
                          "token_type": "Bearer", "expires_in": 60})
    exchanged = await exchanger.exchange(CLIENT_TOKEN, None, AUDIENCE, None, "alice")
    assert endpoint.seen[0][0]["requested_token_type"] == ACCESS_TOKEN_TYPE
    assert exchanged.token == "opaque-for-orders"
    assert exchanged.expires_at is not None and exchanged.expires_at == pytest.approx(time.time() + 60, abs=2)
    endpoint.answer(body={"access_token": "opaque-for-orders", "issued_token_type": ACCESS_TOKEN_TYPE,
                          "token_type": "Bearer"})
    assert (await exchanger.exchange(CLIENT_TOKEN, None, AUDIENCE, None, "alice")).expires_at is None


async def test_a_refusal_is_a_502_naming_the_error_code_but_never_the_description(
        endpoint: TokenEndpoint, exchanger: TokenExchanger) -> None:
    endpoint.answer(400, {"error": "invalid_scope", "error_description": f"no: {CLIENT_TOKEN}"})
    with pytest.raises(TokenExchangeFailed) as refused:
        await _exchange(exchanger)
    assert refused.value.status == 502 and refused.value.reason == "token_exchange_failed"
    assert "error invalid_scope" in refused.value.detail and CLIENT_TOKEN not in refused.value.detail
    endpoint.answer(400, {"error": f"bad {CLIENT_TOKEN}"})
    with pytest.raises(TokenExchangeFailed, match="no readable error code"):
        await _exchange(exchanger)


@pytest.mark.parametrize(("status", "headers"), [(503, {}), (500, {}), (429, {"Retry-After": "7"})])
async def test_an_as_that_cannot_answer_is_a_503(endpoint: TokenEndpoint, exchanger: TokenExchanger, status: int,
                                                 headers: dict[str, str]) -> None:
    endpoint.answer(status, {"error": "temporarily_unavailable"}, **headers)
    with pytest.raises(TokenExchangeUnavailable) as unavailable:
        await _exchange(exchanger)
    assert unavailable.value.status == 503 and unavailable.value.reason == "token_exchange_unavailable"
    assert unavailable.value.retry_after == (7 if headers else 5)


async def test_an_unreachable_token_endpoint_is_a_503(endpoint: TokenEndpoint,
                                                      session: aiohttp.ClientSession) -> None:
    exchanger = Authority(_config(endpoint, token_endpoint="http://127.0.0.1:9/token"), session).exchanger
    assert exchanger is not None
    with pytest.raises(TokenExchangeUnavailable, match="cannot connect"):
        await _exchange(exchanger)


@pytest.mark.parametrize(("status", "why"), [(401, "rejected our client credentials"), (302, "redirect"),
                                             (404, "HTTP 404")])
async def test_our_credentials_refused_or_a_redirect_is_a_502(endpoint: TokenEndpoint, exchanger: TokenExchanger,
                                                              status: int, why: str) -> None:
    endpoint.answer(status, {"error": "invalid_client"}, **({"Location": "http://127.0.0.1:9/"} if status == 302
                                                           else {}))
    with pytest.raises(TokenExchangeFailed, match=why):
        await _exchange(exchanger)


NOT_FORWARDED = {
    "not JSON": "<html>",
    "no access_token": good_answer(access_token=None),
    "a token that would break the header": good_answer(token="abc\r\nx-admin: 1"),
    "a token with a space": good_answer(token="abc def"),
    "no issued_token_type": good_answer(issued_token_type=None),
    "a refresh token": good_answer(issued_token_type="urn:ietf:params:oauth:token-type:refresh_token"),
    "a DPoP token": good_answer(token_type="DPoP"),
    "no token_type": good_answer(token_type=None),
    "expires_in negative": good_answer(expires_in=-1),
    "expires_in a string": good_answer(expires_in="60"),
    "scope wider than asked": good_answer(scope="read admin"),
    "scope not a string": good_answer(scope=["read"]),
    "not a JWT": good_answer(token="opaque-not-a-jwt"),
    "a JWT by another key": good_answer(token=sign(exchanged_claims(), key=OTHER_KEY)),
    "a JWT signed with HS256": good_answer(token=jwt.encode(exchanged_claims(), "k" * 32, "HS256",
                                                            headers={"kid": KID})),
    "a JWT for another audience": good_answer(token=sign(exchanged_claims(aud="billing.example.com"))),
    "a JWT of another issuer": good_answer(token=sign(exchanged_claims(iss="https://other.example"))),
    "a JWT already expired": good_answer(token=sign(exchanged_claims(exp=int(time.time()) - 1))),
    "a JWT without exp": good_answer(token=sign({k: v for k, v in exchanged_claims().items() if k != "exp"})),
    "a JWT with wider scopes": good_answer(token=sign(exchanged_claims(scope="read admin"))),
    "a JWT with scopes of the wrong type": good_answer(token=sign(exchanged_claims(scope={"read": True}))),
    "a JWT about another subject": good_answer(token=sign(exchanged_claims(sub="mallory"))),
}


@pytest.mark.parametrize("case", sorted(NOT_FORWARDED))
async def test_an_answer_that_cannot_go_upstream_is_a_502(endpoint: TokenEndpoint, exchanger: TokenExchanger,
                                                          case: str) -> None:
    body = NOT_FORWARDED[case]
    endpoint.answer(200, {k: v for k, v in body.items() if v is not None} if isinstance(body, dict) else body)
    with pytest.raises(TokenExchangeFailed) as failed:
        await _exchange(exchanger)
    assert failed.value.status == 502, failed.value
    assert CLIENT_TOKEN not in failed.value.detail


async def test_a_narrower_scope_than_asked_and_an_audience_list_are_accepted(
        endpoint: TokenEndpoint, exchanger: TokenExchanger) -> None:
    token = sign(exchanged_claims(aud=["billing.example.com", AUDIENCE], scope=""))
    endpoint.answer(200, good_answer(token=token, scope=""))
    assert await _exchange(exchanger, scope=("read", "write")) == token
