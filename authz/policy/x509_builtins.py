"""OPA's ``crypto.x509.parse_certificates`` for the embedded engine (regorus lacks it). Pure: no I/O.

``crypto.x509.parse_certificates(certs)`` -> an array with one object per certificate, in the order given. ``certs``
is PEM text (``-----BEGIN CERTIFICATE-----`` blocks; a block of another type is an error, text after the last block
is ignored), or standard base64 of PEM or of DER (one or more certificates, back to back) — OPA's rules. A
certificate that does not parse is an evaluation error (the failure status), as in OPA.

Each object has the fields of Go's ``x509.Certificate`` as ``encoding/json`` writes them (what OPA returns), plus
OPA's ``URIStrings``: ``Subject``/``Issuer`` (``CommonName``, ``Organization``, ``Country``, ... and ``Names``),
``SerialNumber``, ``NotBefore``/``NotAfter`` (RFC 3339), ``DNSNames``, ``EmailAddresses``, ``IPAddresses``, ``URIs``
(Go's ``url.URL`` objects: ``Scheme``, ``Host``, ``Path``, ...), ``IsCA``, ``KeyUsage``, ``ExtKeyUsage``,
``Extensions``, the raw DER parts in base64, ... Where regorus differs: its numbers are exact up to 64 bits, so a
larger ``SerialNumber`` is the nearest number it can hold (and a decision whose result holds one fails: regorus
cannot hand it back), and ``PublicKey`` has no big integers (RSA: ``{"E": ...}``; ECDSA: ``{"Curve": {}}``;
Ed25519: the key in base64, as in Go). Go's fields added after Go 1.23 (``InhibitAnyPolicy``, ``PolicyMappings``,
...) are not given.

``crypto.x509.parse_and_verify_certificates`` is *not* provided: Go's chain verification (default extended key
usage ``serverAuth``, name constraints, its path building) cannot be reproduced closely enough here, and a
verification that differs is a wrong allow waiting to happen; a policy that calls it is refused at load
(``authz.policy.builtin_check``) — serve it from a real OPA (``policy.engine: remote``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

__all__ = ["X509_BUILTINS", "parse_certificates"]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_U64 = 2**64
_SIGNATURE_ALGORITHMS = {  # Go's x509.SignatureAlgorithm values
    "1.2.840.113549.1.1.2": 1, "1.2.840.113549.1.1.4": 2, "1.2.840.113549.1.1.5": 3, "1.2.840.113549.1.1.11": 4,
    "1.2.840.113549.1.1.12": 5, "1.2.840.113549.1.1.13": 6, "1.2.840.10040.4.3": 7, "2.16.840.1.101.3.4.3.2": 8,
    "1.2.840.10045.4.1": 9, "1.2.840.10045.4.3.2": 10, "1.2.840.10045.4.3.3": 11, "1.2.840.10045.4.3.4": 12,
    "1.3.101.112": 16,
}
_PSS = {"sha256": 13, "sha384": 14, "sha512": 15}
_EXT_KEY_USAGES = {  # Go's x509.ExtKeyUsage values
    "2.5.29.37.0": 0, "1.3.6.1.5.5.7.3.1": 1, "1.3.6.1.5.5.7.3.2": 2, "1.3.6.1.5.5.7.3.3": 3, "1.3.6.1.5.5.7.3.4": 4,
    "1.3.6.1.5.5.7.3.5": 5, "1.3.6.1.5.5.7.3.6": 6, "1.3.6.1.5.5.7.3.7": 7, "1.3.6.1.5.5.7.3.8": 8,
    "1.3.6.1.5.5.7.3.9": 9, "1.3.6.1.4.1.311.10.3.3": 10, "2.16.840.1.113730.4.1": 11,
    "1.3.6.1.4.1.311.2.1.22": 12, "1.3.6.1.4.1.311.61.1.1": 13,
}
_KEY_USAGE_BITS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                   "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
_NAME_FIELDS = {  # pkix.Name's list fields, by attribute OID
    NameOID.COUNTRY_NAME: "Country", NameOID.ORGANIZATION_NAME: "Organization",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OrganizationalUnit", NameOID.LOCALITY_NAME: "Locality",
    NameOID.STATE_OR_PROVINCE_NAME: "Province", NameOID.STREET_ADDRESS: "StreetAddress",
    NameOID.POSTAL_CODE: "PostalCode",
}
_HANDLED_CRITICAL = {  # extensions Go's parser understands; other critical ones are UnhandledCriticalExtensions
    "2.5.29.14", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.30", "2.5.29.31", "2.5.29.32", "2.5.29.33",
    "2.5.29.35", "2.5.29.36", "2.5.29.37", "2.5.29.54", "1.3.6.1.5.5.7.1.1",
}


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _oid(oid: x509.ObjectIdentifier) -> list[int]:
    return [int(part) for part in oid.dotted_string.split(".")]


def _number(n: int) -> int | float:
    """An integer as regorus can hold it: exact within 64 bits, else the nearest float."""
    return n if -_U64 < n < _U64 else float(n)


def _der_certificates(der: bytes) -> list[x509.Certificate]:
    """Go's ``x509.ParseCertificates``: DER certificates back to back."""
    found = []
    while der:
        if len(der) < 2 or der[0] != 0x30:
            raise ValueError("x509: malformed certificate")
        length, start = der[1], 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or len(der) < 2 + count:
                raise ValueError("x509: malformed certificate")
            length, start = int.from_bytes(der[2:2 + count], "big"), 2 + count
        end = start + length
        if end > len(der):
            raise ValueError("x509: malformed certificate")
        found.append(x509.load_der_x509_certificate(der[:end]))
        der = der[end:]
    return found


