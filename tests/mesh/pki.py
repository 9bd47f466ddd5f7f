"""A mesh certificate authority made in the test, and SPIFFE workload certificates (``cryptography``).

Istio's CA signs each workload a short-lived certificate whose only name is a URI SAN
``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``; Envoy reads it on both ends of an mTLS connection
and fills a CheckRequest's ``source.principal`` (the peer's) and ``destination.principal`` (its own). The files
are written once per test module: ``ca.pem`` and ``<name>.pem`` / ``<name>.key`` per workload.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TRUST_DOMAIN", "MeshCA", "Workload", "spiffe_id"]

TRUST_DOMAIN = "cluster.local"
_LIFETIME = datetime.timedelta(hours=1)


def spiffe_id(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class Workload:
    """A workload's identity and where its certificate and key are."""

    spiffe: str
    cert: Path
    key: Path

    def client_context(self, ca: Path) -> ssl.SSLContext:
        """A TLS client presenting this workload's certificate and trusting only the mesh CA. The server's name is
        its SPIFFE URI, not a DNS name, so the hostname check is off; the chain is verified."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        context.check_hostname = False
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class MeshCA:
    """A self-signed root (P-256) that signs workload certificates into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, TRUST_DOMAIN),
                          x509.NameAttribute(NameOID.COMMON_NAME, "mesh test root CA")])
        now = datetime.datetime.now(datetime.UTC)
        self._name = name
        self._cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256()))
        self.cert = directory / "ca.pem"
        self.cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, namespace: str, service_account: str) -> Workload:
        """A workload certificate as Istio's CA shapes it: empty subject, one critical URI SAN (the SPIFFE id),
        usable as TLS server and client."""
        identity = spiffe_id(namespace, service_account)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self._name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + _LIFETIME)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256()))
        workload = Workload(identity, self.directory / f"{name}.pem", self.directory / f"{name}.key")
        workload.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        workload.key.write_bytes(_pem(key))
        workload.key.chmod(0o600)
        return workload
