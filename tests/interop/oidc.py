"""A real third-party authorization server for interop tests: panva's ``oidc-provider`` (Node.js), run from
``tests/interop/oidc_provider/server.mjs`` on a free loopback port.

    provider = OidcProvider.start(tmp_path)
    token = provider.token("read write")      # an opaque client_credentials token of demo-client
    ...                                       # introspect it at provider.introspection_endpoint as GATEWAY_CLIENT
    provider.revoke(token)
    provider.stop()

What it speaks (observed with oidc-provider 9.13.3; paths from its discovery document):

- ``POST /token`` (client_secret_basic): 200 ``{"access_token": <43 chars, opaque>, "expires_in": 600,
  "scope": "read write", "token_type": "Bearer"}``.
- ``POST /token/introspection``: with ``Accept: application/json`` (or none) 200 ``{"active": true, "client_id",
  "exp", "iat", "iss", "scope", "token_type": "Bearer"}`` (no ``sub``, ``aud`` or ``jti`` for client_credentials
  tokens), or ``{"active": false}``; with ``Accept: application/token-introspection+jwt`` (RFC 9701) 200,
  ``Content-Type: application/token-introspection+jwt; charset=utf-8``, an RS256 JWT with header
  ``{"alg", "typ": "token-introspection+jwt", "kid"}`` and claims ``{"iss", "aud": <introspecting client>, "iat",
  "token_introspection": <the JSON answer>}`` (no ``exp``), inactive tokens included (``{"active": false}``).
  Both dialects send ``Cache-Control: no-store``.
- ``POST /token/revocation``: 200 with an empty body. ``GET /jwks``: the signing key (RSA, RS256, ``kid``).
- Wrong client credentials: 401 ``{"error": "invalid_client", "error_description": ...}``.

``node_available()`` tells tests whether they can run here; with ``CI_REQUIRE_INTEROP=1`` it fails instead of
answering False, so CI never skips these tests silently.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

from devtools.processes import Process, free_port
from tests.harness import Response, basic, http_request

__all__ = ["DEMO_CLIENT", "GATEWAY_CLIENT", "GATEWAY_POST", "JWT_INTROSPECTION", "PROVIDER_DIR", "SKIP_REASON",
           "OidcProvider", "node_available"]

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
SERVER = PROVIDER_DIR / "server.mjs"
JWT_INTROSPECTION = "application/token-introspection+jwt"  # RFC 9701 media type
DEMO_CLIENT = ("demo-client", "demo-secret")  # client_credentials, scope "read write admin", client_secret_basic
GATEWAY_CLIENT = ("gateway-client", "gateway-secret")  # introspects and revokes, client_secret_basic, RS256 JWTs
GATEWAY_POST = ("gateway-post", "gateway-post-secret")  # the same with client_secret_post
SKIP_REASON = ("oidc-provider interop tests need node on PATH and its packages: "
               "run `make interop-deps` (npm ci in tests/interop/oidc_provider)")


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return f"{PROVIDER_DIR / 'node_modules' / 'oidc-provider'} is missing"
    return None


def node_available() -> bool:
    """True when ``node`` and the installed ``oidc-provider`` package are there; else False, so tests can skip
    with ``SKIP_REASON`` — except under ``CI_REQUIRE_INTEROP=1``, where it raises instead."""
    missing = _missing()
    if missing is None:
        return True
    if os.environ.get("CI_REQUIRE_INTEROP") == "1":
        raise RuntimeError(f"CI_REQUIRE_INTEROP=1 but {missing}: {SKIP_REASON}")
    return False


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class OidcProvider:
    """A running oidc-provider; its endpoint URLs come from its discovery document."""

    def __init__(self, process: Process, port: int, discovery: dict[str, Any]) -> None:
        self.process = process
        self.port = port
        self.discovery = discovery
        self.issuer: str = discovery["issuer"]
        self.token_endpoint: str = discovery["token_endpoint"]
        self.introspection_endpoint: str = discovery["introspection_endpoint"]
        self.revocation_endpoint: str = discovery["revocation_endpoint"]
        self.jwks_uri: str = discovery["jwks_uri"]

    @classmethod
    def start(cls, workdir: Path, timeout: float = 20.0, gateway_jwks: dict[str, Any] | None = None
              ) -> OidcProvider:
        """Run ``node server.mjs`` on a free port (log: ``workdir/oidc-provider.log``) and read its discovery.
        ``gateway_jwks`` (a public JWKS) also registers the private_key_jwt client ``gateway-jwt``."""
        node = shutil.which("node")
        if node is None:
            raise FileNotFoundError("node is not on PATH")
        port = free_port()
        env = {"PORT": str(port), "OIDC_DEMO_SECRET": DEMO_CLIENT[1], "OIDC_GATEWAY_SECRET": GATEWAY_CLIENT[1],
               "OIDC_GATEWAY_POST_SECRET": GATEWAY_POST[1]}
        if gateway_jwks is not None:  # registers gateway-jwt, authenticating with private_key_jwt
            env["OIDC_GATEWAY_JWKS"] = json.dumps(gateway_jwks)
        process = Process("oidc-provider", [node, str(SERVER)], port, workdir, env=env).start(timeout)
        try:
            resp = http_request("GET", port, "/.well-known/openid-configuration")
            if resp.status != 200:
                raise RuntimeError(f"oidc-provider discovery failed: {resp!r}")
            provider = cls(process, port, resp.json())
            if provider.issuer != f"http://127.0.0.1:{port}":
                raise RuntimeError(f"unexpected issuer {provider.issuer!r}")
        except BaseException:
            process.stop()
            raise
        return provider

    def post(self, url: str, form: dict[str, str], client: tuple[str, str] | None = None,
             accept: str | None = None) -> Response:
        """POST a form to one of the provider's endpoints, with client_secret_basic when ``client`` is given."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if client is not None:
            headers["Authorization"] = basic(*client)
        if accept is not None:
            headers["Accept"] = accept
        return http_request("POST", self.port, _path(url), headers, urllib.parse.urlencode(form))

    def token(self, scope: str = "read", client: tuple[str, str] = DEMO_CLIENT) -> str:
        """An opaque access token from the client_credentials grant (demo-client by default)."""
        resp = self.post(self.token_endpoint, {"grant_type": "client_credentials", "scope": scope}, client)
        if resp.status != 200:
            raise RuntimeError(f"token request failed: {resp!r}")
        return str(resp.json()["access_token"])

    def revoke(self, token: str, client: tuple[str, str] = GATEWAY_CLIENT) -> None:
        """Revoke a token (RFC 7009); the gateway clients may revoke any token, other clients their own."""
        resp = self.post(self.revocation_endpoint, {"token": token, "token_type_hint": "access_token"}, client)
        if resp.status != 200:
            raise RuntimeError(f"revocation failed: {resp!r}")

    def jwks(self) -> dict[str, Any]:
        resp = http_request("GET", self.port, _path(self.jwks_uri))
        if resp.status != 200:
            raise RuntimeError(f"JWKS request failed: {resp!r}")
        return dict(json.loads(resp.body))

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL after 10 s); the exit status, 0 for a clean shutdown."""
        return self.process.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines)
