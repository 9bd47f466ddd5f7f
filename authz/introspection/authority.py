"""One configured authorization server: its client, dialect, keys, and the checks on what it returns.

``introspect(token)`` gives the AS's answer with any JWT already verified against the AS's keys (so the answer can
be cached as it is); ``answer(token)`` wraps it, uncached, in the ``Answer`` the pipeline reads (the cache, when on,
hands back its entry's instead); ``identity(answer)`` checks the claims (time, issuer, audience), once per answer
but the times on every request.

``cache_identity`` names the AS in cache keys: a hash of every setting of the AS (``repr`` of its configuration,
where secrets are masked), so two configured ASes never share a cached answer, nor what is derived from it (an
Allow built with the other's ``claims_forwarding``), even when they share an endpoint and client id.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from authz.claims import ClaimsChecker, narrowed_times
from authz.config import AuthorizationServerConfig
from authz.errors import InvalidToken
from authz.introspection.client import AuthorizationServerClient
from authz.introspection.jwks import KeySet
from authz.introspection.phantom import PhantomIntrospector
from authz.introspection.rfc7662 import Rfc7662Introspector
from authz.introspection.rfc9701 import Rfc9701Introspector
from authz.models import Answer, Identity, Introspection
from authz.token import JwtVerifier

if TYPE_CHECKING:
    from authz.metrics import Metrics
    from authz.token_exchange.exchanger import TokenExchanger
    from authz.tracing.otel import Tracing

__all__ = ["Authority", "configuration_hash"]


class Authority:
    def __init__(self, config: AuthorizationServerConfig, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.time, tracing: Tracing | None = None) -> None:
        self.config = config
        self.name = config.name
        self._tracing = tracing  # on: each introspection is a span (authz.introspection), so is each JWKS fetch
        # the cache key's AS identity: the whole configuration that shapes the answer and what is derived from it
        self.cache_identity = configuration_hash(config)
        # every active answer carries a JWT (phantom; rfc7662 with jwt_field; rfc9701 never has one to forward):
        # the cache refuses a claims-only answer read from Redis for such an AS
        self.returns_jwt = config.returns_jwt
        # the gateway's own credential at this AS, shared by its sidecars and unknown to a Redis writer: part of the
        # key that seals L2 values (authz.cache.sealing), so nobody without it can write a value we serve
        self.sealing_secret = _credential(config)
        self.client = AuthorizationServerClient(config, session)
        self.keys = KeySet(config, self.client, tracing=tracing) if config.issuer is not None else None
        self._verifier = JwtVerifier(self.keys, config.algorithms) if self.keys is not None else None
        self._claims = ClaimsChecker(config.issuer, config.audiences, config.leeway_seconds, clock)
        if config.dialect == "rfc9701":
            assert self._verifier is not None
            self.introspector: PhantomIntrospector | Rfc7662Introspector | Rfc9701Introspector = (
                Rfc9701Introspector(self.client, self._verifier, config, clock))
        elif config.dialect == "rfc7662":
            self.introspector = Rfc7662Introspector(self.client, config.jwt_field)
        else:
            self.introspector = PhantomIntrospector(self.client)
        # RFC 8693, for routes with an exchange_audience: the same client (credentials, TLS) and keys
        self.exchanger: TokenExchanger | None = None
        if config.token_exchange is not None:
            # imported here: authz.token_exchange imports this package's client, so a module-level import would
            # make a cycle whenever authz.pipeline is imported before authz.introspection
            from authz.token_exchange.exchanger import TokenExchanger

            self.exchanger = TokenExchanger(config, self.client, self._verifier, clock)

    def start(self, metrics: Metrics | None = None) -> None:
        """Serving: watch the AS's TLS files for a rotation (counted in ``metrics``)."""
        counter = metrics.as_tls_reloads if metrics is not None else None
        self.client.start_tls_watch(None if counter is None else lambda result: counter.labels(self.name, result).inc())

    def retire(self) -> None:
        """A reload replaced this AS: its TLS watch stops; its connections close once the calls in flight end."""
        self.client.retire()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def introspect(self, token: str) -> Introspection:
        """The AS's answer; an access-token JWT in it has had its signature verified."""
        if self._tracing is None:
            return await self.verified(await self.introspector.introspect(token))
        with self._tracing.client_span("authz.introspection", {"authz.authorization_server": self.name,
                                                                "authz.dialect": self.config.dialect}) as span:
            answer = await self.verified(await self.introspector.introspect(token))
            span.set_attribute("authz.introspection.active", answer.active)
            return answer

    async def verified(self, answer: Introspection) -> Introspection:
        """``answer`` with its JWT's signature verified and its claims taken from the JWT, but for the answer's own
        ``exp``/``nbf`` where they are stricter (``narrowed_times``; a value read back from Redis keeps them)."""
        if not answer.active or answer.jwt is None:
            return answer
        assert self._verifier is not None, "config validation requires an issuer for JWT-returning dialects"
        claims = narrowed_times(await self._verifier.verify(answer.jwt), answer.claims)
        return Introspection(active=True, jwt=answer.jwt, claims=claims, max_age=answer.max_age)

    async def answer(self, token: str) -> Answer:
        """``introspect`` as the pipeline reads it, uncached: a fresh Answer per call."""
        return Answer(await self.introspect(token))

    def identity(self, answer: Answer) -> Identity:
        if not answer.introspection.active:
            raise InvalidToken("authorization server says the token is not active")
        return self._claims.identity_of(answer)


def configuration_hash(config: AuthorizationServerConfig) -> str:
    """SHA-256 of the AS's configuration as ``repr`` shows it: every field, the name included, secrets masked (a
    rotated secret keeps the cache; no secret reaches a key). Only values whose ``repr`` is the same in every
    process (no sets), so the sidecars sharing an L2 tier agree on it."""
    return hashlib.sha256(repr(config).encode("utf-8", "surrogatepass")).hexdigest()


def _credential(config: AuthorizationServerConfig) -> bytes:
    if config.private_key_jwt is not None:
        return config.private_key_jwt.key_pem.reveal().encode()
    if config.client_secret is None:  # RFC 8705 methods: the client certificate's key is the credential
        assert config.client_key_pem is not None, "config requires a secret, a private_key_jwt or a client cert"
        return config.client_key_pem.reveal().encode()
    return config.client_secret.reveal().encode()
