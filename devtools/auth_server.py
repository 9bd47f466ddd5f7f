"""A development authorization server speaking Curity's "phantom token" dialect, for the quickstart and tests.

A dev/demo AS, NOT for production: all state (tokens, keys, counters) is in memory, it serves plain HTTP (HTTPS,
with client certificates and RFC 8705 client authentication, given ``DevASConfig.tls``: ``devtools.mtls_clients``),
and the ``/dev/*`` helpers need no authentication. Endpoints:

- ``POST /oauth/v2/oauth-token``: ``client_credentials`` with ``client_secret_basic`` or ``client_secret_post``;
  issues an opaque random token. Dev-only form field ``subject`` sets ``sub`` (default: the client id), so a demo
  can act as a user such as "alice"; dev-only ``certificate`` (PEM) binds the token to it (RFC 8705
  ``cnf.x5t#S256``; ``devtools.token_binding``). RFC 8693 token exchange for clients with ``can_exchange`` (the
  gateway): a narrower token for an audience (``devtools.token_exchange``).
- ``POST /oauth/v2/oauth-introspect`` (clients allowed to introspect), in the dialect ``Accept`` prefers:
  ``application/jwt`` (Curity's phantom dialect): an active token gets 200 and a signed RS256 JWT of its claims,
  an inactive one 204; ``application/token-introspection+jwt`` (RFC 9701): 200 and an RS256 JWT (``typ``
  ``token-introspection+jwt``) with ``iss``, ``aud`` (the introspecting client), ``iat`` and ``token_introspection``
  (the RFC 7662 answer, ``{"active": false}`` for an inactive token); otherwise RFC 7662 JSON. Active answers carry
  ``Cache-Control: max-age=<seconds the token has left>``.
- ``POST /oauth/v2/oauth-revoke`` (RFC 7009), ``GET /oauth/v2/oauth-anonymous/jwks``,
  ``GET /.well-known/oauth-authorization-server`` (RFC 8414), ``GET /stats``, ``POST /dev/reset-stats``,
  ``POST /dev/rotate-keys``.

Run it with ``python -m devtools.auth_server --port 8443`` (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import logging
import os
import secrets
import signal
import sys
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devtools.introspection_media import JWT_INTROSPECTION_MEDIA_TYPE, JWT_MEDIA_TYPE, negotiate
from devtools.mtls_clients import DevTls, MtlsRegistration, peer_certificate
from devtools.oauth_errors import NO_STORE, form_str, oauth_error
from devtools.revocation_hook import evict_at_gateway
from devtools.signing_keys import SigningKeys
from devtools.token_binding import certificate_binding
from devtools.token_exchange import GRANT_TYPE as TOKEN_EXCHANGE
from devtools.token_exchange import exchange_response

__all__ = ["DEV_AS_KEY", "DevASConfig", "DevAuthServer", "DevClient", "SigningKeys", "bound_port", "build_app",
           "default_clients", "main", "start"]

log = logging.getLogger("devtools.auth_server")

TOKEN_PATH = "/oauth/v2/oauth-token"
INTROSPECT_PATH = "/oauth/v2/oauth-introspect"
REVOKE_PATH = "/oauth/v2/oauth-revoke"
JWKS_PATH = "/oauth/v2/oauth-anonymous/jwks"
METADATA_PATH = "/.well-known/oauth-authorization-server"
_PURGE_EVERY = 1024  # issued tokens between sweeps of expired records


@dataclass(frozen=True)
class DevClient:
    """A registered client: its secret, the scopes it may get, those it gets by default, and whether it may
    call the introspection endpoint (the gateway's client)."""

    secret: str
    scopes: tuple[str, ...] = ()
    default_scopes: tuple[str, ...] = ()
    can_introspect: bool = False
    can_exchange: bool = False  # may use RFC 8693 token exchange (devtools.token_exchange)
    mtls: MtlsRegistration | None = None  # RFC 8705: the client certificate authenticates it, not the secret


def default_clients() -> dict[str, DevClient]:
    """``demo-client`` (gets tokens) and ``gateway-client`` (introspects; secret from ``$DEV_AS_GATEWAY_SECRET``).
    No secret is ever defaulted: without the variable the gateway client's secret is random, known to nobody."""
    return {
        "demo-client": DevClient("demo-secret", ("read", "write", "admin", "approve"), ("read",)),
        "gateway-client": DevClient(os.environ.get("DEV_AS_GATEWAY_SECRET") or secrets.token_urlsafe(32),
                                    can_introspect=True, can_exchange=True),
    }


@dataclass(frozen=True)
class DevASConfig:
    host: str = "127.0.0.1"
    port: int = 8443
    issuer: str | None = None  # None: http://{host}:{port}/oauth/v2/oauth-anonymous (with the bound port)
    audience: str = "api.example.com"
    token_ttl: int = 300  # seconds
    latency_ms: float = 0.0  # added to every introspection call, to stand for a remote AS
    revocation_hook: str | None = None  # phantom-authz admin API (HOST:PORT / unix:PATH) told of revocations
    clients: Mapping[str, DevClient] = field(default_factory=default_clients)
    tls: DevTls | None = None  # HTTPS (and client certificates) instead of plain HTTP


@dataclass
class TokenRecord:
    client_id: str
    sub: str
    scope: tuple[str, ...]
    iat: int
    exp: int
    jti: str
    revoked: bool = False
    cnf: dict[str, str] | None = None  # confirmation claim: the token is bound to a key or certificate

    def active(self, now: float) -> bool:
        return not self.revoked and now < self.exp


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class DevAuthServer:
    """The AS's state (clients, tokens, keys, counters) and its request handlers."""

    def __init__(self, config: DevASConfig) -> None:
        self.config = config
        self.port = config.port
        self.keys = SigningKeys()
        self.tokens: dict[str, TokenRecord] = {}
        self.introspections = 0
        self.tokens_issued = 0
        self.revocations = 0
        self.exchanges = 0  # RFC 8693 tokens issued

    @property
    def base_url(self) -> str:
        return f"{'https' if self.config.tls else 'http'}://{_url_host(self.config.host)}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.config.issuer or f"{self.base_url}/oauth/v2/oauth-anonymous"

    def routes(self) -> list[web.RouteDef]:
        return [web.post(TOKEN_PATH, self.token_endpoint), web.post(INTROSPECT_PATH, self.introspect_endpoint),
                web.post(REVOKE_PATH, self.revoke_endpoint), web.get(JWKS_PATH, self.jwks_endpoint),
                web.get(METADATA_PATH, self.metadata_endpoint), web.get("/stats", self.stats_endpoint),
                web.post("/dev/reset-stats", self.reset_stats_endpoint),
                web.post("/dev/rotate-keys", self.rotate_keys_endpoint)]

    def authenticate(self, request: web.Request, form: Mapping[str, object]) -> tuple[str, DevClient]:
        """client_secret_basic (id and secret form-urlencoded, RFC 6749 §2.3.1), client_secret_post, or RFC 8705's
        certificate methods for a client registered with ``mtls`` (``client_id`` in the form, no secret).

        Raises 401 invalid_client (unknown client, wrong secret, no or broken credentials).
        """
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        form_id, form_secret = form_str(form, "client_id"), form_str(form, "client_secret")
        if header:
            if form_secret is not None:
                raise oauth_error("invalid_request")  # more than one method (RFC 6749 §2.3)
            try:  # binascii.Error and UnicodeDecodeError are ValueErrors too
                if scheme.lower() != "basic":
                    raise ValueError("not Basic")
                raw_id, sep, raw_secret = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
                if not sep:
                    raise ValueError("no colon")
            except ValueError:
                raise oauth_error("invalid_client") from None
            client_id, secret = urllib.parse.unquote_plus(raw_id), urllib.parse.unquote_plus(raw_secret)
        elif form_id is not None and form_secret is not None:
            client_id, secret = form_id, form_secret
        elif form_id is not None and (mtls := getattr(self.config.clients.get(form_id), "mtls", None)) is not None:
            # RFC 8705 §2: client_id names the client, its certificate on this connection proves it
            if not mtls.recognises(peer_certificate(request), self.config.tls):
                raise oauth_error("invalid_client")
            return form_id, self.config.clients[form_id]
        else:
            raise oauth_error("invalid_client")
        client = self.config.clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            raise oauth_error("invalid_client")
        return client_id, client

    def issue(self, client_id: str, sub: str, scope: tuple[str, ...], cnf: dict[str, str] | None = None) -> str:
        token = secrets.token_urlsafe(32)  # [A-Za-z0-9_-]: valid RFC 6750 b64token characters
        iat = int(time.time())
        self.tokens[token] = TokenRecord(client_id, sub, scope, iat, iat + self.config.token_ttl, uuid.uuid4().hex,
                                         cnf=cnf)
        self.tokens_issued += 1
        if self.tokens_issued % _PURGE_EVERY == 0:  # forget expired tokens now and then
            self.tokens = {t: r for t, r in self.tokens.items() if iat < r.exp}
        return token

    def claims(self, record: TokenRecord) -> dict[str, Any]:
        claims = {"iss": self.issuer, "sub": record.sub, "aud": self.config.audience, "scope": " ".join(record.scope),
                  "client_id": record.client_id, "exp": record.exp, "iat": record.iat, "jti": record.jti}
        return claims if record.cnf is None else {**claims, "cnf": dict(record.cnf)}

    def introspection_json(self, record: TokenRecord | None) -> dict[str, Any]:
        """The RFC 7662 answer: ``{"active": false}`` for an inactive token (``None``)."""
        if record is None:
            return {"active": False}
        return {"active": True, **self.claims(record), "token_type": "bearer"}

    def introspection_jwt(self, client_id: str, record: TokenRecord | None, now: float) -> str:
        """The RFC 9701 answer for ``client_id``: the RFC 7662 one in ``token_introspection``, signed."""
        claims = {"iss": self.issuer, "aud": client_id, "iat": int(now),
                  "token_introspection": self.introspection_json(record)}
        return self.keys.sign(claims, typ="token-introspection+jwt")

    def stats(self) -> dict[str, Any]:
        return {"introspections": self.introspections, "tokens_issued": self.tokens_issued,
                "revocations": self.revocations, "exchanges": self.exchanges, "active_kid": self.keys.active.kid}

    async def token_endpoint(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, client = self.authenticate(request, form)
        grant_type = form_str(form, "grant_type")
        if grant_type is None:
            raise oauth_error("invalid_request", "grant_type is required")
        if grant_type == TOKEN_EXCHANGE:
            return exchange_response(self, client_id, client.can_exchange, form)
        if grant_type != "client_credentials":
            raise oauth_error("unsupported_grant_type")
        scope = tuple(dict.fromkeys((form_str(form, "scope") or "").split())) or client.default_scopes
        refused = [s for s in scope if s not in client.scopes]
        if refused:
            raise oauth_error("invalid_scope", f"not allowed for {client_id}: {' '.join(refused)}")
        sub = form_str(form, "subject") or client_id  # dev-only impersonation
        certificate = form_str(form, "certificate")  # dev-only: the client certificate to bind the token to
        try:
            cnf = None if certificate is None else certificate_binding(certificate)
        except ValueError:
            raise oauth_error("invalid_request", "certificate is not a PEM certificate") from None
        token = self.issue(client_id, sub, scope, cnf)
        log.info("issued token to client=%s sub=%s scope=%r", client_id, sub, " ".join(scope))
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": self.config.token_ttl,
                                  "scope": " ".join(scope)}, headers=NO_STORE)

    async def introspect_endpoint(self, request: web.Request) -> web.Response:
        self.introspections += 1
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)
        form = await request.post()
        client_id, client = self.authenticate(request, form)
        if not client.can_introspect:
            log.warning("client %s may not introspect", client_id)
            raise oauth_error("invalid_client")
        token = form_str(form, "token")
        if not token:
            raise oauth_error("invalid_request", "token is required")
        now = time.time()
        record = self.tokens.get(token)
        active = record if record is not None and record.active(now) else None
        dialect = negotiate(request.headers.get("Accept", ""))
        if active is None:
            if dialect == JWT_MEDIA_TYPE:
                return web.Response(status=204)
            headers = NO_STORE
        else:
            headers = {"Cache-Control": f"max-age={max(0, int(active.exp - now))}"}
        if dialect == JWT_INTROSPECTION_MEDIA_TYPE:
            return web.Response(body=self.introspection_jwt(client_id, active, now).encode(),
                                content_type=JWT_INTROSPECTION_MEDIA_TYPE, headers=headers)
        if active is not None and dialect == JWT_MEDIA_TYPE:
            return web.Response(body=self.keys.sign(self.claims(active)).encode(), content_type=JWT_MEDIA_TYPE,
                                headers=headers)
        return web.json_response(self.introspection_json(active), headers=headers)

    async def revoke_endpoint(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, _ = self.authenticate(request, form)
        token = form_str(form, "token")
        if not token:
            raise oauth_error("invalid_request", "token is required")
        record = self.tokens.get(token)
        if record is not None and not record.revoked:
            record.revoked = True
            self.revocations += 1
            log.info("client %s revoked token jti=%s", client_id, record.jti)
            if self.config.revocation_hook:
                await evict_at_gateway(self.config.revocation_hook, token)
        return web.Response(status=200, headers=NO_STORE)  # unknown tokens too (RFC 7009 §2.2)

    async def jwks_endpoint(self, request: web.Request) -> web.Response:
        return web.json_response(self.keys.jwks())

    async def metadata_endpoint(self, request: web.Request) -> web.Response:
        base = self.base_url
        methods = ["client_secret_basic", "client_secret_post"]
        return web.json_response({
            "issuer": self.issuer, "token_endpoint": base + TOKEN_PATH,
            "introspection_endpoint": base + INTROSPECT_PATH, "revocation_endpoint": base + REVOKE_PATH,
            "jwks_uri": base + JWKS_PATH, "grant_types_supported": ["client_credentials", TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": methods, "introspection_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "introspection_signing_alg_values_supported": ["RS256"],  # RFC 9701
        })

    async def stats_endpoint(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def reset_stats_endpoint(self, request: web.Request) -> web.Response:
        self.introspections = self.tokens_issued = self.revocations = self.exchanges = 0
        return web.json_response(self.stats())

    async def rotate_keys_endpoint(self, request: web.Request) -> web.Response:
        kid = self.keys.rotate().kid
        log.info("rotated signing keys: active kid=%s", kid)
        return web.json_response({"kid": kid})


DEV_AS_KEY = web.AppKey("dev_as", DevAuthServer)


def build_app(config: DevASConfig) -> web.Application:
    """The AS as an aiohttp application; its state is ``app[DEV_AS_KEY]``."""
    server = DevAuthServer(config)
    app = web.Application()
    app[DEV_AS_KEY] = server
    app.add_routes(server.routes())
    return app


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on (the real one when the configured port was 0)."""
    return int(runner.addresses[0][1])


async def start(config: DevASConfig) -> web.AppRunner:
    """Listen on ``config.host:config.port``; ``bound_port(runner)`` gives the port; stop: ``runner.cleanup()``."""
    runner = web.AppRunner(build_app(config))
    await runner.setup()
    try:
        tls = config.tls.server_context() if config.tls is not None else None
        await web.TCPSite(runner, config.host, config.port, ssl_context=tls).start()
    except BaseException:
        await runner.cleanup()
        raise
    runner.app[DEV_AS_KEY].port = bound_port(runner)  # the real one, for the issuer and metadata URLs
    return runner


def _parser() -> argparse.ArgumentParser:
    defaults = DevASConfig(clients={})
    parser = argparse.ArgumentParser(prog="devtools.auth_server",
                                     description="development AS for phantom tokens (NOT for production)")
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="0 picks a free port (default: %(default)s)")
    parser.add_argument("--audience", default=defaults.audience, help="aud of issued JWTs (default: %(default)s)")
    parser.add_argument("--token-ttl", type=int, default=defaults.token_ttl, help="token lifetime in seconds")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms,
                        help="artificial latency added to every introspection call")
    parser.add_argument("--revocation-hook", metavar="TARGET",
                        help="phantom-authz admin API (HOST:PORT or unix:PATH) to evict revoked tokens from")
    return parser


async def _serve(config: DevASConfig) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    runner = await start(config)
    try:
        print(f"dev AS listening on http://{_url_host(config.host)}:{bound_port(runner)}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    config = DevASConfig(host=args.host, port=args.port, audience=args.audience, token_ttl=args.token_ttl,
                         latency_ms=args.latency_ms, revocation_hook=args.revocation_hook)
    try:
        asyncio.run(_serve(config))
    except OSError as exc:
        print(f"dev AS: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
