"""The quickstart's dev AS, served on loopback and called over real HTTP: tokens, the three introspection dialects
(Curity's application/jwt, RFC 9701 JWT responses, RFC 7662 JSON), revocation, expiry, JWKS and key rotation,
counters, latency, and the ``python -m`` entry point."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes

from devtools.auth_server import DEV_AS_KEY, DevASConfig, DevClient, bound_port, start

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "/oauth/v2/oauth-token"
INTROSPECT = "/oauth/v2/oauth-introspect"
REVOKE = "/oauth/v2/oauth-revoke"
JWKS = "/oauth/v2/oauth-anonymous/jwks"
GATEWAY = ("gateway", "gw-secret")
DEMO = ("demo-client", "demo-secret")
CLIENTS = {
    "demo-client": DevClient("demo-secret", ("read", "write", "admin"), ("read",)),
    "gateway": DevClient("gw-secret", can_introspect=True),
    "odd client:1": DevClient("p@ss:w%rd+ &", ("read",), ("read",)),
}
JWT_INTROSPECTION = "application/token-introspection+jwt"  # RFC 9701
B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 §2.1


def basic(client_id: str, secret: str) -> str:
    """client_secret_basic as RFC 6749 §2.3.1 says: form-urlencode id and secret, then base64."""
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


class DevAS:
    """A running dev AS plus a client session pointed at it."""

    def __init__(self, runner: web.AppRunner, session: aiohttp.ClientSession) -> None:
        self.runner = runner
        self.session = session
        self.port = bound_port(runner)
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = runner.app[DEV_AS_KEY]

    async def post(self, path: str, form: dict[str, str], client: tuple[str, str] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        all_headers = dict(headers or {})
        if client is not None:
            all_headers["Authorization"] = basic(*client)
        async with self.session.post(self.url + path, data=form, headers=all_headers) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def get_json(self, path: str) -> Any:
        async with self.session.get(self.url + path) as resp:
            assert resp.status == 200
            return await resp.json()

    async def token(self, scope: str | None = None, client: tuple[str, str] = DEMO, **extra: str) -> str:
        form = {"grant_type": "client_credentials", **extra}
        if scope is not None:
            form["scope"] = scope
        status, _, body = await self.post(TOKEN, form, client)
        assert status == 200, body
        return str(json.loads(body)["access_token"])

    async def introspect(self, token: str, accept: str | None = "application/jwt",
                         client: tuple[str, str] | None = GATEWAY) -> tuple[int, dict[str, str], bytes]:
        return await self.post(INTROSPECT, {"token": token}, client, {"Accept": accept} if accept else None)

    async def verify(self, compact: str) -> dict[str, Any]:
        jwks = jwt.PyJWKSet.from_dict(await self.get_json(JWKS))
        key = jwks[jwt.get_unverified_header(compact)["kid"]]
        return jwt.decode(compact, key.key, algorithms=["RS256"], audience="api.example.com",
                          issuer=self.state.issuer)

    async def verify_introspection(self, compact: str, audience: str = GATEWAY[0]) -> dict[str, Any]:
        """An RFC 9701 introspection response: typ, signature by a published key, iss, aud and iat."""
        header = jwt.get_unverified_header(compact)
        assert (header["alg"], header["typ"]) == ("RS256", "token-introspection+jwt")
        key = jwt.PyJWKSet.from_dict(await self.get_json(JWKS))[header["kid"]]
        return jwt.decode(compact, key.key, algorithms=["RS256"], audience=audience, issuer=self.state.issuer,
                          options={"require": ["iss", "aud", "iat"]})


MakeAS = Callable[..., Awaitable[DevAS]]


@pytest.fixture
async def make_as() -> AsyncIterator[MakeAS]:
    runners: list[web.AppRunner] = []
    session = aiohttp.ClientSession()

    async def make(**overrides: Any) -> DevAS:
        runner = await start(DevASConfig(**{"port": 0, "clients": CLIENTS, **overrides}))
        runners.append(runner)
        return DevAS(runner, session)

    try:
        yield make
    finally:
        await session.close()
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def dev_as(make_as: MakeAS) -> DevAS:
    return await make_as()


def _json(body: bytes) -> Any:
    return json.loads(body)


async def test_token_with_basic_auth_and_default_scope(dev_as: DevAS) -> None:
    status, headers, body = await dev_as.post(TOKEN, {"grant_type": "client_credentials"}, DEMO)
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    answer = _json(body)
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 300
    assert answer["scope"] == "read"
    assert B64TOKEN.match(answer["access_token"]) and len(answer["access_token"]) >= 32
    assert (await dev_as.get_json("/stats"))["tokens_issued"] == 1


async def test_token_with_post_auth_and_requested_scope(dev_as: DevAS) -> None:
    form = {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret",
            "scope": "read  admin read"}
    status, _, body = await dev_as.post(TOKEN, form)
    assert status == 200, body
    assert _json(body)["scope"] == "read admin"


async def test_basic_credentials_are_url_decoded(dev_as: DevAS) -> None:
    token = await dev_as.token(client=("odd client:1", "p@ss:w%rd+ &"))
    status, _, body = await dev_as.introspect(token, "application/json")
    assert status == 200 and _json(body)["client_id"] == "odd client:1"


@pytest.mark.parametrize(("form", "client", "status", "error"), [
    ({"grant_type": "client_credentials"}, ("demo-client", "wrong"), 401, "invalid_client"),
    ({"grant_type": "client_credentials"}, ("nobody", "demo-secret"), 401, "invalid_client"),
    ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
    ({"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "nope"}, None, 401,
     "invalid_client"),
    ({"grant_type": "password", "username": "u", "password": "p"}, DEMO, 400, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": "read superuser"}, DEMO, 400, "invalid_scope"),
], ids=["wrong-secret", "unknown-client", "no-auth", "wrong-post-secret", "bad-grant", "disallowed-scope"])
async def test_token_errors(dev_as: DevAS, form: dict[str, str], client: tuple[str, str] | None, status: int,
                            error: str) -> None:
    got, headers, body = await dev_as.post(TOKEN, form, client)
    assert got == status
    assert _json(body)["error"] == error
    assert headers["Content-Type"].startswith("application/json")
    if status == 401:
        assert headers["WWW-Authenticate"] == 'Basic realm="dev-as"'
    assert (await dev_as.get_json("/stats"))["tokens_issued"] == 0


async def test_phantom_introspection_returns_a_verifiable_jwt(dev_as: DevAS) -> None:
    before = int(time.time())
    token = await dev_as.token("read write", subject="alice")
    status, headers, body = await dev_as.introspect(token)
    assert status == 200
    assert headers["Content-Type"] == "application/jwt"
    max_age = int(re.fullmatch(r"max-age=(\d+)", headers["Cache-Control"]).group(1))  # type: ignore[union-attr]
    assert 0 < max_age <= 300
    compact = body.decode()
    assert token not in compact
    header = jwt.get_unverified_header(compact)
    assert header["alg"] == "RS256"
    assert header["kid"] == (await dev_as.get_json("/stats"))["active_kid"]
    claims = await dev_as.verify(compact)
    assert claims["iss"] == f"http://127.0.0.1:{dev_as.port}/oauth/v2/oauth-anonymous"
    assert claims["sub"] == "alice"
    assert claims["client_id"] == "demo-client"
    assert claims["scope"] == "read write"
    assert claims["aud"] == "api.example.com"
    assert before <= claims["iat"] <= time.time()
    assert claims["exp"] == claims["iat"] + 300
    assert claims["jti"]
    # The same token introspected again: same exp/iat/jti (they belong to the token, not the answer).
    again = await dev_as.verify((await dev_as.introspect(token))[2].decode())
    assert {k: again[k] for k in ("exp", "iat", "jti")} == {k: claims[k] for k in ("exp", "iat", "jti")}


async def test_unknown_token_is_204(dev_as: DevAS) -> None:
    status, headers, body = await dev_as.introspect("no-such-token")
    assert (status, body) == (204, b"")
    assert "Cache-Control" not in headers


async def test_revoked_token_is_inactive(dev_as: DevAS) -> None:
    token = await dev_as.token()
    assert (await dev_as.introspect(token))[0] == 200
    status, _, _ = await dev_as.post(REVOKE, {"token": token, "token_type_hint": "access_token"}, DEMO)
    assert status == 200
    status, _, body = await dev_as.introspect(token)
    assert (status, body) == (204, b"")
    assert _json((await dev_as.introspect(token, "application/json"))[2]) == {"active": False}
    assert (await dev_as.post(REVOKE, {"token": "never-issued"}, DEMO))[0] == 200  # RFC 7009: still 200
    assert (await dev_as.post(REVOKE, {"token": token}, ("demo-client", "bad")))[0] == 401
    assert (await dev_as.get_json("/stats"))["revocations"] == 1


async def test_expired_token_is_inactive(make_as: MakeAS) -> None:
    dev_as = await make_as(token_ttl=1)
    token = await dev_as.token()
    record = dev_as.state.tokens[token]
    assert record.exp - record.iat == 1
    await asyncio.sleep(max(0.0, record.exp - time.time()) + 0.05)  # at most ~1.05 s
    status, _, body = await dev_as.introspect(token)
    assert (status, body) == (204, b"")
    assert _json((await dev_as.introspect(token, None))[2]) == {"active": False}


@pytest.mark.parametrize("client", [("gateway", "wrong"), ("intruder", "gw-secret"), DEMO, None],
                         ids=["wrong-secret", "unknown-client", "client-cannot-introspect", "no-auth"])
async def test_introspection_needs_an_introspecting_client(dev_as: DevAS, client: tuple[str, str] | None) -> None:
    token = await dev_as.token()
    status, headers, body = await dev_as.introspect(token, client=client)
    assert status == 401
    assert _json(body) == {"error": "invalid_client"}
    assert headers["WWW-Authenticate"] == 'Basic realm="dev-as"'
    assert (await dev_as.get_json("/stats"))["introspections"] == 1


async def test_introspection_with_client_secret_post(dev_as: DevAS) -> None:
    token = await dev_as.token()
    form = {"token": token, "client_id": "gateway", "client_secret": "gw-secret"}
    status, _, body = await dev_as.post(INTROSPECT, form, headers={"Accept": "application/jwt"})
    assert status == 200
    assert (await dev_as.verify(body.decode()))["sub"] == "demo-client"


async def test_json_dialect(dev_as: DevAS) -> None:
    token = await dev_as.token("write")
    for accept in ("application/json", None, "application/json, application/jwt;q=0.5"):
        status, headers, body = await dev_as.introspect(token, accept)
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        answer = _json(body)
        assert answer["active"] is True
        assert answer["scope"] == "write"
        assert answer["client_id"] == answer["sub"] == "demo-client"
        assert answer["token_type"] == "bearer"
        assert answer["aud"] == "api.example.com"
        assert answer["iss"] == dev_as.state.issuer
        assert answer["exp"] - answer["iat"] == 300 and answer["jti"]
        assert 0 < int(headers["Cache-Control"].removeprefix("max-age=")) <= 300
    assert _json((await dev_as.introspect("unknown", "application/json"))[2]) == {"active": False}
    assert (await dev_as.get_json("/stats"))["introspections"] == 4


async def test_rfc9701_answer_for_an_active_token(dev_as: DevAS) -> None:
    before = int(time.time())
    token = await dev_as.token("read write", subject="alice")
    status, headers, body = await dev_as.introspect(token, JWT_INTROSPECTION)
    assert status == 200
    assert headers["Content-Type"] == JWT_INTROSPECTION
    assert 0 < int(headers["Cache-Control"].removeprefix("max-age=")) <= 300
    compact = body.decode()
    assert token not in compact
    assert jwt.get_unverified_header(compact)["kid"] == (await dev_as.get_json("/stats"))["active_kid"]
    claims = await dev_as.verify_introspection(compact)
    assert claims["iss"] == dev_as.state.issuer
    assert claims["aud"] == "gateway"
    assert before <= claims["iat"] <= time.time()
    assert set(claims) == {"iss", "aud", "iat", "token_introspection"}  # no sub/exp: it is not an access token
    inner = claims["token_introspection"]
    assert inner == _json((await dev_as.introspect(token, "application/json"))[2])  # the RFC 7662 answer
    assert inner["active"] is True
    assert (inner["scope"], inner["client_id"], inner["sub"]) == ("read write", "demo-client", "alice")
    assert (inner["iss"], inner["aud"], inner["token_type"]) == (dev_as.state.issuer, "api.example.com", "bearer")
    assert inner["exp"] - inner["iat"] == 300 and inner["jti"]
    assert (await dev_as.get_json("/stats"))["introspections"] == 2


async def test_rfc9701_answer_for_inactive_tokens(dev_as: DevAS) -> None:
    token = await dev_as.token()
    await dev_as.post(REVOKE, {"token": token}, DEMO)
    for inactive in (token, "no-such-token"):
        status, headers, body = await dev_as.introspect(inactive, JWT_INTROSPECTION)
        assert status == 200  # unlike the phantom dialect's 204: RFC 9701 always answers with a JWT
        assert headers["Content-Type"] == JWT_INTROSPECTION
        assert headers["Cache-Control"] == "no-store"
        claims = await dev_as.verify_introspection(body.decode())
        assert claims["token_introspection"] == {"active": False}
        assert claims["aud"] == "gateway"


async def test_rfc9701_audience_is_the_introspecting_client(make_as: MakeAS) -> None:
    clients = {**CLIENTS, "second gateway": DevClient("s3cret", can_introspect=True)}
    dev_as = await make_as(clients=clients)
    token = await dev_as.token()
    form = {"token": token, "client_id": "second gateway", "client_secret": "s3cret"}  # client_secret_post
    status, _, body = await dev_as.post(INTROSPECT, form, headers={"Accept": JWT_INTROSPECTION})
    assert status == 200
    claims = await dev_as.verify_introspection(body.decode(), audience="second gateway")
    assert claims["token_introspection"]["client_id"] == "demo-client"
    with pytest.raises(jwt.InvalidAudienceError):
        await dev_as.verify_introspection(body.decode(), audience="gateway")


@pytest.mark.parametrize(("accept", "content_type"), [
    (JWT_INTROSPECTION, JWT_INTROSPECTION),
    (f"application/json;q=0.5, {JWT_INTROSPECTION}", JWT_INTROSPECTION),
    (f"application/jwt, {JWT_INTROSPECTION}", JWT_INTROSPECTION),  # a tie goes to RFC 9701
    (f"{JWT_INTROSPECTION};q=0.5, application/json", "application/json"),
    (f"{JWT_INTROSPECTION};q=0.9, application/jwt", "application/jwt"),
    (f"{JWT_INTROSPECTION};q=0", "application/json"),
    ("application/jwt", "application/jwt"),
    ("*/*", "application/json"),
])
async def test_accept_chooses_the_dialect(dev_as: DevAS, accept: str, content_type: str) -> None:
    token = await dev_as.token()
    status, headers, _ = await dev_as.introspect(token, accept)
    assert status == 200
    assert headers["Content-Type"].split(";")[0] == content_type


async def test_key_rotation(dev_as: DevAS) -> None:
    token = await dev_as.token()
    old_jwt = (await dev_as.introspect(token))[2].decode()
    old_kid = jwt.get_unverified_header(old_jwt)["kid"]
    assert len((await dev_as.get_json(JWKS))["keys"]) == 1
    status, _, body = await dev_as.post("/dev/rotate-keys", {})
    assert status == 200
    new_kid = _json(body)["kid"]
    assert new_kid != old_kid
    jwks = await dev_as.get_json(JWKS)
    assert [key["kid"] for key in jwks["keys"]] == [old_kid, new_kid]
    for key in jwks["keys"]:
        assert {key["kty"], key["alg"], key["use"], key["e"]} == {"RSA", "RS256", "sig", "AQAB"}
        assert "d" not in key
    assert (await dev_as.get_json("/stats"))["active_kid"] == new_kid
    new_jwt = (await dev_as.introspect(token))[2].decode()
    assert jwt.get_unverified_header(new_jwt)["kid"] == new_kid
    assert (await dev_as.verify(new_jwt))["sub"] == "demo-client"
    assert (await dev_as.verify(old_jwt))["sub"] == "demo-client"  # the old key is still published


async def test_kid_is_the_rfc7638_thumbprint(dev_as: DevAS) -> None:
    key = (await dev_as.get_json(JWKS))["keys"][0]
    digest = hashes.Hash(hashes.SHA256())
    digest.update(f'{{"e":"{key["e"]}","kty":"RSA","n":"{key["n"]}"}}'.encode())
    assert key["kid"] == base64.urlsafe_b64encode(digest.finalize()).rstrip(b"=").decode()


async def test_latency_is_added_to_introspection(make_as: MakeAS) -> None:
    dev_as = await make_as(latency_ms=250)
    token = await dev_as.token()
    started = time.monotonic()
    assert (await dev_as.introspect(token))[0] == 200
    assert time.monotonic() - started >= 0.24
    started = time.monotonic()
    await dev_as.token()
    assert time.monotonic() - started < 0.24  # only introspection is slowed down


async def test_metadata_and_reset_stats(dev_as: DevAS) -> None:
    meta = await dev_as.get_json("/.well-known/oauth-authorization-server")
    assert meta["issuer"] == dev_as.state.issuer
    assert meta["token_endpoint"] == dev_as.url + TOKEN
    assert meta["introspection_endpoint"] == dev_as.url + INTROSPECT
    assert meta["revocation_endpoint"] == dev_as.url + REVOKE
    assert meta["jwks_uri"] == dev_as.url + JWKS
    assert "client_credentials" in meta["grant_types_supported"]
    assert "client_secret_basic" in meta["introspection_endpoint_auth_methods_supported"]
    assert meta["introspection_signing_alg_values_supported"] == ["RS256"]
    token = await dev_as.token()
    await dev_as.introspect(token)
    await dev_as.post(REVOKE, {"token": token}, DEMO)
    stats = await dev_as.get_json("/stats")
    assert (stats["introspections"], stats["tokens_issued"], stats["revocations"]) == (1, 1, 1)
    assert (await dev_as.post("/dev/reset-stats", {}))[0] == 200
    assert await dev_as.get_json("/stats") == {"introspections": 0, "tokens_issued": 0, "revocations": 0,
                                               "exchanges": 0, "active_kid": stats["active_kid"]}


async def test_default_clients_read_the_gateway_secret_from_the_environment(
        make_as: MakeAS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_AS_GATEWAY_SECRET", "from-env")
    dev_as = await make_as(clients=DevASConfig().clients)
    token = await dev_as.token("admin")
    assert (await dev_as.introspect(token, client=("gateway-client", "from-env")))[0] == 200
    assert (await dev_as.introspect(token, client=("gateway-client", "gateway-secret")))[0] == 401


async def test_item15_gateway_secret_is_never_defaulted(make_as: MakeAS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEV_AS_GATEWAY_SECRET", raising=False)
    dev_as = await make_as(clients=DevASConfig().clients)
    token = await dev_as.token("admin")
    for guess in ("gateway-secret", "", "secret"):
        assert (await dev_as.introspect(token, client=("gateway-client", guess)))[0] == 401


def test_main_prints_the_ready_line_and_exits_0_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "devtools.auth_server", "--port", "0", "--token-ttl", "60"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"dev AS listening on http://127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        port = int(match.group(1))
        assert port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server",
                                    timeout=10) as resp:
            assert _json(resp.read())["issuer"] == f"http://127.0.0.1:{port}/oauth/v2/oauth-anonymous"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
