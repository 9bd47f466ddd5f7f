"""The dev AS over HTTPS, and RFC 8705 client authentication as an AS checks it (development and tests only).

- ``DevTls``: the AS's certificate and, with ``client_ca_file``, client certificates required on every connection
  (token, introspection, JWKS, metadata alike), verified against that bundle. A client registered for
  ``self_signed_tls_client_auth`` gets its self-signed certificate into the bundle too, since the TLS layer must let
  it through; the application check below is what tells the two methods apart.
- ``MtlsRegistration``: how a client registered for certificate authentication is recognised (RFC 8705 §2):
  ``tls_client_auth`` (PKI): a certificate that one of the bundle's CAs issued (not a self-signed one) with the
  registered subject DN; ``self_signed_tls_client_auth``: a certificate whose SHA-256 thumbprint (``x5t#S256``) is
  the registered one.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

__all__ = ["DevTls", "MtlsRegistration", "peer_certificate", "thumbprint"]


@dataclass(frozen=True)
class DevTls:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set: every connection must present a certificate this bundle trusts

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def issuers(self) -> list[x509.Certificate]:
        """The bundle's certificates that are CAs (those a tls_client_auth certificate must come from)."""
        if self.client_ca_file is None:
            return []
        with open(self.client_ca_file, "rb") as bundle:
            found = x509.load_pem_x509_certificates(bundle.read())
        return [c for c in found if _is_ca(c)]


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def thumbprint(certificate: x509.Certificate) -> str:
    """``x5t#S256``: base64url (no padding) of the SHA-256 of the DER certificate (RFC 8705 §3.1)."""
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The client certificate the TLS handshake verified, if any."""
    connection = request.transport.get_extra_info("ssl_object") if request.transport is not None else None
    der = connection.getpeercert(binary_form=True) if connection is not None else None
    return x509.load_der_x509_certificate(der) if der else None


@dataclass(frozen=True)
class MtlsRegistration:
    """One of the two: ``subject_dn`` (tls_client_auth, RFC 4514 form) or ``thumbprint`` (self-signed)."""

    subject_dn: str | None = None
    thumbprint: str | None = None

    def recognises(self, certificate: x509.Certificate | None, tls: DevTls | None) -> bool:
        if certificate is None or tls is None:
            return False
        if self.thumbprint is not None:
            return thumbprint(certificate) == self.thumbprint
        if self.subject_dn is None or certificate.subject.rfc4514_string() != self.subject_dn:
            return False
        return any(_issued_by(certificate, issuer) for issuer in tls.issuers())


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
