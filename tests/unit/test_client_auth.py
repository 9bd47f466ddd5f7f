"""Client authentication to the AS, as a real aiohttp server on 127.0.0.1 receives it:
client_secret_basic, client_secret_post and private_key_jwt (RFC 7523)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authz.config import AuthorizationServerConfig, PrivateKeyJwtConfig, Secret
from authz.introspection.client import AuthorizationServerClient
from tests.local_http import serve

CLIENT_ID = "gate:way/ü"
CLIENT_SECRET = "p@ss/w+rd%=:é"
TOKEN = "opaque+token/=="
ISSUER = "https://as.example/oauth"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


@dataclass
class Seen:
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class Recorder:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    state = Recorder()

    async def introspect(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        state.seen.append(Seen(dict(request.headers), {k: str(v) for k, v in form.items()}))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/introspect", introspect)
    async with serve(app) as base:
        state.url = f"{base}/introspect"
        yield state


def _pem(key: Any) -> str:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())).decode()


def _config(url: str, **overrides: Any) -> AuthorizationServerConfig:
    options: dict[str, Any] = {"name": "corp", "introspection_endpoint": url, "client_id": CLIENT_ID,
                               "client_secret": Secret(CLIENT_SECRET), "issuer": ISSUER}
    options.update(overrides)
    return AuthorizationServerConfig(**options)


def _pkjwt(url: str, key: Any = RSA_KEY, **settings: Any) -> AuthorizationServerConfig:
    return _config(url, client_secret=None, client_auth_method="private_key_jwt",
                   private_key_jwt=PrivateKeyJwtConfig(key_pem=Secret(_pem(key)), **settings))


async def _send(recorder: Recorder, session: aiohttp.ClientSession, config: AuthorizationServerConfig,
                times: int = 1) -> list[Seen]:
    client = AuthorizationServerClient(config, session)
    for _ in range(times):
        assert (await client.introspect(TOKEN, "application/jwt")).status == 204
    return recorder.seen


def _assertion_claims(seen: Seen, key: Any, audience: str, algorithm: str = "RS256") -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(seen.form["client_assertion"], key.public_key(), algorithms=[algorithm],
                                        audience=audience, issuer=CLIENT_ID,
                                        options={"require": ["iss", "sub", "aud", "jti", "iat", "exp"]})
    return claims


async def test_client_secret_basic_sends_url_encoded_id_and_secret(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    [seen] = await _send(recorder, session, _config(recorder.url))
    scheme, _, encoded = seen.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode("ascii").partition(":")
    assert (user, password) == (quote(CLIENT_ID, safe=""), quote(CLIENT_SECRET, safe=""))
    assert (unquote(user), unquote(password)) == (CLIENT_ID, CLIENT_SECRET)
    assert seen.form == {"token": TOKEN}


async def test_client_secret_post_sends_form_fields_and_no_authorization_header(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    [seen] = await _send(recorder, session, _config(recorder.url, client_auth_method="client_secret_post"))
    assert "Authorization" not in seen.headers
    assert seen.form == {"token": TOKEN, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert seen.headers["Content-Type"].startswith("application/x-www-form-urlencoded")


async def test_private_key_jwt_sends_a_verifiable_assertion(recorder: Recorder, session: aiohttp.ClientSession) -> None:
    before = int(time.time())
    [seen] = await _send(recorder, session, _pkjwt(recorder.url))
    after = int(time.time())
    assert "Authorization" not in seen.headers
    assert set(seen.form) == {"token", "client_id", "client_assertion_type", "client_assertion"}
    assert seen.form["token"] == TOKEN
    assert seen.form["client_id"] == CLIENT_ID
    assert seen.form["client_assertion_type"] == ASSERTION_TYPE
    assert CLIENT_SECRET not in str(seen.form)
    claims = _assertion_claims(seen, RSA_KEY, ISSUER)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == ISSUER
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == 60
    header = jwt.get_unverified_header(seen.form["client_assertion"])
    assert header["alg"] == "RS256"
    assert "kid" not in header


async def test_private_key_jwt_assertion_is_fresh_per_call(recorder: Recorder, session: aiohttp.ClientSession) -> None:
    first, second = await _send(recorder, session, _pkjwt(recorder.url), times=2)
    assert first.form["client_assertion"] != second.form["client_assertion"]
    jti = {_assertion_claims(s, RSA_KEY, ISSUER)["jti"] for s in (first, second)}
    assert len(jti) == 2
    assert all(len(j) >= 16 for j in jti)


async def test_private_key_jwt_uses_configured_kid_audience_lifetime_and_algorithm(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    config = _pkjwt(recorder.url, EC_KEY, algorithm="ES256", kid="gw-key-7", audience="https://as.example/token",
                    lifetime_seconds=30)
    [seen] = await _send(recorder, session, config)
    header = jwt.get_unverified_header(seen.form["client_assertion"])
    assert (header["alg"], header["kid"]) == ("ES256", "gw-key-7")
    claims = _assertion_claims(seen, EC_KEY, "https://as.example/token", "ES256")
    assert claims["exp"] - claims["iat"] == 30


async def test_private_key_jwt_audience_defaults_to_the_endpoint_without_an_issuer(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    config = _pkjwt(recorder.url)
    config = _config(recorder.url, issuer=None, dialect="rfc7662", client_secret=None,
                     client_auth_method="private_key_jwt", private_key_jwt=config.private_key_jwt)
    [seen] = await _send(recorder, session, config)
    assert _assertion_claims(seen, RSA_KEY, recorder.url)["aud"] == recorder.url

