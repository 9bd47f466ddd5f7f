"""A JWT the AS returned never names its own verification key: ``jwk``, ``jku``, ``x5u``, ``x5c``, ``x5t`` in its
header are ignored, so a JWT signed by any other key fails whatever key material its header carries; and a ``crit``
member that is present at all (even ``null``: RFC 7515 §4.1.11 allows only a non-empty array of names we would have
to understand) is refused."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from authz.introspection.jwks import KeySet
from tests.unit.test_token import CLAIMS, FOREIGN_RSA, _b64, _refused, _verifier, _with_header, keys

__all__ = ["keys"]  # the fixture, imported for this module's tests


def _foreign_certificate() -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "as.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(FOREIGN_RSA.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(FOREIGN_RSA, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _foreign_signed(header: dict[str, Any]) -> str:
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(CLAIMS).encode())
    signature = FOREIGN_RSA.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


FOREIGN_JWK = jwt.algorithms.RSAAlgorithm.to_jwk(FOREIGN_RSA.public_key(), as_dict=True)


@pytest.mark.parametrize(("member", "value"), [
    ("jwk", FOREIGN_JWK),
    ("jku", "http://127.0.0.1:1/attacker-jwks"),
    ("x5u", "http://127.0.0.1:1/attacker.pem"),
    ("x5c", [_foreign_certificate()]),
])
@pytest.mark.parametrize("kid", ["rsa-1", None], ids=["as-kid", "no-kid"])
async def test_key_material_in_the_header_never_verifies_a_foreign_signature(keys: KeySet, member: str, value: Any,
                                                                             kid: str | None) -> None:
    header: dict[str, Any] = {"alg": "RS256", member: value}
    if kid is not None:
        header["kid"] = kid
    await _refused(_verifier(keys), _foreign_signed(header))


async def test_crit_null_is_refused(keys: KeySet) -> None:
    await _refused(_verifier(keys), _with_header({"alg": "RS256", "kid": "rsa-1", "crit": None}))
