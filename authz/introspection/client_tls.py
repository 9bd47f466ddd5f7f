"""The TLS one authorization server's client trusts (``ca_file``) and presents (``client_cert_file`` +
``client_key_file``), replaced when those files change: cert-manager renewing the client certificate, the AS's
private CA re-issued, a Kubernetes secret's ``..data`` swap. No reload or restart is needed, and none is done: the
AS's keys and cached answers stay as they are.

The files are watched as the listeners' are (``authz.file_rotation``, every ``tls_reload_interval_seconds``). New
contents are checked as at load (the CA bundle parses; the certificate parses, has not expired and the key is its
key); a refusal keeps the TLS in use and logs one line naming the AS's key
(``authorization_servers.corp.client_key_file: does not match ...``), counted in
``phantom_authz_as_tls_reloads_total{authorization_server, result}`` (``ok``: taken; ``error``: refused).

Each generation of the files has its SSL context and an aiohttp session of its own (its connection pool): a call
takes the generation current when it starts and finishes on it; calls that start after a rotation open connections
with the new one; the old generation's session is closed once its last call in flight has ended. An AS with none of
those files has no ``ClientTls`` and uses the process's shared session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from authz.config import AuthorizationServerConfig, ConfigError
from authz.config.tls import check_ca_bundle, check_certificate_pair, read_pem
from authz.file_rotation import FileRotation

__all__ = ["ClientTls"]

log = logging.getLogger("authz.introspection.tls")

_KEEPALIVE_SECONDS = 30.0  # as the shared session's (authz.app)


@dataclass(eq=False)
class _Generation:
    """One reading of the files: what a call to the AS trusts and presents, and the connections made with it."""

    files: tuple[bytes, bytes, bytes]  # the raw contents (CA bundle, client certificate, its key), to tell a change
    context: ssl.SSLContext
    leaf: x509.Certificate | None
    authorities: int  # certificates in the CA bundle (0: the system's CAs)
    session: aiohttp.ClientSession | None = None  # made by the first call
    calls: int = 0  # calls in flight on it
    retired: bool = False

    def describe(self) -> str:
        trusted = f"CA bundle of {self.authorities}" if self.authorities else "the system's CAs"
        leaf = self.leaf
        if leaf is None:
            return f"trusting {trusted}"
        return (f"client certificate serial {leaf.serial_number:x}, subject {leaf.subject.rfc4514_string() or '-'}, "
                f"valid until {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; trusting {trusted}")


class ClientTls:
    """The AS's TLS in use; ``connection()`` lends a call the current session and context."""

    def __init__(self, config: AuthorizationServerConfig, shared: aiohttp.ClientSession) -> None:
        self._config = config
        self._shared = shared  # the process's session: its tracing hooks and pool size carry over
        self._key = f"authorization_servers.{config.name}"
        self._closing: set[asyncio.Future[None]] = set()
        self._retired: set[_Generation] = set()
        self.files = FileRotation(self._key, self._read, self._load, interval=config.tls_reload_interval_seconds,
                                  log=log, kept="keeping the TLS in use", taken_as="new calls use",
                                  fallback_key=f"{self._key}.client_cert_file", taken=self._taken)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[tuple[aiohttp.ClientSession, ssl.SSLContext]]:
        generation = self.files.current
        if generation.session is None:
            generation.session = self._session()
        generation.calls += 1
        try:
            yield generation.session, generation.context
        finally:
            generation.calls -= 1
            if generation.retired and generation.calls == 0:
                self._close(generation)

    def start(self, on_result: Callable[[str], None] | None = None) -> None:
        """Watch the files; ``on_result`` is told of each rotation taken ("ok") or refused ("error")."""
        self.files.on_result = on_result
        self.files.start()

    def retire(self) -> None:
        """No more calls will start (a reload replaced the AS): stop watching; close once the calls in flight end."""
        self.files.stop()
        self._taken(self.files.current, self.files.current)

    async def aclose(self) -> None:
        """At shutdown: stop watching and close every session now."""
        self.files.stop()
        for generation in (self.files.current, *self._retired):
            generation.retired = True
            self._close(generation)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _taken(self, old: _Generation, new: _Generation) -> None:
        old.retired = True
        if old.calls == 0:
            self._close(old)
        else:
            self._retired.add(old)

    def _close(self, generation: _Generation) -> None:
        self._retired.discard(generation)
        session, generation.session = generation.session, None
        if session is not None and not session.closed:
            closing = asyncio.ensure_future(session.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    def _session(self) -> aiohttp.ClientSession:
        connector = self._shared.connector
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connector.limit if connector is not None else 100,
                                           keepalive_timeout=_KEEPALIVE_SECONDS, ttl_dns_cache=300),
            raise_for_status=False, trace_configs=self._shared.trace_configs or None)

    def _read(self) -> tuple[bytes, bytes, bytes]:
        """The files' contents (empty for a file not configured)."""
        config, key = self._config, self._key
        ca = read_pem(config.ca_file, f"{key}.ca_file") if config.ca_file is not None else b""
        if config.client_cert_file is None or config.client_key_file is None:
            return ca, b"", b""
        cert = read_pem(config.client_cert_file, f"{key}.client_cert_file")
        return ca, cert, read_pem(config.client_key_file, f"{key}.client_key_file")

    def _load(self, files: tuple[bytes, ...]) -> _Generation:
        """The checks at load (``authz.config.tls``) on the contents read, then the SSL context they make."""
        config, key = self._config, self._key
        ca, chain, private_key = files
        trusted: list[x509.Certificate] = []
        if config.ca_file is not None:
            check_ca_bundle(ca, config.ca_file, f"{key}.ca_file")
            trusted = x509.load_pem_x509_certificates(ca)
        # a bundle given replaces the system's CAs; its certificates alone (a bundle's comments may not be ASCII)
        cadata = "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in trusted) or None
        try:
            context = ssl.create_default_context(cadata=cadata)
        except ssl.SSLError as exc:
            raise ConfigError(f"{key}.ca_file", f"{config.ca_file} does not load ({exc.reason})") from None
        if not config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        leaf = None
        if config.client_cert_file is not None and config.client_key_file is not None:
            paths, keys = (config.client_cert_file, config.client_key_file), (f"{key}.client_cert_file",
                                                                               f"{key}.client_key_file")
            leaf = check_certificate_pair(chain, private_key, paths, keys).leaf
            context.load_cert_chain(*paths)  # from the paths: the rotation re-reads them after, to tell a change
        return _Generation((ca, chain, private_key), context, leaf, len(trusted))
