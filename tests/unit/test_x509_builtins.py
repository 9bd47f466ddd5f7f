"""OPA's ``crypto.x509.parse_certificates`` as phantom-authz provides it to regorus: Go's ``x509.Certificate`` as
``encoding/json`` writes it (what OPA returns), from PEM, base64 DER or base64 PEM, evaluated from Rego by a real
``EmbeddedEngine``; and the Envoy use: the client certificate Envoy sends URL-encoded in ``source.certificate``."""

from __future__ import annotations

import base64
import datetime
import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from authz.policy.embedded import EmbeddedEngine
from authz.policy.engine import PolicyEvaluationError

POLICY = """package x
import rego.v1

certs := crypto.x509.parse_certificates(input.certs)

key := [c.PublicKeyAlgorithm, c.PublicKey, json.marshal(c.SerialNumber)] if {
    c := crypto.x509.parse_certificates(input.certs)[0]
}

# the Envoy way: the peer certificate, URL-encoded PEM, in input.attributes.source.certificate
peer := crypto.x509.parse_certificates(urlquery.decode(input.attributes.source.certificate))[0]

allow if {
    startswith(peer.URIStrings[0], "spiffe://cluster.local/ns/shop/")
    peer.Subject.Organization[_] == "Shop"
    "client.shop.example" in peer.DNSNames
}
"""
START = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA Org"),
                     x509.NameAttribute(NameOID.COMMON_NAME, "Test Root")])
SPIFFE = "spiffe://cluster.local/ns/shop/sa/web"


def _ca() -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(CA_NAME).public_key(CA_KEY.public_key())
            .serial_number(1).not_valid_before(START).not_valid_after(START + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()), critical=False)
            .sign(CA_KEY, hashes.SHA256()))


def _leaf(serial: int = 0x1234_5678, key: Any = LEAF_KEY) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"), x509.NameAttribute(NameOID.COUNTRY_NAME, "AT"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Shop"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Payments"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, "S-42"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "client.shop.example")])
    sans = [x509.DNSName("client.shop.example"), x509.DNSName("*.shop.example"), x509.RFC822Name("ops@shop.example"),
            x509.IPAddress(ipaddress.ip_address("192.0.2.10")), x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
            x509.UniformResourceIdentifier(SPIFFE)]
    aia = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://ocsp.x")),
           x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                  x509.UniformResourceIdentifier("http://ca.x/root.cer"))]
    crl = [x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.x/root.crl")], None, None, None)]
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(CA_NAME).public_key(key.public_key())
            .serial_number(serial).not_valid_before(START).not_valid_after(START + datetime.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.ObjectIdentifier("1.2.3.4")]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()), critical=False)
            .add_extension(x509.AuthorityInformationAccess(aia), critical=False)
            .add_extension(x509.CRLDistributionPoints(crl), critical=False)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"),
                                                                            None)]), critical=False)
            .sign(CA_KEY, hashes.SHA256()))


CA, LEAF = _ca(), _leaf()


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedEngine:
    directory = tmp_path_factory.mktemp("x509")
    (directory / "x.rego").write_text(POLICY, encoding="utf-8")
    return EmbeddedEngine((str(directory),), timeout_seconds=5.0)


async def _certs(engine: EmbeddedEngine, certs: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await engine.evaluate("x/certs", {"certs": certs})).result
    return result


