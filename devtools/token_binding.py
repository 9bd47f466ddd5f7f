"""What the dev AS binds a token to (the ``cnf`` claim, RFC 7800): a client certificate's thumbprint (RFC 8705 §3.1).

A real AS reads the certificate from the client's mTLS connection to its token endpoint; the dev AS, plain HTTP,
takes it from a dev-only form field instead.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["certificate_binding"]


def certificate_binding(pem: str) -> dict[str, str]:
    """``{"x5t#S256": base64url(SHA-256(DER))}`` of a PEM certificate; ``ValueError`` when it is none."""
    certificate = x509.load_pem_x509_certificate(pem.encode())
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return {"x5t#S256": base64.urlsafe_b64encode(digest).rstrip(b"=").decode()}
