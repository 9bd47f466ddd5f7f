"""RFC 9449 DPoP at the gateway: the client proves, on every request, that it holds the key its token is bound to.

- ``proof``: one proof JWT verified (``typ``, ``alg`` on the allow-list, a public ``jwk``, the signature, ``htm``,
  ``htu``, ``iat``, ``jti``, ``ath``) and its key's RFC 7638 thumbprint;
- ``uri``: the request's URI and ``htu`` compared in RFC 3986 normal form;
- ``nonce``: server-provided nonces, an HMAC of the time window (no state shared between workers or pods);
- ``replay``: each ``jti`` accepted once, in a bounded cache shared through Redis when configured;
- ``stage``: the pipeline's use of them: the credential per the route's ``dpop`` mode, then the binding of the
  proof's key to the token's ``cnf.jkt``;
- ``challenge``: what a denial offers (Bearer and/or DPoP, with ``algs``).
"""

from authz.dpop.challenge import DpopChallenge
from authz.dpop.nonce import NonceSource
from authz.dpop.proof import Proof, ProofVerifier, thumbprint
from authz.dpop.replay import RedisReplayStore, ReplayCache
from authz.dpop.stage import DpopStage, Presented

__all__ = ["DpopChallenge", "DpopStage", "NonceSource", "Presented", "Proof", "ProofVerifier", "RedisReplayStore",
           "ReplayCache", "thumbprint"]