async def test_a_certificate_as_go_encodes_it(engine: EmbeddedEngine) -> None:
    [cert] = await _certs(engine, _pem(LEAF))
    assert cert["Subject"] == {
        "Country": ["DE", "AT"], "Organization": ["Shop"], "OrganizationalUnit": ["Payments"], "Locality": None,
        "Province": None, "StreetAddress": None, "PostalCode": None, "SerialNumber": "S-42",
        "CommonName": "client.shop.example", "ExtraNames": None,
        "Names": [{"Type": [2, 5, 4, 6], "Value": "DE"}, {"Type": [2, 5, 4, 6], "Value": "AT"},
                  {"Type": [2, 5, 4, 10], "Value": "Shop"}, {"Type": [2, 5, 4, 11], "Value": "Payments"},
                  {"Type": [2, 5, 4, 5], "Value": "S-42"}, {"Type": [2, 5, 4, 3], "Value": "client.shop.example"}]}
    assert cert["Issuer"]["CommonName"] == "Test Root" and cert["Issuer"]["Organization"] == ["Test CA Org"]
    assert (cert["Version"], cert["SerialNumber"]) == (3, 0x1234_5678)
    assert (cert["NotBefore"], cert["NotAfter"]) == ("2024-01-02T03:04:05Z", "2024-04-01T03:04:05Z")
    assert (cert["SignatureAlgorithm"], cert["PublicKeyAlgorithm"], cert["PublicKey"]) == (10, 3, {"Curve": {}})
    assert cert["DNSNames"] == ["client.shop.example", "*.shop.example"]
    assert cert["EmailAddresses"] == ["ops@shop.example"]
    assert cert["IPAddresses"] == ["192.0.2.10", "2001:db8::1"]
    assert cert["URIStrings"] == [SPIFFE]
    assert cert["URIs"] == [{"Scheme": "spiffe", "Opaque": "", "User": None, "Host": "cluster.local",
                             "Path": "/ns/shop/sa/web", "RawPath": "", "OmitHost": False, "ForceQuery": False,
                             "RawQuery": "", "Fragment": "", "RawFragment": ""}]
    assert cert["KeyUsage"] == 1 | 4  # DigitalSignature | KeyEncipherment
    assert (cert["ExtKeyUsage"], cert["UnknownExtKeyUsage"]) == ([2, 1], [[1, 2, 3, 4]])
    assert (cert["BasicConstraintsValid"], cert["IsCA"], cert["MaxPathLen"], cert["MaxPathLenZero"]) == (
        True, False, -1, False)
    assert base64.b64decode(cert["Raw"]) == _der(LEAF)
    assert base64.b64decode(cert["RawTBSCertificate"]) == LEAF.tbs_certificate_bytes
    assert base64.b64decode(cert["Signature"]) == LEAF.signature
    assert base64.b64decode(cert["RawIssuer"]) == CA_NAME.public_bytes()
    ski = LEAF.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert base64.b64decode(cert["SubjectKeyId"]) == ski
    assert (cert["OCSPServer"], cert["IssuingCertificateURL"]) == (["http://ocsp.x"], ["http://ca.x/root.cer"])
    assert cert["CRLDistributionPoints"] == ["http://crl.x/root.crl"]
    assert (cert["PolicyIdentifiers"], cert["Policies"]) == ([[2, 23, 140, 1, 2, 1]], ["2.23.140.1.2.1"])
    assert [e["Id"] for e in cert["Extensions"]] == [[2, 5, 29, n] for n in (19, 15, 37, 17, 14, 35)] + [
        [1, 3, 6, 1, 5, 5, 7, 1, 1], [2, 5, 29, 31], [2, 5, 29, 32]]
    assert [e["Critical"] for e in cert["Extensions"]][:2] == [True, True]
    assert cert["UnhandledCriticalExtensions"] is None and cert["PermittedDNSDomains"] is None


async def test_a_ca_certificate(engine: EmbeddedEngine) -> None:
    [cert] = await _certs(engine, _pem(CA))
    assert (cert["IsCA"], cert["MaxPathLen"], cert["MaxPathLenZero"], cert["KeyUsage"]) == (True, 1, False, 0)
    assert cert["AuthorityKeyId"] is None and cert["DNSNames"] is None and cert["URIs"] is None
    assert cert["Subject"]["Locality"] is None and cert["Subject"]["Country"] == ["DE"]


