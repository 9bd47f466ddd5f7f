"""TLS material and its checks: ``server.tls`` (our gRPC and HTTP listeners) and the PEM files an authorization
server entry names (``ca_file``, ``client_cert_file`` + ``client_key_file``).

The checks are written once and run twice: at load, where a problem is a ``ConfigError`` naming the key
(``server.tls.key_file: does not match the certificate in server.tls.cert_file``), and when a listener's files change
(``authz.transport.tls``), where the same line is logged and the certificate in use is kept. A certificate file may
hold a chain (the leaf first, as cert-manager's ``tls.crt``); a CA bundle must hold at least one certificate.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from pydantic import model_validator

from authz.config.types import ConfigError, Model, Number, Text, Words
from authz.route_rules.patterns import PatternError, PrincipalGlob

__all__ = ["CertificatePair", "ListenerTlsConfig", "check_ca_bundle", "check_certificate_pair", "read_ca_bundle",
           "read_certificate_pair", "read_pem"]


@dataclass(frozen=True, slots=True)
class CertificatePair:
    """A certificate chain and its private key as read (PEM bytes), with the leaf parsed."""

    chain_pem: bytes
    key_pem: bytes
    leaf: x509.Certificate


def read_pem(path: Any, key: str) -> bytes:
    """The file's bytes; a ``ConfigError`` naming ``key`` when it cannot be read."""
    if not isinstance(path, str) or not path:
        raise ConfigError(key, "must be a non-empty string")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None


def _certificates(data: bytes, path: str, key: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(key, f"{path} holds no PEM certificate that parses") from None


def check_ca_bundle(data: bytes, path: str, key: str) -> bytes:
    """``data`` (the bundle ``path`` holds) when it holds certificates that parse, else a ``ConfigError``."""
    if not data.strip():
        raise ConfigError(key, f"{path} is empty")
    _certificates(data, path, key)
    return data


def read_ca_bundle(path: Any, key: str) -> bytes:
    """The bundle's PEM bytes; a ``ConfigError`` naming ``key`` when it is unreadable, empty or does not parse."""
    return check_ca_bundle(read_pem(path, key), path, key)


def read_certificate_pair(cert_path: Any, key_path: Any, cert_key: str, key_key: str) -> CertificatePair:
    """The files' certificate chain and key, checked by ``check_certificate_pair``."""
    chain = read_pem(cert_path, cert_key)
    return check_certificate_pair(chain, read_pem(key_path, key_key), (cert_path, key_path), (cert_key, key_key))


def check_certificate_pair(chain: bytes, key_pem: bytes, paths: tuple[str, str], keys: tuple[str, str],
                           now: datetime.datetime | None = None) -> CertificatePair:
    """A certificate chain and its unencrypted private key that belong together, the leaf not expired; else a
    ``ConfigError`` naming the key at fault (``keys``: the config's names of the certificate and key files, which
    ``paths`` name)."""
    (cert_path, key_path), (cert_key, key_key) = paths, keys
    for data, path, key in ((chain, cert_path, cert_key), (key_pem, key_path, key_key)):
        if not data.strip():
            raise ConfigError(key, f"{path} is empty")
    leaf = _certificates(chain, cert_path, cert_key)[0]
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(key_key, f"{key_path} is not an unencrypted PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private_key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ConfigError(key_key, f"does not match the certificate in {cert_key} ({key_path} is not the key of "
                                   f"{cert_path})")
    expiry = leaf.not_valid_after_utc
    if expiry <= (now or datetime.datetime.now(datetime.UTC)):
        raise ConfigError(cert_key, f"the certificate in {cert_path} expired on {expiry:%Y-%m-%d %H:%M:%S} UTC")
    return CertificatePair(chain, key_pem, leaf)


def _san_patterns(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        try:
            PrincipalGlob.parse(value)
        except PatternError:
            raise ValueError(f"{value!r} is not a SAN pattern (a DNS name, URI such as a SPIFFE id, IP address or "
                             "email, no spaces; '*' stands for any characters; '*' alone would allow every client: "
                             "leave the list out instead)") from None
    return values


class ListenerTlsConfig(Model):
    """TLS on the gRPC listener and the HTTP one (``server.http``): one identity for the process, one set of rules
    for its clients, one watch on the files."""

    cert_file: Annotated[str, Text()]  # PEM certificate chain, the leaf first (cert-manager's tls.crt)
    key_file: Annotated[str, Text()]  # its unencrypted PEM private key (tls.key)
    # set: mutual TLS; every client must present a certificate this bundle's CAs signed, else the handshake fails
    client_ca_file: Annotated[str, Text()] | None = None
    # with client_ca_file: the client certificate must carry one of these SANs (DNS, URI such as a SPIFFE id, IP,
    # email; '*' stands for any characters); empty: any certificate the CA signed
    allowed_client_sans: Annotated[tuple[str, ...], Words(re.compile(r"^\S+$"), "SAN", _san_patterns)] = ()
    # how often the files are read for a rotation (new connections get the new certificate; a bad one is not taken)
    reload_interval_seconds: Annotated[float, Number(gt=0)] = 5.0

    @model_validator(mode="before")
    @classmethod
    def _check_files(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            read_certificate_pair(data.get("cert_file"), data.get("key_file"), "cert_file", "key_file")
            if data.get("client_ca_file") is not None:
                read_ca_bundle(data["client_ca_file"], "client_ca_file")
        return data

    @model_validator(mode="after")
    def _clients(self) -> Self:
        if self.allowed_client_sans and self.client_ca_file is None:
            raise ConfigError("allowed_client_sans", "needs client_ca_file (client certificates are only asked for "
                                                     "and verified with mutual TLS)")
        return self
