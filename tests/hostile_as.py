"""A hostile authorization server for the hostile-peer tests: its answer to each token is set by the test.

A real aiohttp server on 127.0.0.1 (in a background thread). ``answers[token]`` is the ``Answer`` the introspection
endpoint gives for that token (the token is read from the POSTed form, as a real AS reads it); a token without one
gets its dialect's "inactive" answer. ``/jwks`` publishes one RS256 key. ``Answer.redirect_to`` makes the endpoint
answer with a redirect to a second endpoint that serves the given answer (an AS must never be followed there).

``valid_answer`` builds the one well-formed answer per dialect (the positive control); the signers and
``render`` let a test build every malformed variant of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.local_http import ThreadedServer

__all__ = ["AUDIENCE", "CLIENT_ID", "DIALECTS", "ISSUER", "KID", "Answer", "Draft", "HostileAS", "render", "sign",
           "sign_alg_none", "sign_hs256_with_public_key", "token_claims", "valid_answer"]

ISSUER = "https://hostile-as.example"
AUDIENCE = "api"
CLIENT_ID = "gateway-client"
KID = "hostile-as-key"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # in no JWKS
# dialect name (the ``as`` route setting) -> (dialect, jwt_field)
DIALECTS: dict[str, tuple[str, str | None]] = {
    "phantom": ("phantom", None),
    "rfc7662": ("rfc7662", None),
    "rfc7662_jwt": ("rfc7662", "jwt"),
    "rfc9701": ("rfc9701", None),
}
MEDIA_TYPE = {"phantom": "application/jwt", "rfc7662": "application/json", "rfc7662_jwt": "application/json",
              "rfc9701": "application/token-introspection+jwt"}


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    redirect_to: Answer | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def sign(claims: dict[str, Any], *, key: rsa.RSAPrivateKey = KEY, alg: str = "RS256", kid: str | None = KID,
         typ: str | None = None, extra_header: dict[str, Any] | None = None) -> str:
    headers: dict[str, Any] = {**({"kid": kid} if kid is not None else {}), **(extra_header or {})}
    if typ is not None:
        headers["typ"] = typ
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def sign_alg_none(claims: dict[str, Any], typ: str | None = None) -> str:
    header = {"alg": "none", "kid": KID, **({"typ": typ} if typ else {})}
    return _segments(header, claims) + "."


def sign_hs256_with_public_key(claims: dict[str, Any], typ: str | None = None) -> str:
    """The classic algorithm confusion: an HMAC keyed with the AS's public key (PEM), under the AS's kid."""
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = _segments({"alg": "HS256", "kid": KID, "typ": typ or "JWT"}, claims)
    return signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())


def token_claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a good access token at this AS (scope ``read``)."""
    now = int(time.time())
    return {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "scope": "read", "iat": now, "exp": now + 600,
            **overrides}


@dataclass
class Draft:
    """What a dialect's answer is made of, before it is rendered: each hostile variant edits one part."""

    name: str  # key of DIALECTS
    claims: dict[str, Any] = field(default_factory=token_claims)  # the token's claims (JWT or JSON answer)
    signer: Callable[[dict[str, Any], str | None], str] = lambda claims, typ: sign(claims, typ=typ)
    doc_edit: Callable[[dict[str, Any]], Any] = lambda doc: doc  # edits the JSON answer (rfc7662, rfc9701 inner)
    envelope: dict[str, Any] = field(default_factory=dict)  # rfc9701 envelope claims overrides
    envelope_typ: str = "token-introspection+jwt"
    envelope_signer: Callable[[dict[str, Any], str | None], str] | None = None  # rfc9701 (default: ``signer``)


