"""Stage 4b: a token's claims -> ``Identity``. Checks ``exp``/``nbf`` (with leeway), ``iss`` and ``aud``. Pure.

A cached answer's ``Answer`` keeps its identity: what does not change with time is checked once per answer, the
times on every request.

Claims that fail (expired, not yet valid, another issuer, another audience) are the client's problem: 401
``invalid_token``. Claims of the wrong type are the AS's: 502.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from authz.cert_binding import THUMBPRINT, X5T_S256
from authz.errors import InvalidToken, UpstreamMisbehaved
from authz.models import Answer, Identity
from authz.numbers import finite_number
from authz.scopes import granted_scopes

__all__ = ["CHECKED_CONFIRMATIONS", "JKT", "ClaimsChecker", "check_access_token", "narrowed_times", "scopes_of"]

# RFC 7662 token_type values that mean a plain bearer access token (compared case-insensitively); absent is accepted
_ACCESS_TOKEN_TYPES = frozenset({"bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"})
# cnf members (RFC 7800 confirmation methods) whose proof the pipeline checks on every request, so an identity may
# carry them: RFC 8705's certificate thumbprint (authz.cert_binding), RFC 9449's DPoP key thumbprint (authz.dpop)
JKT = "jkt"
CHECKED_CONFIRMATIONS = frozenset({X5T_S256, JKT})


def check_access_token(claims: Mapping[str, Any], checked: frozenset[str] = frozenset()) -> None:
    """Refuse (401 ``invalid_token``) an answer about a token that is not a plain bearer access token: a
    ``token_type`` other than Bearer / access token (a refresh or ID token, a DPoP token), or a ``cnf`` claim (a
    DPoP- or mTLS-bound token) with a member not in ``checked``: the confirmation methods whose proof of possession
    the pipeline checks on every request (``CHECKED_CONFIRMATIONS``, for the claims an identity is made of)."""
    token_type = claims.get("token_type")
    if token_type is not None:
        if not isinstance(token_type, str):
            raise UpstreamMisbehaved("token token_type claim is not a string")
        kind = token_type.lower() if token_type.isascii() else ""
        if not (kind in _ACCESS_TOKEN_TYPES or (kind == "dpop" and JKT in checked and _cnf(claims, JKT) is not None)):
            raise InvalidToken(f"token_type {token_type[:40]!r} is not an access token")
    if "cnf" in claims:
        _check_confirmation(claims["cnf"], checked)


def _check_confirmation(cnf: Any, checked: frozenset[str]) -> None:
    if not isinstance(cnf, Mapping) or not cnf:
        raise InvalidToken("token is sender-constrained (cnf claim) but says by what: cnf is not a non-empty object")
    unchecked = sorted(set(cnf) - checked)
    if unchecked:
        raise InvalidToken(f"token is sender-constrained by cnf {unchecked[0][:40]!r}, which is not checked here")
    # a member that is present must be a thumbprint (``{"x5t#S256": null}`` is no unbound token)
    if X5T_S256 in cnf and not (isinstance(cnf[X5T_S256], str) and THUMBPRINT.match(cnf[X5T_S256])):
        raise UpstreamMisbehaved("token cnf x5t#S256 is not a base64url SHA-256 thumbprint")
    if JKT in cnf and not (isinstance(cnf[JKT], str) and THUMBPRINT.match(cnf[JKT])):
        raise UpstreamMisbehaved("token cnf jkt is not a base64url SHA-256 thumbprint")


def _cnf(claims: Mapping[str, Any], member: str) -> Any:
    """``cnf.<member>`` of claims that passed ``check_access_token``; None when absent."""
    cnf = claims.get("cnf")
    return cnf.get(member) if isinstance(cnf, Mapping) else None


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The ``scope`` claim as a set: a string split on SP only (RFC 6749 §3.3, RFC 9068) or a list of strings; a
    token outside the scope grammar grants nothing (``authz.scopes.granted_scopes``)."""
    scope = claims.get("scope", claims.get("scp"))
    if scope is None:
        return frozenset()
    if isinstance(scope, str) or (isinstance(scope, list) and all(isinstance(s, str) for s in scope)):
        return granted_scopes(scope)
    raise UpstreamMisbehaved("token scope claim is neither a string nor a list of strings")


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    number = finite_number(value)
    if number is None:
        raise UpstreamMisbehaved(f"token {name} claim is not a finite number")
    return number


