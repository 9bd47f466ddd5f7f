"""The dev AS's RFC 8693 token exchange (``devtools.token_exchange``), served on loopback and called over HTTP:
what it issues for an audience, and each request it refuses with RFC 6749/8693's error."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from devtools.auth_server import (
    DEV_AS_KEY,
    INTROSPECT_PATH,
    JWKS_PATH,
    METADATA_PATH,
    TOKEN_PATH,
    DevASConfig,
    DevAuthServer,
    DevClient,
    start,
)
from devtools.token_exchange import ACCESS_TOKEN, GRANT_TYPE, JWT

CLIENTS = {"demo-client": DevClient("demo-secret", ("read", "write", "admin"), ("read",)),
           "gateway-client": DevClient("gw-secret", can_introspect=True, can_exchange=True)}
GATEWAY = ("gateway-client", "gw-secret")


class Exchange:
    def __init__(self, dev_as: DevAuthServer, session: aiohttp.ClientSession) -> None:
        self.dev_as, self.session = dev_as, session
        self.token = dev_as.issue("demo-client", "alice", ("read", "write"))

    async def post(self, path: str, form: dict[str, str], client: tuple[str, str] = GATEWAY,
                   **headers: str) -> tuple[int, Any]:
        auth = "Basic " + base64.b64encode(":".join(client).encode()).decode()
        async with self.session.post(self.dev_as.base_url + path, data=form,
                                     headers={"Authorization": auth, **headers}) as resp:
            body = await resp.read()
            return resp.status, json.loads(body) if body else None

    async def exchange(self, client: tuple[str, str] = GATEWAY, **form: str) -> tuple[int, Any]:
        base = {"grant_type": GRANT_TYPE, "subject_token": self.token, "subject_token_type": ACCESS_TOKEN,
                "audience": "orders.example.com"}
        return await self.post(TOKEN_PATH, {k: v for k, v in {**base, **form}.items() if v != "-"}, client)

    async def verified(self, token: str) -> dict[str, Any]:
        async with self.session.get(self.dev_as.base_url + JWKS_PATH) as resp:
            key = jwt.PyJWKSet.from_dict(await resp.json())[jwt.get_unverified_header(token)["kid"]]
        return jwt.decode(token, key.key, algorithms=["RS256"], audience="orders.example.com",
                          issuer=self.dev_as.issuer)  # type: ignore[no-any-return]


@pytest.fixture
async def dev_as(session: aiohttp.ClientSession) -> AsyncIterator[Exchange]:
    runner: web.AppRunner = await start(DevASConfig(port=0, clients=CLIENTS))
    try:
        yield Exchange(runner.app[DEV_AS_KEY], session)
    finally:
        await runner.cleanup()


async def test_issues_a_narrower_jwt_for_the_audience_acting_for_the_subject(dev_as: Exchange) -> None:
    status, body = await dev_as.exchange(scope="read")
    assert status == 200, body
    assert (body["issued_token_type"], body["token_type"], body["scope"]) == (JWT, "N_A", "read")
    claims = await dev_as.verified(body["access_token"])
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("alice", "demo-client", "read")
    assert claims["act"] == {"sub": "gateway-client"}
    assert claims["exp"] <= dev_as.dev_as.tokens[dev_as.token].exp and body["expires_in"] > 0
    status, body = await dev_as.exchange(scope="-", requested_token_type=ACCESS_TOKEN)  # no scope: the subject's
    assert (body["issued_token_type"], body["token_type"], body["scope"]) == (ACCESS_TOKEN, "Bearer", "read write")
    assert dev_as.dev_as.stats()["exchanges"] == 2


async def test_takes_its_own_introspection_jwt_as_the_subject(dev_as: Exchange) -> None:
    async with dev_as.session.post(dev_as.dev_as.base_url + INTROSPECT_PATH, data={"token": dev_as.token},
                                   headers={"Accept": "application/jwt", "Authorization": "Basic " + base64.b64encode(
                                       b"gateway-client:gw-secret").decode()}) as resp:
        introspected = (await resp.read()).decode()
    status, body = await dev_as.exchange(subject_token=introspected, subject_token_type=JWT)
    assert status == 200 and (await dev_as.verified(body["access_token"]))["sub"] == "alice"
    dev_as.dev_as.tokens[dev_as.token].revoked = True  # the JWT stands for a token that is no longer active
    assert await dev_as.exchange(subject_token=introspected, subject_token_type=JWT) == (
        400, {"error": "invalid_request", "error_description": "the subject token is not active"})


@pytest.mark.parametrize(("form", "client", "error"), [
    ({"scope": "read admin"}, GATEWAY, "invalid_scope"),  # widening
    ({}, ("demo-client", "demo-secret"), "unauthorized_client"),
    ({"audience": "-"}, GATEWAY, "invalid_request"),
    ({"subject_token": "-"}, GATEWAY, "invalid_request"),
    ({"subject_token": "not-a-token-we-issued"}, GATEWAY, "invalid_request"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, GATEWAY, "unsupported_token_type"),
    ({"subject_token": "a.b.c", "subject_token_type": JWT}, GATEWAY, "invalid_request"),
    ({"requested_token_type": "urn:ietf:params:oauth:token-type:id_token"}, GATEWAY, "invalid_request"),
])
async def test_refuses_what_it_must(dev_as: Exchange, form: dict[str, str], client: tuple[str, str],
                                    error: str) -> None:
    status, body = await dev_as.exchange(client, **form)
    assert (status, body["error"]) == (400, error), body
    assert dev_as.dev_as.exchanges == 0


async def test_metadata_names_the_grant(dev_as: Exchange) -> None:
    async with dev_as.session.get(dev_as.dev_as.base_url + METADATA_PATH) as resp:
        assert GRANT_TYPE in (await resp.json())["grant_types_supported"]
