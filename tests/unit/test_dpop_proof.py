"""One DPoP proof verified (authz.dpop.proof): real proofs from tests/dpop_client.py, good and bent one way each."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from authz.dpop.proof import ProofVerifier, access_token_hash, thumbprint
from authz.dpop.uri import normalized
from authz.errors import InvalidDpopProof
from tests.dpop_client import DROP, DpopClient, b64url

URL = "https://api.example/orders"
URI = normalized(URL) or ""
TOKEN = "opaque-token-1234567890"
ALGS = ("ES256", "ES384", "PS256", "RS256", "EdDSA")
CLIENT = DpopClient("ES256")


def verifier(clock: float | None = None, max_bytes: int = 4096) -> ProofVerifier:
    now = time.time() if clock is None else clock
    return ProofVerifier(ALGS, 60.0, 5.0, max_bytes, clock=lambda: now)


def signed(header: dict[str, Any], body: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS signed by ``sign`` (for keys and algorithms PyJWT would refuse to sign with)."""
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(body).encode())
    return head + "." + b64url(sign(head.encode()))


def claims() -> dict[str, Any]:
    return {"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time()), "ath": access_token_hash(TOKEN)}


def refused(proof: str, method: str = "GET", uri: str = URI, token: str = TOKEN, v: ProofVerifier | None = None
            ) -> str:
    with pytest.raises(InvalidDpopProof) as info:
        (v or verifier()).verify(proof, method, uri, token)
    assert info.value.status == 401 and info.value.oauth_error == "invalid_dpop_proof"
    assert TOKEN not in info.value.detail and proof not in info.value.detail  # logs never carry either
    return info.value.reason


@pytest.mark.parametrize("alg", ["ES256", "ES384", "PS256", "RS256", "EdDSA"])
def test_a_good_proof_verifies_and_names_its_key(alg: str) -> None:
    client = DpopClient(alg)
    proof = verifier().verify(client.proof("GET", URL, TOKEN, nonce="n-1"), "GET", URI, TOKEN)
    assert proof.thumbprint == client.thumbprint
    assert proof.nonce == "n-1" and proof.jti


def test_thumbprint_is_rfc7638s_example() -> None:
    """RFC 7638 §3.1: the RSA key of RFC 7517 Appendix A.1 and its thumbprint."""
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX"
                "jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZ"
                "gnYb9c7d0z"
                "gdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
                "Cur-kEgU8awapJzKnqDKgw"}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ath_is_base64url_sha256_of_the_token() -> None:
    assert access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU") == \
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"  # RFC 9449 §7.1's example


# --- each bad input of issue 16 (the replay is authz.dpop.replay's; the key binding the stage's) -------------------

def test_expired_proof() -> None:
    assert refused(CLIENT.proof("GET", URL, TOKEN, claims={"iat": int(time.time()) - 61})) == "dpop_expired"


def test_proof_from_the_future() -> None:
    assert refused(CLIENT.proof("GET", URL, TOKEN, claims={"iat": int(time.time()) + 30})) == "dpop_future"


def test_clock_skew_within_leeway_is_accepted() -> None:
    verifier().verify(CLIENT.proof("GET", URL, TOKEN, claims={"iat": int(time.time()) + 4}), "GET", URI, TOKEN)


@pytest.mark.parametrize("url", ["https://api.example/orders/1", "https://evil.example/orders",
                                 "http://api.example/orders", "https://api.example:8443/orders", "/orders"])
def test_proof_for_another_url(url: str) -> None:
    assert refused(CLIENT.proof("GET", url, TOKEN)) == "dpop_htu"


def test_proof_for_another_method() -> None:
    assert refused(CLIENT.proof("POST", URL, TOKEN)) == "dpop_htm"
    assert refused(CLIENT.proof("get", URL, TOKEN)) == "dpop_htm"  # methods are case-sensitive


def test_private_key_embedded_as_jwk() -> None:
    assert refused(CLIENT.proof("GET", URL, TOKEN, header={"jwk": CLIENT.private_jwk()})) == "dpop_private_key"
    rsa_client = DpopClient("RS256")
    assert refused(rsa_client.proof("GET", URL, TOKEN, header={"jwk": rsa_client.private_jwk()})) == \
        "dpop_private_key"


