"""JwtVerifier: a JWT the AS returned is believed only if an allow-listed asymmetric alg and the AS's own key
(found by kid in its JWKS, served by a real aiohttp server on 127.0.0.1) verify it. Every failure is the AS's: 502."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authz.config import DEFAULT_ALGORITHMS, AuthorizationServerConfig, Secret
from authz.errors import UpstreamMisbehaved
from authz.introspection.client import AuthorizationServerClient
from authz.introspection.jwks import KeySet
from authz.token import JwtVerifier
from tests.local_http import serve

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
FOREIGN_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CLAIMS = {"iss": "https://as.example", "sub": "alice", "scope": "read", "exp": int(time.time()) + 600}
SIGNERS: dict[str, tuple[Any, str]] = {"RS256": (RSA_KEY, "rsa-1"), "PS256": (RSA_KEY, "rsa-1"),
                                       "ES256": (EC_KEY, "ec-1"), "EdDSA": (ED_KEY, "ed-1")}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwks() -> dict[str, Any]:
    return {"keys": [
        {**jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "rsa-1", "use": "sig"},
        {**jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "ec-1"},
        {**jwt.algorithms.OKPAlgorithm.to_jwk(ED_KEY.public_key(), as_dict=True), "kid": "ed-1"},
    ]}


def _sign(alg: str = "RS256", claims: dict[str, Any] | None = None, **headers: Any) -> str:
    key, kid = SIGNERS[alg]
    return jwt.encode(claims or CLAIMS, key, algorithm=alg, headers={"kid": kid, **headers})


@pytest.fixture
async def keys() -> AsyncIterator[KeySet]:
    async def jwks(request: web.Request) -> web.StreamResponse:
        return web.json_response(_jwks())

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    async with serve(app) as base, aiohttp.ClientSession() as session:
        config = AuthorizationServerConfig(name="corp-as", introspection_endpoint=f"{base}/introspect",
                                           client_id="gw", client_secret=Secret("s"), issuer=base,
                                           jwks_uri=f"{base}/jwks")
        yield KeySet(config, AuthorizationServerClient(config, session))


def _verifier(keys: KeySet, algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS) -> JwtVerifier:
    return JwtVerifier(keys, algorithms)


async def _refused(verifier: JwtVerifier, token: str, expected_typ: str | None = None) -> UpstreamMisbehaved:
    with pytest.raises(UpstreamMisbehaved) as info:
        await verifier.verify(token, expected_typ)
    assert info.value.status == 502
    assert "corp-as" in info.value.detail
    return info.value


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
async def test_token_signed_by_the_as_verifies(keys: KeySet, alg: str) -> None:
    assert await _verifier(keys).verify(_sign(alg)) == CLAIMS


async def test_expired_token_still_verifies_time_is_checked_later(keys: KeySet) -> None:
    claims = {**CLAIMS, "exp": 1_000_000}
    assert await _verifier(keys).verify(_sign(claims=claims)) == claims


@pytest.mark.parametrize("alg", ["none", "None"])
async def test_alg_none_is_refused(keys: KeySet, alg: str) -> None:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "rsa-1"}).encode())
    token = f"{header}.{_b64(json.dumps({**CLAIMS, 'scope': 'read admin'}).encode())}."
    await _refused(_verifier(keys), token)


async def test_pyjwt_alg_none_token_is_refused(keys: KeySet) -> None:
    await _refused(_verifier(keys), jwt.encode(CLAIMS, None, algorithm="none"))


async def test_hs256_signed_with_the_public_key_pem_is_refused(keys: KeySet) -> None:
    """The classic key-confusion attack: the RSA public key's PEM used as an HMAC secret."""
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (_b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode()) + "."
                     + _b64(json.dumps({**CLAIMS, "scope": "read admin"}).encode()))
    token = signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    error = await _refused(_verifier(keys, ("RS256",)), token)
    assert "HS256" in error.detail
    await _refused(_verifier(keys), token)


async def test_alg_not_on_the_allow_list_is_refused(keys: KeySet) -> None:
    token = _sign("ES256")  # a real key of the AS, but ES256 is not allowed for this AS
    error = await _refused(_verifier(keys, ("RS256", "PS256")), token)
    assert "ES256" in error.detail


async def test_signature_by_another_key_with_the_same_kid_is_refused(keys: KeySet) -> None:
    forged = jwt.encode({**CLAIMS, "scope": "read admin"}, FOREIGN_RSA, algorithm="RS256", headers={"kid": "rsa-1"})
    error = await _refused(_verifier(keys), forged)
    assert "signature" in error.detail


async def test_tampered_payload_is_refused(keys: KeySet) -> None:
    header, _, signature = _sign().split(".")
    tampered = f"{header}.{_b64(json.dumps({**CLAIMS, 'scope': 'read admin'}).encode())}.{signature}"
    await _refused(_verifier(keys), tampered)


async def test_unknown_kid_is_refused(keys: KeySet) -> None:
    token = jwt.encode(CLAIMS, RSA_KEY, algorithm="RS256", headers={"kid": "not-in-jwks"})
    error = await _refused(_verifier(keys), token)
    assert "not-in-jwks" in error.detail


async def test_no_kid_with_several_keys_in_the_jwks_is_refused(keys: KeySet) -> None:
    await _refused(_verifier(keys), jwt.encode(CLAIMS, RSA_KEY, algorithm="RS256"))


async def test_kid_naming_a_key_of_another_type_is_refused(keys: KeySet) -> None:
    token = jwt.encode(CLAIMS, RSA_KEY, algorithm="RS256", headers={"kid": "ec-1"})
    await _refused(_verifier(keys), token)


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "", "eyJhbGciOiJSUzI1NiJ9.!!!.sig"],
                         ids=["word", "dots", "empty", "bad-payload"])
async def test_garbage_is_refused(keys: KeySet, token: str) -> None:
    await _refused(_verifier(keys), token)


async def test_signed_payload_that_is_not_an_object_is_refused(keys: KeySet) -> None:
    token = jwt.api_jws.encode(b"[1, 2]", RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    await _refused(_verifier(keys), token)


@pytest.mark.parametrize("typ", ["token-introspection+jwt", "application/token-introspection+jwt",
                                 "Token-Introspection+JWT"])
async def test_expected_typ_is_accepted(keys: KeySet, typ: str) -> None:
    token = _sign(typ=typ)
    assert await _verifier(keys).verify(token, expected_typ="token-introspection+jwt") == CLAIMS


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", None])
async def test_other_typ_is_refused_when_one_is_expected(keys: KeySet, typ: str | None) -> None:
    token = _sign(typ=typ)  # typ None: no typ header at all
    assert jwt.get_unverified_header(token).get("typ") == typ
    await _refused(_verifier(keys), token, expected_typ="token-introspection+jwt")


def test_authz_token_can_be_imported_first() -> None:
    result = subprocess.run([sys.executable, "-c", "from authz.token import JwtVerifier"],
                            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr[-500:]
