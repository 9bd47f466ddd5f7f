"""OPA's ``io.jwt`` built-ins as phantom-authz provides them to regorus, checked against OPA's documented semantics.

Each behaviour is checked on the Python methods and, for the wiring, from Rego through an ``EmbeddedEngine`` (which
registers the built-ins when it compiles).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from authz.policy.embedded import EmbeddedEngine
from authz.policy.engine import PolicyEvaluationError
from authz.policy.jwt_builtins import JwtBuiltins

NOW = 1_700_000_000
INVALID = [False, {}, {}]

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _pem(private_key: Any) -> str:
    pem: bytes = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode()


def _certificate(private_key: Any) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "as.example")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=3650)).sign(private_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _jwk(private_key: Any, kid: str) -> dict[str, Any]:
    is_rsa = isinstance(private_key, rsa.RSAPrivateKey)
    algorithm = pyjwt.algorithms.RSAAlgorithm if is_rsa else pyjwt.algorithms.ECAlgorithm
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(private_key.public_key()))
    jwk["kid"] = kid
    return jwk


RSA_PEM = _pem(RSA_KEY)
OTHER_PEM = _pem(OTHER_RSA_KEY)
EC_PEM = _pem(EC_KEY)
RSA_CERT = _certificate(RSA_KEY)
JWKS = json.dumps({"keys": [_jwk(OTHER_RSA_KEY, "other"), _jwk(RSA_KEY, "k1")]})
OTHER_JWKS = json.dumps({"keys": [_jwk(OTHER_RSA_KEY, "k1")]})


def _token(claims: dict[str, Any] | None = None, key: Any = RSA_KEY, alg: str = "RS256", kid: str | None = "k1") -> str:
    payload = {"iss": "https://as.example", "sub": "alice", "exp": NOW + 600} if claims is None else claims
    headers = {"kid": kid} if kid is not None else None
    return pyjwt.encode(payload, key, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _builtins(lookup: Any = None) -> JwtBuiltins:
    return JwtBuiltins(key_lookup=lookup, clock=lambda: float(NOW))


# --- io.jwt.decode ------------------------------------------------------------------------------------------------


def test_decode_gives_header_payload_and_hex_signature() -> None:
    token = _token({"sub": "alice", "aud": ["a", "b"], "n": 1})
    header, payload, signature = _builtins().decode(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    assert payload == {"sub": "alice", "aud": ["a", "b"], "n": 1}
    raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    assert signature == raw.hex()
    assert len(signature) == 2 * 256  # RSA-2048 signature, two hex digits per byte


def test_decode_does_not_verify() -> None:
    token = _token(key=OTHER_RSA_KEY)
    _, payload, _ = _builtins().decode(token)
    assert payload["sub"] == "alice"


# --- io.jwt.decode_verify: keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cert", [RSA_PEM, RSA_CERT, JWKS, json.dumps(_jwk(RSA_KEY, "k1"))],
                         ids=["pem-public-key", "pem-certificate", "jwks", "single-jwk"])
def test_decode_verify_accepts_each_cert_form(cert: str) -> None:
    token = _token()
    assert _builtins().decode_verify(token, {"cert": cert}) == [
        True, {"alg": "RS256", "typ": "JWT", "kid": "k1"},
        {"iss": "https://as.example", "sub": "alice", "exp": NOW + 600}]


@pytest.mark.parametrize("cert", [OTHER_PEM, _certificate(OTHER_RSA_KEY), OTHER_JWKS],
                         ids=["pem-public-key", "pem-certificate", "jwks"])
def test_decode_verify_with_the_wrong_key_is_invalid(cert: str) -> None:
    assert _builtins().decode_verify(_token(), {"cert": cert}) == INVALID


def test_decode_verify_with_a_jwks_that_also_holds_an_encryption_key() -> None:
    """Keycloak's JWKS (and others) publish an ``enc`` key next to the signing key; OPA picks the key by ``kid``."""
    jwks = json.dumps({"keys": [{**_jwk(OTHER_RSA_KEY, "enc"), "alg": "RSA-OAEP", "use": "enc"},
                                {**_jwk(RSA_KEY, "k1"), "alg": "RS256", "use": "sig"}]})
    assert _builtins().decode_verify(_token(), {"cert": jwks})[0] is True


def test_decode_verify_with_a_jwks_that_also_holds_a_symmetric_key() -> None:
    jwks = json.dumps({"keys": [{"kty": "oct", "k": _b64(b"not-a-public-key"), "kid": "h"}, _jwk(RSA_KEY, "k1")]})
    assert _builtins().decode_verify(_token(), {"cert": jwks})[0] is True