@pytest.mark.parametrize("form", ["pem", "base64 der", "base64 pem", "base64 der chain", "pem with trailing text",
                                  "base64 with line breaks"])
async def test_input_forms_opa_accepts(engine: EmbeddedEngine, form: str) -> None:
    text = {
        "pem": _pem(LEAF, CA),
        "base64 der": base64.b64encode(_der(LEAF)).decode(),
        "base64 pem": base64.b64encode(_pem(LEAF, CA).encode()).decode(),
        "base64 der chain": base64.b64encode(_der(LEAF) + _der(CA)).decode(),
        "pem with trailing text": _pem(LEAF, CA) + "\nsome trailing text\n",
        "base64 with line breaks": base64.encodebytes(_der(LEAF) + _der(CA)).decode(),
    }[form]
    names = [c["Subject"]["CommonName"] for c in await _certs(engine, text)]
    assert names == (["client.shop.example"] if form == "base64 der" else ["client.shop.example", "Test Root"])


@pytest.mark.parametrize("text", [
    "not base64 !", base64.b64encode(b"\x30\x03abc").decode(), base64.b64encode(_der(LEAF)[:-10]).decode(),
    _pem(LEAF) + LEAF_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode(),
])
async def test_what_does_not_parse_is_an_evaluation_error(engine: EmbeddedEngine, text: str) -> None:
    with pytest.raises(PolicyEvaluationError):
        await _certs(engine, text)


async def test_non_string_is_an_evaluation_error(engine: EmbeddedEngine) -> None:
    with pytest.raises(PolicyEvaluationError):
        await engine.evaluate("x/certs", {"certs": 5})


async def test_numbers_regorus_cannot_hold_exactly(engine: EmbeddedEngine) -> None:
    big = 0x7F_1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0  # a 20-octet serial, as CAs make them
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    algorithm, key, serial = (await engine.evaluate("x/key", {"certs": _pem(_leaf(serial=big, key=rsa_key))})).result
    assert float(serial) == float(big)  # the nearest number regorus holds (it is exact up to 64 bits)
    assert (algorithm, key) == (1, {"E": 65537})  # no modulus: no regorus number holds it
    ed_key = ed25519.Ed25519PrivateKey.generate()
    algorithm, key, serial = (await engine.evaluate("x/key", {"certs": _pem(_leaf(serial=2**64 - 1, key=ed_key))})
                              ).result
    raw = ed_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert (serial, algorithm, key) == (str(2**64 - 1), 4, base64.b64encode(raw).decode())


async def test_envoys_url_encoded_peer_certificate(engine: EmbeddedEngine) -> None:
    """Envoy's ``source.certificate`` is the client certificate's PEM, URL-encoded."""
    def attributes(pem: str) -> dict[str, Any]:
        return {"attributes": {"source": {"certificate": quote(pem, safe="")}}}

    peer = (await engine.evaluate("x/peer", attributes(_pem(LEAF)))).result
    assert peer["Subject"]["CommonName"] == "client.shop.example" and peer["URIs"][0]["Host"] == "cluster.local"
    assert (await engine.evaluate("x/allow", attributes(_pem(LEAF)))).result is True
    with pytest.raises(PolicyEvaluationError, match="undefined"):
        await engine.evaluate("x/allow", attributes(_pem(CA)))


def test_parse_and_verify_is_refused_at_load(tmp_path: Path) -> None:
    """Not provided (see authz/policy/x509_builtins.py): a policy calling it does not load."""
    from authz.policy.engine import PolicyLoadError

    (tmp_path / "v.rego").write_text('package v\nimport rego.v1\n\nok if {\n  [valid, _] := '
                                     'crypto.x509.parse_and_verify_certificates(input.chain)\n  valid\n}\n')
    with pytest.raises(PolicyLoadError, match=r"v\.rego:5:\d+: `crypto\.x509\.parse_and_verify_certificates`"):
        EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
