"""The dev AS's RFC 8693 token exchange at its token endpoint. Development only, like the rest of the dev AS.

- The caller: a client registered with ``can_exchange`` (the quickstart's ``gateway-client``), authenticated as for
  any grant; another client gets ``unauthorized_client``.
- ``subject_token``: an active opaque token this AS issued (``subject_token_type``
  ``urn:ietf:params:oauth:token-type:access_token``), or a JWT it signed for one (``...:token-type:jwt``: its
  introspection answer; signature, issuer and ``exp`` checked, and the token it stands for not revoked).
- ``audience``: required here (one); ``scope``: optional (default: the subject's scopes); a scope the subject token
  does not hold is ``invalid_scope``: an exchange narrows, never widens. ``requested_token_type``: ``...:jwt``
  (the default) or ``...:access_token``; anything else is ``invalid_request``.
- The issued token: an RS256 JWT (``typ`` ``at+jwt``) with the subject's ``sub`` and ``client_id``, ``aud`` the
  audience, the narrowed ``scope``, ``act`` ``{"sub": <the caller>}`` (RFC 8693 §4.1: who acts for the subject), its
  own ``jti``, and an ``exp`` no later than the subject token's. The answer: ``access_token``, ``issued_token_type``
  as requested, ``token_type`` ``N_A`` for a JWT and ``Bearer`` for an access token, ``expires_in``, ``scope``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from devtools.oauth_errors import NO_STORE, form_str, oauth_error

if TYPE_CHECKING:
    from devtools.auth_server import DevAuthServer, TokenRecord

__all__ = ["GRANT_TYPE", "exchange_response"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"


def exchange_response(server: DevAuthServer, client_id: str, may_exchange: bool,
                      form: Mapping[str, object]) -> web.Response:
    """The token endpoint's answer to a token-exchange grant by ``client_id`` (raises an RFC 6749 error)."""
    if not may_exchange:
        raise oauth_error("unauthorized_client", f"{client_id} may not exchange tokens")
    subject, audience = form_str(form, "subject_token"), form_str(form, "audience")
    if not subject or not audience:
        raise oauth_error("invalid_request", "subject_token and audience are required")
    requested = form_str(form, "requested_token_type") or JWT
    if requested not in (JWT, ACCESS_TOKEN):
        raise oauth_error("invalid_request", "requested_token_type must be a JWT or an access token")
    record = _subject(server, subject, form_str(form, "subject_token_type"))
    asked = form_str(form, "scope")
    scope = tuple(dict.fromkeys(asked.split())) if asked is not None else record.scope
    wider = [s for s in scope if s not in record.scope]
    if wider:
        raise oauth_error("invalid_scope", f"the subject token does not hold: {' '.join(wider)}")
    now = int(time.time())
    exp = min(record.exp, now + server.config.token_ttl)
    claims = {"iss": server.issuer, "sub": record.sub, "aud": audience, "scope": " ".join(scope),
              "client_id": record.client_id, "act": {"sub": client_id}, "iat": now, "exp": exp,
              "jti": uuid.uuid4().hex}
    server.exchanges += 1
    return web.json_response({"access_token": server.keys.sign(claims), "issued_token_type": requested,
                              "token_type": "N_A" if requested == JWT else "Bearer", "expires_in": exp - now,
                              "scope": " ".join(scope)}, headers=NO_STORE)


def _subject(server: DevAuthServer, token: str, token_type: str | None) -> TokenRecord:
    """The active token the subject token is (an opaque one) or stands for (a JWT this AS signed)."""
    now = time.time()
    if token_type == ACCESS_TOKEN:
        record = server.tokens.get(token)
    elif token_type == JWT:
        claims = _verified(server, token)
        record = next((r for r in server.tokens.values() if r.jti == claims.get("jti")), None)
    else:
        raise oauth_error("unsupported_token_type", "subject_token_type must be an access token or a JWT")
    if record is None or not record.active(now):
        raise oauth_error("invalid_request", "the subject token is not active")
    return record


def _verified(server: DevAuthServer, token: str) -> dict[str, Any]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = next(k for k in server.keys.keys if k.kid == kid)
        claims: dict[str, Any] = jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"],
                                            issuer=server.issuer, options={"verify_aud": False,
                                                                          "require": ["exp", "jti"]})
    except (jwt.PyJWTError, StopIteration):
        raise oauth_error("invalid_request", "the subject token is not a JWT this AS signed") from None
    return claims