def test_item11_a_jwks_key_whose_alg_is_rs256_does_not_verify_ps256_in_the_builtins() -> None:
    """The built-ins follow the same key rules as the token stage (``authz.verification_keys``)."""
    jwks = json.dumps({"keys": [{**_jwk(RSA_KEY, "k1"), "alg": "RS256"}]})
    assert _builtins().decode_verify(_token(alg="RS256"), {"cert": jwks})[0] is True
    assert _builtins().decode_verify(_token(alg="PS256"), {"cert": jwks}) == INVALID
    assert _builtins().decode_verify(_token(alg="PS256"), {"cert": json.dumps({"keys": [_jwk(RSA_KEY, "k1")]})})[0]


def test_decode_verify_with_tampered_payload_is_invalid() -> None:
    header, _, signature = _token().split(".")
    forged = _b64(json.dumps({"iss": "https://as.example", "sub": "admin", "exp": NOW + 600}).encode())
    assert _builtins().decode_verify(f"{header}.{forged}.{signature}", {"cert": RSA_PEM}) == INVALID


def test_decode_verify_es256() -> None:
    token = _token(key=EC_KEY, alg="ES256")
    valid, header, _ = _builtins().decode_verify(token, {"cert": EC_PEM})
    assert valid is True and header["alg"] == "ES256"
    assert _builtins().decode_verify(token, {"cert": RSA_PEM}) == INVALID


def test_alg_constraint() -> None:
    token = _token()
    assert _builtins().decode_verify(token, {"cert": RSA_PEM, "alg": "RS256"})[0] is True
    assert _builtins().decode_verify(token, {"cert": RSA_PEM, "alg": "ES256"}) == INVALID
    assert _builtins().decode_verify(token, {"cert": RSA_PEM, "alg": "PS256"}) == INVALID


def test_hs256_token_is_invalid_there_is_no_secret_support() -> None:
    token = pyjwt.encode({"sub": "alice", "exp": NOW + 600}, "a-shared-secret-of-32-bytes-long!", algorithm="HS256")
    assert _builtins().decode_verify(token, {"cert": RSA_PEM}) == INVALID
    assert _builtins(lambda kid, alg: "a-shared-secret-of-32-bytes-long!").decode_verify(token, {}) == INVALID


def test_hs256_signed_with_the_public_key_pem_is_invalid() -> None:
    """The classic alg confusion: an HMAC over the token with the RSA public key's PEM as secret."""
    signing_input = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64(
        json.dumps({"sub": "admin", "exp": NOW + 600}).encode())
    mac = hmac.new(RSA_PEM.encode(), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(mac)}"
    assert _builtins().decode_verify(token, {"cert": RSA_PEM}) == INVALID
    assert _builtins().decode_verify(token, {"cert": RSA_PEM, "alg": "HS256"}) == INVALID


def test_alg_none_is_invalid() -> None:
    signing_input = _b64(json.dumps({"alg": "none"}).encode()) + "." + _b64(json.dumps({"sub": "admin"}).encode())
    assert _builtins().decode_verify(signing_input + ".", {"cert": RSA_PEM}) == INVALID
    assert _builtins(lambda kid, alg: RSA_KEY.public_key()).decode_verify(signing_input + ".", {}) == INVALID


# --- io.jwt.decode_verify: claims constraints -----------------------------------------------------------------------


def test_iss_constraint() -> None:
    token = _token()
    assert _builtins().decode_verify(token, {"cert": RSA_PEM, "iss": "https://as.example"})[0] is True
    assert _builtins().decode_verify(token, {"cert": RSA_PEM, "iss": "https://evil.example"}) == INVALID
    no_iss = _token({"sub": "alice", "exp": NOW + 600})
    assert _builtins().decode_verify(no_iss, {"cert": RSA_PEM, "iss": "https://as.example"}) == INVALID


def test_aud_constraint_matches_a_string_or_a_list_member() -> None:
    single = _token({"sub": "alice", "aud": "api", "exp": NOW + 600})
    several = _token({"sub": "alice", "aud": ["web", "api"], "exp": NOW + 600})
    assert _builtins().decode_verify(single, {"cert": RSA_PEM, "aud": "api"})[0] is True
    assert _builtins().decode_verify(several, {"cert": RSA_PEM, "aud": "api"})[0] is True
    assert _builtins().decode_verify(single, {"cert": RSA_PEM, "aud": "other"}) == INVALID
    assert _builtins().decode_verify(several, {"cert": RSA_PEM, "aud": "other"}) == INVALID


def test_token_with_aud_but_no_aud_constraint_is_invalid() -> None:
    """OPA: a token carrying an audience is only valid when the constraints name one of its audiences."""
    token = _token({"sub": "alice", "aud": "api", "exp": NOW + 600})
    assert _builtins().decode_verify(token, {"cert": RSA_PEM}) == INVALID


