"""Stage 5b: certificate-bound access tokens (RFC 8705 §3). Pure.

An AS that binds a token to its client's certificate puts the certificate's thumbprint in the introspection answer:
``cnf: {"x5t#S256": base64url(SHA-256(DER))}``. Only the party holding that certificate's private key may use the
token, and the gateway checks it on every request (a cached answer is reused by whoever presents the token): the
certificate Envoy saw on the client's TLS connection (``source.certificate``, URL-encoded PEM, sent when the
ext_authz filter has ``include_peer_certificate: true``) must hash to the same thumbprint.

Each route says what it accepts (``mtls_bound``: route rules, ``context_extensions``, ``routes.mtls_bound``):

``off``       (the default) a certificate-bound token is refused (401 ``invalid_token``); bearer tokens as usual
``allowed``   a certificate-bound token with the matching certificate, or a plain bearer token
``required``  only a certificate-bound token with the matching certificate

Why a switch and not "check whenever a certificate is there": the certificate Envoy reports is the TLS peer's, which
is the token holder only where clients connect to Envoy with their own certificates. Behind a TLS-terminating load
balancer, or an Istio sidecar (whose peer is a workload), it is someone else's, and nothing in a request says which.
An operator who turns a route on says the peer is the client. Either way a bound token never passes without its
certificate: a mismatch, no certificate, or a route that is ``off`` is a 401.

A route that is not ``off`` on a transport that does not carry the certificate (Envoy's HTTP ext_authz mode) fails
closed (500 ``route_misconfigured``); the configuration refuses such routes at start where it can.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args
from urllib.parse import unquote

from authz.errors import InvalidToken, RouteMisconfigured

__all__ = ["MTLS_BOUND_MODES", "THUMBPRINT", "X5T_S256", "MtlsBound", "certificate_thumbprint", "check_binding",
           "check_transport"]

X5T_S256 = "x5t#S256"
THUMBPRINT = re.compile(r"^[A-Za-z0-9_-]{43}\Z")  # base64url of 32 bytes, no padding
MtlsBound = Literal["off", "allowed", "required"]
MTLS_BOUND_MODES: tuple[str, ...] = get_args(MtlsBound)
_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
_MAX_CERTIFICATE = 64 * 1024  # characters of URL-encoded PEM; Envoy's header block is smaller than a longer one


def certificate_thumbprint(certificate: str) -> str | None:
    """base64url(SHA-256(DER)) of the one certificate in ``certificate`` (URL-encoded PEM, as Envoy sends
    ``source.certificate``); None when it holds no certificate, several, or anything else."""
    if not certificate or len(certificate) > _MAX_CERTIFICATE:
        return None
    try:
        pem = unquote(certificate, errors="strict").strip()
        if not (pem.startswith(_BEGIN) and pem.endswith(_END)) or pem.count(_BEGIN) != 1 or pem.count(_END) != 1:
            return None
        der = base64.b64decode("".join(pem[len(_BEGIN):-len(_END)].split()), validate=True)
    except (binascii.Error, ValueError):  # UnicodeDecodeError too
        return None
    if not der or der[0] != 0x30:  # a DER SEQUENCE, as every certificate is
        return None
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def check_transport(mode: str, certificate: str | None) -> None:
    """Before the credential is read: a route that checks certificates (``mode`` not ``off``) on a transport that
    carries none (``certificate`` None: Envoy's HTTP ext_authz mode) is misconfigured, whatever the request holds."""
    if mode != "off" and certificate is None:
        raise RouteMisconfigured(f"mtls_bound: {mode} on a transport that does not carry the client certificate "
                                 "(Envoy's HTTP ext_authz mode); use the gRPC transport")


def check_binding(claims: Mapping[str, Any], mode: str, certificate: str | None) -> None:
    """Raise unless a token with these (verified) ``claims`` may be used on a route with ``mtls_bound: mode`` by the
    client that presented ``certificate`` (Envoy's ``source.certificate``: "" when none, None when the transport
    does not carry it). ``claims`` passed ``authz.claims.check_access_token``: ``cnf`` is an object and its
    ``x5t#S256``, when present, a well-formed thumbprint."""
    cnf = claims.get("cnf")
    bound = None if cnf is None else cnf.get(X5T_S256)
    if mode == "off":
        if bound is not None:
            raise InvalidToken("certificate-bound token (cnf x5t#S256) on a route with mtls_bound: off")
        return
    check_transport(mode, certificate)
    if bound is None:
        if mode == "required":
            raise InvalidToken("route requires a certificate-bound token (mtls_bound: required); this one has no "
                               "cnf x5t#S256")
        return
    if not certificate:
        raise InvalidToken("certificate-bound token without a client certificate (is Envoy's "
                           "include_peer_certificate on, and the listener asking for client certificates?)")
    presented = certificate_thumbprint(certificate)
    if presented is None:
        raise InvalidToken("certificate-bound token, and the peer certificate Envoy sent does not parse")
    if not hmac.compare_digest(presented, bound):
        raise InvalidToken("certificate-bound token presented with another client certificate")
