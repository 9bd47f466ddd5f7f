"""A misbehaving authorization server for fault tests: each path answers in one wrong (or right) way.

Runs an aiohttp app on 127.0.0.1 in a background thread so synchronous tests and subprocesses can reach it.
This is a test double of broken servers, not of any product: the real dialects are tested against the dev AS and
node oidc-provider.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.dpop_client import DpopClient
from tests.local_http import ThreadedServer

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "fake-as-key"
THUMBPRINT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"  # a cnf jkt / x5t#S256 value (RFC 7638 / RFC 8705)
DPOP_CLIENT = DpopClient("ES256")  # the client whose key "jwt_dpop_bound" tokens are bound to (RFC 9449)


def good_jwt(**claims: Any) -> str:
    now = int(time.time())
    base = {"iss": "http://fake-as", "sub": "alice", "aud": "api", "scope": "read", "iat": now, "exp": now + 300}
    return jwt.encode({**base, **claims}, KEY, algorithm="RS256", headers={"kid": KID})


def _alg_none() -> str:
    return jwt.encode({"iss": "http://fake-as", "sub": "mallory", "scope": "read admin"}, None, algorithm="none")


def _jwks() -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]}


def _json_answer(**fields: Any) -> web.Response:
    now = int(time.time())
    return web.json_response({"active": True, "iss": "http://fake-as", "sub": "alice", "aud": "api", "scope": "read",
                              "iat": now, "exp": now + 300, **fields})


BEHAVIOURS: dict[str, Any] = {
    "ok": lambda: web.Response(body=good_jwt(), content_type="application/jwt"),
    "html": lambda: web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    "wrong_content_type": lambda: web.Response(body=good_jwt(), content_type="text/plain"),
    "truncated_json": lambda: web.Response(text='{"active": true, "scope": "re', content_type="application/json"),
    "alg_none": lambda: web.Response(body=_alg_none(), content_type="application/jwt"),
    "huge": lambda: web.Response(body=b"a" * (3 * 1024 * 1024), content_type="application/jwt"),
    "redirect": lambda: web.Response(status=302, headers={"Location": "http://127.0.0.1:9/elsewhere"}),
    "unauthorized": lambda: web.Response(status=401, text='{"error":"invalid_client"}',
                                         content_type="application/json"),
    "server_error": lambda: web.Response(status=500, text="oops"),
    "rate_limited": lambda: web.Response(status=429, headers={"Retry-After": "17"}),
    "expired": lambda: web.Response(body=good_jwt(exp=int(time.time()) - 3600), content_type="application/jwt"),
    # well-formed answers about tokens that are not plain bearer access tokens (issue 12 item 8)
    "json_bearer": lambda: _json_answer(token_type="Bearer"),
    "json_refresh_token": lambda: _json_answer(token_type="refresh_token"),
    "json_dpop_bound": lambda: _json_answer(token_type="DPoP", cnf={"jkt": THUMBPRINT}),
    "jwt_dpop_bound": lambda: web.Response(body=good_jwt(cnf={"jkt": DPOP_CLIENT.thumbprint}, token_type="DPoP"),
                                           content_type="application/jwt"),
    "jwt_mtls_bound": lambda: web.Response(body=good_jwt(cnf={"x5t#S256": THUMBPRINT}), content_type="application/jwt"),
    "hs256_with_public_key": lambda: web.Response(
        body=jwt.encode({"iss": "http://fake-as", "sub": "mallory", "scope": "read admin"}, "x" * 32,
                        algorithm="HS256", headers={"kid": KID}), content_type="application/jwt"),
}


class FakeAS:
    def __init__(self) -> None:
        self.port = 0
        self.calls: dict[str, int] = {}
        self.received: list[tuple[str, dict[str, str]]] = []  # (path, headers in lower case) of every request
        self._server = ThreadedServer()

    async def _introspect(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["behaviour"]
        self.calls[name] = self.calls.get(name, 0) + 1
        self._note(request)
        await request.post()
        return BEHAVIOURS[name]()  # type: ignore[no-any-return]

    async def _jwks(self, request: web.Request) -> web.Response:
        self._note(request)
        return web.json_response(_jwks())

    def _note(self, request: web.Request) -> None:
        self.received.append((request.path, {k.lower(): v for k, v in request.headers.items()}))

    def start(self) -> FakeAS:
        app = web.Application()
        app.router.add_post("/introspect/{behaviour}", self._introspect)
        app.router.add_get("/jwks", self._jwks)
        self.port = self._server.start(app)
        return self

    def stop(self) -> None:
        self._server.stop()
