"""Certificates made in the test (``cryptography``): a CA, certificates it signs for servers and clients (any DNS,
IP and URI SANs, any subject), and self-signed ones; written as PEM files where a process can read them.

P-256 keys throughout (fast to make). ``Issued.install(cert_path, key_path)`` writes a certificate over earlier files
the way a rotation does (each file replaced by a rename, never seen half-written); ``MountedSecret`` lays files out
as Kubernetes mounts a secret and updates them as the kubelet does (cert-manager's rotations arrive that way).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Authority", "Issued", "MountedSecret", "self_signed", "x5t_s256"]

_DAY = datetime.timedelta(days=1)


def x5t_s256(certificate: x509.Certificate) -> str:
    """RFC 8705 §3.1: the base64url SHA-256 of the certificate's DER, no padding."""
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _replace(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """``<name>.pem`` and ``<name>.key`` in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = directory / f"{name}.pem", directory / f"{name}.key"
        self.install(*paths)
        return paths

    def install(self, cert_path: Path, key_path: Path) -> None:
        _replace(key_path, self.key_pem)
        _replace(cert_path, self.cert_pem)


def _names(dns: tuple[str, ...], ips: tuple[str, ...], uris: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    return names


def _build(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, signer: ec.EllipticCurvePrivateKey,
           *, ca: bool, sans: list[x509.GeneralName], lifetime: datetime.timedelta) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + lifetime)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _subject(common_name: str | None) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])


class Authority:
    """A self-signed root that signs leaf certificates."""

    def __init__(self, name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "phantom-authz tests"),
                               x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = _build(self.name, self.name, self._key.public_key(), self._key, ca=True, sans=[],
                                  lifetime=_DAY)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.pem)
        return path

    def issue(self, common_name: str | None = None, *, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
              uris: tuple[str, ...] = (), lifetime: datetime.timedelta = _DAY) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _build(_subject(common_name), self.name, key.public_key(), self._key, ca=False,
                             sans=_names(dns, ips, uris), lifetime=lifetime)
        return Issued(certificate, key)


def self_signed(common_name: str, *, dns: tuple[str, ...] = (), uris: tuple[str, ...] = ()) -> Issued:
    """A certificate signed by its own key (RFC 8705 ``self_signed_tls_client_auth``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _subject(common_name)
    return Issued(_build(name, name, key.public_key(), key, ca=False, sans=_names(dns, (), uris), lifetime=_DAY), key)


class MountedSecret:
    """A directory as Kubernetes mounts a secret: each file a symlink into ``..data``, itself a symlink to a
    directory of one generation; an update writes a new generation and swaps ``..data`` in one rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def publish(self, files: dict[str, bytes]) -> None:
        self.generation += 1
        target = self.root / f"..gen{self.generation}"
        target.mkdir()
        for name, data in files.items():
            (target / name).write_bytes(data)
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        swap = self.root / "..data_tmp"
        swap.symlink_to(target.name)
        os.replace(swap, self.root / "..data")

    def issue(self, certificate: Issued, ca: Authority, key: bytes | None = None) -> None:
        """``tls.crt``, ``tls.key`` (``key``: another key, for a broken rotation) and ``ca.crt``, as cert-manager
        writes them."""
        self.publish({"tls.crt": certificate.cert_pem, "tls.key": key or certificate.key_pem, "ca.crt": ca.pem})
