"""JwtVerifier: a JWT the AS returned is believed only if an allow-listed asymmetric alg and the AS's own key
(found by kid in its JWKS, served by a real aiohttp server on 127.0.0.1) verify it. Every failure is the AS's: 502."""

from __future__ import annotations

import base64
import contextlib
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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from authz.config import ASYMMETRIC_ALGORITHMS, DEFAULT_ALGORITHMS, AuthorizationServerConfig, Secret
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


# --- issue 12 item 11: a JWK verifies only what its own metadata, type and curve allow ----------------------------

RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the key we must refuse)
P384_KEY = ec.generate_private_key(ec.SECP384R1())
ED448_KEY = ed448.Ed448PrivateKey.generate()


def _public_jwk(key: Any, kid: str, **members: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        doc = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        doc = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        doc = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**doc, "kid": kid, **members}


def _jws(alg: str, kid: str, sign: Any, claims: dict[str, Any] | None = None) -> str:
    """A compact JWS whose signature ``sign(signing_input)`` makes, whatever pyjwt would allow."""
    signing_input = (_b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode()) + "."
                     + _b64(json.dumps(claims or {**CLAIMS, "scope": "read admin"}).encode()))
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _es256_by_p384(message: bytes) -> bytes:
    """ES256's hash (SHA-256) signed by a P-384 key: the raw signature is 96 bytes, as P-384's are."""
    der = P384_KEY.sign(message, ec.ECDSA(hashes.SHA256()))
    return jwt.utils.der_to_raw_signature(der, P384_KEY.curve)


