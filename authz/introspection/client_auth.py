"""How we authenticate to an authorization server: client_secret_basic, client_secret_post, private_key_jwt, and
RFC 8705's tls_client_auth and self_signed_tls_client_auth.

Each method adds to the outgoing headers and form. ``private_key_jwt`` (RFC 7523 §2.2) signs a fresh assertion per
request: ``iss`` = ``sub`` = our client id, ``aud`` = the AS issuer (or the configured audience), a random ``jti``,
``iat`` now and a short ``exp``. The RFC 8705 methods send ``client_id`` in the body and no secret: the client
certificate on the TLS connection (``AuthorizationServerClient``'s SSL context) is the credential.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization

from authz.config import AuthorizationServerConfig

__all__ = ["ClientAuth", "client_auth_for"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class ClientAuth(Protocol):
    def apply(self, headers: dict[str, str], form: dict[str, str]) -> None: ...


class _SecretBasic:
    def __init__(self, client_id: str, secret: str) -> None:
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding
        pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
        self._header = "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def apply(self, headers: dict[str, str], form: dict[str, str]) -> None:
        headers["Authorization"] = self._header


class _SecretPost:
    def __init__(self, client_id: str, secret: str) -> None:
        self._fields = {"client_id": client_id, "client_secret": secret}

    def apply(self, headers: dict[str, str], form: dict[str, str]) -> None:
        form.update(self._fields)


class _PrivateKeyJwt:
    def __init__(self, config: AuthorizationServerConfig, clock: Callable[[], float]) -> None:
        settings = config.private_key_jwt
        assert settings is not None
        self._client_id = config.client_id
        self._key = serialization.load_pem_private_key(settings.key_pem.reveal().encode(), password=None)
        self._alg = settings.algorithm
        self._headers = {"kid": settings.kid} if settings.kid else None
        self._audience = settings.audience or config.issuer or config.introspection_endpoint
        self._lifetime = settings.lifetime_seconds
        self._clock = clock

    def assertion(self) -> str:
        now = int(self._clock())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": self._audience,
            "jti": secrets.token_urlsafe(18),
            "iat": now,
            "exp": now + self._lifetime,
        }
        return pyjwt.encode(claims, self._key, algorithm=self._alg, headers=self._headers)  # type: ignore[arg-type]

    def apply(self, headers: dict[str, str], form: dict[str, str]) -> None:
        form["client_id"] = self._client_id
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = self.assertion()


class _TlsClient:
    """RFC 8705 §2: the client certificate authenticates; the body names the client (``client_id``, required)."""

    def __init__(self, client_id: str) -> None:
        self._client_id = client_id

    def apply(self, headers: dict[str, str], form: dict[str, str]) -> None:
        form["client_id"] = self._client_id


def client_auth_for(config: AuthorizationServerConfig, clock: Callable[[], float] = time.time) -> ClientAuth:
    if config.client_auth_method == "private_key_jwt":
        return _PrivateKeyJwt(config, clock)
    if config.client_auth_method in ("tls_client_auth", "self_signed_tls_client_auth"):
        return _TlsClient(config.client_id)
    assert config.client_secret is not None
    secret = config.client_secret.reveal()
    if config.client_auth_method == "client_secret_post":
        return _SecretPost(config.client_id, secret)
    return _SecretBasic(config.client_id, secret)