def test_alg_none() -> None:
    header = {"typ": "dpop+jwt", "jwk": CLIENT.public_jwk()}
    body = {"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time()), "ath": access_token_hash(TOKEN)}
    unsigned = jwt.encode(body, None, algorithm="none", headers=header)
    assert refused(unsigned) == "dpop_alg"
    assert refused(unsigned.rstrip(".") + ".AAAA") == "dpop_alg"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_algs_with_a_symmetric_jwk(alg: str) -> None:
    secret = b"s" * 64
    header = {"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": b64url(secret)}}
    body = {"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time()), "ath": access_token_hash(TOKEN)}
    assert refused(jwt.encode(body, secret, algorithm=alg, headers=header)) == "dpop_alg"


def test_hs256_keyed_with_the_public_jwk_text() -> None:
    """The classic confusion: HMAC keyed with the public key's bytes. Never reaches a verifier."""
    public = json.dumps(CLIENT.public_jwk()).encode()
    header = {"alg": "HS256", "typ": "dpop+jwt", "jwk": CLIENT.public_jwk()}
    assert refused(signed(header, claims(), lambda m: hmac.new(public, m, hashlib.sha256).digest())) == "dpop_alg"


def test_oversized_proof_is_refused_unread() -> None:
    padded = CLIENT.proof("GET", URL, TOKEN, claims={"pad": "x" * 5000})
    assert refused(padded) == "dpop_oversized"
    assert refused("x" * 5000) == "dpop_oversized"


def test_ath_of_another_token() -> None:
    assert refused(CLIENT.proof("GET", URL, "another-token")) == "dpop_ath"
    assert refused(CLIENT.proof("GET", URL, None)) == "dpop_ath"  # no ath at all


# --- the rest of §4.3 --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typ", [DROP, "JWT", "at+jwt", "dpop", 1])
def test_typ_must_be_dpop_jwt(typ: Any) -> None:
    assert refused(CLIENT.proof("GET", URL, TOKEN, header={"typ": typ})) == "dpop_typ"


def test_typ_compares_without_case() -> None:
    verifier().verify(CLIENT.proof("GET", URL, TOKEN, header={"typ": "DPoP+JWT"}), "GET", URI, TOKEN)


@pytest.mark.parametrize("jwk", [DROP, "key", {"kty": "EC", "crv": "P-256"}, {"kty": "OKP", "crv": "X25519", "x": "AA"},
                                 {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}])
def test_no_usable_public_jwk(jwk: Any) -> None:
    assert refused(CLIENT.proof("GET", URL, TOKEN, header={"jwk": jwk})) == "dpop_jwk"


def test_jwk_with_another_use_or_ops() -> None:
    assert refused(CLIENT.proof("GET", URL, TOKEN, header={"jwk": {**CLIENT.public_jwk(), "use": "enc"}})) == \
        "dpop_jwk"
    assert refused(CLIENT.proof("GET", URL, TOKEN, header={"jwk": {**CLIENT.public_jwk(), "key_ops": ["sign"]}})) \
        == "dpop_jwk"


def test_weak_rsa_key() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the key we must refuse)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(small.public_key(), as_dict=True)
    header = {"alg": "RS256", "typ": "dpop+jwt", "jwk": jwk}
    proof = signed(header, claims(), lambda m: small.sign(m, padding.PKCS1v15(), hashes.SHA256()))
    assert refused(proof) == "dpop_jwk"


def test_alg_must_fit_the_key() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(p384.public_key(), as_dict=True)

    def es(message: bytes) -> bytes:  # an ES256-shaped signature (r || s, 32 bytes each) by a P-384 key
        r, s_ = decode_dss_signature(p384.sign(message, ec.ECDSA(hashes.SHA256())))
        return (r % 2**256).to_bytes(32, "big") + (s_ % 2**256).to_bytes(32, "big")

    assert refused(signed({"alg": "ES256", "typ": "dpop+jwt", "jwk": jwk}, claims(), es)) == "dpop_alg"
    assert refused(CLIENT.proof("GET", URL, TOKEN, header={"jwk": {**CLIENT.public_jwk(), "alg": "ES384"}})) == \
        "dpop_jwk"


def test_alg_off_the_allow_list() -> None:
    only_eddsa = ProofVerifier(("EdDSA",), 60.0, 5.0, 4096)
    assert refused(CLIENT.proof("GET", URL, TOKEN), v=only_eddsa) == "dpop_alg"


def test_signature_by_another_key() -> None:
    other = DpopClient("ES256")
    assert refused(CLIENT.proof("GET", URL, TOKEN, key=other.key)) == "dpop_signature"


def test_tampered_payload() -> None:
    head, _, sig = CLIENT.proof("GET", URL, TOKEN).split(".")
    other = CLIENT.proof("GET", "https://api.example/admin", TOKEN).split(".")[1]
    assert refused(f"{head}.{other}.{sig}", uri=normalized("https://api.example/admin") or "") == "dpop_signature"


@pytest.mark.parametrize("mangle", [
    lambda p: p + ".x", lambda p: p.replace(".", "", 1), lambda p: p[:-1] + "!", lambda p: p + "==",
    lambda p: "e30." + p.split(".", 1)[1], lambda p: "W10." + p.split(".", 1)[1],
])
def test_malformed_compact_jws(mangle: Any) -> None:
    assert refused(mangle(CLIENT.proof("GET", URL, TOKEN))) in ("dpop_malformed", "dpop_alg")


def test_non_canonical_base64url_is_malformed() -> None:
    head, body, sig = CLIENT.proof("GET", URL, TOKEN).split(".")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bent = sig[:-1] + last[(last.index(sig[-1]) + 1) % 64]  # same bytes may decode, but other stray bits
    assert refused(f"{head}.{body}.{bent}") in ("dpop_malformed", "dpop_signature")


def test_crit_header_is_refused() -> None:
    assert refused(CLIENT.proof("GET", URL, TOKEN, header={"crit": ["exp"]})) == "dpop_malformed"


@pytest.mark.parametrize(("claim", "value", "reason"), [
    ("jti", DROP, "dpop_jti"), ("jti", "", "dpop_jti"), ("jti", 5, "dpop_jti"), ("jti", "j" * 257, "dpop_jti"),
    ("htm", DROP, "dpop_htm"), ("htu", DROP, "dpop_htu"), ("htu", ["x"], "dpop_htu"),
    ("iat", DROP, "dpop_iat"), ("iat", "now", "dpop_iat"), ("iat", True, "dpop_iat"),
    ("nonce", 5, "dpop_nonce"),
])
def test_missing_or_mistyped_claims(claim: str, value: Any, reason: str) -> None:
    assert refused(CLIENT.proof("GET", URL, TOKEN, claims={claim: value})) == reason


def test_keys_are_kept_per_jwk_and_bounded() -> None:
    v = ProofVerifier(ALGS, 60.0, 5.0, 4096, max_keys=2)
    clients = [DpopClient("ES256") for _ in range(3)]
    for client in clients * 2:
        assert v.verify(client.proof("GET", URL, TOKEN), "GET", URI, TOKEN).thumbprint == client.thumbprint
    assert len(v._headers) == 2
