"""One AS's RFC 8693 token exchange: the request the gateway sends, and what it accepts of the answer.

The request (§2.1), with the gateway's own client authentication (``client_auth_method``, as for introspection):
``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``, ``subject_token`` (the client's token, type
``...:token-type:access_token``; or with ``subject_token: jwt`` the JWT introspection returned, type
``...:token-type:jwt``), ``requested_token_type``, ``audience`` and, when the route names them, ``scope``.

The answer (§2.2) is forwarded only if every check passes, else ``TokenExchangeFailed`` (502); an AS that cannot
be reached is ``TokenExchangeUnavailable`` (503). Never is the client's token or JWT forwarded instead:

- HTTP 200 with a JSON object (a 400 is the AS's refusal: its RFC 6749 ``error`` code is logged, never its
  description, which may quote what it was sent);
- ``access_token``: RFC 6750 b64token characters, so it can follow ``Bearer``; ``issued_token_type``: an access
  token or a JWT; ``token_type``: ``Bearer`` or ``N_A`` (a token bound to a key the gateway does not hold is useless
  to the upstream); ``expires_in``, when present, a positive number; ``scope``, when present and the route named
  scopes, none beyond them;
- with ``requested_token_type: jwt``: the JWT verified with the AS's keys (``authz.token``: alg allow-list, key,
  signature), ``iss`` the AS's, ``aud`` holding the route's audience, ``exp`` in the future, its scopes none beyond
  the route's, and its ``sub`` the same as the client token's.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from authz.claims import scopes_of
from authz.config import AuthorizationServerConfig
from authz.errors import TokenExchangeFailed, TokenExchangeUnavailable, UpstreamMisbehaved, UpstreamUnavailable
from authz.introspection.client import ASResponse, AuthorizationServerClient
from authz.introspection.discovery import discover
from authz.json_body import parse_json_object
from authz.numbers import finite_number
from authz.scopes import granted_scopes
from authz.token import JwtVerifier

__all__ = ["GRANT_TYPE", "TOKEN_TYPES", "Exchanged", "TokenExchanger"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPES = {"access_token": "urn:ietf:params:oauth:token-type:access_token",
               "jwt": "urn:ietf:params:oauth:token-type:jwt"}
_ISSUED = frozenset(TOKEN_TYPES.values())
_FORWARDABLE = frozenset({"bearer", "n_a"})  # token_type values of a token that may go upstream as Bearer
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*\Z")  # RFC 6750 §2.1: what may follow "Bearer "
_ERROR_CODE = re.compile(r"^[a-z_]{1,64}\Z")  # an RFC 6749 §5.2 error code we may log
_ANSWERS = frozenset({200, 400})  # the token endpoint's answer, and its refusal (RFC 6749 §5.2)


@dataclass(frozen=True, slots=True)
class Exchanged:
    """A token the AS issued for an audience, accepted for forwarding."""

    token: str = field(repr=False)
    expires_at: float | None  # the earlier of a verified JWT's exp and expires_in; None: unknown
    max_age: int | None  # Cache-Control max-age of the answer, when sent


class TokenExchanger:
    """Exchanges tokens at one AS (``authorization_servers.<name>.token_exchange``)."""

    def __init__(self, config: AuthorizationServerConfig, client: AuthorizationServerClient,
                 verifier: JwtVerifier | None, clock: Callable[[], float] = time.time) -> None:
        settings = config.token_exchange
        assert settings is not None, "an exchanger is made for an AS with a token_exchange section"
        self.name = config.name
        self._config = config
        self._client = client
        self._clock = clock
        self._endpoint = settings.token_endpoint  # None: discovered on first use
        self._discovery = asyncio.Lock()
        self._send_jwt = settings.subject_token == "jwt"
        self._subject_type = TOKEN_TYPES[settings.subject_token if self._send_jwt else "access_token"]
        self._requested = TOKEN_TYPES[settings.requested_token_type]
        # a requested JWT is verified before it goes anywhere (the configuration requires the AS's issuer and keys)
        self._verifier = verifier if settings.requested_token_type == "jwt" else None
        assert self._verifier is not None or settings.requested_token_type != "jwt"

    async def exchange(self, token: str, jwt: str | None, audience: str, scope: tuple[str, ...] | None,
                       subject: str | None) -> Exchanged:
        """Exchange the client's ``token`` (or its introspected ``jwt``) for one for ``audience`` and ``scope``;
        ``subject``: the client token's ``sub``, which a verified JWT must keep."""
        subject_token = jwt if self._send_jwt else token
        if subject_token is None:
            raise TokenExchangeFailed(f"AS {self.name}: no JWT to exchange (subject_token: jwt, a claims-only answer)")
        form = {"grant_type": GRANT_TYPE, "subject_token": subject_token, "subject_token_type": self._subject_type,
                "requested_token_type": self._requested, "audience": audience}
        if scope:
            form["scope"] = " ".join(scope)
        asked_at = self._clock()
        try:
            endpoint = await self._token_endpoint()
            resp = await self._client.post_form(endpoint, "token exchange", form, _ANSWERS)
            if resp.status != 200:
                raise TokenExchangeFailed(f"AS {self.name}: refused to exchange the token for audience {audience!r} "
                                          f"({_error_code(resp)})")
            return await self._accepted(resp, audience, scope, subject, asked_at)
        except (TokenExchangeFailed, TokenExchangeUnavailable):
            raise
        except UpstreamUnavailable as exc:
            raise TokenExchangeUnavailable(exc.detail, retry_after=exc.retry_after) from None
        except UpstreamMisbehaved as exc:  # our credentials refused, a redirect, an unusable answer or JWT
            raise TokenExchangeFailed(exc.detail) from None

    async def _token_endpoint(self) -> str:
        endpoint = self._endpoint
        if endpoint is None:
            async with self._discovery:  # one discovery for the requests that wait meanwhile
                endpoint = self._endpoint
                if endpoint is None:
                    endpoint = self._endpoint = await discover(self._config, self._client, "token_endpoint")
        return endpoint

    async def _accepted(self, resp: ASResponse, audience: str, scope: tuple[str, ...] | None, subject: str | None,
                        asked_at: float) -> Exchanged:
        what = f"AS {self.name}: token exchange answer"
        if resp.content_type != "application/json":
            raise TokenExchangeFailed(f"{what} has content type {resp.content_type[:60]!r}, not JSON")
        doc = parse_json_object(resp.body, what, TokenExchangeFailed)
        token = doc.get("access_token")
        if not isinstance(token, str) or not _B64TOKEN.match(token):
            raise TokenExchangeFailed(f"{what} has no access_token that can go in an Authorization header")
        if doc.get("issued_token_type") not in _ISSUED:
            raise TokenExchangeFailed(f"{what}: issued_token_type {str(doc.get('issued_token_type'))[:80]!r} is "
                                      "neither an access token nor a JWT")
        token_type = doc.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() not in _FORWARDABLE:
            raise TokenExchangeFailed(f"{what}: token_type {str(token_type)[:40]!r} is not Bearer or N_A")
        expires_at = None
        if "expires_in" in doc:
            expires_in = finite_number(doc["expires_in"])
            if expires_in is None or expires_in <= 0:
                raise TokenExchangeFailed(f"{what}: expires_in is not a positive number")
            expires_at = asked_at + expires_in
        if "scope" in doc:
            if not isinstance(doc["scope"], str):
                raise TokenExchangeFailed(f"{what}: scope is not a string")
            _within(granted_scopes(doc["scope"]), scope, what)
        if self._verifier is not None:
            exp = await self._verified(token, audience, scope, subject)
            expires_at = exp if expires_at is None else min(exp, expires_at)
        return Exchanged(token, expires_at, resp.max_age)

    async def _verified(self, token: str, audience: str, scope: tuple[str, ...] | None, subject: str | None) -> float:
        """Verify an issued JWT as one the upstream may be given; return its ``exp``."""
        assert self._verifier is not None
        claims = await self._verifier.verify(token)  # UpstreamMisbehaved (502) unless the AS's keys sign it
        what = f"AS {self.name}: exchanged JWT"
        if claims.get("iss") != self._config.issuer:
            raise TokenExchangeFailed(f"{what} has issuer {str(claims.get('iss'))[:100]!r}")
        aud = claims.get("aud")
        if not (aud == audience or (isinstance(aud, list) and audience in aud)):
            raise TokenExchangeFailed(f"{what} is not for audience {audience!r}")
        exp = finite_number(claims.get("exp"))
        if exp is None or exp <= self._clock():
            raise TokenExchangeFailed(f"{what} has no exp in the future")
        _within(scopes_of(claims), scope, what)  # scopes_of: UpstreamMisbehaved (502) for a malformed claim
        if subject is not None and claims.get("sub") != subject:
            raise TokenExchangeFailed(f"{what} is about another subject than the client's token")
        return exp


def _within(granted: frozenset[str], asked: tuple[str, ...] | None, what: str) -> None:
    """An AS may narrow the scopes a route asks for, never widen them."""
    if asked is None:
        return
    wider = sorted(granted - set(asked))
    if wider:
        raise TokenExchangeFailed(f"{what} grants scopes the route did not ask for: {' '.join(wider)[:200]}")


def _error_code(resp: ASResponse) -> str:
    """The RFC 6749 ``error`` of a refusal, if it reads as one (never the description: it may quote the token)."""
    try:
        error = parse_json_object(resp.body, "", ValueError).get("error")
    except ValueError:
        error = None
    return f"error {error}" if isinstance(error, str) and _ERROR_CODE.match(error) else "no readable error code"