def _pem_certificates(pem: bytes) -> list[x509.Certificate]:
    der = b""
    for block in _PEM_BLOCK.finditer(pem):
        if block.group(1) != b"CERTIFICATE":
            raise ValueError(f"PEM block type is '{block.group(1).decode('latin-1')}', expected CERTIFICATE")
        body = b"\n".join(line for line in block.group(2).splitlines() if b":" not in line)
        der += base64.b64decode(b"".join(body.split()), validate=True)
    return _der_certificates(der)


def _certificates(text: str) -> list[x509.Certificate]:
    if text.startswith("-----BEGIN"):
        return _pem_certificates(text.encode())
    try:  # Go's StdEncoding skips CR and LF
        data = base64.b64decode(text.replace("\r", "").replace("\n", "").encode(), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("illegal base64 data") from None
    return _pem_certificates(data) if data.startswith(b"-----BEGIN") else _der_certificates(data)


def _name(name: x509.Name) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(_NAME_FIELDS.values())
    out.update(SerialNumber="", CommonName="", Names=[], ExtraNames=None)
    for attribute in name:
        value = attribute.value if isinstance(attribute.value, str) else _b64(attribute.value)
        out["Names"].append({"Type": _oid(attribute.oid), "Value": value})
        if not isinstance(attribute.value, str):
            continue
        if attribute.oid == NameOID.COMMON_NAME:
            out["CommonName"] = attribute.value
        elif attribute.oid == NameOID.SERIAL_NUMBER:
            out["SerialNumber"] = attribute.value
        elif attribute.oid in _NAME_FIELDS:
            field = _NAME_FIELDS[attribute.oid]
            out[field] = [*(out[field] or []), attribute.value]
    return out


def _public_key(cert: x509.Certificate) -> tuple[int, Any, str]:
    """(PublicKeyAlgorithm, PublicKey, RawSubjectPublicKeyInfo in base64)."""
    try:
        key = cert.public_key()
    except (ValueError, TypeError):  # unsupported_algorithm: Go keeps an unknown key as nil
        return 0, None, ""
    spki = _b64(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)) or ""
    if isinstance(key, rsa.RSAPublicKey):
        return 1, {"E": key.public_numbers().e}, spki
    if isinstance(key, dsa.DSAPublicKey):
        return 2, None, spki
    if isinstance(key, ec.EllipticCurvePublicKey):
        return 3, {"Curve": {}}, spki
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 4, _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)), spki
    return 0, None, spki