def test_aud_constraint_on_a_token_without_aud_is_invalid() -> None:
    token = _token({"sub": "alice", "exp": NOW + 600})
    assert _builtins().decode_verify(token, {"cert": RSA_PEM, "aud": "api"}) == INVALID


@pytest.mark.parametrize(("seconds", "valid"), [
    (NOW - 101, False),  # before nbf
    (NOW - 100, True),  # at nbf
    (NOW, True),
    (NOW + 599, True),
    (NOW + 600, False),  # at exp: OPA treats exp as exclusive
    (NOW + 10_000, False),
])
def test_time_constraint_in_nanoseconds_against_exp_and_nbf(seconds: int, valid: bool) -> None:
    token = _token({"sub": "alice", "nbf": NOW - 100, "exp": NOW + 600})
    # the builtins' own clock says the token is expired: the constraint's time must win
    builtins = JwtBuiltins(clock=lambda: float(NOW + 1_000_000))
    result = builtins.decode_verify(token, {"cert": RSA_PEM, "time": seconds * 1_000_000_000})
    assert result[0] is valid
    if not valid:
        assert result == INVALID


def test_without_time_constraint_the_current_time_is_used() -> None:
    token = _token({"sub": "alice", "exp": NOW + 600})
    assert JwtBuiltins(clock=lambda: float(NOW)).decode_verify(token, {"cert": RSA_PEM})[0] is True
    assert JwtBuiltins(clock=lambda: float(NOW + 601)).decode_verify(token, {"cert": RSA_PEM}) == INVALID


def test_expired_token_is_invalid_with_the_real_clock() -> None:
    token = _token({"sub": "alice", "exp": 1_000_000})  # 1970
    assert JwtBuiltins().decode_verify(token, {"cert": RSA_PEM}) == INVALID


# --- io.jwt.decode_verify without cert: phantom-authz's own keys ------------------------------------------------------


def test_without_cert_the_key_lookup_is_asked_by_kid() -> None:
    asked: list[str | None] = []

    def lookup(kid: str | None, alg: str) -> Any:
        asked.append(kid)
        return RSA_KEY.public_key() if kid == "k1" else None

    builtins = _builtins(lookup)
    assert builtins.decode_verify(_token(kid="k1"), {})[0] is True
    assert builtins.decode_verify(_token(kid="unknown"), {}) == INVALID
    assert builtins.decode_verify(_token(kid=None), {}) == INVALID
    assert asked == ["k1", "unknown", None]


def test_without_cert_the_looked_up_key_must_match() -> None:
    builtins = _builtins(lambda kid, alg: OTHER_RSA_KEY.public_key())
    assert builtins.decode_verify(_token(), {}) == INVALID


def test_without_cert_and_without_key_lookup_nothing_verifies() -> None:
    assert _builtins().decode_verify(_token(), {}) == INVALID


# --- io.jwt.verify_* ----------------------------------------------------------------------------------------------


class _Registry:
    """Records what ``JwtBuiltins.register`` hands to regorus: OPA built-in name -> (arity, Python function)."""

    def __init__(self) -> None:
        self.functions: dict[str, tuple[int, Any]] = {}

    def add_extension(self, name: str, nargs: int, fn: Any) -> None:
        self.functions[name] = (nargs, fn)


def _registered(builtins: JwtBuiltins | None = None) -> dict[str, tuple[int, Any]]:
    registry = _Registry()
    (builtins or _builtins()).register(registry)
    return registry.functions


def test_register_provides_opa_names_and_arities() -> None:
    functions = _registered()
    assert functions["io.jwt.decode"][0] == 1
    assert functions["io.jwt.decode_verify"][0] == 2
    for alg in ("rs256", "rs384", "rs512", "ps256", "ps384", "ps512", "es256", "es384", "es512"):
        assert functions[f"io.jwt.verify_{alg}"][0] == 2


def test_verify_rs256_and_es256_return_booleans() -> None:
    functions = _registered()
    verify_rs256 = functions["io.jwt.verify_rs256"][1]
    verify_es256 = functions["io.jwt.verify_es256"][1]
    rs = _token()
    es = _token(key=EC_KEY, alg="ES256")
    assert verify_rs256(rs, RSA_PEM) is True
    assert verify_rs256(rs, RSA_CERT) is True
    assert verify_rs256(rs, JWKS) is True
    assert verify_rs256(rs, OTHER_PEM) is False
    assert verify_rs256(es, EC_PEM) is False  # the token's alg is not the function's
    assert verify_es256(es, EC_PEM) is True
    assert verify_es256(es, _certificate(EC_KEY)) is True
    assert verify_es256(es, RSA_PEM) is False
    assert verify_es256(rs, RSA_PEM) is False
    assert verify_rs256("not-a-jwt", RSA_PEM) is False


