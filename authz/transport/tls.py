"""TLS on our listeners (``server.tls``): the certificate in use, and its replacement when the files change.

Both listeners share one ``ServerTls``: one identity, one client CA, one watch on the files
(``authz.file_rotation``, which an authorization server's TLS files use too). The watch reads the files every
``reload_interval_seconds`` (through their paths, so a Kubernetes secret's ``..data`` symlink swap is seen like an
in-place write). New contents are checked as at load (``authz.config.tls``: the chain parses, the key is its key,
the leaf has not expired, the client CA bundle parses); what passes is what new connections get, with no restart and
without disturbing open connections; what fails leaves the certificate in use as it is and logs one line naming the
key (``server.tls.key_file: does not match ...``), once per new content.

- gRPC: ``grpc.dynamic_ssl_server_credentials``, whose fetcher grpc calls before each new connection's handshake;
  it hands over the new configuration once, after which grpc keeps it.
- HTTP: one listening ``SSLContext`` whose SNI callback (called for every handshake, with or without SNI) gives the
  connection the context of the certificate in use.

With ``client_ca_file`` a client certificate is required and verified on both listeners (grpcio can only require or
not ask, so "optional" does not exist); ``allowed_client_sans`` narrows who may call (``authz.transport.tls_clients``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from authz.config import ListenerTlsConfig
from authz.config.tls import CertificatePair, check_ca_bundle, check_certificate_pair, read_pem
from authz.file_rotation import FileRotation
from authz.transport.tls_clients import ClientSans

__all__ = ["ServerTls"]

log = logging.getLogger("authz.tls")

KEY = "server.tls"


@dataclass(frozen=True, slots=True)
class _Material:
    """One generation of the listeners' TLS: what was read, and what each listener serves it with."""

    files: tuple[bytes, bytes, bytes]  # the raw contents (chain, key, client CAs), to tell a change
    pair: CertificatePair
    http: ssl.SSLContext
    grpc: grpc.ServerCertificateConfiguration

    def describe(self) -> str:
        leaf = self.pair.leaf
        return (f"serial {leaf.serial_number:x}, subject {leaf.subject.rfc4514_string() or '(empty)'}, valid until "
                f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


class ServerTls:
    """The listeners' TLS; ``start()`` begins the watch (``authz.file_rotation``), ``stop()`` ends it."""

    def __init__(self, config: ListenerTlsConfig, counted: Callable[[str], None] | None = None) -> None:
        """``counted(result)``: a rotation taken (``ok``) or refused (``error``), for a metric."""
        self._config = config
        self.mutual = config.client_ca_file is not None
        self.client_sans = ClientSans(config.allowed_client_sans) if config.allowed_client_sans else None
        self._pending: grpc.ServerCertificateConfiguration | None = None  # for grpc's next handshake
        self._files = FileRotation(KEY, self._read, self._load, interval=config.reload_interval_seconds, log=log,
                                   kept="keeping the certificate in use", taken_as="new connections get certificate",
                                   fallback_key=f"{KEY}.cert_file", taken=self._taken)
        self._files.on_result = counted
        self._listening = self._files.current.http  # the context the HTTP listener was created with
        self._listening.sni_callback = self._choose
        log.info("%s: serving certificate %s%s", KEY, self._files.current.describe(),
                 ", client certificates required" if self.mutual else "")

    def http_context(self) -> ssl.SSLContext:
        """For the HTTP listener: each handshake is given the context of the certificate in use."""
        return self._listening

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._files.current.grpc, self._fetch,
                                                   require_client_authentication=self.mutual)

    def start(self) -> None:
        self._files.start()

    def stop(self) -> None:
        self._files.stop()

    def reload(self) -> bool:
        """Read the files; take new contents that pass the checks. True when the certificate in use changed."""
        return self._files.reload()

    def _taken(self, old: _Material, new: _Material) -> None:
        self._pending = new.grpc

    def _read(self) -> tuple[bytes, bytes, bytes]:
        """The files' contents (the CA bundle's empty when there is none)."""
        config = self._config
        ca = read_pem(config.client_ca_file, f"{KEY}.client_ca_file") if config.client_ca_file else b""
        return read_pem(config.cert_file, f"{KEY}.cert_file"), read_pem(config.key_file, f"{KEY}.key_file"), ca

    def _load(self, files: tuple[bytes, ...]) -> _Material:
        """The checks of ``authz.config.tls`` on the contents read, then both listeners' forms of them."""
        config = self._config
        chain, key, client_ca = files
        pair = check_certificate_pair(chain, key, (config.cert_file, config.key_file),
                                      (f"{KEY}.cert_file", f"{KEY}.key_file"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(config.cert_file, config.key_file)
        if config.client_ca_file is not None:
            check_ca_bundle(client_ca, config.client_ca_file, f"{KEY}.client_ca_file")
            context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
            context.verify_mode = ssl.CERT_REQUIRED
        certificates = grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=client_ca or None)
        return _Material((chain, key, client_ca), pair, context, certificates)

    def _choose(self, connection: ssl.SSLObject, server_name: str | None, listening: ssl.SSLContext) -> None:
        connection.context = self._files.current.http

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's fetcher, before each new connection's handshake: a new configuration once, else None (keep)."""
        pending, self._pending = self._pending, None
        return pending
