"""The pipeline's DPoP stage (RFC 9449 §7): what the route's ``dpop`` mode accepts as a credential, and whether a
DPoP-bound token came with a proof of its key.

``present`` runs before introspection (a bad proof costs no AS call): per the route's mode it reads the
``Authorization`` header — ``off``: Bearer only (RFC 6750), ``allowed``: Bearer or DPoP, ``required``: DPoP only —
and for a DPoP presentation verifies the ``DPoP`` proof header for this request (``authz.dpop.proof``) and, with
nonces on, its nonce. ``bind`` runs once the AS has answered, on every route: a token bound to a key (``cnf.jkt``,
kept on the cached answer's identity) passes only with a proof signed by that key, and that proof only once (the
replay cache); a Bearer presentation of a bound token, and a DPoP presentation of an unbound one, are 401
``invalid_token``. On a route taking DPoP every denial offers the challenges of ``authz.dpop.challenge``.

The request's URI comes from what Envoy describes: ``dpop.scheme`` (``request``: Envoy's ``:scheme`` in gRPC mode,
the ``x-forwarded-proto`` Envoy sets in HTTP mode; or a fixed ``https``/``http``), the ``Host`` (``:authority``)
and the path the client sent, without its query.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from authz.config.dpop import DpopConfig
from authz.credential import BEARER, DPOP, access_token, bearer_token
from authz.dpop.challenge import DpopChallenge
from authz.dpop.nonce import NonceSource
from authz.dpop.proof import Proof, ProofVerifier
from authz.dpop.replay import ReplayCache, replay_key, replay_window
from authz.dpop.uri import request_uri
from authz.errors import AuthzError, DpopBindingError, InvalidDpopProof, RouteMisconfigured, UseDpopNonce
from authz.models import RequestInfo

__all__ = ["DpopStage", "Presented"]

_SCHEMES = {"allowed": frozenset({BEARER, DPOP}), "required": frozenset({DPOP})}
_DPOP_PREFIX = DPOP + " "


@dataclass(frozen=True, slots=True)
class Presented:
    """The access token a request presented and, presented as DPoP, its verified proof."""

    token: str = field(repr=False)
    proof: Proof | None = None
    challenge: DpopChallenge | None = None  # what a denial offers (None: a route with dpop: off)


class DpopStage:
    def __init__(self, config: DpopConfig, max_token_length: int, replay: ReplayCache | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._max_token = max_token_length
        self._verifier = ProofVerifier(config.algorithms, config.max_age_seconds, config.leeway_seconds,
                                       config.max_proof_bytes, clock)
        # the app replaces it with one that outlives a configuration reload and is shared through Redis
        self.replay = replay or ReplayCache.for_config(config)
        self._window = replay_window(config)
        nonce = config.nonce
        self._nonces = None if nonce is None or nonce.secret is None else NonceSource(
            nonce.secret.reveal(), nonce.lifetime_seconds, clock)
        self._scheme = None if config.scheme == "request" else config.scheme
        algs = " ".join(config.algorithms)
        self._challenges = {("allowed", BEARER): DpopChallenge(True, False, algs),
                            ("allowed", DPOP): DpopChallenge(True, True, algs),
                            ("required", BEARER): DpopChallenge(False, True, algs),
                            ("required", DPOP): DpopChallenge(False, True, algs)}

    def present(self, request: RequestInfo, mode: str) -> Presented:
        """The route's credential (``mode``: the route's ``dpop`` setting); raises what the client did wrong, with
        the route's challenges."""
        if mode == "off":
            return Presented(bearer_token(request.authorization, self._max_token))
        try:
            scheme, token = access_token(request.authorization, self._max_token, _SCHEMES[mode])
        except AuthzError as exc:
            used = request.authorization[0][:5].lower() if request.authorization else ""
            exc.dpop = self._challenges[mode, DPOP if used == _DPOP_PREFIX else BEARER]
            raise
        challenge = self._challenges[mode, scheme]
        if scheme == BEARER:
            return Presented(token, None, challenge)
        try:
            return Presented(token, self._proof(request, token), challenge)
        except AuthzError as exc:
            exc.dpop = challenge
            raise

    def _proof(self, request: RequestInfo, token: str) -> Proof:
        header = request.headers.get("dpop")
        if not header:
            raise InvalidDpopProof("missing", "DPoP credential without a DPoP proof header")
        if "," in header:  # several DPoP headers, merged (a JWS has no comma)
            raise InvalidDpopProof("malformed", "several DPoP proof headers")
        scheme = self._scheme or request.scheme
        if not scheme:
            raise RouteMisconfigured("DPoP: the request's scheme is unknown (HTTP mode: let Envoy's allowed_headers "
                                     "pass x-forwarded-proto, or set dpop.scheme)")
        uri = request_uri(scheme, request.host, request.path)
        if uri is None:
            raise InvalidDpopProof("htu", f"the request's URI ({scheme}://{request.host[:100]}...) is not one a "
                                          "proof can name")
        proof = self._verifier.verify(header, request.method, uri, token)
        nonces = self._nonces
        if nonces is not None:
            if proof.nonce is None:
                raise UseDpopNonce("nonce_required", "DPoP proof without the server's nonce", nonces.current())
            if not nonces.accepts(proof.nonce):
                raise UseDpopNonce("nonce_stale", "DPoP proof nonce is not a current one of ours", nonces.current())
        return proof

    async def bind(self, presented: Presented, jkt: str | None) -> None:
        """Raise unless the token's binding (``jkt``: its ``cnf.jkt``, None for a bearer token) holds for how it
        was presented: no proof for an unbound token; a proof by the bound key, used for the first time."""
        proof = presented.proof
        if proof is None:
            if jkt is not None:
                raise DpopBindingError("bound_token_as_bearer", "DPoP-bound token (cnf.jkt) presented as a Bearer "
                                                                "token")
            return
        if jkt is None:
            raise DpopBindingError("unbound_token", "token presented with a DPoP proof is not DPoP-bound (no cnf.jkt)")
        if not hmac.compare_digest(proof.thumbprint, jkt):
            raise DpopBindingError("key_mismatch", "DPoP proof key is not the key the token is bound to (cnf.jkt)")
        await self.replay.first_use(replay_key(proof.thumbprint, proof.jti), self._window)