def test_verify_ps256_is_not_fooled_by_an_rs256_token() -> None:
    functions = _registered()
    ps = _token(alg="PS256")
    assert functions["io.jwt.verify_ps256"][1](ps, RSA_PEM) is True
    assert functions["io.jwt.verify_ps256"][1](_token(), RSA_PEM) is False


def test_verify_ignores_expiry_and_audience_as_opa_does() -> None:
    """OPA's verify_* check the signature only; exp/nbf/aud belong to decode_verify."""
    token = _token({"sub": "alice", "exp": 1_000_000, "aud": "x"})
    assert _registered(JwtBuiltins())["io.jwt.verify_rs256"][1](token, RSA_PEM) is True


# --- from Rego, through the embedded engine -------------------------------------------------------------------------

POLICY = """package jwt
import rego.v1

decoded := io.jwt.decode(input.token)

verified := io.jwt.decode_verify(input.token, input.constraints)

rs256 := io.jwt.verify_rs256(input.token, input.cert)

es256 := io.jwt.verify_es256(input.token, input.cert)

subject := payload.sub if {
    [valid, _, payload] := io.jwt.decode_verify(input.token, {"aud": "api", "time": input.now})
    valid
}
"""


@pytest.fixture
def rego(tmp_path: Path) -> EmbeddedEngine:
    (tmp_path / "jwt.rego").write_text(POLICY, encoding="utf-8")
    def lookup(kid: str | None, alg: str) -> Any:
        return RSA_KEY.public_key() if kid == "k1" else None

    return EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0,
                          builtins=JwtBuiltins(key_lookup=lookup, clock=lambda: float(NOW)))


async def _eval(engine: EmbeddedEngine, rule: str, **policy_input: Any) -> Any:
    return (await engine.evaluate(f"jwt/{rule}", policy_input)).result


async def test_rego_io_jwt_decode(rego: EmbeddedEngine) -> None:
    token = _token()
    header, payload, signature = await _eval(rego, "decoded", token=token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    assert payload == {"iss": "https://as.example", "sub": "alice", "exp": NOW + 600}
    assert signature == base64.urlsafe_b64decode(token.split(".")[2] + "==").hex()


async def test_rego_io_jwt_decode_of_a_malformed_token_is_an_evaluation_error(rego: EmbeddedEngine) -> None:
    with pytest.raises(PolicyEvaluationError):
        await _eval(rego, "decoded", token="not-a-jwt")


async def test_rego_io_jwt_decode_verify(rego: EmbeddedEngine) -> None:
    token = _token()
    assert (await _eval(rego, "verified", token=token, constraints={"cert": RSA_CERT}))[0] is True
    assert (await _eval(rego, "verified", token=token, constraints={"cert": JWKS, "iss": "https://as.example"}))[0]
    assert await _eval(rego, "verified", token=token, constraints={"cert": OTHER_PEM}) == INVALID
    assert await _eval(rego, "verified", token=token, constraints={"cert": RSA_PEM, "alg": "ES256"}) == INVALID
    expired_at = (NOW + 600) * 1_000_000_000
    assert await _eval(rego, "verified", token=token, constraints={"cert": RSA_PEM, "time": expired_at}) == INVALID


async def test_rego_io_jwt_decode_verify_falls_back_to_the_gateway_keys(rego: EmbeddedEngine) -> None:
    assert (await _eval(rego, "verified", token=_token(), constraints={}))[0] is True
    assert await _eval(rego, "verified", token=_token(kid="nope"), constraints={}) == INVALID
    assert await _eval(rego, "verified", token=_token(key=OTHER_RSA_KEY), constraints={}) == INVALID


async def test_rego_policy_using_decode_verify_payload(rego: EmbeddedEngine) -> None:
    token = _token({"sub": "alice", "aud": "api", "exp": NOW + 600})
    assert await _eval(rego, "subject", token=token, now=NOW * 1_000_000_000) == "alice"
    with pytest.raises(PolicyEvaluationError, match="undefined"):
        await _eval(rego, "subject", token=token, now=(NOW + 600) * 1_000_000_000)


async def test_rego_io_jwt_verify_rs256_and_es256(rego: EmbeddedEngine) -> None:
    rs = _token()
    es = _token(key=EC_KEY, alg="ES256")
    assert await _eval(rego, "rs256", token=rs, cert=RSA_PEM) is True
    assert await _eval(rego, "rs256", token=rs, cert=RSA_CERT) is True
    assert await _eval(rego, "rs256", token=rs, cert=OTHER_PEM) is False
    assert await _eval(rego, "rs256", token=es, cert=EC_PEM) is False
    assert await _eval(rego, "es256", token=es, cert=EC_PEM) is True
    assert await _eval(rego, "es256", token=es, cert=RSA_PEM) is False
