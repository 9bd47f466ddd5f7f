"""The AS's signing keys: JWKS from ``jwks_uri`` or from the AS metadata, cached, refreshed on an unknown ``kid``.

- Keys are kept ``jwks_cache_seconds``; past that they are re-fetched, and kept if the re-fetch fails.
- An unknown ``kid`` triggers a refresh at most once per ``jwks_min_refresh_seconds`` (counted from the last
  attempt, success or not), so junk ``kid`` values cannot make us hammer the AS. Concurrent refreshes share one
  fetch.
- Without ``jwks_uri``, the AS metadata names it (``authz.introspection.discovery``: RFC 8414, then OIDC discovery,
  https only unless ``allow_insecure_http``); the keys' host is logged.
- Only keys fit to verify a JWS are kept (``authz.verification_keys``); the others are skipped with a
  log line naming their ``kid``. A ``kid`` may name several keys (of different types); the JWS ``alg`` picks one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from authz.config import AuthorizationServerConfig
from authz.errors import AuthzError, UpstreamMisbehaved
from authz.introspection.client import AuthorizationServerClient
from authz.introspection.discovery import discover, metadata_urls
from authz.json_body import parse_json_object
from authz.verification_keys import UnusableKey, VerificationKey, verification_key

if TYPE_CHECKING:
    from authz.tracing.otel import Tracing

__all__ = ["KeySet", "metadata_urls"]

log = logging.getLogger("authz.jwks")


class KeySet:
    def __init__(self, config: AuthorizationServerConfig, client: AuthorizationServerClient,
                 clock: Callable[[], float] = time.monotonic, tracing: Tracing | None = None) -> None:
        self._config = config
        self._tracing = tracing  # on: each fetch (discovery included) is an authz.jwks_fetch span
        self._client = client
        self._clock = clock
        self._jwks_uri = config.jwks_uri
        self._keys: dict[str | None, tuple[VerificationKey, ...]] = {}
        self._next_fetch_at = float("-inf")  # keys expire (or, after a failure, the next attempt is due)
        self._attempted_at = float("-inf")
        self._generation = 0  # counts finished fetch attempts, so waiters can tell one ended while they waited
        self._last_error: AuthzError | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self._config.name

    async def key(self, kid: str | None, alg: str) -> VerificationKey:
        """The key ``kid`` names that may verify ``alg``; raises ``UpstreamMisbehaved`` when the AS has none."""
        if self._clock() >= self._next_fetch_at:
            await self._refresh()
        elif not self._keys and self._last_error is not None:
            raise self._last_error  # the last attempt failed and the next is not due: do not hammer the AS
        found = self._lookup(kid)
        if found is None and self._clock() - self._attempted_at >= self._config.jwks_min_refresh_seconds:
            await self._refresh()
            found = self._lookup(kid)
        if found is None:
            raise UpstreamMisbehaved(f"AS {self.name}: no signing key with kid {str(kid)[:64]!r} in its JWKS")
        for candidate in found:
            if alg in candidate.algorithms:
                return candidate
        raise UpstreamMisbehaved(f"AS {self.name}: the key with kid {str(kid)[:64]!r} may not verify alg {alg!r} "
                                 f"(it allows {', '.join(sorted(found[0].algorithms))})")

    def cached_key(self, kid: str | None, alg: str) -> Any:
        """The public key ``kid`` names that may verify ``alg``, if already fetched, else None (synchronous: for
        policy built-ins)."""
        return next((k.key for k in self._lookup(kid) or () if alg in k.algorithms), None)

    def _lookup(self, kid: str | None) -> tuple[VerificationKey, ...] | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        """Fetch the JWKS once for every task that asks meanwhile; keep cached keys if it fails."""
        generation = self._generation
        async with self._lock:
            if self._generation == generation:  # nobody fetched while we waited for the lock
                self._attempted_at = self._clock()
                try:
                    self._keys = await (self._fetch() if self._tracing is None else self._traced_fetch(self._tracing))
                    self._last_error = None
                    self._next_fetch_at = self._clock() + self._config.jwks_cache_seconds
                except AuthzError as exc:
                    self._last_error = exc
                    self._next_fetch_at = self._clock() + self._config.jwks_min_refresh_seconds
                    if self._keys:
                        log.warning("AS %s: JWKS refresh failed, keeping %d cached keys: %s", self.name,
                                    len(self._keys), exc.detail)
                finally:
                    self._generation += 1
        if not self._keys and self._last_error is not None:
            raise self._last_error

    async def _traced_fetch(self, tracing: Tracing) -> dict[str | None, tuple[VerificationKey, ...]]:
        with tracing.client_span("authz.jwks_fetch", {"authz.authorization_server": self.name}) as span:
            keys = await self._fetch()
            span.set_attribute("authz.jwks.keys", sum(len(found) for found in keys.values()))
            return keys

    async def _fetch(self) -> dict[str | None, tuple[VerificationKey, ...]]:
        if self._jwks_uri is None:
            self._jwks_uri = await discover(self._config, self._client, "jwks_uri")
            log.info("AS %s: JWKS discovered at host %s", self.name, urlsplit(self._jwks_uri).netloc)
        resp = await self._client.get(self._jwks_uri, "JWKS", accept="application/json, application/jwk-set+json")
        doc = parse_json_object(resp.body, f"AS {self.name}: JWKS", UpstreamMisbehaved)
        raw_keys = doc.get("keys")
        if not isinstance(raw_keys, list):
            raise UpstreamMisbehaved(f"AS {self.name}: JWKS has no keys array")
        keys: dict[str | None, tuple[VerificationKey, ...]] = {}
        for raw in raw_keys:
            if not isinstance(raw, dict):
                continue
            try:
                key = verification_key(raw)
            except UnusableKey as why:  # others may do; the log names the key by kid only
                log.warning("AS %s: JWKS key kid=%r skipped: %s", self.name, str(raw.get("kid"))[:64], why)
                continue
            keys[key.kid] = (*keys.get(key.kid, ()), key)
        if not keys:
            raise UpstreamMisbehaved(f"AS {self.name}: JWKS holds no usable signing key")
        log.info("AS %s: loaded %d signing keys from %s", self.name, len(keys), self._jwks_uri)
        return keys
