"""A DPoP client for tests: a real key pair and real RFC 9449 proofs (PyJWT + cryptography), well-formed or bent in
one named way.

    client = DpopClient("ES256")
    proof = client.proof("GET", "http://127.0.0.1:8000/api/x", token)                # a good proof
    client.proof("GET", url, token, claims={"iat": time.time() - 3600})             # an expired one
    client.proof("GET", url, token, header={"jwk": client.private_jwk()})           # a private key as jwk
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = ["DROP", "DpopClient", "ath", "b64url"]

DROP = object()  # a header member or claim to leave out


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ath(token: str) -> str:
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def _new_key(alg: str) -> Any:
    if alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
        return ec.generate_private_key(curve)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _to_jwk(key: Any) -> dict[str, Any]:
    kind = ECAlgorithm if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) else (
        OKPAlgorithm if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)) else RSAAlgorithm)
    return dict(kind.to_jwk(key, as_dict=True))


class DpopClient:
    """One key pair; ``proof`` signs a fresh proof (new jti, iat now) for a request."""

    def __init__(self, alg: str = "ES256", key: Any = None) -> None:
        self.alg = alg
        self.key = _new_key(alg) if key is None else key

    def public_jwk(self) -> dict[str, Any]:
        return _to_jwk(self.key.public_key())

    def private_jwk(self) -> dict[str, Any]:
        return _to_jwk(self.key)

    @property
    def thumbprint(self) -> str:
        jwk = self.public_jwk()
        members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
        canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
        return b64url(hashlib.sha256(canonical.encode()).digest())

    def proof(self, method: str, url: str, token: str | None = None, *, nonce: str | None = None,
              header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None,
              key: Any = None, alg: str | None = None) -> str:
        """A proof for ``method url`` presenting ``token`` (its ``ath``); ``header`` / ``claims`` replace or (with
        ``DROP``) remove members; ``key`` / ``alg`` sign with another key or algorithm than the client's."""
        body: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": int(time.time())}
        if token is not None:
            body["ath"] = ath(token)
        if nonce is not None:
            body["nonce"] = nonce
        head: dict[str, Any] = {"typ": "dpop+jwt", "jwk": self.public_jwk()}
        for target, changes in ((body, claims), (head, header)):
            for name, value in (changes or {}).items():
                if value is DROP:
                    target.pop(name, None)
                else:
                    target[name] = value
        return jwt.encode(body, self.key if key is None else key, algorithm=alg or self.alg, headers=head)