@pytest.fixture
async def publish() -> AsyncIterator[Any]:
    """``publish(*jwks_keys)`` -> a verifier whose AS serves exactly those keys (real aiohttp server)."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        served: list[dict[str, Any]] = []

        async def jwks(request: web.Request) -> web.StreamResponse:
            return web.json_response({"keys": served})

        app = web.Application()
        app.router.add_get("/jwks", jwks)
        base = await stack.enter_async_context(serve(app))

        def make(*keys: dict[str, Any], algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS) -> JwtVerifier:
            served[:] = keys
            config = AuthorizationServerConfig(name="corp-as", introspection_endpoint=f"{base}/introspect",
                                               client_id="gw", client_secret=Secret("s"), issuer=base,
                                               jwks_uri=f"{base}/jwks")
            return JwtVerifier(KeySet(config, AuthorizationServerClient(config, session)), algorithms)

        yield make


async def test_item11_rsa_key_with_alg_rs256_does_not_verify_ps256(publish: Any) -> None:
    verifier = publish(_public_jwk(RSA_KEY, "rsa-1", alg="RS256", use="sig"))
    assert await verifier.verify(_sign("RS256")) == CLAIMS
    error = await _refused(verifier, _sign("PS256"))
    assert "PS256" in error.detail


async def test_item11_p384_key_does_not_verify_es256(publish: Any) -> None:
    verifier = publish(_public_jwk(P384_KEY, "ec-1"))
    await _refused(verifier, _jws("ES256", "ec-1", _es256_by_p384))
    verifier = publish(_public_jwk(P384_KEY, "ec-1", alg="ES256"))  # a JWK claiming ES256 on P-384 is unusable
    await _refused(verifier, _jws("ES256", "ec-1", _es256_by_p384))


async def test_item11_p384_key_verifies_es384(publish: Any) -> None:
    verifier = publish(_public_jwk(P384_KEY, "ec-1"))
    assert await verifier.verify(jwt.encode(CLAIMS, P384_KEY, algorithm="ES384", headers={"kid": "ec-1"})) == CLAIMS


@pytest.mark.parametrize("members", [{"key_ops": ["sign"]}, {"key_ops": ["encrypt", "wrapKey"]}, {"key_ops": []},
                                     {"key_ops": "verify"}, {"use": "enc"}, {"use": "enc", "key_ops": ["verify"]}],
                         ids=["ops-sign", "ops-encrypt", "ops-empty", "ops-not-a-list", "use-enc", "use-enc-ops"])
async def test_item11_key_ops_and_use_that_exclude_verify_make_the_key_unusable(
    publish: Any, members: dict[str, Any]
) -> None:
    await _refused(publish(_public_jwk(RSA_KEY, "rsa-1", **members)), _sign("RS256"))


async def test_item11_key_ops_with_verify_and_use_sig_are_usable(publish: Any) -> None:
    verifier = publish(_public_jwk(RSA_KEY, "rsa-1", key_ops=["verify"], use="sig"))
    assert await verifier.verify(_sign("RS256")) == CLAIMS


async def test_item11_rsa_key_under_2048_bits_is_unusable(publish: Any) -> None:
    verifier = publish(_public_jwk(RSA_1024, "rsa-1", alg="RS256"))
    token = _jws("RS256", "rsa-1", lambda m: RSA_1024.sign(m, padding.PKCS1v15(), hashes.SHA256()))
    await _refused(verifier, token)


async def test_item11_oct_key_under_the_named_kid_is_502_not_a_crash(publish: Any) -> None:
    oct_key = {"kty": "oct", "kid": "rsa-1", "k": _b64(b"s" * 32)}
    await _refused(publish(oct_key), _sign("RS256"))
    await _refused(publish(oct_key, _public_jwk(EC_KEY, "ec-1")), _sign("RS256"))


async def test_item11_jwk_carrying_private_members_is_unusable(publish: Any) -> None:
    private = jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY, as_dict=True)  # n, e, d, p, q, ...
    await _refused(publish({**private, "kid": "rsa-1"}), _sign("RS256"))


@pytest.mark.parametrize(("key", "alg"), [(RSA_KEY, "ES256"), (EC_KEY, "RS256"), (ED_KEY, "ES256"),
                                          (RSA_KEY, "HS256"), (RSA_KEY, "RSA-OAEP")])
async def test_item11_jwk_alg_that_does_not_fit_the_key_type_is_unusable(publish: Any, key: Any, alg: str) -> None:
    kid = {id(RSA_KEY): "rsa-1", id(EC_KEY): "ec-1", id(ED_KEY): "ed-1"}[id(key)]
    signed_with = {id(RSA_KEY): "RS256", id(EC_KEY): "ES256", id(ED_KEY): "EdDSA"}[id(key)]
    await _refused(publish(_public_jwk(key, kid, alg=alg)), _sign(signed_with))


async def test_item11_unusable_keys_are_skipped_with_a_log_line_naming_only_the_kid(
    publish: Any, caplog: pytest.LogCaptureFixture
) -> None:
    weak = _public_jwk(RSA_1024, "weak-1")
    secret = {"kty": "oct", "kid": "hmac-1", "k": _b64(b"topsecret" * 4)}
    verifier = publish(weak, secret, _public_jwk(RSA_KEY, "rsa-1"))
    with caplog.at_level("INFO", logger="authz.jwks"):
        assert await verifier.verify(_sign("RS256")) == CLAIMS
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2 and "weak-1" in skipped[0] and "hmac-1" in skipped[1], skipped
    assert all(weak["n"] not in line and _b64(b"topsecret" * 4) not in line for line in skipped)


async def test_a_kid_shared_by_keys_of_two_types_picks_the_one_fitting_the_alg(publish: Any) -> None:
    verifier = publish(_public_jwk(RSA_KEY, "shared"), _public_jwk(EC_KEY, "shared"))
    assert await verifier.verify(jwt.encode(CLAIMS, EC_KEY, algorithm="ES256", headers={"kid": "shared"})) == CLAIMS
    assert await verifier.verify(jwt.encode(CLAIMS, RSA_KEY, algorithm="PS256", headers={"kid": "shared"})) == CLAIMS


async def test_ed448_key_verifies_eddsa(publish: Any) -> None:
    verifier = publish(_public_jwk(ED448_KEY, "ed-448"))
    assert await verifier.verify(jwt.encode(CLAIMS, ED448_KEY, algorithm="EdDSA", headers={"kid": "ed-448"})) == CLAIMS


# --- issue 13 item 5: PyJWT parses and verifies; our header rules still apply ---------------------------------------

def _with_header(header: dict[str, Any], payload: bytes | None = None) -> str:
    """A compact JWS with exactly ``header``, signed by the AS's RSA key (PyJWT's encoder adds or checks members)."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(payload or json.dumps(CLAIMS).encode())
    signature = RSA_KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize("crit", [["b64"], ["exp"], [], "b64"], ids=["b64-pyjwt-knows", "unknown", "empty", "string"])
async def test_critical_header_extensions_are_refused(keys: KeySet, crit: Any) -> None:
    await _refused(_verifier(keys), _with_header({"alg": "RS256", "kid": "rsa-1", "b64": True, "crit": crit}))


@pytest.mark.parametrize("kid", [1, ["rsa-1"], {"k": "rsa-1"}])
async def test_kid_that_is_not_a_string_is_refused(keys: KeySet, kid: Any) -> None:
    await _refused(_verifier(keys), _with_header({"alg": "RS256", "kid": kid}))


async def test_unencoded_payload_header_is_refused(keys: KeySet) -> None:
    await _refused(_verifier(keys), _with_header({"alg": "RS256", "kid": "rsa-1", "b64": False}))


async def test_a_header_signed_correctly_verifies(keys: KeySet) -> None:
    assert await _verifier(keys).verify(_with_header({"alg": "RS256", "kid": "rsa-1"})) == CLAIMS


@pytest.mark.parametrize("token", ["a.b", "a.b.c.d", "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.e30.!!!"],
                         ids=["two-segments", "four-segments", "bad-signature-segment"])
async def test_malformed_compact_serialisation_is_refused(keys: KeySet, token: str) -> None:
    await _refused(_verifier(keys), token)


async def test_payload_nested_too_deep_for_the_decoder_is_a_502(keys: KeySet) -> None:
    await _refused(_verifier(keys), _with_header({"alg": "RS256", "kid": "rsa-1"}, b"[" * 100_000 + b"]" * 100_000))