def narrowed_times(jwt_claims: Mapping[str, Any], answer: Mapping[str, Any]) -> Mapping[str, Any]:
    """A verified JWT's claims, with the times of the answer that carried it where they are stricter: the earlier
    ``exp``, the later ``nbf``. An RFC 7662 answer's own ``exp``/``nbf`` (``jwt_field``) speak of the token the
    client presents; the JWT's claims replace the answer's, but a JWT that lives longer must not keep the token
    alive (in the cache's TTL, stale-if-error, or the check on every request)."""
    narrowed = dict(jwt_claims)
    exp, nbf = _number(answer, "exp"), _number(answer, "nbf")
    own_exp, own_nbf = _number(jwt_claims, "exp"), _number(jwt_claims, "nbf")
    if exp is not None and (own_exp is None or exp < own_exp):
        narrowed["exp"] = answer["exp"]
    if nbf is not None and (own_nbf is None or nbf > own_nbf):
        narrowed["nbf"] = answer["nbf"]
    return narrowed


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None or isinstance(value, str):
        return value
    raise UpstreamMisbehaved(f"token {name} claim is not a string")


def _audiences(claims: Mapping[str, Any]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if aud is None:
        return ()
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return tuple(aud)
    raise UpstreamMisbehaved("token aud claim is neither a string nor a list of strings")


class ClaimsChecker:
    """``issuer``: required ``iss`` when set; ``audiences``: ``aud`` must hold one of them when non-empty."""

    def __init__(self, issuer: str | None, audiences: tuple[str, ...], leeway_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._issuer = issuer
        self._audiences = frozenset(audiences)
        self._leeway = leeway_seconds
        self._clock = clock

    def identity_of(self, answer: Answer) -> Identity:
        """The identity of an active answer, kept on it once every check has passed; later calls check the times
        only."""
        identity = answer.identity
        if identity is not None:
            self._check_times(identity.expires_at, answer.not_before)
            return identity
        claims = answer.introspection.claims
        identity = self.identity(claims, answer.introspection.jwt)
        answer.not_before = _number(claims, "nbf")
        answer.identity = identity
        return identity

    def identity(self, claims: Mapping[str, Any], jwt: str | None) -> Identity:
        """Every check, on every call (``identity_of`` keeps the result on the answer)."""
        check_access_token(claims, CHECKED_CONFIRMATIONS)
        exp = _number(claims, "exp")
        self._check_times(exp, _number(claims, "nbf"))
        issuer = _string(claims, "iss")
        if self._issuer is not None and issuer is not None and issuer != self._issuer:
            raise InvalidToken(f"token issuer {issuer[:100]!r} is not {self._issuer!r}")
        if self._issuer is not None and issuer is None and jwt is not None:
            raise InvalidToken("token JWT has no iss claim")
        if self._audiences and not self._audiences.intersection(_audiences(claims)):
            raise InvalidToken("token audience is not one of ours")
        return Identity(
            jwt=jwt,
            claims=claims,
            scopes=scopes_of(claims),
            subject=_string(claims, "sub"),
            client_id=_string(claims, "client_id"),
            expires_at=exp,
            jkt=_cnf(claims, JKT),
        )

    def _check_times(self, exp: float | None, nbf: float | None) -> None:
        now = self._clock()
        if exp is not None and exp <= now - self._leeway:
            raise InvalidToken("token expired")
        if nbf is not None and nbf > now + self._leeway:
            raise InvalidToken("token not yet valid")