def _signature_algorithm(cert: x509.Certificate) -> int:
    oid = cert.signature_algorithm_oid.dotted_string
    if oid == "1.2.840.113549.1.1.10":  # RSASSA-PSS: Go names it by its hash
        hash_algorithm = cert.signature_hash_algorithm
        return _PSS.get(hash_algorithm.name if hash_algorithm is not None else "", 0)
    return _SIGNATURE_ALGORITHMS.get(oid, 0)


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[Any] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def _url(uri: str) -> dict[str, Any]:
    """Go's ``url.URL`` as ``encoding/json`` writes it (``User``: ``{}``, its fields are unexported)."""
    parts = urlsplit(uri)
    opaque = "" if not parts.scheme or parts.netloc or parts.path.startswith("/") else parts.path
    path = "" if opaque else unquote(parts.path)
    return {"Scheme": parts.scheme, "Opaque": opaque, "User": {} if "@" in parts.netloc else None,
            "Host": parts.netloc.rpartition("@")[2], "Path": path, "RawPath": parts.path if path != parts.path else "",
            "OmitHost": False, "ForceQuery": uri.endswith("?") and not parts.query, "RawQuery": parts.query,
            "Fragment": unquote(parts.fragment), "RawFragment": ""}


def _general_names(names: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"DNSNames": None, "EmailAddresses": None, "IPAddresses": None, "URIs": None,
                           "URIStrings": None}
    for kind, field in ((x509.DNSName, "DNSNames"), (x509.RFC822Name, "EmailAddresses"),
                        (x509.UniformResourceIdentifier, "URIStrings")):
        values = names.get_values_for_type(kind)
        out[field] = values or None
    addresses = [str(a) for a in names.get_values_for_type(x509.IPAddress)]
    out["IPAddresses"] = addresses or None
    out["URIs"] = [_url(u) for u in out["URIStrings"]] if out["URIStrings"] else None
    return out