def render(draft: Draft) -> Answer:
    name = draft.name
    if name == "phantom":
        return Answer(200, MEDIA_TYPE[name], draft.signer(draft.claims, None).encode())
    if name == "rfc7662":
        doc = draft.doc_edit({"active": True, **draft.claims})
        return Answer(200, MEDIA_TYPE[name], json.dumps(doc).encode())
    if name == "rfc7662_jwt":
        doc = draft.doc_edit({"active": True, "sub": "alice", "scope": draft.claims.get("scope", "read"),
                              "jwt": draft.signer(draft.claims, None)})
        return Answer(200, MEDIA_TYPE[name], json.dumps(doc).encode())
    assert name == "rfc9701", name
    envelope = {"iss": ISSUER, "aud": CLIENT_ID, "iat": int(time.time()),
                "token_introspection": draft.doc_edit({"active": True, **draft.claims}), **draft.envelope}
    envelope = {k: v for k, v in envelope.items() if v is not None}
    signer = draft.envelope_signer or draft.signer
    return Answer(200, MEDIA_TYPE[name], signer(envelope, draft.envelope_typ).encode())


def valid_answer(name: str, **claims: Any) -> Answer:
    return render(Draft(name, claims=token_claims(**claims)))


def _inactive(name: str) -> web.Response:
    if name == "phantom":
        return web.Response(status=204)
    if name == "rfc9701":
        envelope = {"iss": ISSUER, "aud": CLIENT_ID, "iat": int(time.time()), "token_introspection": {"active": False}}
        return web.Response(body=sign(envelope, typ="token-introspection+jwt").encode(),
                            content_type=MEDIA_TYPE[name])
    return web.json_response({"active": False})


def _response(answer: Answer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    if answer.content_type is None:
        response.headers.popall("Content-Type", None)
        response.content_type = ""  # aiohttp would add application/octet-stream otherwise
        response.headers.popall("Content-Type", None)
    else:
        response.headers["Content-Type"] = answer.content_type
    return response


class HostileAS:
    def __init__(self) -> None:
        self.port = 0
        self.answers: dict[str, Answer] = {}
        self.asked: dict[str, int] = {}  # token -> introspections seen
        self._targets: dict[str, Answer] = {}
        self._server = ThreadedServer()

    def endpoint(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/introspect/{name}"

    def jwks_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks"

    async def _introspect(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", ""))
        self.asked[token] = self.asked.get(token, 0) + 1
        answer = self.answers.get(token)
        if answer is None:
            return _inactive(request.match_info["name"])
        if answer.redirect_to is not None:
            target = secrets.token_hex(8)
            self._targets[target] = answer.redirect_to
            location = f"http://127.0.0.1:{self.port}/target/{target}"
            return web.Response(status=answer.status, headers={"Location": location, **answer.headers})
        return _response(answer)

    async def _target(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = self._targets.get(request.match_info["target"])
        return _response(answer) if answer is not None else web.Response(status=404)

    async def _jwks(self, request: web.Request) -> web.Response:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
        return web.json_response({"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]})

    def start(self) -> HostileAS:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/introspect/{name}", self._introspect)
        app.router.add_route("*", "/target/{target}", self._target)
        app.router.add_get("/jwks", self._jwks)
        self.port = self._server.start(app)
        return self

    def stop(self) -> None:
        self._server.stop()

    def authorization_servers(self, **extra: Any) -> dict[str, dict[str, Any]]:
        """phantom-authz's ``authorization_servers`` section: one entry per dialect, named as in ``DIALECTS``."""
        servers = {}
        for name, (dialect, jwt_field) in DIALECTS.items():
            entry: dict[str, Any] = {
                "dialect": dialect, "introspection_endpoint": self.endpoint(name), "client_id": CLIENT_ID,
                "client_secret_env": "TEST_GATEWAY_SECRET", "issuer": ISSUER, "jwks_uri": self.jwks_uri(),
                "audiences": [AUDIENCE], "max_response_bytes": 65536, "timeout_seconds": 2, **extra,
            }
            if jwt_field is not None:
                entry["jwt_field"] = jwt_field
            servers[name] = entry
        return servers
