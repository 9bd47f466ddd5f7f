"""The ``server:`` section (gRPC listener, process, and ``server.http``: Envoy's HTTP ext_authz transport), plus the
small ``credential:`` section."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from authz.config.tls import ListenerTlsConfig
from authz.config.types import ConfigError, Listen, Number, Section, Text

__all__ = ["DEFAULT_MAX_RECEIVE_BYTES", "CredentialConfig", "HttpTransportConfig", "ServerConfig"]

DEFAULT_MAX_RECEIVE_BYTES = 32 * 1024 * 1024
ENVOY_MAX_HEADER_BYTES = 8192 * 1024  # Envoy's cap on max_request_headers_kb: its largest possible header block
_GRPC_MAX_MESSAGE = 2**31 - 1
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+\Z")


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


class HttpTransportConfig(Section):
    """Envoy's HTTP ext_authz transport (``http_service``), off unless ``listen`` is set."""

    listen: Annotated[str | None, Listen(optional=True)] = None  # HOST:PORT or unix:PATH; None: no HTTP transport
    # = Envoy's path_prefix; check paths: <prefix>[;<settings>]<original path>
    path_prefix: Annotated[str, Text(_PREFIX, "must be a path like /phantom-authz with no trailing '/' (the same "
                                              "string as Envoy's http_service.path_prefix; routes with settings add "
                                              "';<settings>')")] = "/phantom-authz"
    max_body_bytes: Annotated[int, Number(gt=0, integer=True)] = 1024 * 1024  # larger: 413, never read
    max_headers: Annotated[int, Number(gt=0, integer=True)] = 100  # more header lines: 400 from the HTTP parser
    max_header_bytes: Annotated[int, Number(gt=1023, integer=True)] = 64 * 1024  # a longer header line: 400
    # head and body must arrive within this, else the connection closes
    request_timeout_seconds: Annotated[float, Number(gt=0)] = 10.0
    keepalive_timeout_seconds: Annotated[float, Number(gt=0)] = 300.0  # idle kept-alive connections close after this

    @property
    def enabled(self) -> bool:
        return self.listen is not None


class ServerConfig(Section):
    listen: Annotated[str, Listen()] = "127.0.0.1:9001"
    shutdown_grace_seconds: Annotated[float, Number(gt=0)] = 10.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line (what log collectors parse; the default); text: for a human at a terminal
    log_format: Literal["json", "text"] = "json"
    # uvloop (measured ~20% more Checks/s with grpc.aio here) when installed, else asyncio
    event_loop: Literal["uvloop", "asyncio"] = Field(default_factory=lambda: "uvloop" if _has_uvloop() else "asyncio")
    # processes sharing the port with SO_REUSEPORT (TCP only); each has its own L1 cache
    workers: Annotated[int, Number(gt=0, integer=True)] = 1
    # the largest CheckRequest gRPC accepts; larger ones fail with RESOURCE_EXHAUSTED, which Envoy turns into
    # status_on_error (or, with failure_mode_allow: true, an allow), so it must exceed anything Envoy may send
    max_receive_bytes: Annotated[int, Number(gt=0, integer=True)] = DEFAULT_MAX_RECEIVE_BYTES
    # how often the config file is read for changes (live reload; SIGHUP reloads at once); 0: only on SIGHUP
    config_watch_interval_seconds: Annotated[float, Number(ge=0)] = 2.0
    # Envoy HTTP ext_authz mode, off by default; its address is server.http.listen (a section, not a flat http_listen)
    http: HttpTransportConfig = HttpTransportConfig()
    # TLS (and optionally mutual TLS) on both listeners, gRPC and server.http; certificates reloaded when their files
    # change. None: plaintext (a sidecar on loopback or a unix socket)
    tls: ListenerTlsConfig | None = None

    @field_validator("event_loop")
    @classmethod
    def _uvloop_installed(cls, value: str) -> str:
        if value == "uvloop" and not _has_uvloop():
            raise ValueError("uvloop is not installed (pip install uvloop, or use asyncio)")
        return value

    @model_validator(mode="after")
    def _limits(self) -> Self:
        # a CheckRequest can carry Envoy's largest header block plus a body: the receive limit must hold both
        floor = ENVOY_MAX_HEADER_BYTES + self.http.max_body_bytes + 64 * 1024
        if not floor <= self.max_receive_bytes <= _GRPC_MAX_MESSAGE:
            raise ConfigError("max_receive_bytes", f"must be between {floor} (Envoy's largest header block, 8 MiB, "
                                                   f"+ server.http.max_body_bytes + 64 KiB) and {_GRPC_MAX_MESSAGE}"
                                                   f", got {self.max_receive_bytes}")
        if self.workers > 1 and (self.listen.startswith("unix:") or (self.http.listen or "").startswith("unix:")):
            raise ConfigError("workers", "several workers share a TCP port (SO_REUSEPORT); not a unix socket")
        return self


class CredentialConfig(Section):
    max_token_length: Annotated[int, Number(gt=15, integer=True)] = 4096