def _constraints(ext: x509.Extension[Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"PermittedDNSDomainsCritical": bool(ext and ext.critical)}
    value = ext.value if ext is not None else None
    for side in ("Permitted", "Excluded"):
        subtrees = getattr(value, f"{side.lower()}_subtrees", None) or []
        for kind, field in ((x509.DNSName, "DNSDomains"), (x509.RFC822Name, "EmailAddresses"),
                            (x509.UniformResourceIdentifier, "URIDomains")):
            found = [n.value for n in subtrees if isinstance(n, kind)]
            out[side + field] = found or None
        ranges = [{"IP": str(n.value.network_address), "Mask": _b64(n.value.netmask.packed)}
                  for n in subtrees if isinstance(n, x509.IPAddress)
                  and isinstance(n.value, (ipaddress.IPv4Network, ipaddress.IPv6Network))]
        out[side + "IPRanges"] = ranges or None
    return out


def _extensions(cert: x509.Certificate) -> tuple[list[dict[str, Any]], list[list[int]] | None]:
    found, unhandled = [], []
    for ext in cert.extensions:
        try:
            value = ext.value.public_bytes()
        except (NotImplementedError, ValueError, AttributeError):
            value = b""
        found.append({"Id": _oid(ext.oid), "Critical": ext.critical, "Value": _b64(value)})
        if ext.critical and ext.oid.dotted_string not in _HANDLED_CRITICAL:
            unhandled.append(_oid(ext.oid))
    return found, unhandled or None


def _usages(cert: x509.Certificate) -> dict[str, Any]:
    key_usage = _extension(cert, ExtensionOID.KEY_USAGE)
    bits = 0
    if key_usage is not None:
        for i, name in enumerate(_KEY_USAGE_BITS):
            try:
                set_ = getattr(key_usage.value, name)
            except ValueError:  # encipher_only/decipher_only without key_agreement
                set_ = False
            bits |= (1 << i) if set_ else 0
    ext = _extension(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    oids = list(ext.value) if ext is not None else []
    known = [_EXT_KEY_USAGES[o.dotted_string] for o in oids if o.dotted_string in _EXT_KEY_USAGES]
    unknown = [_oid(o) for o in oids if o.dotted_string not in _EXT_KEY_USAGES]
    return {"KeyUsage": bits, "ExtKeyUsage": known or None, "UnknownExtKeyUsage": unknown or None}


def _basic_constraints(cert: x509.Certificate) -> dict[str, Any]:
    ext = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if ext is None:
        return {"BasicConstraintsValid": False, "IsCA": False, "MaxPathLen": 0, "MaxPathLenZero": False}
    path_length = ext.value.path_length
    return {"BasicConstraintsValid": True, "IsCA": ext.value.ca,
            "MaxPathLen": -1 if path_length is None else path_length, "MaxPathLenZero": path_length == 0}


def _access(cert: x509.Certificate) -> dict[str, Any]:
    aia = _extension(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    ocsp: list[str] = []
    issuers: list[str] = []
    for desc in aia.value if aia is not None else []:
        if isinstance(desc.access_location, x509.UniformResourceIdentifier):
            (ocsp if desc.access_method.dotted_string.endswith(".48.1") else issuers).append(
                desc.access_location.value)
    cdp = _extension(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    crls = [n.value for point in (cdp.value if cdp is not None else []) for n in (point.full_name or [])
            if isinstance(n, x509.UniformResourceIdentifier)]
    policies = _extension(cert, ExtensionOID.CERTIFICATE_POLICIES)
    oids = [p.policy_identifier for p in policies.value] if policies is not None else []
    return {"OCSPServer": ocsp or None, "IssuingCertificateURL": issuers or None, "CRLDistributionPoints": crls or None,
            "PolicyIdentifiers": [_oid(o) for o in oids] or None, "Policies": [o.dotted_string for o in oids] or None}


def _key_ids(cert: x509.Certificate) -> dict[str, Any]:
    ski = _extension(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    aki = _extension(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    return {"SubjectKeyId": _b64(ski.value.digest) if ski is not None else None,
            "AuthorityKeyId": _b64(aki.value.key_identifier) if aki is not None else None}


def certificate_document(cert: x509.Certificate) -> dict[str, Any]:
    """One certificate as OPA gives it (see the module docstring)."""
    algorithm, key, spki = _public_key(cert)
    extensions, unhandled = _extensions(cert)
    san = _extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    names = _general_names(san.value if san is not None else x509.SubjectAlternativeName([]))
    return {
        "Raw": _b64(cert.public_bytes(serialization.Encoding.DER)),
        "RawTBSCertificate": _b64(cert.tbs_certificate_bytes),
        "RawSubjectPublicKeyInfo": spki, "RawSubject": _b64(cert.subject.public_bytes()),
        "RawIssuer": _b64(cert.issuer.public_bytes()), "Signature": _b64(cert.signature),
        "SignatureAlgorithm": _signature_algorithm(cert), "PublicKeyAlgorithm": algorithm, "PublicKey": key,
        "Version": cert.version.value + 1, "SerialNumber": _number(cert.serial_number),
        "Issuer": _name(cert.issuer), "Subject": _name(cert.subject),
        "NotBefore": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "NotAfter": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **_usages(cert), "Extensions": extensions, "ExtraExtensions": None, "UnhandledCriticalExtensions": unhandled,
        **_basic_constraints(cert), **_key_ids(cert), **_access(cert), **names,
        **_constraints(_extension(cert, ExtensionOID.NAME_CONSTRAINTS)),
    }


def parse_certificates(certs: Any) -> list[dict[str, Any]]:
    if not isinstance(certs, str):
        raise TypeError(f"operand 1 must be string but got {type(certs).__name__}")
    return [certificate_document(cert) for cert in _certificates(certs)]


X509_BUILTINS = {"crypto.x509.parse_certificates": (1, parse_certificates)}
